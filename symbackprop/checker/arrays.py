r"""Checking array layers: random directional derivatives, then per element where wrong.

For an array layer :math:`y = f(x, W, \dots)` and a random upstream gradient
:math:`\bar y`, the backward pass must satisfy, for every differentiated value
:math:`s` and every direction :math:`v`,

.. math:: \langle \bar s, v \rangle = \frac{d}{dh} \langle \bar y, f(s + h v) \rangle \Big|_{h=0},

where :math:`f` is the *declared* forward (evaluated in float64, array atoms by their
definitions: never the generated code), differentiated numerically in one or two passes
(complex step where it is analytic, central differences elsewhere).
A few random directions decide "is it right"; only when one disagrees is the
gradient compared element by element to say where.
"""
from __future__ import annotations

import functools
import time
import warnings
from collections.abc import Callable

import numpy as np
import sympy
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from .. import ops
from ..derivation.model import Derivation
from ..numerics.differences import COMPLEX_STEP, RELATIVE_STEP
from ..numerics.evaluate import float_function
from ..numerics.kinks import NON_ANALYTIC as KINKED
from ..reports import CheckReport
from ..spec.model import Spec
from .elementwise import dtype_tolerance

TOLERANCE = {"complex": 1e-8, "central": 1e-6}
#: The book reports about 1e-10 to 1e-13 for its TwoLayerNet; anything near 1e-7 is a bug.
NETWORK_TOLERANCE = 1e-8
NON_ANALYTIC = (*KINKED, ops.ReduceMax)


@functools.lru_cache(maxsize=256)
def _declared_function(graph: tuple, node: sympy.Symbol, symbols: tuple) -> Callable[..., np.ndarray]:
    """Graph ``node`` as one float64 function of ``symbols`` (``log(softmax)`` fused as the
    generated code fuses it: the same function, without the overflow)."""
    expanded: dict = {}
    for name, expr in graph:
        expanded[name] = expr.xreplace(expanded)
    return float_function(ops.fuse_logs(expanded[node], {}), symbols)


class ArrayProblem:
    """Random values for an array declaration at given dimension sizes, the declaration's own
    values at them (:meth:`declared`), and optionally a class under test (:meth:`run`)."""

    def __init__(self, declaration: Spec | Derivation, sizes: dict, seed: int, cls: type | None = None):
        self.spec = spec = getattr(declaration, "spec", declaration)
        self.cls = cls
        self.rng = np.random.default_rng(seed)
        self.sizes = sizes
        self.symbols = (*spec.inputs, *spec.params, *spec.constants, *spec.dims)
        self.values = {s: self.draw(s) for s in (*spec.inputs, *spec.params, *spec.constants)}
        out_shape = self.shape(spec.output)
        self.dout = self.rng.standard_normal(out_shape) if out_shape else float(self.rng.uniform(0.5, 2))

    def shape(self, symbol) -> tuple[int, ...]:
        return tuple(int(d) if d.is_Integer else self.sizes[d] for d in self.spec.shapes[symbol])

    def draw(self, symbol) -> np.ndarray:
        shape = self.shape(symbol)
        onehot = [axis for kind, t, axis in self.spec.assumptions if t == symbol and kind == "onehot"]
        if onehot:
            labels = self.rng.integers(0, shape[onehot[0]], size=shape[:onehot[0]] + shape[onehot[0] + 1:])
            return np.moveaxis(np.eye(shape[onehot[0]])[labels], -1, onehot[0])
        if symbol.is_positive:
            return self.rng.uniform(0.1, 2.0, shape)
        return self.rng.standard_normal(shape)

    def declared(self, values: dict, node: sympy.Symbol | None = None) -> np.ndarray:
        """The declaration's value of graph ``node`` (default: the output) at ``values``: the
        declared forward in float64, array atoms by their definitions (never generated code)."""
        fn = _declared_function(self.spec.graph, node or self.spec.output, self.symbols)
        env = {**self.sizes, **values}
        return fn(*[env[s] for s in self.symbols])

    def run(self, values: dict) -> tuple[object, object]:
        """A fresh layer of the class under test: its output at these values, and the layer."""
        spec = self.spec
        layer = self.cls(*[values[p] for p in spec.params])
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = layer.forward(*[values[s] for s in (*spec.inputs, *spec.constants)])
        return out, layer

    def objective(self, symbol, value) -> complex | float:
        r""":math:`\langle \bar y, f \rangle` of the declaration, with ``symbol`` set to ``value``."""
        return np.sum(self.dout * self.declared({**self.values, symbol: value}))

    def gradients(self) -> dict:
        """The backward pass of the class under test: returned inputs and stored parameters."""
        _, layer = self.run({k: v.copy() for k, v in self.values.items()})
        dout = self.dout.copy() if isinstance(self.dout, np.ndarray) else self.dout
        returned = layer.backward(dout)
        returned = returned if isinstance(returned, tuple) else (returned,)
        grads = dict(zip(self.spec.inputs, returned))
        stored = getattr(layer, "grads", None) if self.spec.predict is not None else None
        grads.update({p: stored[p.name] if stored is not None else getattr(layer, f"d{p.name}")
                      for p in self.spec.params})
        return grads

    def directional(self, symbol, direction: np.ndarray, method: str) -> float:
        x = self.values[symbol]
        if method == "complex":
            return float(np.imag(self.objective(symbol, x + 1j * COMPLEX_STEP * direction)) / COMPLEX_STEP)
        h = RELATIVE_STEP * max(1.0, float(np.max(np.abs(x))))
        return float((self.objective(symbol, x + h * direction) - self.objective(symbol, x - h * direction)) / (2 * h))

    def worst_element(self, symbol, grad: np.ndarray, method: str) -> dict:
        """Per-element comparison: where the backward is most wrong."""
        x = self.values[symbol]
        worst = {"error": -1.0}
        for idx in np.ndindex(x.shape):
            e = np.zeros_like(x)
            e[idx] = 1.0
            want = self.directional(symbol, e, method)
            got = float(np.asarray(grad)[idx])
            err = abs(got - want) / max(abs(got), abs(want), 1e-12)
            if err > worst["error"]:
                worst = {"error": err, "input": symbol.name, "index": list(idx), "backward": got, "numerical": want}
        return worst


def choose_method(problem: ArrayProblem) -> str:
    spec = problem.spec
    if any(e.has(*NON_ANALYTIC) for _, e in spec.graph):
        return "central"
    try:
        s = spec.inputs[0]
        value = problem.objective(s, problem.values[s] + 1j * COMPLEX_STEP)
    except (TypeError, ValueError):
        return "central"
    return "complex" if np.iscomplexobj(value) and np.isfinite(value) else "central"


def gradient_check(derivation: Derivation, cls: type, *, max_examples: int = 10, directions: int = 3):
    """Largest relative error of ``<backward, v>`` against the numerical directional
    derivative, over random dimension sizes (2 to 5: a batch of 1 hides a missing 1/N)
    and values; the worst element is located when the error is large."""
    spec = derivation.spec
    state = {"error": 0.0, "where": None, "method": None}

    @settings(max_examples=max_examples, derandomize=True, database=None, deadline=None,
              phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
    @given(data=st.data())
    def run(data):
        sizes = {d: data.draw(st.integers(2, 5), label=d.name) for d in spec.dims}
        problem = ArrayProblem(derivation, sizes, data.draw(st.integers(0, 2**32 - 1)), cls)
        method = state["method"] = state["method"] or choose_method(problem)
        grads = problem.gradients()
        for symbol in spec.differentiated:
            for _ in range(directions):
                v = problem.rng.standard_normal(problem.values[symbol].shape)
                want = problem.directional(symbol, v, method)
                got = float(np.sum(np.asarray(grads[symbol]) * v))
                scale = float(np.linalg.norm(np.asarray(grads[symbol])) * np.linalg.norm(v))
                err = abs(got - want) / max(abs(got), abs(want), 1e-6 * scale, 1e-300)
                if err > state["error"]:
                    state["error"] = err
                    state["where"] = {"input": symbol.name, "sizes": {d.name: n for d, n in sizes.items()}}
                    if err > TOLERANCE[method]:
                        state["where"].update(problem.worst_element(symbol, grads[symbol], method))

    run()
    return state["error"], state["method"], state["where"]


#: Sizes of the network gradient check: the book uses 3 samples of MNIST (784-50-10);
#: the digits data set's 64-16-10 keeps every element's two forward passes quick.
NETWORK_SIZES = {"N": 3, "D": 64, "H": 16, "K": 10}


def _runs_complex(problem: ArrayProblem) -> bool:
    """Does the declared forward run on complex values (``logaddexp``, say, does not)?"""
    p = problem.spec.params[0]
    try:
        problem.objective(p, problem.values[p] + 0j)
    except TypeError:
        return False
    return True


def network_gradient_check(derivation: Derivation, cls: type, seed: int = 0) -> dict[str, dict[str, float]]:
    r"""The book's gradient check (its 5.7.3): for each parameter, the mean of
    :math:`|g_\text{backprop} - g_\text{numerical}|` over its elements, with the book's
    central differences (``h = 1e-4``) and with the complex step where the network allows it."""
    spec = derivation.spec
    sizes = {d: NETWORK_SIZES.get(d.name, 3) for d in spec.dims}
    problem = ArrayProblem(derivation, sizes, seed, cls)
    problem.values.update({p: 0.01 * problem.rng.standard_normal(problem.shape(p)) if len(spec.shapes[p]) > 1
                           else 0.01 * problem.rng.standard_normal(problem.shape(p)) for p in spec.params})
    problem.dout = 1.0
    grads = problem.gradients()
    methods = {"central": 1e-4}
    if choose_method(problem) == "complex" or not any(e.has(sympy.Piecewise, sympy.Max) for _, e in spec.graph[-2:]):
        methods["complex"] = COMPLEX_STEP
    if "complex" in methods and not _runs_complex(problem):
        del methods["complex"]
    out: dict[str, dict[str, float]] = {}
    for p in spec.params:
        x = problem.values[p]
        figures = {}
        for method, h in methods.items():
            numeric = np.zeros_like(x)
            for idx in np.ndindex(x.shape):
                e = np.zeros_like(x)
                e[idx] = 1.0
                if method == "complex":
                    numeric[idx] = np.imag(problem.objective(p, x + 1j * h * e)) / h
                else:
                    numeric[idx] = (problem.objective(p, x + h * e) - problem.objective(p, x - h * e)) / (2 * h)
            figures[method] = float(np.mean(np.abs(np.asarray(grads[p]) - numeric)))
        out[p.name] = figures
    return out


def dtype_check(derivation: Derivation, cls: type, dtype=np.float32, seed: int = 0) -> list[str]:
    """Problems of the generated class in ``dtype``: results of another dtype, or further from
    the float64 results on the same (rounded) values than the dtype's tolerance, norm-wise."""
    spec = derivation.spec
    problem = ArrayProblem(derivation, {d: 3 + i for i, d in enumerate(spec.dims)}, seed, cls)
    rounded = {k: v.astype(dtype) for k, v in problem.values.items()}
    dout = problem.dout.astype(dtype) if isinstance(problem.dout, np.ndarray) else problem.dout
    runs = []
    for kind in (dtype, np.float64):
        problem.values = {k: v.astype(kind) for k, v in rounded.items()}
        problem.dout = dout.astype(kind) if isinstance(dout, np.ndarray) else dout
        out, _ = problem.run(problem.values)
        grads = problem.gradients()
        runs.append({"forward": out, **{f"d{s.name}": g for s, g in grads.items()}})
    problems = []
    for label, got in runs[0].items():
        want = np.asarray(runs[1][label], dtype=float)
        if np.asarray(got).dtype != dtype:
            problems.append(f"{np.dtype(dtype).name} in, {np.asarray(got).dtype} out ({label})")
        err = float(np.linalg.norm(np.asarray(got, dtype=float) - want) / max(np.linalg.norm(want), 1e-30))
        if err > dtype_tolerance(dtype):
            problems.append(f"{label} in {np.dtype(dtype).name} differs from float64 by {err:.1e} "
                            f"(tolerance {dtype_tolerance(dtype):.1e})")
    return problems


def check_array_spec(derivation: Derivation, cls: type, *, max_examples: int = 10) -> CheckReport:
    """The :class:`~symbackprop.reports.CheckReport` of the generated class ``cls`` of an array layer."""
    start = time.perf_counter()
    error, method, where = gradient_check(derivation, cls, max_examples=max_examples)
    parameters = network_gradient_check(derivation, cls) if derivation.spec.predict is not None else {}
    problems = []
    if error > TOLERANCE[method]:
        problems.append(f"backward differs from {method} differentiation: relative error {error:.2e}")
    problems += dtype_check(derivation, cls)
    problems += [f"gradient check of {name}: mean |backprop - {m}| = {v:.1e}" for name, f in parameters.items()
                 for m, v in f.items() if v > NETWORK_TOLERANCE]
    return CheckReport(derivation.spec.name, not problems, error, method, where, None, [], [], [], problems,
                       round(time.perf_counter() - start, 3), parameters)
