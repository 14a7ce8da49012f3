r"""Deep nests split into nodes, so that a nested expression is derived node by node.

A node's search (:mod:`.search`) costs about the same for every node of a few operations,
but its cost grows quickly with the node's size: ``sin(softplus(sigmoid(tanh(x))))`` as one
node holds a derivative of every function at once. A declared node whose functions nest
more than :data:`SPLIT_ABOVE` deep is therefore cut into a chain of *hidden* nodes
``u1 = ...``, ``u2 = ...``, each nesting at most :data:`DEPTH_PER_NODE` functions, and the
derivation's time grows with the number of operations, not faster.

The nesting depth counts function applications along a path from the root; powers,
products and sums do not count, nor does a ``log`` of ``c + exp(u)`` (softplus, one
function written with two). So the written-out forms of the common activations are
single nodes and keep their cheapest derivatives: sigmoid ``1/(1 + exp(-u))`` still gets
``y*(1 - y)``, softplus ``log(1 + exp(u))`` ``1 - exp(-y)``.
"""
from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence

import sympy

#: Declared nodes nesting functions deeper than this are split (mish, ``x*tanh(log(1 + exp(x)))``, is 2).
SPLIT_ABOVE = 3
#: The deepest nest of functions one node of a split holds.
DEPTH_PER_NODE = 1


def depth(expr: sympy.Basic) -> int:
    """How deeply function applications nest in ``expr`` (arithmetic does not count)."""
    if expr.is_Atom or not expr.args:
        return 0
    return max(depth(a) for a in expr.args) + _weight(expr)


def _is_application(expr: sympy.Basic) -> bool:
    return isinstance(expr, (sympy.Function, sympy.Max, sympy.Min)) and not isinstance(expr, sympy.Piecewise)


def _affine_core(expr: sympy.Expr) -> tuple[sympy.Expr, sympy.Expr, sympy.Expr]:
    """``(c, s, core)`` with ``expr = c + s*core``, ``c`` and ``s`` constants."""
    coeff, rest = expr.as_independent(*expr.free_symbols, as_Add=True)
    scale, core = rest.as_independent(*rest.free_symbols, as_Add=False)
    return coeff, scale, core


def _weight(expr: sympy.Basic) -> int:
    """What ``expr``'s own operation adds to the depth: 1 for a function, 0 for arithmetic
    and for the ``log`` of softplus ``log(c + exp(u))``."""
    if not _is_application(expr):
        return 0
    if isinstance(expr, sympy.log) and isinstance(_affine_core(expr.args[0])[2], sympy.exp):
        return 0
    return 1


class _Cutter:
    """Cuts one expression bottom-up; every cut piece becomes a hidden node."""

    def __init__(self, names: Iterator[sympy.Symbol]):
        self.names = names
        self.nodes: list[tuple[sympy.Symbol, sympy.Expr]] = []
        self.memo: dict[sympy.Expr, sympy.Symbol] = {}

    def cut(self, expr: sympy.Expr) -> sympy.Symbol:
        """A hidden node holding ``expr`` (one node for equal pieces)."""
        if expr not in self.memo:
            self.memo[expr] = next(self.names)
            self.nodes.append((self.memo[expr], expr))
        return self.memo[expr]

    def rebuild(self, expr: sympy.Expr) -> tuple[sympy.Expr, int]:
        """``expr`` with deep arguments cut out, and its depth after the cuts."""
        if expr.is_Atom or not expr.args:
            return expr, 0
        parts = [self.rebuild(a) for a in expr.args]
        args = [a for a, _ in parts]
        inner = max(d for _, d in parts)
        weight = _weight(expr.func(*args))
        if weight and inner + weight > DEPTH_PER_NODE:
            args = [self._cut_argument(a) if d else a for a, d in parts]
            inner = max(depth(a) for a in args)
        node = expr.func(*args) if args != list(expr.args) else expr
        return node, inner + weight

    def _cut_argument(self, arg: sympy.Expr) -> sympy.Expr:
        """An argument of a function cut into its own node, except for an affine wrapper:
        in ``exp(-tanh(x))`` the node is ``tanh(x)``, not ``-tanh(x)``."""
        coeff, scale, core = _affine_core(arg)
        if _is_application(core):
            return coeff + scale * self.cut(core)
        return self.cut(arg)


def split_graph(graph: Sequence[tuple[sympy.Symbol, sympy.Expr]], taken: set[str],
                ) -> tuple[list[tuple[sympy.Symbol, sympy.Expr]], set[sympy.Symbol], set[sympy.Symbol]]:
    """The declared graph with every deep node split into hidden nodes before it.

    Returns
    -------
    graph : list of (Symbol, Expr)
        Hidden and declared nodes in forward order; each declared node keeps its name.
    hidden : set of Symbol
        The hidden nodes' names (``u1``, ``u2``, ..., none of ``taken``; added to it).
    split : set of Symbol
        The declared nodes that were split.
    """
    names = _fresh_names(taken)
    out: list[tuple[sympy.Symbol, sympy.Expr]] = []
    hidden: set[sympy.Symbol] = set()
    split: set[sympy.Symbol] = set()
    for symbol, expr in graph:
        if depth(expr) <= SPLIT_ABOVE:
            out.append((symbol, expr))
            continue
        cutter = _Cutter(names)
        rest, _ = cutter.rebuild(expr)
        out += cutter.nodes
        out.append((symbol, rest))
        hidden |= {s for s, _ in cutter.nodes}
        split.add(symbol)
    return out, hidden, split


def _fresh_names(taken: set[str]) -> Iterator[sympy.Symbol]:
    for k in itertools.count(1):
        name = f"u{k}"
        if name not in taken and f"d{name}" not in taken:
            taken |= {name, f"d{name}"}
            yield sympy.Symbol(name, real=True)
