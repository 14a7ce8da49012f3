"""A declaration as a graph of primitive operations, the way the seed draws it.

The forward pass is split into nodes of one operation each: the sigmoid
``1/(1 + exp(-x))`` becomes ``×(-1)``, ``exp``, ``+1``, ``/`` (the seed's figure
5-10), ``(x + y)**2`` becomes ``+`` and ``**2``.  A declared graph keeps its declared
nodes and names (the apples and oranges of figure 5-9 stay four two-input nodes); a
declared node that is itself a composite expression is split further, and its last
operation keeps the declared name.  Generated intermediates are named ``u1, u2, ...``.

For every node we keep its local derivatives (straight from ``diff``, and in the
node's own output where that is cheaper: ``∂(1/u)/∂u = -y**2``), and for every value
the gradient ``∂L/∂v`` by reverse accumulation, written in the upstream gradient
``dout``, the inputs, the declared names and the output, as the seed writes them
(``-dout*y**2*exp(-x)``).  With worked values (``[values]``) every forward value and
every gradient (``dout = 1``) is also computed exactly.

Array layers are split into array operations by :mod:`.array_nodes` instead.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass

import sympy

from ..derivation.cost import arithmetic_cost
from ..errors import SpecError
from ..lang.functions import label_of
from ..lang.text import format_expression
from ..numerics.kinks import book_convention
from ..spec.model import DOUT, Spec
from .numbers import format_number

#: Labels of one-argument functions in pictures and formulas (default: the SymPy name).

@dataclass(frozen=True)
class Node:
    """One primitive operation ``symbol = expr``.

    Attributes
    ----------
    symbol : sympy.Symbol
        The node's output: a declared name, the layer's output, or ``u<k>``.
    expr : sympy.Expr
        The operation in its arguments (``exp(u1)``, ``apple*apple_num``).
    args : tuple of sympy.Symbol
        Variable operands: inputs or earlier nodes (constants are folded into ``op``).
    op : str
        The label of the operation: ``×``, ``+``, ``×(-1)``, ``+1``, ``exp``, ``/``, ``**2``.
    declared : bool
        The symbol is a name of the declaration (kept in every formula).
    raw : dict
        ``∂expr/∂arg`` from ``diff``, in the arguments.
    local : dict
        The chosen form of each local derivative (in the node's output where cheaper).
    """

    symbol: sympy.Symbol
    expr: sympy.Expr
    args: tuple[sympy.Symbol, ...]
    op: str
    declared: bool
    raw: dict[sympy.Symbol, sympy.Expr]
    local: dict[sympy.Symbol, sympy.Expr]


@dataclass
class PrimitiveGraph:
    """A declaration split into primitive nodes, with gradients and (optionally) numbers.

    Attributes
    ----------
    spec : Spec
        The declaration.
    nodes : list of Node
        In forward (topological) order; the last one computes the output.
    definitions : dict
        Every node symbol as an expression in the inputs.
    readable : dict
        Every generated ``u<k>`` in the inputs and declared names (how formulas show it).
    gradients : dict
        ``∂L/∂v`` for every node and input, in ``dout``, inputs, declared names and ``y``.
    values, gradient_values : dict or None
        Exact numbers at the declaration's ``[values]`` (gradients with ``dout = 1``).
    """

    spec: Spec
    nodes: list[Node]
    definitions: dict[sympy.Symbol, sympy.Expr]
    readable: dict[sympy.Symbol, sympy.Expr]
    gradients: dict[sympy.Symbol, sympy.Expr]
    values: dict[sympy.Symbol, sympy.Expr] | None = None
    gradient_values: dict[sympy.Symbol, sympy.Expr] | None = None

    @property
    def inputs(self) -> tuple[sympy.Symbol, ...]:
        return self.spec.inputs

    @property
    def output(self) -> sympy.Symbol:
        return self.spec.output

    def node_of(self, symbol: sympy.Symbol) -> Node | None:
        """The node that computes ``symbol`` (None for an input)."""
        return next((n for n in self.nodes if n.symbol == symbol), None)

    def consumers(self, symbol: sympy.Symbol) -> list[Node]:
        """Nodes that take ``symbol`` as an argument, in forward order."""
        return [n for n in self.nodes if symbol in n.args]

    def show(self, expr: sympy.Expr) -> sympy.Expr:
        """``expr`` with generated intermediates written out (``u2`` as ``exp(-x)``)."""
        return expr.xreplace(self.readable)

    def number(self, symbol: sympy.Symbol, gradient: bool = False) -> str | None:
        """The worked number of a value (or of its gradient), formatted; None without values."""
        table = self.gradient_values if gradient else self.values
        if table is None or symbol not in table:
            return None
        return format_number(table[symbol])


# -- splitting an expression ------------------------------------------------------------
def _is_constant(expr: sympy.Basic) -> bool:
    return not expr.free_symbols


def constant_text(c: sympy.Expr) -> str:
    """A constant as written in a node's label."""
    if c.is_Rational or c.is_Float:
        text = format_number(c)
        return f"({text})" if text.startswith("-") else text
    return f"({format_expression(c)})"


def _split(expr: sympy.Expr) -> tuple[str, list[sympy.Expr], callable]:
    """One operation of ``expr``: its label, its operands, and how to rebuild it from them."""
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


def _split_arithmetic(expr: sympy.Expr) -> tuple[str, list[sympy.Expr], callable]:
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


def _split_pow(expr: sympy.Pow) -> tuple[str, list[sympy.Expr], callable]:
    base, ex = expr.args
    if _is_constant(ex):
        label = {-1: "/", sympy.S.Half: "sqrt"}.get(ex, f"**{constant_text(ex)}")
        return label, [base], lambda a: a**ex
    if _is_constant(base):
        return f"{constant_text(base)}**", [ex], lambda a: base**a
    return "**", [base, ex], lambda a, b: a**b


def _split_function(expr: sympy.Function) -> tuple[str, list[sympy.Expr], callable]:
    name = label_of(type(expr))
    operands = [a for a in expr.args if not _is_constant(a)]
    constants = [a for a in expr.args if _is_constant(a)]
    if constants:
        name = f"{name}({', '.join(constant_text(c).strip('()') for c in constants)}, ·)"

    def rebuild(*values):
        it = iter(values)
        return expr.func(*[a if _is_constant(a) else next(it) for a in expr.args])

    return name, operands, rebuild


class _Splitter:
    """Splits the declared nodes one operation at a time, sharing equal sub-expressions."""

    def __init__(self, spec: Spec, reserved: set[str]):
        self.spec = spec
        self.reserved = reserved
        self.memo: dict[sympy.Expr, sympy.Symbol] = {}
        self.nodes: list[Node] = []
        self.declared = {n for n, _ in spec.graph}
        self.counter = itertools.count(1)

    def fresh(self) -> sympy.Symbol:
        for k in self.counter:
            name = f"u{k}"
            if name not in self.reserved and f"d{name}" not in self.reserved:
                return sympy.Symbol(name, real=True)
        raise AssertionError  # pragma: no cover

    def operand(self, expr: sympy.Expr) -> sympy.Expr:
        if _is_constant(expr) or isinstance(expr, sympy.Symbol):
            return expr
        if expr not in self.memo:
            self.memo[expr] = self.add(expr)
        return self.memo[expr]

    def add(self, expr: sympy.Expr, symbol: sympy.Symbol | None = None) -> sympy.Symbol:
        """Add the nodes of ``expr``, the last one named ``symbol`` (default: a fresh ``u<k>``)."""
        if isinstance(expr, sympy.Symbol) or _is_constant(expr):
            op, operands, rebuild = "=", [expr] if not _is_constant(expr) else [], lambda *a: expr
        else:
            op, operands, rebuild = _split(expr)
        args = [self.operand(o) for o in operands]
        node_expr = rebuild(*args) if operands else expr
        variables = tuple(dict.fromkeys(a for a in args if isinstance(a, sympy.Symbol)))
        symbol = symbol if symbol is not None else self.fresh()
        self.nodes.append(_make_node(symbol, node_expr, variables, op, symbol in self.declared))
        return symbol


def _make_node(symbol: sympy.Symbol, expr: sympy.Expr, args: tuple[sympy.Symbol, ...],
               op: str, declared: bool) -> Node:
    raw = {a: book_convention(sympy.diff(expr, a), set()) for a in args}
    local = {}
    for a, d in raw.items():
        literal = d.subs(expr, symbol) if not isinstance(expr, sympy.Symbol) else d
        cheaper = literal.has(symbol) and arithmetic_cost(literal) <= arithmetic_cost(d)
        local[a] = literal if cheaper else d
    return Node(symbol, expr, args, op, declared, raw, local)


# -- the graph ----------------------------------------------------------------------------
def _reserved_names(spec: Spec) -> set[str]:
    names = {s.name for s in spec.inputs} | {n.name for n, _ in spec.graph} | {DOUT.name}
    return names | {f"d{n}" for n in names}


def split(spec: Spec) -> PrimitiveGraph:
    """Split a declaration into primitive nodes, with gradients and worked numbers.

    Parameters
    ----------
    spec : Spec
        An elementwise declaration (scalar inputs, a graph of named nodes).

    Returns
    -------
    PrimitiveGraph

    Raises
    ------
    SpecError
        For an array layer (split those with :func:`.array_nodes.split_arrays`).
    """
    if spec.is_array:
        raise SpecError(f"{spec.source or spec.name}: an array layer: split it with split_arrays "
                        "(split is for elementwise layers and scalar graphs)")
    splitter = _Splitter(spec, _reserved_names(spec))
    for name, expr in spec.graph:
        splitter.add(expr, name)
    nodes = splitter.nodes
    definitions, readable = _definitions(spec, nodes)
    graph = PrimitiveGraph(spec, nodes, definitions, readable, _gradients(spec, nodes, readable))
    if spec.values:
        _add_numbers(graph)
    return graph


def _definitions(spec: Spec, nodes: list[Node]) -> tuple[dict, dict]:
    definitions: dict[sympy.Symbol, sympy.Expr] = {}
    readable: dict[sympy.Symbol, sympy.Expr] = {}
    for node in nodes:
        definitions[node.symbol] = node.expr.xreplace(definitions)
        if not node.declared:
            readable[node.symbol] = node.expr.xreplace(readable)
    return definitions, readable


def _gradients(spec: Spec, nodes: list[Node], readable: dict) -> dict[sympy.Symbol, sympy.Expr]:
    """Reverse accumulation over the primitive nodes, from ``dout`` back to the inputs."""
    contributions: dict[sympy.Symbol, list[sympy.Expr]] = {nodes[-1].symbol: [DOUT]}
    gradients: dict[sympy.Symbol, sympy.Expr] = {}
    for node in reversed(nodes):
        if node.symbol not in contributions:
            continue  # nothing downstream uses it
        grad = gradients[node.symbol] = sympy.Add(*contributions[node.symbol])
        for a in node.args:
            contributions.setdefault(a, []).append((grad * node.local[a]).xreplace(readable))
    for s in spec.inputs:
        gradients[s] = sympy.Add(*contributions.get(s, [sympy.S.Zero]))
    return gradients


def _add_numbers(graph: PrimitiveGraph) -> None:
    """Exact forward values and gradients (``dout = 1``) at the declaration's ``[values]``."""
    point = {s: graph.spec.values[s.name] for s in graph.inputs}
    values = dict(point)
    for node in graph.nodes:
        values[node.symbol] = node.expr.xreplace(values)
    graph.values = values
    at = {**values, DOUT: sympy.S.One}
    graph.gradient_values = {s: g.xreplace(graph.definitions).xreplace(at) for s, g in graph.gradients.items()}
