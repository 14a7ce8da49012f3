"""Declarations: what a layer computes, written once.

A :class:`Spec` holds the inputs (real SymPy symbols, applied elementwise: every input
has the same shape, any shape), and the forward pass as an *ordered graph* of named
intermediates ``name = expression``; the last name is the output.  A layer with a
single ``forward`` expression is a graph of one node.  Graphs keep the order and the
grouping they were written in (the seed's apple example stays a chain of two-input
products), because the explanation and the generated code follow the declared nodes.

Specs come from TOML files (:func:`symbackprop.spec.toml.load_spec`) or from SymPy
expressions (:func:`layer`).  A Spec is data: the façade's :class:`symbackprop.pipeline.Layer`
is a Spec with the pipeline's verbs (``derive``, ``generate``, ``compile``, ``check``).
"""
from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import sympy

from .. import indexed, ops
from ..errors import SpecError
from ..lang.parser import is_identifier
from ..numerics.domain import Domain, natural_domains

#: The upstream gradient ``dL/dy`` in every backward expression.
DOUT = sympy.Symbol("dout", real=True)

#: Assumption words accepted in ``[symbols]``, mapped to SymPy assumptions.
ASSUMPTIONS = {
    "real": {"real": True},
    "positive": {"positive": True},
    "negative": {"negative": True},
    "nonnegative": {"nonnegative": True},
    "nonzero": {"real": True, "nonzero": True},
    "integer": {"integer": True},
}

@dataclass(frozen=True)
class Claim:
    """A hand result to verify: ``of`` is ``backward.<input>`` or ``local.<input>``."""

    of: str
    text: str
    expr: sympy.Expr


@dataclass(frozen=True)
class Chain:
    """A hand derivation: steps that should each equal the one before."""

    of: str
    steps: tuple[str, ...]
    exprs: tuple[sympy.Expr, ...]
    constraints: tuple[str, ...] = ()
    at: Mapping[str, float] = field(default_factory=dict)


@dataclass
class Spec:
    """One layer, declared once.

    Attributes
    ----------
    name : str
        Human name, also the generated class name (``Sigmoid``).
    inputs : tuple of sympy.Symbol
        Differentiated inputs, in the order ``forward`` takes them and ``backward``
        returns their gradients.
    graph : tuple of (sympy.Symbol, sympy.Expr)
        Ordered named intermediates; each expression uses inputs and earlier names.
        The last name is the output ``y``.
    values, expect : dict
        Worked numbers: input values, and the forward values / gradients (with
        ``dout = 1``) the layer must reproduce, e.g. the seed's apple example.
    claims, chains : tuple
        Hand work to verify against the derivation.
    """

    name: str
    inputs: tuple[sympy.Symbol, ...]
    graph: tuple[tuple[sympy.Symbol, sympy.Expr], ...]
    section: str | None = None
    description: str | None = None
    source: str | None = None
    values: dict[str, sympy.Expr] = field(default_factory=dict)
    expect: dict[str, Any] = field(default_factory=dict)
    claims: tuple[Claim, ...] = ()
    chains: tuple[Chain, ...] = ()
    params: tuple[sympy.Symbol, ...] = ()
    constants: tuple[sympy.Symbol, ...] = ()
    shapes: dict[sympy.Symbol, tuple] = field(default_factory=dict)
    assumptions: tuple[tuple[str, sympy.Symbol, int], ...] = ()
    #: a network: the graph value that ``predict`` returns (the scores before the loss)
    predict: sympy.Symbol | None = None
    #: declared open intervals of inputs (``x = "interval(-1, 1)"``)
    intervals: dict[sympy.Symbol, tuple[float, float]] = field(default_factory=dict)
    #: index notation: integers fixed when the layer is built (stride, pad), with their defaults
    hyper: dict[sympy.Symbol, int] = field(default_factory=dict)
    #: index notation: what sizes must meet (a window count at least 1, a stride that divides)
    constraints: tuple = ()
    #: a layer of several outputs (``outputs = ["next_h", "next_c"]``): their graph values, whose
    #: stack is the graph's last node ``outputs`` (empty: the last node is the one output)
    outputs: tuple[sympy.Symbol, ...] = ()
    #: integer constants and their ranges (``x`` -> ``V``: every entry in ``range(V)``), read as positions
    integers: dict[sympy.Symbol, sympy.Expr] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _validate(self)
        for name, expr in self.graph if self.shapes else ():
            self.shapes[name] = ops.shape_of(expr, self.shapes, f"{_where(self.source)}graph.{name.name}: ")

    @functools.cached_property
    def domains(self) -> dict[sympy.Symbol, Domain]:
        """Each input's domain (and an array layer's constants'): assumptions, declared
        interval, and what the forward needs (:func:`symbackprop.numerics.domain.natural_domains`),
        computed once.  An array's domain holds for each of its elements."""
        if self.shapes:
            return natural_domains((*self.inputs, *self.constants), self.graph, self.intervals)
        return natural_domains(self.inputs, self.graph, self.intervals)

    def fitted_sizes(self, sizes: Mapping[sympy.Symbol, int]) -> dict[sympy.Symbol, int]:
        """``sizes`` of the dimensions with the hyperparameters (their defaults unless given) and,
        in index notation, the spatial sizes grown until every window fits (deterministic)."""
        out = {**self.hyper, **sizes}
        if not self.constraints:
            return out
        grow = [d for d in indexed.growing_dims(self.constraints) if d in out and d not in self.hyper]
        return indexed.fitted(self.constraints, out, grow)

    def size_of(self, dim: sympy.Expr, sizes: Mapping[sympy.Symbol, int]) -> int:
        """A dimension (a name, a number, or a window count) at the given sizes."""
        if dim.is_Integer:
            return int(dim)
        if dim in sizes:
            return int(sizes[dim])
        return int(dim.xreplace({k: sympy.Integer(v) for k, v in sizes.items()}))

    def draw_integers(self, symbol: sympy.Symbol, sizes: Mapping[sympy.Symbol, int],
                      rng: Any) -> Any:
        """Random entries of the integer constant ``symbol`` (declared ``range(V)``) at ``sizes``,
        drawn with the numpy generator ``rng``: what every checker feeds an embedding."""
        shape = tuple(self.size_of(d, sizes) for d in self.shapes[symbol])
        return rng.integers(0, self.size_of(self.integers[symbol], sizes), size=shape)

    @property
    def is_array(self) -> bool:
        """Array layer (declared shapes), rather than elementwise."""
        return bool(self.shapes)

    @property
    def differentiated(self) -> tuple[sympy.Symbol, ...]:
        """Inputs, then parameters: everything ``backward`` produces a gradient for."""
        return (*self.inputs, *self.params)

    @property
    def dims(self) -> list[sympy.Symbol]:
        """Symbolic dimensions used in the declared shapes, sorted by name."""
        found = {d for shape in self.shapes.values() for d in shape if isinstance(d, sympy.Symbol)}
        return sorted(found, key=lambda d: d.name)

    # -- views ---------------------------------------------------------------
    @property
    def output(self) -> sympy.Symbol:
        """The output symbol (the last node of the graph)."""
        return self.graph[-1][0]

    @property
    def forward(self) -> sympy.Expr:
        """The output as one expression in the inputs (intermediates substituted)."""
        return self.expanded()[self.output]

    @property
    def arguments(self) -> tuple[sympy.Symbol, ...]:
        """What ``forward`` takes: the inputs, then the constants (an embedding's indices)."""
        return (*self.inputs, *self.constants)

    @property
    def input_names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.inputs)

    def expanded(self) -> dict[sympy.Symbol, sympy.Expr]:
        """Every graph name as an expression in the inputs only."""
        out: dict[sympy.Symbol, sympy.Expr] = {}
        for name, expr in self.graph:
            out[name] = expr.xreplace(out)
        return out

    def __repr__(self) -> str:
        graph = "; ".join(f"{n} = {e}" for n, e in self.graph)
        inputs = ", ".join(self.input_names)
        return f"Spec({self.name!r}, inputs=({inputs}), {graph})"


# -- validation ----------------------------------------------------------------
def _validate(spec: Spec) -> None:
    where = _where(spec.source)
    if not spec.inputs and not (spec.shapes and spec.params):
        raise SpecError(f"{where}inputs: a layer needs at least one input")
    seen: set[str] = set()
    for symbol in (*spec.inputs, *spec.params, *spec.constants, *(name for name, _ in spec.graph)):
        if not is_identifier(symbol.name) or symbol.name == DOUT.name:
            raise SpecError(f"{where}'{symbol.name}' cannot be a name (reserved or not an identifier)")
        if f"d{symbol.name}" == DOUT.name and symbol != spec.output and symbol not in spec.constants:
            raise SpecError(f"{where}'{symbol.name}' cannot name an input or an intermediate: its gradient "
                            f"would be d{symbol.name}, the upstream gradient's name (rename it, e.g. 'u')")
        if symbol.name in seen:
            raise SpecError(f"{where}name '{symbol.name}' is declared twice")
        seen.add(symbol.name)
    gradient_names = {f"d{s.name}" for s in (*spec.inputs, *spec.params)}
    clash = gradient_names & seen
    if clash:
        raise SpecError(f"{where}name '{sorted(clash)[0]}' clashes with the gradient of an input")
    known = {*spec.inputs, *spec.params, *spec.constants, *spec.dims, *spec.hyper}
    for name, expr in spec.graph:
        unknown = sorted(s.name for s in expr.free_symbols - known)
        if unknown:
            raise SpecError(f"{where}graph.{name.name}: unknown name '{unknown[0]}' (not an input or an earlier node)")
        known.add(name)


def _where(source: str | None) -> str:
    return f"{source}: " if source else ""


# -- from Python ---------------------------------------------------------------------
def layer(
    forward: sympy.Expr | Mapping[Any, sympy.Expr] | Sequence[tuple[Any, sympy.Expr]],
    inputs: Iterable[sympy.Symbol | str] | None = None,
    *,
    name: str = "Layer",
    output: str | None = None,
) -> Spec:
    """Declare a layer from SymPy expressions.

    Parameters
    ----------
    forward : sympy.Expr, or ordered mapping / pairs ``name -> expr``
        The forward pass.  A mapping declares a graph of named intermediates
        (the last one is the output), kept in the given order.
    inputs : iterable of Symbol or str, optional
        The inputs in order.  Default: the free symbols that are not graph names,
        sorted by name.
    name : str
        Class name of the generated layer.
    output : str, optional
        Name of the output for a single expression; default the first of ``y``, ``z``,
        ``f``, ``u`` that is not an input's name.

    Symbols without assumptions are taken as real.
    """
    if isinstance(forward, str):
        raise SpecError("forward: expected a SymPy expression, got a string "
                        "(strings go through load_spec or the command line's --expr)")
    if isinstance(forward, sympy.Basic) and output is None:
        output = default_output(s.name for s in forward.free_symbols)
    pairs = list(forward.items()) if isinstance(forward, Mapping) else (
        [(output, forward)] if isinstance(forward, sympy.Basic) else list(forward)
    )
    graph_names = [sympy.Symbol(str(n), real=True) for n, _ in pairs]
    realify: dict[sympy.Symbol, sympy.Symbol] = {}
    exprs = []
    for _, expr in pairs:
        if not isinstance(expr, sympy.Expr):
            raise SpecError(f"forward: expected a SymPy expression, got {type(expr).__name__} "
                            "(strings go through load_spec or the command line's --expr)")
        for s in expr.free_symbols:
            if s.is_real is None:
                realify.setdefault(s, sympy.Symbol(s.name, real=True))
        exprs.append(expr.xreplace(realify))
    by_name = {s.name: s for e in exprs for s in e.free_symbols}
    graph_name_set = {s.name for s in graph_names}
    if inputs is None:
        input_syms = sorted((s for n, s in by_name.items() if n not in graph_name_set), key=lambda s: s.name)
    else:
        input_syms = []
        for item in inputs:
            nm = item if isinstance(item, str) else item.name
            input_syms.append(by_name.get(nm) or sympy.Symbol(nm, real=True))
    name_of = {s.name: s for s in graph_names}
    exprs = [e.xreplace({s: name_of[s.name] for s in e.free_symbols if s.name in name_of}) for e in exprs]
    return Spec(name=name, inputs=tuple(input_syms), graph=tuple(zip(graph_names, exprs)))


#: Default names of a one-expression layer's output, in order of preference (never ``out``,
#: whose gradient ``dout`` is the upstream gradient's name).
OUTPUT_NAMES = ("y", "z", "f", "u", "v", "w")


def default_output(input_names: Iterable[str]) -> str:
    """The first of :data:`OUTPUT_NAMES` that is not an input's name (nor ``d`` of one)."""
    taken = set(input_names)
    taken |= {f"d{n}" for n in taken}
    return next(n for n in OUTPUT_NAMES if n not in taken and f"d{n}" not in taken)


def array_dout(output_shape: tuple) -> sympy.Symbol:
    """The upstream gradient of an array layer: an array, or a scalar for a loss."""
    return ops.ArrayVar(DOUT.name, real=True) if output_shape else DOUT
