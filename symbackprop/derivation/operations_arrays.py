"""An array declaration one operation at a time, and its backward arrows.

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
Softmax-with-Loss layer does; :attr:`Operations.fused` records it.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import sympy

from .. import indexed, ops
from ..lang.functions import label_of
from ..numerics.kinks import book_convention
from ..ops import ArrayVar
from .accumulate import Arrow, backpropagate, grad_symbol, live_values
from .operations import Fused, Operation, Operations, Split, Splitter, constant_text

if TYPE_CHECKING:
    from .model import Derivation

#: The placeholder for a node's upstream gradient (not an identifier: never a declared name).
UPSTREAM = "upstream'"
#: Labels of the array operations (a reduction adds its axis).
ARRAY_LABELS = {ops.Matmul: "@", ops.Transposed: ".T", ops.ReduceSum: "sum", ops.ReduceMean: "mean",
                ops.ReduceMax: "max", ops.LogSumExp: "logsumexp", ops.Softmax: "softmax",
                ops.LogSoftmax: "log_softmax", ops.ExpandDims: "expand_dims",
                ops.BroadcastTo: "broadcast_to", ops.Stack: "stack", ops.Pick: "pick",
                indexed.Block: "block", indexed.Unblock: "unblock"}


def _constant_text(c: sympy.Expr) -> str:
    """``2``, ``(-1/N)``; a tiny number in exponent form (``1e-07``, not ``0.0000001``)."""
    if c.is_number and c != 0 and abs(float(c)) < 1e-3:
        return f"{float(c):g}"
    return constant_text(c)


def _axis_text(expr: ops.ArrayOp) -> str:
    if isinstance(expr, ops.Reduction):
        axes = ", ".join(str(a) for a in expr.axes)
        text = f"axis={axes}" if expr.axes else ""
        return text + (", keepdims" if expr.keepdims and text else "")
    if isinstance(expr, (ops.Softmax, ops.LogSoftmax)):
        return f"axis={int(expr.args[1])}"
    return ""


def _index_label(expr: ops.ArrayOp) -> str:
    """``sum over c, k, l``, ``max over k, l``, ``scatter-add``: an index atom's node."""
    written = set().union(*(p.atoms(indexed.Index) for p in expr.args[-3]))
    reduced = ", ".join(i.name for i, _ in expr.ranges if i not in written)
    if isinstance(expr, indexed.IndexTake):
        kind = f"gather through {expr.args[1]}" if expr.is_gather else f"scatter-add through {expr.args[1]}"
    elif isinstance(expr, indexed.IndexSum):
        kind = ("sum" if reduced else "read") if expr.is_gather else "scatter-add"
    else:
        kind = "max" if isinstance(expr, indexed.IndexMax) else "to first max"
    return f"{kind} over {reduced}" if reduced else kind


def _split_array_op(expr: ops.ArrayOp) -> Split:
    if isinstance(expr, indexed.INDEX_ATOMS):  # index atoms: every operand is an input of the node
        n, rest = expr.operands, expr.args[expr.operands:]
        return _index_label(expr), list(expr.args[:n]), lambda *a: type(expr)(*a, *rest)
    label = ARRAY_LABELS.get(type(expr), type(expr).__name__.lower())
    axis = _axis_text(expr)
    label = f"{label}\n{axis}" if axis else label
    if isinstance(expr, (ops.Matmul, ops.Stack)):  # every argument an array (a layer's outputs: stack)
        return label, list(expr.args), type(expr)
    if isinstance(expr, (indexed.Block, indexed.Unblock)):  # block along axis at start
        return f"{label}\naxis={int(expr.args[1])}, at {expr.args[2]}", [expr.args[0]], lambda a: type(expr)(a, *expr.args[1:])
    head, rest = expr.args[0], expr.args[1:]
    return label, [head], lambda a: type(expr)(a, *rest)


class _ArrayOperations(Splitter):
    def __init__(self, spec):
        self.shapes = dict(spec.shapes)
        super().__init__(spec, {s.name for s in self.shapes} | {d.name for d in spec.dims}, set(spec.dims))

    def node(self, symbol, expr, args, op) -> Operation:
        shape = ops.shape_of(expr, self.shapes)
        if symbol is None:
            name = next(self.names)
            symbol = ArrayVar(name, real=True) if shape else sympy.Symbol(name, real=True)
        self.shapes[symbol] = shape
        return Operation(symbol, expr, args, op, self.step)

    def split(self, expr: sympy.Expr) -> Split:
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

    def split_add(self, expr: sympy.Add) -> Split:
        c, rest = expr.as_independent(*(expr.free_symbols - self.dims), as_Add=True)
        if c != 0:
            return f"+{_constant_text(c)}", [rest], lambda a: c + a
        terms = sorted(expr.args, key=lambda t: isinstance(t, sympy.Symbol))  # computed operands first
        negative = [t for t in terms if t.could_extract_minus_sign()]
        if len(terms) == 2 and len(negative) == 1:
            (positive,) = [t for t in terms if t is not negative[0]]
            return "-", [positive, -negative[0]], lambda a, b: a - b
        return "+", [sympy.Add(*terms[:-1]), terms[-1]], lambda a, b: a + b

    def split_mul(self, expr: sympy.Mul) -> Split:
        c, rest = expr.as_independent(*(expr.free_symbols - self.dims), as_Add=False)
        if c != 1:
            return f"×{_constant_text(c)}", [rest], lambda a: c * a
        factors = sorted(expr.args, key=lambda f: isinstance(f, sympy.Symbol))
        den = [f for f in factors if f.is_Pow and f.exp == -1]
        if len(factors) == 2 and len(den) == 1:
            (num,) = [f for f in factors if f is not den[0]]
            return "/", [num, den[0].base], lambda a, b: a / b
        return "×", [sympy.Mul(*factors[:-1]), factors[-1]], lambda a, b: a * b

    def split_function(self, expr: sympy.Function) -> Split:
        name = label_of(type(expr))
        operands = [a for a in expr.args if not self.constant(a)]

        def rebuild(*values):
            it = iter(values)
            return expr.func(*[a if self.constant(a) else next(it) for a in expr.args])

        return name, operands, rebuild


class _Backward:
    """Sends every node's gradient back, step by step, from ``dout`` to the leaves."""

    def __init__(self, graph: Operations):
        self.g = graph
        d = graph.derivation
        self.derived = {n.symbol: n for n in d.nodes}
        self.live = live_values(graph.spec.differentiated, ((n.symbol, set(n.args)) for n in graph.nodes))
        self.named = {n.expr: n.symbol for n in graph.nodes if not isinstance(n.expr, sympy.Symbol)}
        self.named.update({ops.Softmax(*n.expr.args): sympy.exp(n.symbol) for n in graph.nodes
                           if isinstance(n.expr, ops.LogSoftmax)})
        self.declared = dict(graph.spec.graph)

    def gradient(self, node: Operation, terms: list[sympy.Expr]) -> sympy.Expr:
        """A declared step's statement symbol (``da1``; ``dout`` for the output), else the sum."""
        if node.symbol == self.g.spec.output:
            return self.g.derivation.dout
        return grad_symbol(node.symbol) if node.declared else sympy.Add(*terms)

    def send(self, node: Operation, grad: sympy.Expr) -> list[tuple[sympy.Symbol, sympy.Expr]]:
        derived = self.derived.get(node.symbol)
        if node.declared and derived is not None:
            declared_args = {a for a in self.declared[node.symbol].free_symbols if a in self.live}
            if set(derived.args) != declared_args:
                return self.fused(node.symbol, derived, declared_args, grad)
        shape = self.g.shapes[node.symbol]
        up = ArrayVar(UPSTREAM, real=True) if shape else sympy.Symbol(UPSTREAM, real=True)
        wrt = [a for a in node.args if a in self.live]
        pulled = ops.vjp(node.expr, up, {**self.g.shapes, up: shape}, wrt, lambda e: book_convention(e, set()))
        sent = []
        for a in wrt:
            term = pulled.get(a, sympy.S.Zero)
            if not isinstance(node.expr, (sympy.Symbol, ops.ArrayOp)):
                term = term.subs(node.expr, node.symbol)  # in the node's own output: 1/(2*std)
            sent.append((a, term.xreplace(self.named).xreplace({up: grad}).xreplace(self.g.readable)))
        return sent

    def fused(self, step: sympy.Symbol, derived, declared_args: set, grad: sympy.Expr) -> list:
        dropped = tuple(sorted(declared_args - set(derived.args), key=lambda s: s.name))
        helpers = {h.symbol: h.expr for n in self.derived.values() for h in n.helpers.values()}
        shown = [f"log({v.name}) = {self.g.derivation.readable(ops.fuse_logs(sympy.log(v), self.declared))}"
                 for v in dropped]
        self.g.fused.append(Fused(step, dropped, "; ".join(shown)))
        return [(a, derived.pullback[a].xreplace({derived.upstream: grad}).xreplace(helpers)) for a in derived.args]


def _name_arrows(arrows: list[Arrow], statements: set[str]) -> list[Arrow]:
    """An arrow carrying a whole statement (its target has no other arrow) takes its name."""
    count = {a.target: sum(b.target == a.target for b in arrows) for a in arrows}
    return [Arrow(a.source, a.target, a.expr, f"d{a.target.name}")
            if count[a.target] == 1 and f"d{a.target.name}" in statements else a for a in arrows]


def array_operations(derivation: Derivation) -> Operations:
    """The one-operation nodes of an array declaration and their backward arrows."""
    spec = derivation.spec
    splitter = _ArrayOperations(spec)
    nodes, readable = splitter.run()
    shapes = splitter.shapes
    shapes[derivation.dout] = shapes[spec.output]
    for v in (*spec.differentiated, *(s for s, _ in spec.graph)):
        shapes.setdefault(ArrayVar(f"d{v.name}", real=True), shapes[v])
        shapes.setdefault(sympy.Symbol(f"d{v.name}", real=True), shapes[v])
    graph = Operations(derivation, nodes, readable, shapes=shapes)
    backward = _Backward(graph)
    _, arrows = backpropagate(nodes, {spec.output: []}, backward.gradient, backward.send)
    graph.arrows = _name_arrows(arrows, {t.name for t, _ in derivation.steps})
    return graph
