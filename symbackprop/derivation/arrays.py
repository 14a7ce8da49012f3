"""Derivation of array layers: backward passes in matrix form.

Every node of the declared graph gets a *pullback*: each argument's gradient as an
expression in the node's own upstream gradient.  Elementwise nodes (``relu(a)``,
``x - mu`` with broadcasting) go through the scalar engine (:mod:`symbackprop.derivation.search`), which
finds the cheap cached form (a ReLU mask, ``y*(1 - y)``), then sum over broadcast
axes; other nodes use the vector-Jacobian products of :mod:`symbackprop.ops`.  Reverse
accumulation over the nodes is shared with elementwise layers.

After the rules, gradients are tidied: values the forward pass computed replace
their definitions (``softmax(x)`` becomes the cached ``y``), declared assumptions
act (``onehot(t, axis=1)``: ``sum(t, axis=1, keepdims=True) = 1``), and the cheapest
of ``factor``/``cancel``/``expand`` forms is kept.  Softmax-with-loss comes out as
``dout*(y - t)/N``.  Finally every formula is expanded at small explicit shapes
with scalar symbols and compared with SymPy's ``diff`` (:func:`~symbackprop.derivation.explicit.verify_explicit`).
"""
from __future__ import annotations

import itertools

import sympy

from .. import ops
from ..numerics.domain import sample_points, tail_points
from ..numerics.evaluate import mp_value
from ..numerics.kinks import book_convention
from ..indexed import INDEX_ATOMS
from ..ops import ArrayOp, ArrayVar, ReduceSum
from ..spec.model import Spec, array_dout
from ..timebound import attempt
from .accumulate import live_values, reverse_accumulate
from .cost import arithmetic_cost
from .explicit import verify_explicit
from .model import Cached, Derivation, NodeDerivation
from .search import derive_node, invert

SECONDS_PER_TIDY = 1.0


def _upstream(shape: tuple) -> sympy.Symbol:
    """A node's own upstream gradient in its pullback: an array, or a scalar (named apart,
    so that one name is one symbol throughout a derivation)."""
    return ArrayVar("upstream", real=True) if shape else sympy.Symbol("upstream_scalar", real=True)


def _gives_back(value: sympy.Symbol, solution: sympy.Expr, later: sympy.Symbol, expr: sympy.Expr,
                points: int = 12) -> bool:
    """Does ``solution`` give ``value`` back from ``later = expr``, at random real points where
    ``expr`` is defined (mpmath)?  An inverse takes one branch: ``u*u = v`` solved for ``u`` is
    ``sqrt(v)``, which is ``|u|``, and is refused here."""
    symbols = sorted(expr.free_symbols, key=lambda s: s.name)
    drawn = sample_points(symbols, [(later, expr)], points, seed=points)
    for point in drawn:
        got, want = mp_value(solution, point), point[value]
        if got is None or isinstance(got, bool) or abs(got - want) > 1e-20 * max(1, abs(want)):
            return False
    return bool(drawn)


def _is_elementwise(expr: sympy.Expr) -> bool:
    return not expr.atoms(ArrayOp)


def _promote_helpers(node: NodeDerivation, cached: set, recomputed: list):
    """The scalar engine's helpers (masks, sub-expressions) are arrays here."""
    promote = {h: ArrayVar(h.name, real=True) for h in node.helpers}
    node.local = {a: e.xreplace(promote) for a, e in node.local.items()}
    node.helpers = {promote[h]: Cached(promote[h], c.expr, c.mask) for h, c in node.helpers.items()}
    return node, {promote.get(c, c) for c in cached}, [promote.get(r, r) for r in recomputed]


class _ArrayDeriver:
    """One array declaration on its way to a :class:`~symbackprop.derivation.Derivation`."""

    def __init__(self, spec: Spec):
        self.spec = spec
        self.shapes = dict(spec.shapes)
        self.notes: set[str] = set()
        self.definitions = dict(spec.graph)
        self.names = {s.name for s in (*spec.differentiated, *spec.constants, *self.definitions, *spec.dims)}
        self.names |= {"dout", "upstream", "upstream_scalar"} | {f"d{n}" for n in list(self.names)}
        self.dout = array_dout(self.shapes[spec.output])
        self.onehot = [(t, axis) for kind, t, axis in spec.assumptions if kind == "onehot"]

    def live(self) -> set[sympy.Symbol]:
        """Differentiated symbols and the graph values that depend on them."""
        return live_values(self.spec.differentiated, ((s, e.free_symbols) for s, e in self.spec.graph))

    def node(self, symbol: sympy.Symbol, expr: sympy.Expr, live: set) -> tuple[NodeDerivation, set, list]:
        expr = ops.fuse_logs(expr, self.definitions)
        args = tuple(s for s in (*self.spec.differentiated, *self.definitions) if s in expr.free_symbols and s in live)
        up = _upstream(self.shapes[symbol])
        if _is_elementwise(expr):
            points = sample_points(args, [(symbol, expr)], 12, seed=len(self.names))
            node, cached, recomputed = derive_node(symbol, expr, args, points, tail_points(args, [(symbol, expr)]),
                                                   self.names, self.notes)
            node, cached, recomputed = _promote_helpers(node, cached, recomputed)
            for helper in node.helpers.values():
                self.shapes[helper.symbol] = ops.shape_of(helper.expr, self.shapes)
            node.pullback = {a: ops.unbroadcast(up * node.local[a], self.shapes[symbol], self.shapes[a])
                             for a in args}
        else:
            pulled = ops.vjp(expr, up, self.shapes, args, lambda e: book_convention(e, self.notes))
            node = NodeDerivation(symbol, expr, args, {}, {}, {})
            node.pullback = {a: self.tidy(pulled.get(a, sympy.S.Zero)) for a in args}
            cached, recomputed = set(), []
        node.upstream = up
        if self.sums_a_scalar(node, up):
            node.spread_to = tuple(self.shapes[symbol])
        return node, cached, recomputed

    @staticmethod
    def sums_a_scalar(node: NodeDerivation, up: sympy.Symbol) -> bool:
        """Would a scalar gradient of the node meet an operation that needs its axes (``b`` of
        ``x + b`` gets ``sum(upstream, axis=0)``; ``sum(x, axis=1)`` gives ``x`` the gradient
        ``expand_dims(upstream, 1)``; ``x @ V`` gives ``x`` the gradient ``upstream @ V.T``; an
        index-notation node reads ``upstream[n, o]``)?
        Then a scalar must be spread to the node's shape first."""
        scalar = sympy.Dummy("scalar", real=True)
        pulled = [p.xreplace({up: scalar}) for p in node.pullback.values()]
        return any(not r.args[0].atoms(ArrayVar, ArrayOp) for p in pulled for r in p.atoms(ops.Reduction, ops.ExpandDims)) \
            or any(not a.atoms(ArrayVar, ArrayOp) for p in pulled for r in p.atoms(ops.Matmul) for a in r.args) \
            or any(r.has(scalar) for p in pulled for r in p.atoms(*INDEX_ATOMS))  # it reads upstream at indices

    def named(self, expr: sympy.Expr) -> sympy.Expr:
        """Values the forward pass computed replace their definitions (softmax(x) -> y)."""
        table = {defn: sym for sym, defn in self.definitions.items() if not defn.is_Atom}
        table.update({ops.Softmax(*defn.args): sympy.exp(sym) for sym, defn in self.definitions.items()
                      if isinstance(defn, ops.LogSoftmax)})
        return expr.xreplace(table) if table else expr

    def assume(self, expr: sympy.Expr) -> sympy.Expr:
        for t, axis in self.onehot:
            expr = expr.xreplace({ReduceSum(t, sympy.Tuple(axis), sympy.Integer(1)): sympy.S.One})
        return expr

    def tidy(self, expr: sympy.Expr) -> sympy.Expr:
        expr = self.assume(ops.split_sums(self.named(expr), self.shapes))
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
        if ops.shape_of(grad, self.shapes) == tuple(self.shapes[symbol]):
            return grad
        return ops.BroadcastTo(grad, sympy.Tuple(*self.shapes[symbol]))

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
        steps, backward = reverse_accumulate(spec, nodes, self.dout, tidy=self.tidy)
        for i, (target, expr) in enumerate(steps):
            original = next((s for s in spec.differentiated if f"d{s.name}" == target.name), None)
            if original is not None:
                steps[i] = (target, self.full_shape(original, expr))
                backward[original.name] = self.full_shape(original, backward[original.name])
        used = _used(steps, recompute)
        for dropped, value in self.lighter(used | cache_syms):
            steps, backward, recompute = self.reciprocals_folded(
                *_substituted({dropped: value}, steps, backward, recompute))
            cache_syms.discard(dropped)
        used = _used(steps, recompute)
        extra = self.combined(steps, recompute, used | cache_syms)
        for helper in extra:
            steps, backward, recompute = _substituted({helper.expr: helper.symbol}, steps, backward, recompute)
            cache_syms = (cache_syms - helper.expr.free_symbols) | {helper.symbol}
        used = _used(steps, recompute)
        cache = self.cache_list(nodes, (used | cache_syms) - {c.symbol for c in recompute}, extra)
        derivation = Derivation(spec, nodes, cache, recompute, steps, {}, backward, {}, sorted(self.notes),
                                dout=self.dout)
        derivation.dims_used = sorted((used & set(spec.dims)) | {d for c in recompute for d in c.expr.free_symbols
                                                                  if d in spec.dims}, key=lambda d: d.name)
        verify_explicit(derivation)
        return derivation

    def reciprocals_folded(self, steps: list, backward: dict, recompute: list[Cached]) -> tuple[list, dict, list]:
        """After a substitution, a value times its recomputed reciprocal cancels: with
        ``xc = xn*std`` and ``t = 1/std``, ``sum(dxn*xc*t**2, axis=0)`` is ``sum(dxn*t*xn, axis=0)``
        and ``t**2*sum(dxn*xc, axis=1, keepdims=True)`` is ``t*sum(dxn*xn, axis=1, keepdims=True)``
        (factors constant along the summed axes moved out first)."""
        def fold(e: sympy.Expr) -> sympy.Expr:
            e = ops.split_sums(e, self.shapes)
            for c in recompute:
                base, ex = c.expr.as_base_exp() if isinstance(c.expr, sympy.Pow) else (None, None)
                if isinstance(base, sympy.Symbol) and ex == -1:
                    e = e.xreplace({c.symbol: c.expr}).replace(
                        lambda p: isinstance(p, sympy.Pow) and p.base == base and p.exp.is_Integer and p.exp < 0,
                        lambda p: c.symbol ** -p.exp)
            return e

        return [(t, fold(e)) for t, e in steps], {k: fold(e) for k, e in backward.items()}, recompute

    def lighter(self, kept: set) -> list[tuple[sympy.Symbol, sympy.Expr]]:
        """Graph values the backward needs that other kept values give back, with the
        expression that does: batch normalization keeps ``xn`` and ``std``, so ``xc`` is
        ``xn*std`` and need not be kept (one N x D array instead of two; memory first).
        A value is given back by a later elementwise node it occurs in once, solved for it,
        when everything else in the solution is kept anyway (parameters and sizes are free)
        and the solution holds for every real value (:func:`_gives_back`); a value whose own
        elementwise definition reads kept values only is computed again from them."""
        free = set(self.spec.params) | set(self.spec.dims)
        graph = list(self.spec.graph)
        out = []
        for i, (value, definition) in enumerate(graph):
            if value not in kept:
                continue
            if _is_elementwise(definition) and definition.free_symbols <= (kept | free) - {value}:
                out.append((value, definition))  # computed again from kept values: v = u**2 with u kept
                kept = kept - {value}
                continue
            for later, expr in graph[i + 1:]:
                if later not in kept or not _is_elementwise(expr):
                    continue
                solution = invert(expr, value, later)
                if (solution is not None and solution.free_symbols <= (kept | free) - {value}
                        and _gives_back(value, solution, later, expr)):
                    out.append((value, solution))
                    kept = kept - {value}
                    break
        return out

    def combined(self, steps: list, recompute: list[Cached], kept: set) -> list[Cached]:
        """Differences the backward reads in place of the arrays they combine: a mean squared
        error needs ``y - t`` only, one array instead of two.  A sum of two or more kept arrays
        of one shape (inputs, constants or graph values), elementwise, whose arrays occur nowhere
        else, becomes a helper the forward computes and keeps."""
        arrays = {a for a in kept if a in self.shapes and self.shapes[a]
                  and a not in self.spec.params and a not in self.spec.dims}
        out: list[Cached] = []
        exprs = [e for _, e in steps] + [c.expr for c in recompute]
        for sub in dict.fromkeys(a for e in exprs for a in sympy.preorder_traversal(e)):
            if not (isinstance(sub, sympy.Add) and _is_elementwise(sub) and len(sub.free_symbols) >= 2
                    and sub.free_symbols <= arrays
                    and len({tuple(self.shapes[a]) for a in sub.free_symbols}) == 1):
                continue
            hole = sympy.Dummy()
            rest = [e.xreplace({sub: hole}) for e in exprs] + [c.expr for c in out]
            if any(e.has(*sub.free_symbols) for e in rest):
                continue
            symbol = ArrayVar(self.fresh("e"), real=True)
            self.shapes[symbol] = self.shapes[next(iter(sub.free_symbols))]
            out.append(Cached(symbol, sub))
            exprs = [e.xreplace({sub: symbol}) for e in exprs]
        return out

    def fresh(self, stem: str) -> str:
        name = next(n for n in (f"{stem}{k or ''}" for k in itertools.count()) if n not in self.names)
        self.names.add(name)
        return name

    def cache_list(self, nodes: list[NodeDerivation], used: set, extra: list[Cached]) -> list[Cached]:
        """What forward stores: inputs, constants, graph values, then helpers (masks first).
        Parameters live on the layer already and cost nothing to keep."""
        order = [Cached(s, s) for s in (*self.spec.inputs, *self.spec.constants) if s in used]
        order += [Cached(s, e) for s, e in self.spec.graph if s in used]
        for node in nodes:
            order += [h for a, h in node.helpers.items() if a in used and h not in order]
        return order + [h for h in extra if h.symbol in used]


def _substituted(swap: dict, steps: list, backward: dict, recompute: list[Cached]) -> tuple[list, dict, list]:
    """The backward statements, flattened gradients and recomputed helpers with ``swap`` applied."""
    return ([(t, e.xreplace(swap)) for t, e in steps], {k: e.xreplace(swap) for k, e in backward.items()},
            [Cached(c.symbol, c.expr.xreplace(swap), c.mask) for c in recompute])


def _used(steps: list, recompute: list[Cached]) -> set[sympy.Symbol]:
    """Symbols the backward statements and the recomputed helpers read."""
    return set().union(*(e.free_symbols for _, e in steps)) | set().union(*(c.expr.free_symbols for c in recompute))


def derive_arrays(spec: Spec) -> Derivation:
    """Derive an array declaration (see the module docstring)."""
    return _ArrayDeriver(spec).derive()
