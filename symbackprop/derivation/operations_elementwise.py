"""An elementwise declaration one primitive operation at a time, and its backward.

``(x + y)**2`` becomes ``+`` and ``**2``; a declared graph keeps its declared nodes and
names (the apples and oranges of figure 5-9 stay four two-input nodes); a declared node
that is itself a composite expression is split further.  Every node keeps its local
derivatives (straight from ``diff``, and in the node's own output where that is cheaper:
``∂(1/u)/∂u = -y**2``), and every value its gradient ``∂L/∂v``, written in ``dout``, the
inputs, the declared names and the output, as the seed writes them
(``-dout*y**2*exp(-x)``).  With worked values (``[values]``) every forward value and
every gradient (``dout = 1``) is also computed exactly.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import sympy

from ..lang.functions import label_of
from ..numerics.kinks import book_convention
from ..spec.model import DOUT, Spec
from .accumulate import backpropagate
from .cost import arithmetic_cost
from .operations import Operation, Operations, Split, Splitter, constant_text

if TYPE_CHECKING:
    from .model import Derivation


def _split_arithmetic(expr: sympy.Expr) -> Split:
    """``c + a + b`` as ``+c`` of ``a + b``, then ``+`` of ``a`` and ``b`` (products alike)."""
    add = isinstance(expr, sympy.Add)
    c, rest = expr.as_independent(*expr.free_symbols, as_Add=add)
    if c != (0 if add else 1):
        if add:
            return f"+{constant_text(c)}", [rest], lambda a: c + a
        return f"×{constant_text(c)}", [rest], lambda a: c * a
    terms = expr.args
    head = expr.func(*terms[:-1])
    return ("+", [head, terms[-1]], lambda a, b: a + b) if add else ("×", [head, terms[-1]], lambda a, b: a * b)


def _split_pow(expr: sympy.Pow) -> Split:
    base, ex = expr.args
    if not ex.free_symbols:
        label = {-1: "/", sympy.S.Half: "sqrt"}.get(ex, f"**{constant_text(ex)}")
        return label, [base], lambda a: a**ex
    if not base.free_symbols:
        return f"{constant_text(base)}**", [ex], lambda a: base**a
    return "**", [base, ex], lambda a, b: a**b


def _split_function(expr: sympy.Function) -> Split:
    name = label_of(type(expr))
    operands = [a for a in expr.args if a.free_symbols]
    constants = [a for a in expr.args if not a.free_symbols]
    if constants:
        name = f"{name}({', '.join(constant_text(c).strip('()') for c in constants)}, ·)"

    def rebuild(*values):
        it = iter(values)
        return expr.func(*[next(it) if a.free_symbols else a for a in expr.args])

    return name, operands, rebuild


class _Primitives(Splitter):
    def split(self, expr: sympy.Expr) -> Split:
        if isinstance(expr, (sympy.Add, sympy.Mul)):
            return _split_arithmetic(expr)
        if isinstance(expr, sympy.Pow):
            return _split_pow(expr)
        if isinstance(expr, sympy.exp):
            return "exp", [expr.args[0]], sympy.exp
        if isinstance(expr, (sympy.Function, sympy.Max, sympy.Min)) and not isinstance(expr, sympy.Piecewise):
            return _split_function(expr)
        symbols = sorted(expr.free_symbols, key=lambda s: s.name)
        return "where" if isinstance(expr, sympy.Piecewise) else "f", list(symbols), \
            lambda *a: expr.xreplace(dict(zip(symbols, a)))

    def node(self, symbol, expr, args, op) -> Operation:
        symbol = symbol if symbol is not None else sympy.Symbol(next(self.names), real=True)
        raw = {a: book_convention(sympy.diff(expr, a), set()) for a in args}
        local = {}
        for a, d in raw.items():
            literal = d.subs(expr, symbol) if not isinstance(expr, sympy.Symbol) else d
            cheaper = literal.has(symbol) and arithmetic_cost(literal) <= arithmetic_cost(d)
            local[a] = literal if cheaper else d
        return Operation(symbol, expr, args, op, self.step, raw, local)


def elementwise_operations(derivation: Derivation) -> Operations:
    """The primitive nodes of an elementwise declaration, their backward and worked numbers."""
    spec = derivation.spec
    taken = {s.name for s in spec.inputs} | {n.name for n, _ in spec.graph} | {DOUT.name}
    nodes, readable = _Primitives(spec, taken).run()
    graph = Operations(derivation, nodes, readable)
    for node in nodes:
        graph.definitions[node.symbol] = node.expr.xreplace(graph.definitions)

    def gradient(node: Operation, terms: list[sympy.Expr]) -> sympy.Expr:
        graph.gradients[node.symbol] = sympy.Add(*terms)
        return graph.gradients[node.symbol]

    def send(node: Operation, grad: sympy.Expr):
        return [(a, (grad * node.local[a]).xreplace(readable)) for a in node.args]

    contributions, graph.arrows = backpropagate(nodes, {nodes[-1].symbol: [DOUT]}, gradient, send)
    for s in spec.inputs:
        graph.gradients[s] = sympy.Add(*contributions.get(s, [sympy.S.Zero]))
    if spec.values:
        _add_numbers(graph, spec)
    return graph


def _add_numbers(graph: Operations, spec: Spec) -> None:
    """Exact forward values and gradients (``dout = 1``) at the declaration's ``[values]``."""
    values = {s: spec.values[s.name] for s in spec.inputs}
    for node in graph.nodes:
        values[node.symbol] = node.expr.xreplace(values)
    graph.values = values
    graph.gradient_values = {s: graph.worked(g) for s, g in graph.gradients.items()}
