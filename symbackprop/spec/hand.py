"""Standalone hand derivations: what a student hands in, with no layer.

A derivation file (DESIGN.md's second TOML example) declares symbols with assumptions or
``"matrix RxC"``, shorthands (``[definitions]``) and chains of steps with constraints, a
point ``at`` and a tolerance; ``diff(expr, x)`` and ``subs(expr, u, v)`` in steps are
carried out by :meth:`World.expand`.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import sympy

from ..errors import ParseError, SpecError
from ..lang.matrices import MatrixReader, Value, matrix_symbol
from ..lang.parser import is_identifier, parse_expression
from .model import ASSUMPTIONS
from .toml import TomlLoader, parse_toml, read_text

#: Largest side of a declared matrix symbol.
MAX_MATRIX_SIDE = 8
_CHAIN_FIELDS = ("of", "steps", "constraints", "at", "tolerance")
_FILE_FIELDS = ("name", "section", "description", "symbols", "definitions", "chains")


class World:
    """The names of one derivation: symbols with their assumptions, shorthands, matrices.

    Parameters
    ----------
    symbols : mapping of str to sympy.Symbol
        Declared scalar symbols (and placeholders for definitions).
    definitions : mapping of sympy.Symbol to value
        Shorthands, substituted before comparing; a value may use other shorthands.
    matrices : mapping of str to sympy.Matrix
        Declared matrix symbols, as matrices of real entry symbols ``X[i,j]``.
    calculus : bool
        Whether ``diff`` and ``subs`` are allowed in steps.
    """

    def __init__(self, symbols: Mapping[str, sympy.Symbol], definitions: Mapping[sympy.Symbol, Value] | None = None,
                 matrices: Mapping[str, sympy.MatrixBase] | None = None, calculus: bool = True):
        self.symbols = dict(symbols)
        self.definitions = dict(definitions or {})
        self.matrices = dict(matrices or {})
        self.calculus = calculus

    def matrix_names(self) -> set[str]:
        return set(self.matrices) | {s.name for s, v in self.definitions.items() if isinstance(v, sympy.MatrixBase)}

    def parse(self, text: str) -> Value:
        """Text to an (unexpanded) value: scalar text through the parser, matrix text
        through :class:`~symbackprop.lang.matrices.MatrixReader` (which uses the parser for every scalar part)."""
        if not isinstance(text, str):
            raise ParseError(f"expected an expression string, got {type(text).__name__}")
        if self.matrix_names():
            return MatrixReader(self).read(text)
        return self.parse_scalar(text)

    def parse_scalar(self, text: str) -> sympy.Expr:
        return parse_expression(text, symbols=self.symbols, calculus=self.calculus)

    def value_of(self, name: str) -> Value | None:
        if name in self.matrices:
            return self.matrices[name]
        symbol = self.symbols.get(name)
        value = self.definitions.get(symbol) if symbol is not None else None
        return value if isinstance(value, sympy.MatrixBase) else None

    def expand(self, value: Value, keep: frozenset = frozenset()) -> Value:
        r"""Substitute every definition and carry out ``diff`` and ``subs``.

        ``diff(e, v)`` with ``v`` a shorthand differentiates with ``v`` held as a
        variable (every other shorthand written out), then writes ``v`` out: the
        partial derivative :math:`\partial e / \partial v` of the chain rule.
        """
        if isinstance(value, sympy.MatrixBase):
            return value.applyfunc(lambda e: self.expand(e, keep))
        return self._expand(value, keep, 0)

    def _expand(self, e: sympy.Basic, keep: frozenset, depth: int) -> sympy.Basic:
        if depth > 50:
            raise SpecError("definitions refer to each other in a cycle")
        if isinstance(e, sympy.Derivative):
            held = frozenset(v for v in e.variables if v in self.definitions)
            inner = self._expand(e.expr, keep | held, depth + 1)
            return self._expand(sympy.diff(inner, *e.variable_count), keep, depth + 1)
        if isinstance(e, sympy.Subs):
            held = frozenset(v for v in e.variables if v in self.definitions)
            inner = self._expand(e.expr, keep | held, depth + 1)
            point = [self._expand(p, keep, depth + 1) for p in e.point]
            return self._expand(inner.subs(dict(zip(e.variables, point)), simultaneous=True), keep, depth + 1)
        if isinstance(e, sympy.Symbol):
            value = self.definitions.get(e)
            if value is None or e in keep:
                return e
            if isinstance(value, sympy.MatrixBase):
                raise SpecError(f"the matrix '{e.name}' is used where a number is expected")
            return self._expand(value, keep, depth + 1)
        if not e.args:
            return e
        return e.func(*[self._expand(a, keep, depth + 1) for a in e.args])


def assumption_word(symbol: sympy.Symbol) -> str:
    """The ``[symbols]`` word a symbol was declared with (``real`` when none)."""
    for word in ("integer", "positive", "negative", "nonnegative", "nonzero"):
        if getattr(symbol, f"is_{word}"):
            return word
    return "real"


def needs_relaxed(world: World) -> bool:
    """Does any symbol carry an assumption (then a relaxed world tells what it is needed for)?"""
    return any(assumption_word(s) != "real" for s in world.symbols.values())


@dataclass
class ChainText:
    """A chain of a standalone derivation file, as written."""

    of: str
    steps: list[str]
    constraints: list[str] = field(default_factory=list)
    at: dict[str, float] = field(default_factory=dict)
    tolerance: float | None = None


@dataclass
class HandDerivation:
    """A standalone derivation: names (declared and relaxed) and chains."""

    name: str
    source: str
    world: World
    relaxed: World | None
    chains: list[ChainText]


def load_derivation(path: str | Path, source: str | None = None) -> HandDerivation:
    """Load a standalone derivation file (DESIGN.md's second TOML example).

    Raises
    ------
    SpecError
        One line naming the file and the field.
    """
    path = Path(path)
    return derivation_from_toml(read_text(path), source or str(path))


def derivation_from_toml(text: str, source: str = "<toml>") -> HandDerivation:
    """Build a :class:`HandDerivation` from the text of a standalone derivation file."""
    return _FileLoader(parse_toml(text, source), source).load()


class _FileLoader(TomlLoader):
    """Reads one standalone derivation file."""

    def table(self, key: str) -> dict:
        value = self.doc.get(key, {})
        if not isinstance(value, dict):
            raise self.fail(key, "expected a table")
        return value

    def load(self) -> HandDerivation:
        self.known_fields(self.doc, _FILE_FIELDS)
        name = self.doc.get("name")
        if not isinstance(name, str) or not name:
            raise self.fail("name", "missing (every derivation has a name)")
        declared = self.table("symbols")
        world = self.world(declared, relaxed=False)
        relaxed = self.world(declared, relaxed=True) if needs_relaxed(world) else None
        chains = self.chains()
        if not chains:
            raise self.fail("chains", "missing (a derivation has at least one [[chains]] table)")
        return HandDerivation(name, self.source, world, relaxed, chains)

    def world(self, declared: dict, relaxed: bool) -> World:
        symbols: dict[str, sympy.Symbol] = {}
        matrices: dict[str, sympy.MatrixBase] = {}
        for key, word in declared.items():
            where = f"symbols.{key}"
            if not is_identifier(key):
                raise self.fail(where, f"{key!r} cannot be a name")
            size = re.fullmatch(r"\s*matrix\s+(\d+)\s*x\s*(\d+)\s*", word) if isinstance(word, str) else None
            if size:
                rows, cols = int(size.group(1)), int(size.group(2))
                if not (1 <= rows <= MAX_MATRIX_SIDE and 1 <= cols <= MAX_MATRIX_SIDE):
                    raise self.fail(where, f"matrix sides must be between 1 and {MAX_MATRIX_SIDE}")
                matrices[key] = matrix_symbol(key, rows, cols)
            else:
                declared_kind = self.assumption(where, word, also=', or "matrix RxC"')
                symbols[key] = sympy.Symbol(key, **(ASSUMPTIONS["real"] if relaxed else declared_kind))
        world = World(symbols, {}, matrices)
        self.definitions(world)
        return world

    def definitions(self, world: World) -> None:
        table = self.table("definitions")
        for key in table:
            if not is_identifier(key) or key in world.symbols or key in world.matrices:
                raise self.fail(f"definitions.{key}", f"{key!r} cannot be defined (a declared symbol or not a name)")
            world.symbols[key] = sympy.Symbol(key, real=True)
        for key, text in table.items():
            try:
                value = world.parse(text)
                if isinstance(value, sympy.MatrixBase):
                    value = world.expand(value)
            except (ParseError, SpecError) as exc:
                raise self.fail(f"definitions.{key}", str(exc)) from None
            world.definitions[world.symbols[key]] = value
        for key in table:
            if isinstance(world.definitions[world.symbols[key]], sympy.MatrixBase):
                continue
            try:
                world.expand(world.symbols[key])
            except SpecError as exc:
                raise self.fail(f"definitions.{key}", str(exc)) from None
            except RecursionError:
                raise self.fail(f"definitions.{key}", "definitions refer to each other in a cycle") from None

    def chains(self) -> list[ChainText]:
        chains = self.doc.get("chains", [])
        if not isinstance(chains, list):
            raise self.fail("chains", "expected [[chains]] tables")
        out = []
        for i, chain in enumerate(chains):
            where, of, steps = self.chain_head(i, chain, _CHAIN_FIELDS, "dL/dx1", strings=True)
            constraints, at = self.chain_tail(where, chain)
            tolerance = chain.get("tolerance")
            if tolerance is not None and (isinstance(tolerance, bool) or not isinstance(tolerance, (int, float))
                                          or not 0 <= tolerance < float("inf")):
                raise self.fail(f"{where}.tolerance", "expected a non-negative number")
            out.append(ChainText(of, list(steps), list(constraints), dict(at),
                                 None if tolerance is None else float(tolerance)))
        return out


def is_standalone(doc: Mapping) -> bool:
    """A derivation file (no layer) has neither ``inputs`` nor ``forward``/``graph``."""
    return not any(k in doc for k in ("inputs", "forward", "graph"))
