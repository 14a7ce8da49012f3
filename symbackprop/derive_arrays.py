"""Derivation of array layers: backward passes in matrix form.

Every node of the declared graph gets a *pullback*: each argument's gradient as an
expression in the node's own upstream gradient.  Elementwise nodes (``relu(a)``,
``x - mu`` with broadcasting) go through the scalar engine of :mod:`derive`, which
finds the cheap cached form (a ReLU mask, ``y*(1 - y)``), then sum over broadcast
axes; other nodes use the vector-Jacobian products of :mod:`arrays`.  Reverse
accumulation over the nodes is shared with elementwise layers.

After the rules, gradients are tidied: values the forward pass computed replace
their definitions (``softmax(x)`` becomes the cached ``y``), declared assumptions
act (``onehot(t, axis=1)``: ``sum(t, axis=1, keepdims=True) = 1``), and the cheapest
of ``factor``/``cancel``/``expand`` forms is kept.  Softmax-with-loss comes out as
``dout*(y - t)/N``.  Finally every formula is expanded at small explicit shapes
with scalar symbols and compared with SymPy's ``diff`` (:func:`verify_explicit`).
"""
from __future__ import annotations

import numpy as np
import sympy

from . import arrays
from .arrays import ArrayOp, ArrayVar, ReduceSum
from .derive import (TAILS, Cached, Derivation, NodeDerivation, _kink_free, _mp_value,
                     _reverse_accumulate, arithmetic_cost, derive_node)
from .errors import SymbackpropError
from .spec import Spec, array_dout
from .timebound import attempt

SECONDS_PER_TIDY = 1.0
EXPLICIT_RTOL = 1e-9


class ExplicitCheckFailed(SymbackpropError):
    """A derived array formula disagreed with SymPy's diff at explicit shapes (a bug)."""


def _upstream(shape: tuple) -> sympy.Symbol:
    return ArrayVar("upstream", real=True) if shape else sympy.Symbol("upstream", real=True)


def _is_elementwise(expr: sympy.Expr) -> bool:
    return not expr.atoms(ArrayOp)


def _node_points(expr: sympy.Expr, args: tuple, n: int, seed: int) -> list[dict]:
    """Random scalar values of a node's arguments (an elementwise node is a scalar function)."""
    import mpmath

    rng = np.random.default_rng(seed)
    points = []
    for _ in range(3 * n):
        point = {a: mpmath.mpf(repr(float(np.exp(rng.uniform(-3, 3)) if a.is_positive else rng.uniform(-4, 4))))
                 for a in args}
        if _mp_value(expr, point) is not None:
            points.append(point)
        if len(points) == n:
            break
    return points


def _tail_points(expr: sympy.Expr, args: tuple) -> list[dict]:
    import mpmath

    out = []
    for k in range(len(TAILS["real"])):
        point = {}
        for i, a in enumerate(args):
            values = TAILS["positive" if a.is_positive else "real"]
            point[a] = mpmath.mpf(values[(k + 5 * i) % len(values)])
        if _mp_value(expr, point) is not None:
            out.append(point)
    return out


def _promote_helpers(node: NodeDerivation, cached: set, recomputed: list):
    """The scalar engine's helpers (masks, sub-expressions) are arrays here."""
    promote = {h: ArrayVar(h.name, real=True) for h in node.helpers}
    node.local = {a: e.xreplace(promote) for a, e in node.local.items()}
    node.helpers = {promote[h]: Cached(promote[h], c.expr, c.mask) for h, c in node.helpers.items()}
    return node, {promote.get(c, c) for c in cached}, [promote.get(r, r) for r in recomputed]


class _ArrayDeriver:
    """One array declaration on its way to a :class:`~symbackprop.derive.Derivation`."""

    def __init__(self, spec: Spec):
        self.spec = spec
        self.shapes = dict(spec.shapes)
        self.notes: set[str] = set()
        self.definitions = dict(spec.graph)
        self.names = {s.name for s in (*spec.differentiated, *spec.constants, *self.definitions, *spec.dims)}
        self.names |= {"dout", "upstream"} | {f"d{n}" for n in list(self.names)}
        self.dout = array_dout(self.shapes[spec.output])
        self.onehot = [(t, axis) for kind, t, axis in spec.assumptions if kind == "onehot"]

    def live(self) -> set[sympy.Symbol]:
        """Differentiated symbols and the graph values that depend on them."""
        live = set(self.spec.differentiated)
        for symbol, expr in self.spec.graph:
            if expr.free_symbols & live:
                live.add(symbol)
        return live

    def node(self, symbol: sympy.Symbol, expr: sympy.Expr, live: set) -> tuple[NodeDerivation, set, list]:
        expr = arrays.fuse_logs(expr, self.definitions)
        args = tuple(s for s in (*self.spec.differentiated, *self.definitions) if s in expr.free_symbols and s in live)
        up = _upstream(self.shapes[symbol])
        if _is_elementwise(expr):
            points = _node_points(expr, args, 12, seed=len(self.names))
            node, cached, recomputed = derive_node(symbol, expr, args, points, _tail_points(expr, args),
                                                   self.names, self.notes)
            node, cached, recomputed = _promote_helpers(node, cached, recomputed)
            for helper in node.helpers.values():
                self.shapes[helper.symbol] = arrays.shape_of(helper.expr, self.shapes)
            node.pullback = {a: arrays.unbroadcast(up * node.local[a], self.shapes[symbol], self.shapes[a])
                             for a in args}
        else:
            pulled = arrays.vjp(expr, up, self.shapes, args, lambda e: _kink_free(e, self.notes))
            node = NodeDerivation(symbol, expr, args, {}, {}, {})
            node.pullback = {a: self.tidy(pulled.get(a, sympy.S.Zero)) for a in args}
            cached, recomputed = set(), []
        node.upstream = up
        return node, cached, recomputed

    def named(self, expr: sympy.Expr) -> sympy.Expr:
        """Values the forward pass computed replace their definitions (softmax(x) -> y)."""
        table = {defn: sym for sym, defn in self.definitions.items() if not defn.is_Atom}
        table.update({arrays.Softmax(*defn.args): sympy.exp(sym) for sym, defn in self.definitions.items()
                      if isinstance(defn, arrays.LogSoftmax)})
        return expr.xreplace(table) if table else expr

    def assume(self, expr: sympy.Expr) -> sympy.Expr:
        for t, axis in self.onehot:
            expr = expr.xreplace({ReduceSum(t, sympy.Tuple(axis), sympy.Integer(1)): sympy.S.One})
        return expr

    def tidy(self, expr: sympy.Expr) -> sympy.Expr:
        expr = self.assume(self.named(expr))
        best = expr
        for rewrite in (sympy.factor, sympy.cancel, lambda e: sympy.factor(sympy.expand(e))):
            value, finished = attempt(lambda: self.assume(rewrite(expr)), None, SECONDS_PER_TIDY)
            if not finished:
                self.notes.add("a simplification ran past its bound; kept the unsimplified form")
            elif value is not None and arithmetic_cost(value) < arithmetic_cost(best):
                best = value
        return best

    def full_shape(self, symbol: sympy.Symbol, grad: sympy.Expr) -> sympy.Expr:
        """A gradient that broadcasting left smaller than its variable, spread to full shape."""
        if arrays.shape_of(grad, self.shapes) == tuple(self.shapes[symbol]):
            return grad
        return arrays.BroadcastTo(grad, sympy.Tuple(*self.shapes[symbol]))

    def derive(self) -> Derivation:
        spec = self.spec
        live = self.live()
        nodes, cache_syms, recompute = [], set(), []
        for symbol, expr in spec.graph:
            if symbol not in live:
                continue
            node, cached, recomputed = self.node(symbol, expr, live)
            nodes.append(node)
            cache_syms |= cached
            recompute += [node.helpers[a] for a in recomputed if a in node.helpers]
        self.shapes[self.dout] = self.shapes[spec.output]
        for symbol in (*spec.differentiated, *self.definitions):
            self.shapes[ArrayVar(f"d{symbol.name}", real=True)] = self.shapes[symbol]
        steps, backward = _reverse_accumulate(spec, nodes, self.dout, tidy=self.tidy)
        for i, (target, expr) in enumerate(steps):
            original = next((s for s in spec.differentiated if f"d{s.name}" == target.name), None)
            if original is not None:
                steps[i] = (target, self.full_shape(original, expr))
                backward[original.name] = self.full_shape(original, backward[original.name])
        used = set().union(*(e.free_symbols for _, e in steps)) | set().union(
            *(c.expr.free_symbols for c in recompute))
        cache = self.cache_list(nodes, (used | cache_syms) - {c.symbol for c in recompute})
        derivation = Derivation(spec, nodes, cache, recompute, steps, {}, backward, {}, sorted(self.notes),
                                dout=self.dout)
        derivation.dims_used = sorted((used & set(spec.dims)) | {d for c in recompute for d in c.expr.free_symbols
                                                                  if d in spec.dims}, key=lambda d: d.name)
        verify_explicit(derivation)
        return derivation

    def cache_list(self, nodes: list[NodeDerivation], used: set) -> list[Cached]:
        """What forward stores: inputs, constants, graph values, then helpers (masks first).
        Parameters live on the layer already and cost nothing to keep."""
        order = [Cached(s, s) for s in (*self.spec.inputs, *self.spec.constants) if s in used]
        order += [Cached(s, e) for s, e in self.spec.graph if s in used]
        for node in nodes:
            order += [h for a, h in node.helpers.items() if a in used and h not in order]
        return order


def derive_arrays(spec: Spec) -> Derivation:
    """Derive an array declaration (see the module docstring)."""
    return _ArrayDeriver(spec).derive()


# -- the explicit check ---------------------------------------------------------------------
def _random_point(env: dict, spec: Spec, rng: np.random.Generator) -> dict:
    """Random values for every scalar symbol; rows of one-hot constants sum to 1;
    positive arrays positive."""
    point = {}
    onehot = {t: axis for kind, t, axis in spec.assumptions if kind == "onehot"}
    for symbol, cells in env.items():
        if not isinstance(cells, np.ndarray):
            if isinstance(cells, sympy.Symbol):
                point[cells] = sympy.Float(rng.uniform(0.5, 1.5))
            continue
        values = rng.uniform(0.2, 1.0, cells.shape) if symbol.is_positive or symbol in onehot \
            else rng.uniform(-2, 2, cells.shape)
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
        self.sizes = arrays.explicit_sizes(spec.dims)
        leaves = {s: spec.shapes[s] for s in (*spec.differentiated, *spec.constants)}
        leaves[derivation.dout] = spec.shapes[spec.output]
        leaves_env = arrays.explicit_env(leaves, self.sizes)
        env = dict(leaves_env)
        for symbol, expr in spec.graph:
            env[symbol] = arrays.evaluate(expr, env)
        for c in (*derivation.cache, *derivation.recompute):
            if c.symbol not in env:
                env[c.symbol] = arrays.evaluate(c.expr, env)
        self.env = env
        self.point = _random_point(leaves_env, spec, np.random.default_rng(seed))
        weighted = np.asarray(env[derivation.dout], dtype=object) * np.asarray(env[spec.output], dtype=object)
        self.objective = sympy.Add(*np.asarray(weighted, dtype=object).ravel())

    def number(self, cell) -> float:
        cell = cell if isinstance(cell, sympy.Basic) else sympy.Float(cell)
        return float(cell.xreplace(self.point).evalf(30))

    def values(self, expr: sympy.Expr, shape: tuple) -> np.ndarray:
        got = np.broadcast_to(np.asarray(arrays.evaluate(expr, self.env), dtype=object), shape)
        return np.vectorize(self.number, otypes=[float])(got) if got.size else np.zeros(shape)

    def sizes_text(self) -> dict:
        return {d.name: n for d, n in self.sizes.items()}


def explicit_difference(derivation: Derivation, left: sympy.Expr, right: sympy.Expr) -> dict | None:
    """Compare two array expressions entry by entry at explicit shapes; a counterexample or None."""
    ex = _Explicit(derivation, seed=1)
    a = np.asarray(arrays.evaluate(left, ex.env), dtype=object)
    b = np.asarray(arrays.evaluate(right, ex.env), dtype=object)
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
    import mpmath

    ex = _Explicit(derivation, seed)
    spec = derivation.spec
    variables = sorted(ex.point, key=lambda v: v.name)
    objective = sympy.lambdify(variables, ex.objective, modules="mpmath")
    base = [mpmath.mpf(float(ex.point[v])) for v in variables]
    for s in spec.differentiated:
        cells = np.asarray(ex.env[s], dtype=object)
        got = ex.values(derivation.backward[s.name], cells.shape)
        for idx in np.ndindex(cells.shape):
            i = variables.index(cells[idx])
            with mpmath.workdps(30):  # the derivative of the expanded objective, to 20+ digits
                want = float(mpmath.diff(lambda v: objective(*base[:i], v, *base[i + 1:]), base[i]))
            if abs(got[idx] - want) > EXPLICIT_RTOL * max(1.0, abs(want)):
                raise ExplicitCheckFailed(
                    f"{spec.source or spec.name}: derived d{s.name} differs from diff at explicit shapes "
                    f"{ex.sizes_text()}, entry {idx}: {got[idx]} vs {want}")
