"""Checking a layer class against its declaration, numerically.

:func:`check_elementwise` proves the generated class right against numerical
differentiation of the *declared* forward pass (never the generated one), on inputs searched with hypothesis
(random upstream ``dout``, never all ones; inputs kept away from kinks such as
ReLU at 0), then in the tails (``|x|`` up to 1e3) against mpmath, then reproduces
the declaration's worked numbers (``[expect]``) and checks its hand claims and
chains at random points.
"""
from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Sequence

import numpy as np
import sympy
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from ..derivation.model import Derivation
from ..numerics.differences import complex_step_works, elementwise_derivative, relative_error
from ..numerics.domain import domain_of, sample_points, tail_points
from ..numerics.evaluate import Unsupported, float_function, mp_float
from ..numerics.kinks import NON_ANALYTIC, kink_arguments
from ..reports import CheckReport
from ..spec.model import DOUT, Spec
from .base import dtype_problems, exceeds, severity

#: Largest relative error accepted, by differentiation method.
TOLERANCE = {"complex": 1e-8, "central": 1e-6}
#: Tail accuracy: relative, plus this fraction of the largest reference magnitude.
TAIL_RTOL, TAIL_ATOL = 1e-8, 1e-12
#: Worked numbers (``[expect]``) are reproduced to this relative tolerance.
EXPECT_RTOL = 1e-9
#: Gradient values below this fraction of their typical size are judged absolutely.
FLOOR = 1e-6
#: Inputs closer than this to a kink are moved away before differentiating.
KINK_MARGIN = 1e-3



# -- numerical gradient check ----------------------------------------------------
def kinks(spec: Spec) -> list[sympy.Expr]:
    """Expressions in the inputs that are zero exactly where the forward has a kink."""
    return kink_arguments(spec.forward)


def _away_from_kinks(spec: Spec, xs: list[np.ndarray], kink_fns: list[Callable]) -> list[np.ndarray]:
    for _ in range(4):
        near = np.zeros(xs[0].shape, bool)
        for fn in kink_fns:
            near |= np.abs(np.asarray(fn(*xs), dtype=float) * np.ones(xs[0].shape)) < KINK_MARGIN
        if not near.any():
            break
        xs = [np.where(near, x + 0.37 * (i + 1), x) for i, x in enumerate(xs)]  # each its own shift: x - y moves too
    return xs


def gradient_scale(spec: Spec, symbol: sympy.Symbol) -> float:
    """Typical size of ``dy/dx``: the largest magnitude at the derivation's sample points."""
    raw = sympy.diff(spec.forward, symbol)
    values = [abs(mp_float(raw, p)) for p in sample_points(spec.inputs, spec.graph)]
    return max([v for v in values if np.isfinite(v)], default=1.0) or 1.0


def choose_method(spec: Spec, forward: Callable[..., np.ndarray], xs: Sequence[np.ndarray]) -> str:
    """Complex step where the declared forward is analytic and runs on complex input."""
    if spec.forward.has(*NON_ANALYTIC):
        return "central"
    return "complex" if complex_step_works(forward, xs) else "central"


def _as_tuple(grads) -> tuple:
    return grads if isinstance(grads, tuple) else (grads,)


def gradient_check(spec: Spec, cls: type, *, max_examples: int = 25) -> tuple[float, str, dict | None]:
    """Largest relative error of ``backward`` against numerical differentiation of the
    declared forward (in float64, :func:`~symbackprop.numerics.evaluate.float_function`).

    Returns ``(max_rel_error, method, where)``; ``where`` names the input, element
    and values at the worst point.  Points where float64 cannot compare are left out:
    where the exact derivative (SymPy's ``diff``, in float64) is not finite (``1/x**2``
    at 1e-300, ``arctan2`` at the origin), and where numerical differentiation misses it
    (a singularity within its step).
    """
    exact = [_exact_derivative(spec, s) for s in spec.inputs]
    kink_fns = [float_function(k, spec.inputs) for k in kinks(spec)]
    scales = [gradient_scale(spec, s) for s in spec.inputs]
    declared = float_function(spec.forward, spec.inputs)
    state = {"error": 0.0, "where": None, "method": None}
    shapes = st.tuples(st.integers(1, 4), st.integers(1, 5))

    @settings(max_examples=max_examples, derandomize=True, database=None, deadline=None,
              phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
    @given(data=st.data())
    def run(data):
        shape = data.draw(shapes)
        xs = []
        for s in spec.inputs:
            domain = domain_of(s, spec.domains)
            xs.append(data.draw(arrays(np.float64, shape, elements=st.floats(*domain.search).filter(domain.contains))))
        xs = _away_from_kinks(spec, xs, kink_fns)
        seed = data.draw(st.integers(0, 2**32 - 1))
        dout = np.random.default_rng(seed).standard_normal(shape)
        method = state["method"] = state["method"] or choose_method(spec, declared, xs)
        layer = cls()
        layer.forward(*[x.copy() for x in xs])
        grads = _as_tuple(layer.backward(dout.copy()))
        for i, s in enumerate(spec.inputs):
            slope, noise = elementwise_derivative(declared, xs, i, method)
            want = slope * dout
            err = relative_error(grads[i], want, noise * np.abs(dout), FLOOR * scales[i] * np.abs(dout))
            if exact[i] is not None:  # a layer's nan or inf stays an error
                err = np.where(_comparable(exact[i](*xs), slope, noise), err, 0.0)
            k = int(np.argmax(np.where(np.isfinite(err), err, np.inf)))
            if severity(err.flat[k]) > severity(state["error"]) or state["where"] is None:
                state["error"] = float(err.flat[k])
                state["where"] = {"input": s.name, "index": list(np.unravel_index(k, shape)),
                                  "inputs": {t.name: float(x.flat[k]) for t, x in zip(spec.inputs, xs)},
                                  "backward": float(np.asarray(grads[i]).flat[k] if np.ndim(grads[i]) else grads[i]),
                                  "numerical": float(want.flat[k])}

    run()
    return state["error"], state["method"], state["where"]


def tail_check(derivation: Derivation, cls: type) -> tuple[float, list[str]]:
    """Forward and backward of the generated class in the tails, against mpmath.

    Returns the largest error (relative, with an absolute floor of ``TAIL_ATOL`` times
    the largest magnitude) and the problems found (warnings, non-finite values).
    """
    spec = derivation.spec
    points = tail_points(spec.inputs, spec.graph)
    if not points:
        return 0.0, []
    xs = [np.array([float(p[s]) for p in points]) for s in spec.inputs]
    dout = np.linspace(0.5, 1.5, len(points))
    problems: list[str] = []
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        try:
            layer = cls()
            y = np.asarray(layer.forward(*xs), dtype=float)
            grads = _as_tuple(layer.backward(dout))
        except (FloatingPointError, RuntimeWarning) as exc:
            return float("inf"), [f"numpy warned in the tails (|x| up to 1e3): {exc}"]
    worst = 0.0
    refs = [(y, spec.forward)] + [(np.asarray(g, dtype=float), derivation.raw_local[s.name] * DOUT)
                                  for g, s in zip(grads, spec.inputs)]
    for label, (got, expr) in zip(["forward", *[f"d{n}" for n in spec.input_names]], refs):
        want = np.array([mp_float(expr, {**p, DOUT: d}) for p, d in zip(points, dout)])
        usable = np.isfinite(want)
        got = got * np.ones(len(points))
        bad = usable & ~np.isfinite(got)
        if bad.any():
            problems.append(f"{label} is not finite at {spec.input_names[0]} = {xs[0][bad][0]:g}")
            worst = float("inf")
            continue
        scale = np.max(np.abs(want[usable]), initial=0.0)
        floor = max(TAIL_ATOL / TAIL_RTOL * scale, 1e-300)
        err = np.abs(got[usable] - want[usable]) / np.maximum(np.abs(want[usable]), floor)
        worst = max(worst, float(np.max(err, initial=0.0)))
    return worst, problems


# -- dtypes: float32 in, float32 out ---------------------------------------------------
#: Errors are relative to the larger of the value and this fraction of its typical size.
DTYPE_FLOOR = 1.0


def dtype_check(spec: Spec, cls: type, dtype=np.float32, seed: int = 0) -> list[str]:
    """Problems of ``cls`` in ``dtype``: results of another dtype, or far from float64."""
    rng = np.random.default_rng(seed)
    shape = (4, 5)
    xs = [rng.uniform(*domain_of(s, spec.domains).search, shape).astype(dtype) for s in spec.inputs]
    kink_fns = [float_function(k, spec.inputs) for k in kinks(spec)]
    xs = [np.asarray(x, dtype) for x in _away_from_kinks(spec, xs, kink_fns)]
    dout = rng.standard_normal(shape).astype(dtype)
    labels = ["forward", *[f"d{n}" for n in spec.input_names]]
    runs = []
    for kind in (dtype, np.float64):
        layer = cls()
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = layer.forward(*[x.astype(kind) for x in xs])
            runs.append(dict(zip(labels, [out, *_as_tuple(layer.backward(dout.astype(kind)))])))
    scales = dict(zip(labels, [1.0] + [gradient_scale(spec, s) * np.abs(dout.astype(float)) for s in spec.inputs]))

    def error(label: str, got: np.ndarray, want: np.ndarray) -> float:
        scale = scales[label]
        floor = DTYPE_FLOOR * np.maximum(scale, np.max(np.abs(want), initial=0.0) if label == "forward" else scale)
        err = np.abs(got - want) / np.maximum(np.abs(want), floor)
        return float(np.nanmax(np.where(np.isfinite(want), err, 0.0)))

    return dtype_problems(dtype, *runs, error)


# -- worked numbers, claims and chains --------------------------------------------
def expect_check(derivation: Derivation, cls: type) -> list[dict]:
    """Reproduce ``[expect]``: exactly from the declaration, and in float64 from the class."""
    spec = derivation.spec
    if not spec.expect:
        return []
    by_name = {s.name: s for s in spec.inputs}
    exact = {by_name[k]: v for k, v in spec.values.items()}
    expanded = spec.expanded()
    layer = cls()
    out_value = layer.forward(*[float(spec.values[n]) for n in spec.input_names])
    grads = _as_tuple(layer.backward(1.0))
    results = []
    for name, want in spec.expect.get("forward", {}).items():
        symbol = next(n for n in (*spec.inputs, *expanded) if n.name == name)
        got_exact = expanded.get(symbol, symbol).xreplace(exact)
        item = {"of": name, "expected": float(want), "exact": float(got_exact)}
        if symbol == spec.output:
            item["generated"] = float(out_value)
        results.append(item)
    for name, want in spec.expect.get("grad", {}).items():
        got_exact = (derivation.raw_local[name]).xreplace(exact)
        g = grads[spec.input_names.index(name)]
        results.append({"of": f"grad.{name}", "expected": float(want), "exact": float(got_exact),
                        "generated": float(g)})
    for item in results:
        values = [item["exact"]] + ([item["generated"]] if "generated" in item else [])
        item["ok"] = all(abs(v - item["expected"]) <= EXPECT_RTOL * max(1.0, abs(item["expected"])) for v in values)
    return results


def _inputs_text(where: dict | None) -> str:
    if not where:
        return "some drawn input"
    return ", ".join(f"{name} = {value:.6g}" for name, value in where["inputs"].items())


def _exact_derivative(spec: Spec, s: sympy.Symbol) -> Callable | None:
    """SymPy's derivative of the forward in float64 (point masses of steps dropped), if it has one."""
    raw = sympy.diff(spec.forward, s).replace(sympy.DiracDelta, lambda *args: sympy.S.Zero)
    try:
        return float_function(raw, spec.inputs)
    except Unsupported:
        return None


def _comparable(exact: np.ndarray, numerical: np.ndarray, noise: np.ndarray) -> np.ndarray:
    """Where the numerical derivative is a fit reference: the exact one finite and met."""
    exact = np.broadcast_to(np.asarray(exact, dtype=float), np.shape(numerical))
    with np.errstate(all="ignore"):
        met = np.abs(numerical - exact) <= 1e-6 * np.abs(exact) + noise + 1e-300
    return np.isfinite(exact) & met


def check_elementwise(derivation: Derivation, cls: type, *, max_examples: int = 25) -> CheckReport:
    """The :class:`~symbackprop.reports.CheckReport` of the generated class ``cls`` of an
    elementwise layer: gradient, tails, dtypes and worked numbers (see the module docstring)."""
    start = time.perf_counter()
    spec = derivation.spec
    error, method, where = gradient_check(spec, cls, max_examples=max_examples)
    tails_error, problems = tail_check(derivation, cls)
    problems += dtype_check(spec, cls)
    expect = expect_check(derivation, cls)
    if not np.isfinite(error):
        problems.insert(0, f"undefined (nan or inf) at {_inputs_text(where)}: the backward or the declared "
                           "derivative has no finite value there; declare the input's domain, e.g. "
                           '[symbols] x = "positive" or "interval(-1, 1)"')
    elif exceeds(error, TOLERANCE[method]):
        problems.insert(0, f"backward differs from {method} differentiation: relative error {error:.2e}")
    if exceeds(tails_error, TAIL_RTOL):
        problems.append(f"inaccurate in the tails: error {tails_error:.2e} (relative {TAIL_RTOL:g})")
    problems += [f"expect {e['of']}: got {e.get('generated', e['exact'])}, expected {e['expected']}"
                 for e in expect if not e["ok"]]
    return CheckReport(spec.name, not problems, error, method, where, tails_error, [], [], expect,
                       problems, round(time.perf_counter() - start, 3))
