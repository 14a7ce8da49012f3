"""What a derivation produces: per node its local derivatives, and for the layer the
backward pass as statements, the flattened gradients, and what ``forward`` caches.

These are data: code generation, checks, verification and explanation read them.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import sympy

from ..indexed import INDEX_ATOMS
from ..lang.text import format_expression, format_statement
from ..spec.model import DOUT, Spec

#: Bytes cached per element: a float, a boolean mask.
FLOAT_BYTES, MASK_BYTES = 8, 1


@dataclass(frozen=True)
class Cached:
    """A value computed in ``forward`` for ``backward``: ``name = expr`` (a mask is boolean)."""

    symbol: sympy.Symbol
    expr: sympy.Expr | sympy.Basic
    mask: bool = False

    @property
    def bytes_per_element(self) -> int:
        return MASK_BYTES if self.mask else FLOAT_BYTES


@dataclass
class NodeDerivation:
    """Derivatives of one node ``symbol = expr`` with respect to its arguments.

    ``local[a]`` is the chosen form of ``∂expr/∂a``, written in the node's arguments,
    its output, and the helper values in ``helpers`` (masks and sub-expressions),
    each either cached by ``forward`` or recomputed in ``backward``.
    """

    symbol: sympy.Symbol
    expr: sympy.Expr
    args: tuple[sympy.Symbol, ...]
    raw: dict[sympy.Symbol, sympy.Expr]
    local: dict[sympy.Symbol, sympy.Expr]
    helpers: dict[sympy.Symbol, Cached]
    #: array nodes: each argument's gradient as an expression in ``upstream`` (a VJP)
    pullback: dict[sympy.Symbol, sympy.Expr] | None = None
    upstream: sympy.Symbol | None = None
    #: array nodes that broadcast an argument: the shape a scalar gradient of the node is
    #: spread to, so that summing over the broadcast axes counts every element
    spread_to: tuple = ()

    def contribution(self, arg: sympy.Symbol, grad: sympy.Expr) -> sympy.Expr:
        """What this node adds to ``arg``'s gradient, given its own gradient ``grad``."""
        if self.pullback is not None:
            return self.pullback[arg].xreplace({self.upstream: grad})
        return grad * self.local[arg]


@dataclass
class Derivation:
    """Everything derived from one :class:`~symbackprop.spec.Spec`.

    Attributes
    ----------
    local : dict
        ``∂y/∂x`` for every input name, in cached values (``y*(1 - y)``).
    backward : dict
        ``dout * ∂y/∂x`` accumulated over the graph, for every input name.
    cache : list of Cached
        What ``forward`` stores, in order.
    recompute : list of Cached
        Helper values ``backward`` recomputes from the cache.
    steps : list of (Symbol, Expr)
        The backward pass as statements ``d<name> = ...``, node by node.
    raw_local : dict
        ``∂y/∂x`` straight from SymPy's ``diff`` of the whole forward, in the inputs.
    notes : list of str
        Conventions and fallbacks (a kink's gradient at 0, a simplification that
        ran out of time and kept the unsimplified form).
    """

    spec: Spec
    nodes: list[NodeDerivation]
    cache: list[Cached]
    recompute: list[Cached]
    steps: list[tuple[sympy.Symbol, sympy.Expr]]
    local: dict[str, sympy.Expr]
    backward: dict[str, sympy.Expr]
    raw_local: dict[str, sympy.Expr]
    notes: list[str] = field(default_factory=list)
    dout: sympy.Symbol = DOUT
    dims_used: list[sympy.Symbol] = field(default_factory=list)

    @property
    def cache_names(self) -> list[str]:
        return [c.symbol.name for c in self.cache]

    @property
    def masks(self) -> dict[sympy.Symbol, sympy.Basic]:
        """Every boolean mask ``forward`` caches or ``backward`` recomputes, as its comparison."""
        return {c.symbol: c.expr for c in (*self.cache, *self.recompute) if c.mask}

    @property
    def kept(self) -> dict[sympy.Symbol, sympy.Expr]:
        """Helpers the forward keeps that are no declared value, by their definitions
        (``e = y - t`` of a squared error); explanations show the definition."""
        declared = {*self.spec.inputs, *self.spec.constants, *dict(self.spec.graph)}
        return {c.symbol: c.expr for c in self.cache if not c.mask and c.symbol not in declared
                and c.symbol != self.spec.output}

    @property
    def definitions(self) -> dict[sympy.Symbol, sympy.Expr]:
        """Every cached or helper symbol as an expression in the inputs."""
        env = dict(self.spec.expanded())
        for c in (*self.cache, *self.recompute):
            env[c.symbol] = c.expr.xreplace(env)
        return env

    def readable(self, expr: sympy.Expr, standalone: bool = True) -> str:
        """``expr`` in the parser's syntax, boolean masks written as their comparisons
        (``where(x > 0, dout, 0)``).  ``standalone``: helpers that ``backward`` recomputes
        are written out too, so that the text uses cached values only and parses back."""
        expr = expr.xreplace(self.masks).xreplace(self.masks)
        if standalone:  # later helpers may read earlier ones (the hidden nodes of a split nest)
            for c in reversed(self.recompute):
                expr = expr.xreplace({c.symbol: c.expr}).xreplace(self.masks)
        fold = expr.has(sympy.Piecewise) and not self.spec.is_array  # where() of matrices reads badly
        return format_expression(sympy.piecewise_fold(expr) if fold else expr)

    def to_json(self) -> dict:
        """The ``derive --json`` record (DESIGN.md); expressions in the parser's syntax."""
        spec = self.spec
        return {
            "name": spec.name,
            "inputs": list(spec.input_names),
            "outputs": [s.name for s in spec.outputs or (spec.output,)],
            "forward": {s.name: format_expression(spec.expanded()[s]) for s in spec.outputs or (spec.output,)},
            "graph": {n.name: format_expression(e) for n, e in spec.graph},
            "local": {k: self.readable(v) for k, v in self.local.items()},
            "backward": {k: self.readable(v) for k, v in self.backward.items()},
            "cache": self.cache_names,
            "cache_definitions": {c.symbol.name: format_expression(c.expr) for c in self.cache},
            "recompute": {c.symbol.name: self.readable(c.expr) for c in self.recompute},
            "notes": list(self.notes),
            **self.statements(),
        }

    def statements(self) -> dict:
        """Index notation: ``{"statements": {"y": "y[n, f, i, j] = ...", "dx": "dx[...] += ..."}}``, the
        forward and backward as people read them (the other fields spell the atoms to parse back)."""
        pairs = [*self.spec.graph, *self.steps]
        if not any(e.atoms(*INDEX_ATOMS) for _, e in pairs):
            return {}
        return {"statements": {s.name: format_statement(s.name, e) for s, e in pairs}}
