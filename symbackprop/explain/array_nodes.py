"""An array declaration as a graph of one-operation nodes, with its backward arrows.

The forward pass is split the way the seed draws its batch Affine (figure 5-25): one
node per operation, ``@``, ``+``, ``relu``, ``softmax``, ``sum`` (with its axis),
``log``, ``×(-1/N)``; a declared step keeps its name on its last operation
(``a1 = x @ W1 + b1`` is ``u1 = x @ W1`` then ``a1 = u1 + b1``).  Dimensions (``N``)
are constants here, like numbers.  Every value has its symbolic shape.

Backward arrows carry what each node sends back to each operand: the node's
vector-Jacobian product (:func:`symbackprop.ops.vjp`) applied to the gradient of
its output, written in the gradients of the declared values (``da1``, ``dout``),
exactly the names of the derivation's statements.  An arrow that carries a whole
statement (its operand has no other consumer) is named after it (``dW1``).

A step whose backward the derivation *fused* (``log(y)`` with ``y = softmax(a2)`` is
differentiated as ``log_softmax(a2)``, never through ``log``) sends its gradient
straight to the fused operand (``da2``), skipping ``softmax``, as the seed's
Softmax-with-Loss layer does; :attr:`ArrayGraph.fused` records it.
"""
from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field

import sympy

from .. import ops
from ..derivation import Derivation, derive
from ..ops import ArrayVar
from ..spec.model import Spec
from ..lang.functions import label_of
from ..numerics.kinks import book_convention
from .primitives import constant_text as _exact_text

#: The placeholder for a node's upstream gradient (not an identifier: never a declared name).
UPSTREAM = "upstream'"
#: Labels of the array operations (a reduction adds its axis).
ARRAY_LABELS = {ops.Matmul: "@", ops.Transposed: ".T", ops.ReduceSum: "sum", ops.ReduceMean: "mean",
                ops.ReduceMax: "max", ops.LogSumExp: "logsumexp", ops.Softmax: "softmax",
                ops.LogSoftmax: "log_softmax", ops.ExpandDims: "expand_dims",
                ops.BroadcastTo: "broadcast_to"}


@dataclass(frozen=True)
class ArrayNode:
    """One operation ``symbol = expr`` on ops.

    Attributes
    ----------
    symbol : sympy.Symbol
        The node's output: a declared name or a generated ``u<k>``.
    expr : sympy.Expr
        The operation in its operands (``Matmul(x, W1)``, ``b1 + u1``).
    args : tuple of sympy.Symbol
        Operands that are values (leaves or earlier nodes); dimensions and numbers are
        folded into ``op``.
    op : str
        ``@``, ``+``, ``-``, ``×``, ``/``, ``relu``, ``softmax``, ``sum``, ``×(-1/N)``, ...
    step : sympy.Symbol
        The declared step this operation belongs to.
    """

    symbol: sympy.Symbol
    expr: sympy.Expr
    args: tuple[sympy.Symbol, ...]
    op: str
    step: sympy.Symbol


@dataclass(frozen=True)
class Arrow:
    """A backward arrow: the gradient the node computing ``source`` sends to ``target``.

    ``expr`` is written in the declared values' gradients (``da1``, ``dout``), values
    and leaves; ``name`` is the statement it carries whole (``dW1``), else None.
    """

    source: sympy.Symbol
    target: sympy.Symbol
    expr: sympy.Expr
    name: str | None = None


@dataclass(frozen=True)
class Fused:
    """A step whose backward skips the steps in ``dropped`` (``log(y)`` as ``log_softmax(a2)``)."""

    step: sympy.Symbol
    dropped: tuple[sympy.Symbol, ...]
    text: str


@dataclass
class ArrayGraph:
    """An array declaration split into one-operation nodes, with its backward arrows.

    Attributes
    ----------
    derivation : Derivation
        The derivation whose statements the arrows are named after.
    nodes : list of ArrayNode
        In forward order; the last computes the output.
    shapes : dict
        The symbolic shape of every value, leaf and gradient symbol (``()`` for scalars).
    arrows : list of Arrow
        Backward arrows, from the output back to the leaves.
    fused : list of Fused
        Steps whose backward was fused.
    """

    derivation: Derivation
    nodes: list[ArrayNode]
    shapes: dict[sympy.Symbol, tuple]
    arrows: list[Arrow] = field(default_factory=list)
    fused: list[Fused] = field(default_factory=list)

    @property
    def spec(self) -> Spec:
        return self.derivation.spec

    @property
    def leaves(self) -> tuple[sympy.Symbol, ...]:
        """Inputs, parameters and constants, in the declaration's order."""
        return (*self.spec.inputs, *self.spec.params, *self.spec.constants)

    def producer(self, symbol: sympy.Symbol) -> ArrayNode | None:
        """The node computing ``symbol`` (None for a leaf)."""
        return next((n for n in self.nodes if n.symbol == symbol), None)

    def step_nodes(self, step: sympy.Symbol) -> list[ArrayNode]:
        """The operations of one declared step, in forward order (the last computes it)."""
        return [n for n in self.nodes if n.step == step]


# -- splitting ------------------------------------------------------------------------------------------
def _constant_text(c: sympy.Expr) -> str:
    """``2``, ``(-1/N)``; a tiny number in exponent form (``1e-07``, not ``0.0000001``)."""
    if c.is_number and c != 0 and abs(float(c)) < 1e-3:
        return f"{float(c):g}"
    return _exact_text(c)


def _axis_text(expr: ops.ArrayOp) -> str:
    if isinstance(expr, ops.Reduction):
        axes = ", ".join(str(a) for a in expr.axes)
        text = f"axis={axes}" if expr.axes else ""
        return text + (", keepdims" if expr.keepdims and text else "")
    if isinstance(expr, (ops.Softmax, ops.LogSoftmax)):
        return f"axis={int(expr.args[1])}"
    return ""


def _split_array_op(expr: ops.ArrayOp) -> tuple[str, list, Callable]:
    label = ARRAY_LABELS.get(type(expr), type(expr).__name__.lower())
    axis = _axis_text(expr)
    label = f"{label}\n{axis}" if axis else label
    if isinstance(expr, ops.Matmul):
        return label, list(expr.args), ops.Matmul
    head, rest = expr.args[0], expr.args[1:]
    return label, [head], lambda a: type(expr)(a, *rest)


class _Splitter:
    """Splits the declared steps one operation at a time, sharing equal sub-expressions."""

    def __init__(self, spec: Spec):
        self.spec = spec
        self.dims = set(spec.dims)
        self.shapes = dict(spec.shapes)
        self.memo: dict[sympy.Expr, sympy.Symbol] = {}
        self.nodes: list[ArrayNode] = []
        taken = {s.name for s in self.shapes} | {d.name for d in self.dims}
        self.names = (f"u{k}" for k in itertools.count(1) if f"u{k}" not in taken and f"du{k}" not in taken)
        self.step: sympy.Symbol | None = None

    def constant(self, expr: sympy.Basic) -> bool:
        """Numbers and dimensions (``-1/N``) are folded into the operation's label."""
        return not (expr.free_symbols - self.dims)

    def operand(self, expr: sympy.Expr) -> sympy.Expr:
        if self.constant(expr) or isinstance(expr, sympy.Symbol):
            return expr
        if expr not in self.memo:
            self.memo[expr] = self.add(expr)
        return self.memo[expr]

    def add(self, expr: sympy.Expr, symbol: sympy.Symbol | None = None) -> sympy.Symbol:
        """Add the nodes of ``expr``, the last one named ``symbol`` (default: a fresh ``u<k>``)."""
        if isinstance(expr, sympy.Symbol):
            op, operands, rebuild = "=", [expr], lambda a: a
        else:
            op, operands, rebuild = self.split(expr)
        args = [self.operand(o) for o in operands]
        node_expr = rebuild(*args)
        shape = ops.shape_of(node_expr, self.shapes)
        if symbol is None:
            name = next(self.names)
            symbol = ArrayVar(name, real=True) if shape else sympy.Symbol(name, real=True)
        self.shapes[symbol] = shape
        variables = tuple(dict.fromkeys(a for a in args if isinstance(a, sympy.Symbol) and a not in self.dims))
        self.nodes.append(ArrayNode(symbol, node_expr, variables, op, self.step))
        return symbol

    def split(self, expr: sympy.Expr) -> tuple[str, list, Callable]:
        """One operation of ``expr``: its label, its operands, how to rebuild it from them."""
        if isinstance(expr, ops.ArrayOp):
            return _split_array_op(expr)
        if isinstance(expr, sympy.Add):
            return self.split_add(expr)
        if isinstance(expr, sympy.Mul):
            return self.split_mul(expr)
        if isinstance(expr, sympy.Pow) and self.constant(expr.exp):
            ex = expr.exp
            label = {-1: "/", sympy.S.Half: "sqrt"}.get(ex, f"**{_constant_text(ex)}")
            return label, [expr.base], lambda a: a**ex
        if isinstance(expr, sympy.Max) and len(expr.args) == 2 and sympy.S.Zero in expr.args:
            return "relu", [a for a in expr.args if a != 0], lambda a: sympy.Max(0, a)
        if isinstance(expr, sympy.Function) and not isinstance(expr, sympy.Piecewise):
            return self.split_function(expr)
        symbols = sorted(expr.free_symbols - self.dims, key=lambda s: s.name)
        label = "where" if isinstance(expr, sympy.Piecewise) else "f"
        return label, symbols, lambda *a: expr.xreplace(dict(zip(symbols, a)))

    def split_add(self, expr: sympy.Add) -> tuple[str, list, Callable]:
        c, rest = expr.as_independent(*(expr.free_symbols - self.dims), as_Add=True)
        if c != 0:
            return f"+{_constant_text(c)}", [rest], lambda a: c + a
        terms = sorted(expr.args, key=lambda t: isinstance(t, sympy.Symbol))  # computed operands first
        negative = [t for t in terms if t.could_extract_minus_sign()]
        if len(terms) == 2 and len(negative) == 1:
            (positive,) = [t for t in terms if t is not negative[0]]
            return "-", [positive, -negative[0]], lambda a, b: a - b
        return "+", [sympy.Add(*terms[:-1]), terms[-1]], lambda a, b: a + b

    def split_mul(self, expr: sympy.Mul) -> tuple[str, list, Callable]:
        c, rest = expr.as_independent(*(expr.free_symbols - self.dims), as_Add=False)
        if c != 1:
            return f"×{_constant_text(c)}", [rest], lambda a: c * a
        factors = sorted(expr.args, key=lambda f: isinstance(f, sympy.Symbol))
        den = [f for f in factors if f.is_Pow and f.exp == -1]
        if len(factors) == 2 and len(den) == 1:
            (num,) = [f for f in factors if f is not den[0]]
            return "/", [num, den[0].base], lambda a, b: a / b
        return "×", [sympy.Mul(*factors[:-1]), factors[-1]], lambda a, b: a * b

    def split_function(self, expr: sympy.Function) -> tuple[str, list, Callable]:
        name = label_of(type(expr))
        operands = [a for a in expr.args if not self.constant(a)]

        def rebuild(*values):
            it = iter(values)
            return expr.func(*[a if self.constant(a) else next(it) for a in expr.args])

        return name, operands, rebuild


def _split(spec: Spec) -> tuple[list[ArrayNode], dict]:
    splitter = _Splitter(spec)
    for name, expr in spec.graph:
        splitter.step = name
        splitter.add(expr, name)
        splitter.memo.setdefault(expr, name)
    return splitter.nodes, splitter.shapes


def _readable(graph: ArrayGraph) -> dict[sympy.Symbol, sympy.Expr]:
    """Every generated ``u<k>`` in leaves and declared names (``u2`` as ``y - t``)."""
    declared = {s for s, _ in graph.spec.graph}
    readable: dict[sympy.Symbol, sympy.Expr] = {}
    for n in graph.nodes:
        if n.symbol not in declared:
            readable[n.symbol] = n.expr.xreplace(readable)
    return readable


# -- backward arrows --------------------------------------------------------------------------------
class _Backward:
    """Reverse accumulation over the nodes, step by step, from ``dout`` back to the leaves."""

    def __init__(self, graph: ArrayGraph):
        self.g = graph
        d = graph.derivation
        self.statements = {target.name: expr for target, expr in d.steps}
        self.derived = {n.symbol: n for n in d.nodes}
        self.live = self._live()
        self.grads: dict[sympy.Symbol, list[sympy.Expr]] = {}
        self.named = {n.expr: n.symbol for n in graph.nodes if not isinstance(n.expr, sympy.Symbol)}
        self.named.update({ops.Softmax(*n.expr.args): sympy.exp(n.symbol) for n in graph.nodes
                           if isinstance(n.expr, ops.LogSoftmax)})
        self.readable = _readable(graph)

    def _live(self) -> set[sympy.Symbol]:
        live = set(self.g.spec.differentiated)
        for n in self.g.nodes:
            if live & set(n.args):
                live.add(n.symbol)
        return live

    def grad_symbol(self, v: sympy.Symbol) -> sympy.Symbol:
        """``dout`` for the output, else the derivation's statement symbol ``d<name>``."""
        if v == self.g.spec.output:
            return self.g.derivation.dout
        return ArrayVar(f"d{v.name}", real=True) if self.g.shapes[v] else sympy.Symbol(f"d{v.name}", real=True)

    def send(self, source: sympy.Symbol, target: sympy.Symbol, expr: sympy.Expr) -> None:
        self.grads.setdefault(target, []).append(expr)
        self.g.arrows.append(Arrow(source, target, expr))

    def run(self) -> None:
        spec = self.g.spec
        self.grads[spec.output] = [self.grad_symbol(spec.output)]
        for step, declared in reversed(spec.graph):
            if not any(n.symbol in self.grads for n in self.g.step_nodes(step)):
                continue  # nothing downstream sends it a gradient (a step the backward fused away)
            derived = self.derived.get(step)
            declared_args = {a for a in declared.free_symbols if a in self.live}
            if step in self.grads and derived is not None and set(derived.args) != declared_args:
                self.fused(step, derived, declared_args)
            else:
                self.through(step)
        self.name_arrows()

    def through(self, step: sympy.Symbol) -> None:
        for node in reversed(self.g.step_nodes(step)):
            if node.symbol not in self.grads:
                continue
            g = self.grad_symbol(step) if node.symbol == step else sympy.Add(*self.grads[node.symbol])
            shape = self.g.shapes[node.symbol]
            up = ArrayVar(UPSTREAM, real=True) if shape else sympy.Symbol(UPSTREAM, real=True)
            wrt = [a for a in node.args if a in self.live]
            pulled = ops.vjp(node.expr, up, {**self.g.shapes, up: shape}, wrt, lambda e: book_convention(e, set()))
            for a in wrt:
                sent = pulled.get(a, sympy.S.Zero)
                if not isinstance(node.expr, (sympy.Symbol, ops.ArrayOp)):
                    sent = sent.subs(node.expr, node.symbol)  # in the node's own output: 1/(2*std)
                self.send(node.symbol, a, sent.xreplace(self.named).xreplace({up: g}).xreplace(self.readable))

    def fused(self, step: sympy.Symbol, derived, declared_args: set) -> None:
        dropped = tuple(sorted(declared_args - set(derived.args), key=lambda s: s.name))
        helpers = {h.symbol: h.expr for n in self.derived.values() for h in n.helpers.values()}
        for a in derived.args:
            sent = derived.pullback[a].xreplace({derived.upstream: self.grad_symbol(step)})
            self.send(step, a, sent.xreplace(helpers))
        definitions = dict(self.g.spec.graph)
        shown = [f"log({v.name}) = {self.g.derivation.readable(ops.fuse_logs(sympy.log(v), definitions))}"
                 for v in dropped]
        self.g.fused.append(Fused(step, dropped, "; ".join(shown)))

    def name_arrows(self) -> None:
        """An arrow carrying a whole statement (its target has no other arrow) takes its name."""
        arrows = self.g.arrows
        count = {a.target: sum(b.target == a.target for b in arrows) for a in arrows}
        for i, a in enumerate(arrows):
            name = f"d{a.target.name}"
            if count[a.target] == 1 and name in self.statements:
                arrows[i] = Arrow(a.source, a.target, a.expr, name)


def split_arrays(obj: Spec | Derivation) -> ArrayGraph:
    """Split an array declaration into one-operation nodes and compute its backward arrows.

    Parameters
    ----------
    obj : Spec or Derivation
        An array declaration (declared shapes), or its derivation.

    Returns
    -------
    ArrayGraph
    """
    derivation = obj if isinstance(obj, Derivation) else derive(obj)
    nodes, shapes = _split(derivation.spec)
    graph = ArrayGraph(derivation, nodes, shapes)
    shapes[derivation.dout] = shapes[derivation.spec.output]
    for v in (*derivation.spec.differentiated, *(s for s, _ in derivation.spec.graph)):
        shapes.setdefault(ArrayVar(f"d{v.name}", real=True), shapes[v])
        shapes.setdefault(sympy.Symbol(f"d{v.name}", real=True), shapes[v])
    _Backward(graph).run()
    return graph
