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

from .. import indexed, ops
from ..derivation.model import Derivation
from ..numerics.differences import COMPLEX_STEP, RELATIVE_STEP, complex_step_works, numerical_gradient
from ..numerics.evaluate import float_function
from ..numerics.kinks import NON_ANALYTIC as KINKED
from ..reports import CheckReport
from ..spec.model import Spec
from .base import directional_error, dtype_problems, exceeds, severity

TOLERANCE = {"complex": 1e-8, "central": 1e-6}
#: The book reports about 1e-10 to 1e-13 for its TwoLayerNet; anything near 1e-7 is a bug.
NETWORK_TOLERANCE = 1e-8
NON_ANALYTIC = (*KINKED, ops.ReduceMax, indexed.IndexMax)
_EPS = np.finfo(float).eps
#: Complex steps (times the base step) whose estimates round differently, and how many times
#: their spread a float64 result may be off (the spread of a few samples underestimates the range).
STEP_MULTIPLIERS = (1.0, 3.0, 5.0 / 7.0)
SPREAD_FACTOR = 4.0


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
        self.sizes = sizes = spec.fitted_sizes(sizes)
        self.symbols = (*spec.inputs, *spec.params, *spec.constants, *spec.dims, *spec.hyper)
        self.values = {s: self.draw(s) for s in (*spec.inputs, *spec.params, *spec.constants)}
        out_shape = self.shape(spec.output)
        self.dout = self.rng.standard_normal(out_shape) if out_shape else float(self.rng.uniform(0.5, 2))

    def shape(self, symbol) -> tuple[int, ...]:
        return tuple(self.spec.size_of(d, self.sizes) for d in self.spec.shapes[symbol])

    def draw(self, symbol) -> np.ndarray:
        if symbol in self.spec.integers:
            return self.spec.draw_integers(symbol, self.sizes, self.rng)
        shape = self.shape(symbol)
        onehot = [axis for kind, t, axis in self.spec.assumptions if t == symbol and kind == "onehot"]
        if onehot:
            labels = self.rng.integers(0, shape[onehot[0]], size=shape[:onehot[0]] + shape[onehot[0] + 1:])
            return np.moveaxis(np.eye(shape[onehot[0]])[labels], -1, onehot[0])
        domain = self.spec.domains.get(symbol)
        if domain is not None and domain.bounded:
            return domain.draw(self.rng, shape)
        if symbol.is_positive:
            return self.rng.uniform(0.1, 2.0, shape)
        return self.rng.standard_normal(shape)

    def cast(self, values: dict, dtype) -> dict:
        """``values`` in ``dtype``, but for the integer constants (indices stay integers)."""
        return {k: v if k in self.spec.integers else v.astype(dtype) for k, v in values.items()}

    def declared(self, values: dict, node: sympy.Symbol | None = None) -> np.ndarray:
        """The declaration's value of graph ``node`` (default: the output) at ``values``: the
        declared forward in float64, array atoms by their definitions (never generated code)."""
        fn = _declared_function(self.spec.graph, node or self.spec.output, self.symbols)
        env = {**self.sizes, **values}
        return fn(*[env[s] for s in self.symbols])

    def run(self, values: dict) -> tuple[object, object]:
        """A fresh layer of the class under test: its output at these values, and the layer."""
        spec = self.spec
        layer = self.cls(*[values[p] for p in spec.params], *self.hyper().values())
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = layer.forward(*[values[s] for s in (*spec.inputs, *spec.constants)])
        return out, layer

    def hyper(self) -> dict[str, int]:
        """The hyperparameters the layer is built with, in declared order, after the parameters
        (index notation: ``Convolution(W, b, stride, pad)``, as the book's)."""
        return {h.name: int(self.sizes[h]) for h in self.spec.hyper}

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

    def objective(self, symbol, value) -> tuple[complex | float, float]:
        r""":math:`\langle \bar y, f \rangle` of the declaration with ``symbol`` set to ``value``,
        and the sum of the magnitudes of its terms (the scale of its rounding)."""
        terms = self.dout * np.asarray(self.declared({**self.values, symbol: value}))
        return np.sum(terms), float(np.sum(np.abs(terms)).real)

    def directional(self, symbol, direction: np.ndarray, method: str, spread: bool = True) -> tuple[float, float]:
        r"""The derivative :math:`D` of the declaration's objective along ``direction``, and
        its uncertainty.

        The complex step is :math:`10^{-20}` times the smallest magnitude in the array, at least
        :math:`10^{-200}` (its error is :math:`O(h^2/x^2)`: ``log`` at :math:`y = 10^{-17}`
        needs :math:`h \ll y`).  Its only error is float64's rounding of the terms that make
        up :math:`D`, which no implementation beats either: large where :math:`D` comes from
        cancellation (batch normalization of two rows with a tiny ``eps``: ``dx`` is almost 0, a
        difference of terms of size :math:`\bar y \gamma / \sigma`).  With ``spread``, steps of
        :data:`STEP_MULTIPLIERS` times :math:`h` round differently, and :data:`SPREAD_FACTOR`
        times the spread of their estimates is that uncertainty.  Central differences at steps
        :math:`h` and :math:`2h` give theirs: rounding, :math:`8\varepsilon \sum|\bar y f| / h`,
        plus the difference of the two estimates (truncation, or a kink crossed).
        """
        x = self.values[symbol]
        if method == "complex":
            nonzero = np.abs(x[x != 0])
            h = COMPLEX_STEP * min(1.0, max(float(nonzero.min(initial=1.0)), 1e-200))
            estimates = [float(np.imag(self.objective(symbol, x + 1j * m * h * direction)[0])) / (m * h)
                         for m in (STEP_MULTIPLIERS if spread else STEP_MULTIPLIERS[:1])]
            return estimates[0], SPREAD_FACTOR * (max(estimates) - min(estimates))
        h = RELATIVE_STEP * max(1.0, float(np.max(np.abs(x), initial=0.0)))
        estimates, size = [], 0.0
        for step in (h, 2 * h):
            up, up_size = self.objective(symbol, x + step * direction)
            down, down_size = self.objective(symbol, x - step * direction)
            estimates.append(float(up - down) / (2 * step))
            size = max(size, up_size, down_size)
        return estimates[0], 8 * _EPS * size / h + abs(estimates[0] - estimates[1])

    def gradient(self, symbol, method: str) -> tuple[np.ndarray, np.ndarray]:
        """The declaration's gradient for ``symbol`` element by element, and its uncertainty."""
        x = self.values[symbol]
        want, noise = np.zeros(x.shape), np.zeros(x.shape)
        for idx in np.ndindex(x.shape):
            e = np.zeros(x.shape)
            e[idx] = 1.0
            want[idx], noise[idx] = self.directional(symbol, e, method, spread=False)
        return want, noise

    def worst_element(self, symbol, grad: np.ndarray, method: str) -> dict:
        """Per-element comparison: where the backward is most wrong."""
        want, _ = self.gradient(symbol, method)
        got = np.asarray(grad, dtype=float)
        err = np.abs(got - want) / np.maximum(np.maximum(np.abs(got), np.abs(want)), 1e-12)
        idx = tuple(int(i) for i in np.unravel_index(int(np.argmax(err)), err.shape))
        return {"error": float(err[idx]), "input": symbol.name, "index": list(idx), "backward": float(got[idx]),
                "numerical": float(want[idx])}


def runs_complex(problem: ArrayProblem, symbol) -> bool:
    """Does the declared forward run on complex values of ``symbol`` (``logaddexp`` does not)?"""
    return complex_step_works(lambda v: problem.declared({**problem.values, symbol: v}), [problem.values[symbol]])


def choose_method(problem: ArrayProblem) -> str:
    """Complex step where the declared forward is analytic and runs on complex values."""
    spec = problem.spec
    if any(e.has(*NON_ANALYTIC) for _, e in spec.graph) or not runs_complex(problem, spec.differentiated[0]):
        return "central"
    return "complex"


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
        sizes.update({h: data.draw(st.integers(max(v, 1) if v else 0, max(v, 1) + 1), label=h.name)
                      for h, v in spec.hyper.items()})  # the default and one more (stride 2, pad 1)
        problem = ArrayProblem(derivation, sizes, data.draw(st.integers(0, 2**32 - 1)), cls)
        method = state["method"] = state["method"] or choose_method(problem)
        grads = problem.gradients()
        for symbol in spec.differentiated:
            for _ in range(directions):
                v = problem.rng.standard_normal(problem.values[symbol].shape)
                want, noise = problem.directional(symbol, v, method)
                got = float(np.sum(np.asarray(grads[symbol]) * v))
                err = directional_error(got, want, noise, np.asarray(grads[symbol]), v)
                if severity(err) > severity(state["error"]):
                    state["error"] = err
                    state["where"] = {"input": symbol.name, "sizes": {d.name: n for d, n in sizes.items()}}
                    if exceeds(err, TOLERANCE[method]):
                        state["where"].update(problem.worst_element(symbol, grads[symbol], method))

    run()
    return state["error"], state["method"], state["where"]


#: Sizes of the network gradient check: the book uses 3 samples of MNIST (784-50-10);
#: the digits data set's 64-16-10 keeps every element's two forward passes quick.
NETWORK_SIZES = {"N": 3, "D": 64, "H": 16, "K": 10}


def network_gradient_check(derivation: Derivation, cls: type, seed: int = 0) -> dict[str, dict[str, float]]:
    r"""The book's gradient check (its 5.7.3): for each parameter, the mean of
    :math:`|g_\text{backprop} - g_\text{numerical}|` over its elements, with the book's
    central differences (``h = 1e-4``) and with the complex step where the network allows it."""
    spec = derivation.spec
    sizes = {d: NETWORK_SIZES.get(d.name, 3) for d in spec.dims}
    problem = ArrayProblem(derivation, sizes, seed, cls)
    problem.values.update({p: 0.01 * problem.rng.standard_normal(problem.shape(p)) for p in spec.params})
    problem.dout = 1.0
    grads = problem.gradients()
    complex_step = choose_method(problem) == "complex" or not any(
        e.has(sympy.Piecewise, sympy.Max) for _, e in spec.graph[-2:])
    complex_step = complex_step and runs_complex(problem, spec.params[0])
    out: dict[str, dict[str, float]] = {}
    for p in spec.params:
        x = problem.values[p]
        numeric = {"central": numerical_gradient(lambda: float(problem.objective(p, x)[0].real), x)}
        if complex_step:
            numeric["complex"] = problem.gradient(p, "complex")[0]
        out[p.name] = {m: float(np.mean(np.abs(np.asarray(grads[p]) - g))) for m, g in numeric.items()}
    return out


def dtype_check(derivation: Derivation, cls: type, dtype=np.float32, seed: int = 0) -> list[str]:
    """Problems of the generated class in ``dtype``: results of another dtype, or further from
    the float64 results on the same (rounded) values than the dtype's tolerance, norm-wise."""
    spec = derivation.spec
    problem = ArrayProblem(derivation, {d: 3 + i for i, d in enumerate(spec.dims)}, seed, cls)
    rounded = problem.cast(problem.values, dtype)
    dout = problem.dout.astype(dtype) if isinstance(problem.dout, np.ndarray) else dtype(problem.dout)
    runs = []
    for kind in (dtype, np.float64):
        problem.values = problem.cast(rounded, kind)
        problem.dout = dout.astype(kind)  # a loss's dout too: a float32 pipeline passes float32 scalars
        out, _ = problem.run(problem.values)
        runs.append({"forward": out, **{f"d{s.name}": g for s, g in problem.gradients().items()}})
    return dtype_problems(dtype, *runs, lambda label, got, want: float(
        np.linalg.norm(got - want) / max(np.linalg.norm(want), 1e-30)))


def check_array_spec(derivation: Derivation, cls: type, *, max_examples: int = 10) -> CheckReport:
    """The :class:`~symbackprop.reports.CheckReport` of the generated class ``cls`` of an array layer."""
    start = time.perf_counter()
    error, method, where = gradient_check(derivation, cls, max_examples=max_examples)
    parameters = network_gradient_check(derivation, cls) if derivation.spec.predict is not None else {}
    problems = []
    if exceeds(error, TOLERANCE[method]):
        problems.append(f"backward differs from {method} differentiation: relative error {error:.2e}")
    problems += dtype_check(derivation, cls)
    problems += [f"gradient check of {name}: mean |backprop - {m}| = {v:.1e}" for name, f in parameters.items()
                 for m, v in f.items() if v > NETWORK_TOLERANCE]
    return CheckReport(derivation.spec.name, not problems, error, method, where, None, [], [], [], problems,
                       round(time.perf_counter() - start, 3), parameters)
