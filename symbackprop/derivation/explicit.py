"""The explicit check of array derivations: every formula expanded at small shapes.

Each derived gradient is expanded at explicit sizes (2 and 3) into object arrays of
scalar symbols and compared, entry by entry, with the derivative of the expanded
``sum(dout * forward)`` at a random point (mpmath, 30 digits).  A disagreement is a bug
of this package's rules, never the user's input.
"""
from __future__ import annotations

import mpmath
import numpy as np
import sympy

from .. import indexed, ops
from ..numerics.evaluate import Unsupported, mp_function, mp_functions
from ..errors import SymbackpropError
from ..spec.model import Spec
from .model import Derivation

EXPLICIT_RTOL = 1e-9


def explicit_sizes(spec: Spec) -> dict:
    """Small sizes (2 and 3) for the dimensions; with index notation also the hyperparameters'
    defaults, and the spatial sizes grown until every window fits."""
    sizes = ops.explicit_sizes(spec.dims)
    if spec.hyper or spec.constraints:
        sizes.update(spec.hyper)
        sizes = indexed.fitted(spec.constraints, sizes, [d for d in indexed.growing_dims(spec.constraints)
                                                         if d in sizes and d not in spec.hyper])
    return sizes


class ExplicitCheckFailed(SymbackpropError):
    """A derived array formula disagreed with SymPy's diff at explicit shapes (a bug)."""


def _random_point(env: dict, spec: Spec, rng: np.random.Generator) -> dict:
    """Random values for every scalar symbol; rows of one-hot constants sum to 1;
    positive arrays positive, arrays declared in an interval inside it."""
    point = {}
    onehot = {t: axis for kind, t, axis in spec.assumptions if kind == "onehot"}
    for symbol, cells in env.items():
        if not isinstance(cells, np.ndarray):
            if isinstance(cells, sympy.Symbol):
                point[cells] = sympy.Float(rng.uniform(0.5, 1.5))
            continue
        domain = spec.domains.get(symbol)
        if domain is not None and domain.bounded:
            values = domain.draw(rng, cells.shape)
        elif symbol.is_positive or symbol in onehot:
            values = rng.uniform(0.2, 1.0, cells.shape)
        else:
            values = rng.uniform(-2, 2, cells.shape)
        if symbol in onehot:
            values = values / values.sum(axis=onehot[symbol], keepdims=True)
        for idx in np.ndindex(cells.shape):
            if isinstance(cells[idx], sympy.Symbol):
                point[cells[idx]] = sympy.Float(values[idx])
    return point


class _Explicit:
    """A derivation's values at small explicit shapes: object arrays of scalar symbols,
    and a random point to evaluate them at."""

    def __init__(self, derivation: Derivation, seed: int = 0):
        spec = self.spec = derivation.spec
        self.sizes = explicit_sizes(spec)
        leaves = {s: spec.shapes[s] for s in (*spec.differentiated, *spec.constants)}
        leaves[derivation.dout] = spec.shapes[spec.output]
        leaves_env = ops.explicit_env(leaves, self.sizes)
        drawn = np.random.default_rng(seed)  # integer constants: numbers, repeated entries among them
        leaves_env.update({c: spec.draw_integers(c, self.sizes, drawn) for c in spec.integers})
        env = dict(leaves_env)
        for symbol, expr in spec.graph:
            env[symbol] = ops.evaluate(expr, env)
        for c in (*derivation.cache, *derivation.recompute):
            if c.symbol not in env:
                env[c.symbol] = ops.evaluate(c.expr, env)
        self.env = env
        self.point = _random_point(leaves_env, spec, np.random.default_rng(seed))
        weighted = np.asarray(env[derivation.dout], dtype=object) * np.asarray(env[spec.output], dtype=object)
        self.objective = sympy.Add(*np.asarray(weighted, dtype=object).ravel())

    def number(self, cell) -> float:
        cell = cell if isinstance(cell, sympy.Basic) else sympy.Float(cell)
        return float(cell.xreplace(self.point).evalf(30))

    def values(self, expr: sympy.Expr, shape: tuple) -> np.ndarray:
        got = np.broadcast_to(np.asarray(ops.evaluate(expr, self.env), dtype=object), shape)
        if not got.size:
            return np.zeros(shape)
        cells = [c if isinstance(c, sympy.Basic) else sympy.Float(c) for c in got.ravel()]
        try:  # compiled once for all cells: a network's cells share large subexpressions
            variables = sorted(self.point, key=lambda v: v.name)
            functions = mp_functions(cells, variables)
        except Unsupported:
            return np.vectorize(self.number, otypes=[float])(got)
        point = [mpmath.mpf(float(self.point[v])) for v in variables]
        with mpmath.workdps(30):
            return np.array([float(f(point)) for f in functions], dtype=float).reshape(shape)

    def sizes_text(self) -> dict:
        return {d.name: n for d, n in self.sizes.items()}


def explicit_difference(derivation: Derivation, left: sympy.Expr, right: sympy.Expr) -> dict | None:
    """Compare two array expressions entry by entry at explicit shapes; a counterexample or None."""
    ex = _Explicit(derivation, seed=1)
    a = np.asarray(ops.evaluate(left, ex.env), dtype=object)
    b = np.asarray(ops.evaluate(right, ex.env), dtype=object)
    try:
        shape = np.broadcast_shapes(a.shape, b.shape)
    except ValueError:
        return {"sizes": ex.sizes_text(), "message": f"shapes differ: {a.shape} vs {b.shape}"}
    va, vb = ex.values(left, shape), ex.values(right, shape)
    bad = np.abs(va - vb) > EXPLICIT_RTOL * np.maximum(1.0, np.abs(vb))
    if not bad.any():
        return None
    idx = tuple(int(i) for i in np.argwhere(bad)[0])
    return {"sizes": ex.sizes_text(), "index": list(idx), "left": float(va[idx]), "right": float(vb[idx])}


def verify_explicit(derivation: Derivation, seed: int = 0) -> None:
    """Expand every derived gradient at small explicit shapes (2 and 3) with scalar
    symbols and compare it, entry by entry, with the derivative of the expanded
    ``sum(dout * forward)`` at a random point (mpmath, 30 digits).

    Raises
    ------
    ExplicitCheckFailed
        If any entry differs: a rule of this package is wrong, never the user's input.
    """
    ex = _Explicit(derivation, seed)
    spec = derivation.spec
    variables = sorted(ex.point, key=lambda v: v.name)
    try:
        objective, = mp_functions([ex.objective], variables)  # each call below passes a new list
    except Unsupported:
        objective = mp_function(ex.objective, variables)  # undefined everywhere: says why when called
    base = [mpmath.mpf(float(ex.point[v])) for v in variables]
    for s in spec.differentiated:
        cells = np.asarray(ex.env[s], dtype=object)
        try:
            got = ex.values(derivation.backward[s.name], cells.shape)
        except (ValueError, IndexError) as exc:  # numpy's AxisError among them: a rule's shapes are wrong
            raise ExplicitCheckFailed(f"{spec.source or spec.name}: derived d{s.name} cannot be evaluated at "
                                      f"explicit shapes {ex.sizes_text()}: {exc}") from None
        for idx in np.ndindex(cells.shape):
            i = variables.index(cells[idx])
            with mpmath.workdps(30):  # the derivative of the expanded objective, to 20+ digits
                want = float(mpmath.diff(lambda v: objective([*base[:i], v, *base[i + 1:]]), base[i]))
            if abs(got[idx] - want) > EXPLICIT_RTOL * max(1.0, abs(want)):
                raise ExplicitCheckFailed(
                    f"{spec.source or spec.name}: derived d{s.name} differs from diff at explicit shapes "
                    f"{ex.sizes_text()}, entry {idx}: {got[idx]} vs {want}")
