"""A declaration one operation at a time, the way the seed draws it, with its backward.

The forward pass is split into nodes of one operation each: the sigmoid
``1/(1 + exp(-x))`` becomes ``×(-1)``, ``exp``, ``+1``, ``/`` (the seed's figure 5-10),
``a1 = x @ W1 + b1`` becomes ``@`` then ``+`` (figure 5-25).  A declared step keeps its
name on its last operation; generated intermediates are named ``u1, u2, ...``; equal
sub-expressions are one node.  The backward pass over these nodes is the one reverse
accumulation (:func:`~symbackprop.derivation.accumulate.backpropagate`), so that every
explanation reads its gradients here.  What splitting means for each kind of layer
is in :mod:`.operations_elementwise` and :mod:`.operations_arrays`; this module holds
what both share: the data and the splitting loop.
"""
from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import sympy

from ..lang.numbers import format_number
from ..lang.text import format_expression
from ..spec.model import DOUT, Spec
from .accumulate import Arrow

if TYPE_CHECKING:
    from .model import Derivation

#: How one operation of an expression is split: its label, its operands, and how to
#: rebuild it from them.
Split = tuple[str, list, Callable]


@dataclass(frozen=True)
class Operation:
    """One operation ``symbol = expr``.

    Attributes
    ----------
    symbol : sympy.Symbol
        The node's output: a declared name or a generated ``u<k>``.
    expr : sympy.Expr
        The operation in its operands (``exp(u1)``, ``Matmul(x, W1)``).
    args : tuple of sympy.Symbol
        Operands that are values (leaves or earlier nodes); numbers (and dimensions) are
        folded into ``op``.
    op : str
        The operation's name in a picture: ``×``, ``+1``, ``exp``, ``/``, ``@``, ``sum\\naxis=0``.
    step : sympy.Symbol
        The declared step this operation belongs to (it computes it when ``symbol == step``).
    raw, local : dict
        Elementwise nodes: ``∂expr/∂arg`` from ``diff``, and the chosen form (in the node's
        own output where cheaper: ``∂(1/u)/∂u = -y**2``).  Array nodes send VJPs instead.
    """

    symbol: sympy.Symbol
    expr: sympy.Expr
    args: tuple[sympy.Symbol, ...]
    op: str
    step: sympy.Symbol
    raw: dict[sympy.Symbol, sympy.Expr] = field(default_factory=dict)
    local: dict[sympy.Symbol, sympy.Expr] = field(default_factory=dict)

    @property
    def declared(self) -> bool:
        """The symbol is a name of the declaration (kept in every formula)."""
        return self.symbol == self.step


@dataclass(frozen=True)
class Fused:
    """A step whose backward skips the steps in ``dropped`` (``log(y)`` as ``log_softmax(a2)``)."""

    step: sympy.Symbol
    dropped: tuple[sympy.Symbol, ...]
    text: str


@dataclass
class Operations:
    """A declaration split into one-operation nodes, with its backward.

    Attributes
    ----------
    derivation : Derivation
        The derivation it belongs to.
    nodes : list of Operation
        In forward (topological) order; the last one computes the output.
    readable : dict
        Every generated ``u<k>`` in the leaves and declared names (``u2`` as ``exp(-x)``).
    arrows : list of Arrow
        What each node sends back to each operand, from the output back.  Elementwise:
        in ``dout``, inputs, declared names and ``y``; arrays: in the gradients of the
        declared values (``da1``, ``dout``), named after the statement they carry whole.
    gradients : dict
        Elementwise: ``∂L/∂v`` of every node and input, the sum of the arrows into it.
    definitions : dict
        Elementwise: every node symbol as an expression in the inputs.
    shapes : dict
        Arrays: the symbolic shape of every value, leaf and gradient symbol (``()`` for scalars).
    fused : list of Fused
        Arrays: steps whose backward was fused.
    values, gradient_values : dict or None
        Elementwise: exact numbers at the declaration's ``[values]`` (gradients with ``dout = 1``).
    """

    derivation: Derivation
    nodes: list[Operation]
    readable: dict[sympy.Symbol, sympy.Expr]
    arrows: list[Arrow] = field(default_factory=list)
    gradients: dict[sympy.Symbol, sympy.Expr] = field(default_factory=dict)
    definitions: dict[sympy.Symbol, sympy.Expr] = field(default_factory=dict)
    shapes: dict[sympy.Symbol, tuple] = field(default_factory=dict)
    fused: list[Fused] = field(default_factory=list)
    values: dict[sympy.Symbol, sympy.Expr] | None = None
    gradient_values: dict[sympy.Symbol, sympy.Expr] | None = None

    @property
    def spec(self) -> Spec:
        return self.derivation.spec

    @property
    def inputs(self) -> tuple[sympy.Symbol, ...]:
        return self.spec.inputs

    @property
    def output(self) -> sympy.Symbol:
        return self.spec.output

    @property
    def leaves(self) -> tuple[sympy.Symbol, ...]:
        """Inputs, parameters and constants, in the declaration's order."""
        return (*self.spec.inputs, *self.spec.params, *self.spec.constants)

    def worked(self, expr: sympy.Expr) -> sympy.Expr:
        """``expr`` (in values, inputs and ``dout``) at the declaration's ``[values]`` with
        ``dout = 1``, exactly."""
        return expr.xreplace(self.definitions).xreplace({**self.values, DOUT: sympy.S.One})

    def producer(self, symbol: sympy.Symbol) -> Operation | None:
        """The node computing ``symbol`` (None for a leaf)."""
        return next((n for n in self.nodes if n.symbol == symbol), None)

    def consumers(self, symbol: sympy.Symbol) -> list[Operation]:
        """Nodes that take ``symbol`` as an argument, in forward order."""
        return [n for n in self.nodes if symbol in n.args]

    def step_nodes(self, step: sympy.Symbol) -> list[Operation]:
        """The operations of one declared step, in forward order (the last computes it)."""
        return [n for n in self.nodes if n.step == step]


def constant_text(c: sympy.Expr) -> str:
    """A constant as written in a node's label: ``2``, ``(-1)``, ``(-1/N)``."""
    if c.is_Rational or c.is_Float:
        text = format_number(c)
        return f"({text})" if text.startswith("-") else text
    return f"({format_expression(c)})"


class Splitter:
    """Splits the declared steps one operation at a time, sharing equal sub-expressions.

    Subclasses say how one operation is split (:meth:`split`) and what a node holds
    (:meth:`node`); ``dims`` are constants, like numbers.
    """

    def __init__(self, spec: Spec, taken: set[str], dims: set[sympy.Symbol] = frozenset()):
        self.spec, self.dims = spec, set(dims)
        self.memo: dict[sympy.Expr, sympy.Symbol] = {}
        self.nodes: list[Operation] = []
        self.step: sympy.Symbol | None = None
        self.names = (f"u{k}" for k in itertools.count(1) if f"u{k}" not in taken and f"du{k}" not in taken)

    def constant(self, expr: sympy.Basic) -> bool:
        """Numbers and dimensions (``-1/N``) are folded into the operation's label."""
        return not (expr.free_symbols - self.dims)

    def split(self, expr: sympy.Expr) -> Split:
        raise NotImplementedError  # pragma: no cover

    def node(self, symbol: sympy.Symbol | None, expr: sympy.Expr, args: tuple, op: str) -> Operation:
        """The node computing ``expr`` (``symbol`` None: name it ``u<k>``)."""
        raise NotImplementedError  # pragma: no cover

    def operand(self, expr: sympy.Expr) -> sympy.Expr:
        if self.constant(expr) or isinstance(expr, sympy.Symbol):
            return expr
        if expr not in self.memo:
            self.memo[expr] = self.add(expr)
        return self.memo[expr]

    def add(self, expr: sympy.Expr, symbol: sympy.Symbol | None = None) -> sympy.Symbol:
        """Add the nodes of ``expr``, the last one named ``symbol`` (default: a fresh ``u<k>``)."""
        if isinstance(expr, sympy.Symbol) or self.constant(expr):
            op, operands, rebuild = "=", [] if self.constant(expr) else [expr], lambda *a: expr
        else:
            op, operands, rebuild = self.split(expr)
        args = [self.operand(o) for o in operands]
        node_expr = rebuild(*args) if operands else expr
        variables = tuple(dict.fromkeys(a for a in args if isinstance(a, sympy.Symbol) and a not in self.dims))
        node = self.node(symbol, node_expr, variables, op)
        self.nodes.append(node)
        return node.symbol

    def run(self) -> tuple[list[Operation], dict[sympy.Symbol, sympy.Expr]]:
        """The nodes of every declared step, and the readable form of each ``u<k>``."""
        for name, expr in self.spec.graph:
            self.step = name
            self.add(expr, name)
            self.memo.setdefault(expr, name)
        readable: dict[sympy.Symbol, sympy.Expr] = {}
        for n in self.nodes:
            if not n.declared:
                readable[n.symbol] = n.expr.xreplace(readable)
        return self.nodes, readable
