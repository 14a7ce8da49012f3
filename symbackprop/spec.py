"""Declarations: what a layer computes, written once.

A :class:`Spec` holds the inputs (real SymPy symbols, applied elementwise: every input
has the same shape, any shape), and the forward pass as an *ordered graph* of named
intermediates ``name = expression``; the last name is the output.  A layer with a
single ``forward`` expression is a graph of one node.  Graphs keep the order and the
grouping they were written in (the seed's apple example stays a chain of two-input
products), because the explanation and the generated code follow the declared nodes.

Specs come from TOML files (:func:`load_spec`) or from SymPy expressions
(:func:`layer`)::

    >>> import sympy, symbackprop
    >>> x = sympy.Symbol("x")
    >>> sig = symbackprop.layer(1 / (1 + sympy.exp(-x)), name="Sigmoid")
    >>> str(sig.derive().backward["x"])
    'dout*y*(1 - y)'
"""
from __future__ import annotations

import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sympy

from .errors import ParseError, SpecError
from .parsing import is_identifier, parse_expression

if TYPE_CHECKING:  # pragma: no cover
    from .check import CheckReport
    from .derive import Derivation

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

_TOP_LEVEL_FIELDS = (
    "name", "section", "description", "inputs", "params", "constants", "assume", "output", "forward",
    "graph", "predict", "symbols", "values", "expect", "claims", "chains",
)
_CHAIN_FIELDS = ("of", "steps", "constraints", "at")


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
    _derivation: Any = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        _validate(self)
        if self.shapes:
            from .arrays import shape_of

            for name, expr in self.graph:
                self.shapes[name] = shape_of(expr, self.shapes, f"{_where(self.source)}graph.{name.name}: ")

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
    def input_names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.inputs)

    def expanded(self) -> dict[sympy.Symbol, sympy.Expr]:
        """Every graph name as an expression in the inputs only."""
        out: dict[sympy.Symbol, sympy.Expr] = {}
        for name, expr in self.graph:
            out[name] = expr.xreplace(out)
        return out

    def domain(self, symbol: sympy.Symbol) -> str:
        """``'positive'``, ``'negative'`` or ``'real'``: where inputs are sampled."""
        if symbol.is_positive:
            return "positive"
        if symbol.is_negative:
            return "negative"
        return "real"

    # -- the pipeline ---------------------------------------------------------
    def derive(self) -> Derivation:
        """Local derivatives, the backward pass and the cache (memoized)."""
        if self._derivation is None:
            from .derive import derive

            self._derivation = derive(self)
        return self._derivation

    def generate(self, backend: str = "numpy") -> str:
        """Source code of a layer class (see :mod:`symbackprop.codegen`); ``backend`` is
        ``"numpy"`` (readable) or ``"fused"`` (numba kernels)."""
        return self.derive().generate(backend=backend)

    def compile(self, backend: str = "numpy") -> type:
        """The generated layer class, compiled in memory."""
        return self.derive().compile(backend)

    def check(self, **options: Any) -> CheckReport:
        """Check the generated class numerically (see :func:`symbackprop.check.check_spec`)."""
        from .check import check_spec

        return check_spec(self, **options)

    def __repr__(self) -> str:
        graph = "; ".join(f"{n} = {e}" for n, e in self.graph)
        inputs = ", ".join(self.input_names)
        return f"Spec({self.name!r}, inputs=({inputs}), {graph})"


# -- validation ----------------------------------------------------------------
def _validate(spec: Spec) -> None:
    where = _where(spec.source)
    if not spec.inputs:
        raise SpecError(f"{where}inputs: a layer needs at least one input")
    seen: set[str] = set()
    for symbol in (*spec.inputs, *spec.params, *spec.constants, *(name for name, _ in spec.graph)):
        if not is_identifier(symbol.name) or symbol.name == DOUT.name:
            raise SpecError(f"{where}'{symbol.name}' cannot be a name (reserved or not an identifier)")
        if symbol.name in seen:
            raise SpecError(f"{where}name '{symbol.name}' is declared twice")
        seen.add(symbol.name)
    gradient_names = {f"d{s.name}" for s in (*spec.inputs, *spec.params)}
    clash = gradient_names & seen
    if clash:
        raise SpecError(f"{where}name '{sorted(clash)[0]}' clashes with the gradient of an input")
    known = {*spec.inputs, *spec.params, *spec.constants, *spec.dims}
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
    output: str = "y",
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
    output : str
        Name of the output for a single expression (default ``y``).

    Symbols without assumptions are taken as real.
    """
    if isinstance(forward, str):
        raise SpecError("forward: expected a SymPy expression, got a string "
                        "(strings go through load_spec or the command line's --expr)")
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


# -- from TOML -------------------------------------------------------------------------
def load_spec(path: str | Path, source: str | None = None) -> Spec:
    """Load a TOML declaration (format: DESIGN.md, "Declarations").

    ``source`` names the file in messages and generated code (default: ``path``).

    Raises
    ------
    SpecError
        One line naming the file and the field.
    """
    path = Path(path)
    return spec_from_toml(read_text(path), source=source or str(path))


def spec_from_toml(text: str, source: str = "<toml>") -> Spec:
    """Build a :class:`Spec` from the text of a TOML declaration."""
    return _Loader(parse_toml(text, source), source).spec()


def read_text(path: Path) -> str:
    """The text of a TOML file.

    Raises
    ------
    SpecError
        ``path: cannot read: reason``.
    """
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(f"{path}: cannot read: {getattr(exc, 'strerror', None) or exc}") from None


def parse_toml(text: str, source: str) -> dict:
    """The document of a TOML text; ``source`` names it in the error.

    Raises
    ------
    SpecError
        ``source: not valid TOML: reason``.
    """
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(f"{source}: not valid TOML: {exc}") from None


class TomlLoader:
    """Reads one TOML document, naming file and field in every error.

    The common part of the loaders of layer declarations (here) and of standalone
    derivation files (:mod:`symbackprop.steps`): every error is one line,
    ``file: field: problem``.
    """

    def __init__(self, doc: dict, source: str):
        self.doc = doc
        self.source = source

    def fail(self, fieldname: str, message: str) -> SpecError:
        """The error to raise for ``fieldname``."""
        return SpecError(f"{self.source}: {fieldname}: {message}")

    def get(self, key: str, kind: type | tuple[type, ...], default: Any = None) -> Any:
        """A top-level field, checked to be of ``kind`` when present."""
        value = self.doc.get(key, default)
        if value is not default and not isinstance(value, kind):
            names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
            raise self.fail(key, f"expected {_toml_kind(names)}, got {_toml_kind(type(value).__name__)}")
        return value

    def known_fields(self, table: Mapping, known: Sequence[str], where: str = "") -> None:
        """Reject the first unknown field of ``table`` (``where`` prefixes its name)."""
        unknown = sorted(set(table) - set(known))
        if unknown:
            fieldname = f"{where}.{unknown[0]}" if where else unknown[0]
            raise self.fail(fieldname, f"unknown field (known: {', '.join(known)})")

    def assumption(self, fieldname: str, word: Any, also: str = "") -> dict[str, bool]:
        """The SymPy assumptions of a ``[symbols]`` word (``also``: more known words, listed)."""
        if not isinstance(word, str) or word not in ASSUMPTIONS:
            raise self.fail(fieldname, f"unknown assumption {word!r} (known: {', '.join(ASSUMPTIONS)}{also})")
        return ASSUMPTIONS[word]

    def chain_head(self, i: int, chain: Any, known: Sequence[str], example: str,
                   strings: bool = False) -> tuple[str, str, list]:
        """``chains[i]``: its field name, what it derives (``of``) and its steps.

        ``strings``: the steps must all be strings (else they are checked as parsed).
        """
        where = f"chains[{i}]"
        if not isinstance(chain, dict):
            raise self.fail(where, "expected a table with 'of' and 'steps'")
        self.known_fields(chain, known, where)
        of, steps = chain.get("of"), chain.get("steps")
        if not isinstance(of, str) or not of:
            raise self.fail(f"{where}.of", f"missing (what the chain derives, e.g. \"{example}\")")
        if not isinstance(steps, list) or len(steps) < 2 or (strings and not all(isinstance(s, str) for s in steps)):
            raise self.fail(f"{where}.steps", "expected a list of at least two expression strings")
        return where, of, steps

    def chain_tail(self, where: str, chain: dict) -> tuple[list[str], dict]:
        """The ``constraints`` (strings) and the point ``at`` (a table) of a chain."""
        constraints = chain.get("constraints", [])
        if not isinstance(constraints, list) or not all(isinstance(c, str) for c in constraints):
            raise self.fail(f"{where}.constraints", "expected a list of strings")
        at = chain.get("at", {})
        if not isinstance(at, dict):
            raise self.fail(f"{where}.at", "expected a table of name = number")
        return constraints, at


class _Loader(TomlLoader):
    """Reads one layer declaration."""

    def __init__(self, doc: dict, source: str):
        super().__init__(doc, source)
        self.symbols: dict[str, sympy.Symbol] = {}

    def parse(self, fieldname: str, text: Any, *, allowed: Iterable[str]) -> sympy.Expr:
        if not isinstance(text, str):
            raise self.fail(fieldname, f"expected an expression string, got {_toml_kind(type(text).__name__)}")
        try:
            return parse_expression(text, symbols=self.symbols, allowed_names=set(allowed), arrays=bool(self.shapes))
        except ParseError as exc:
            raise self.fail(fieldname, str(exc)) from None

    def spec(self) -> Spec:
        self.known_fields(self.doc, _TOP_LEVEL_FIELDS)
        name = self.get("name", str)
        if not name:
            raise self.fail("name", "missing (every declaration has a name)")
        self.shapes: dict[sympy.Symbol, tuple] = {}
        if isinstance(self.doc.get("inputs"), dict):
            inputs = self.arrays("inputs", required=True)
            params, constants = self.arrays("params"), self.arrays("constants")
        else:
            inputs, params, constants = self.inputs(), [], []
            for key in ("params", "constants", "assume"):
                if key in self.doc:
                    raise self.fail(key, "needs array inputs with shapes, e.g. inputs = { x = [\"N\", \"D\"] }")
        graph = self.graph([*inputs, *params, *constants])
        names = [s.name for s in (*inputs, *params, *constants)] + [n.name for n, _ in graph]
        names += [d.name for d in self.dims.values()]
        if self.shapes:
            self.symbols[DOUT.name] = array_dout(self.shapes[graph[-1][0]])
        spec_kwargs = dict(
            params=tuple(params),
            constants=tuple(constants),
            shapes=dict(self.shapes),
            assumptions=self.assume(constants),
            predict=self.predict(graph),
            name=name,
            section=self.get("section", (str, int, float)),
            description=self.get("description", str),
            source=self.source,
            inputs=tuple(inputs),
            graph=tuple(graph),
            values=self.values(names),
            expect=self.expect(names, [s.name for s in inputs]),
            claims=self.claims(names),
            chains=self.chains(names),
        )
        if spec_kwargs["section"] is not None:
            spec_kwargs["section"] = str(spec_kwargs["section"])
        try:
            return Spec(**spec_kwargs)
        except SpecError as exc:
            raise SpecError(str(exc)) from None

    def arrays(self, key: str, required: bool = False) -> list[sympy.Symbol]:
        """``{ x = ["N", "D"] }``: array names with symbolic shapes (dims become positive integers)."""
        from .arrays import ArrayVar

        table = self.get(key, dict, None if required else {})
        if table is None or (required and not table):
            raise self.fail(key, 'missing (a table of names and shapes, e.g. { x = ["N", "D"] })')
        out = []
        for n, shape in table.items():
            if not is_identifier(n) or n == DOUT.name or n in self.symbols:
                raise self.fail(f"{key}.{n}", "cannot name an array (reserved, not an identifier, or used twice)")
            if not isinstance(shape, list) or not all(
                    (isinstance(d, str) and is_identifier(d)) or (type(d) is int and d > 0) for d in shape):
                raise self.fail(f"{key}.{n}", 'expected a shape: a list of dimension names or sizes, e.g. ["N", "D"]')
            dims = tuple(sympy.Integer(d) if isinstance(d, int) else self.dim(f"{key}.{n}", d) for d in shape)
            word = self.get("symbols", dict, {}).get(n, "real")
            symbol = ArrayVar(n, **self.assumption(f"symbols.{n}", word))
            self.symbols[n] = symbol
            self.shapes[symbol] = dims
            out.append(symbol)
        return out

    @property
    def dims(self) -> dict[str, sympy.Symbol]:
        return {n: s for n, s in self.symbols.items() if s.is_integer and s.is_positive}

    def dim(self, fieldname: str, name: str) -> sympy.Symbol:
        existing = self.symbols.get(name)
        if existing is not None and not (existing.is_integer and existing.is_positive):
            raise self.fail(fieldname, f"dimension {name!r} is also the name of an array")
        return self.symbols.setdefault(name, sympy.Symbol(name, positive=True, integer=True))

    def predict(self, graph) -> sympy.Symbol | None:
        """``predict = "a2"``: this declaration is a network whose scores are ``a2``."""
        name = self.get("predict", str)
        if name is None:
            return None
        found = next((s for s, _ in graph[:-1] if s.name == name), None)
        if found is None or not self.shapes:
            raise self.fail("predict", f"{name!r} is not a graph value before the loss of an array declaration")
        return found

    def assume(self, constants: list[sympy.Symbol]) -> tuple[tuple[str, sympy.Symbol, int], ...]:
        """``assume = ["onehot(t, axis=1)"]``: every row of the constant ``t`` sums to 1."""
        import re

        out = []
        for i, text in enumerate(self.get("assume", list, [])):
            match = re.fullmatch(r"\s*onehot\(\s*(\w+)\s*,\s*axis\s*=\s*(-?\d{1,2})\s*\)\s*", str(text))
            if not match:
                raise self.fail(f"assume[{i}]", f"unknown assumption {text!r} (known: onehot(t, axis=1))")
            name, axis = match.group(1), int(match.group(2))
            symbol = next((c for c in constants if c.name == name), None)
            if symbol is None:
                raise self.fail(f"assume[{i}]", f"{name!r} is not a declared constant")
            if not -len(self.shapes[symbol]) <= axis < len(self.shapes[symbol]):
                raise self.fail(f"assume[{i}]", f"axis {axis} is out of range for {name}")
            out.append(("onehot", symbol, axis % len(self.shapes[symbol])))
        return tuple(out)

    def inputs(self) -> list[sympy.Symbol]:
        raw = self.doc.get("inputs")
        if raw is None:
            raise self.fail("inputs", "missing (a list of input names, e.g. inputs = [\"x\"])")
        if not isinstance(raw, list) or not raw or not all(isinstance(n, str) for n in raw):
            raise self.fail("inputs", "expected a non-empty list of names")
        assumptions = self.get("symbols", dict, {})
        for key, word in assumptions.items():
            self.assumption(f"symbols.{key}", word)
            if key not in raw:
                raise self.fail(f"symbols.{key}", "not an input of this layer")
        for n in raw:
            if not is_identifier(n) or n == DOUT.name:
                raise self.fail("inputs", f"{n!r} cannot be an input name (reserved or not an identifier)")
            if n in self.symbols:
                raise self.fail("inputs", f"{n!r} is listed twice")
            self.symbols[n] = sympy.Symbol(n, **ASSUMPTIONS[assumptions.get(n, "real")])
        return [self.symbols[n] for n in raw]

    def graph(self, inputs: list[sympy.Symbol]) -> list[tuple[sympy.Symbol, sympy.Expr]]:
        forward, graph = self.doc.get("forward"), self.get("graph", dict)
        if (forward is None) == (graph is None):
            raise self.fail("forward", "give exactly one of 'forward' (one expression) or [graph] (named steps)")
        if forward is not None:
            output = self.get("output", str, "y")
            graph = {output: forward}
            prefix = "forward"
        else:
            prefix = "graph"
            if not graph:
                raise self.fail("graph", "empty graph")
        known = [s.name for s in inputs] + list(self.dims)
        nodes = []
        for key, text in graph.items():
            fieldname = "forward" if prefix == "forward" else f"graph.{key}"
            if not is_identifier(key) or key == DOUT.name or key in known:
                raise self.fail(fieldname, f"{key!r} cannot name a node (reserved, not an identifier, or already used)")
            expr = self.parse(fieldname, text, allowed=known)
            symbol = sympy.Symbol(key, real=True)
            if self.shapes:
                from .arrays import ArrayVar, shape_of

                try:
                    shape = shape_of(expr, self.shapes)
                except SpecError as exc:
                    raise self.fail(fieldname, str(exc)) from None
                symbol = ArrayVar(key, real=True) if shape else symbol
                self.shapes[symbol] = shape
            self.symbols[key] = symbol
            known.append(key)
            nodes.append((symbol, expr))
        return nodes

    def number(self, fieldname: str, value: Any) -> sympy.Expr:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.fail(fieldname, f"expected a number, got {_toml_kind(type(value).__name__)}")
        if isinstance(value, float) and not (abs(value) < float("inf")):
            raise self.fail(fieldname, "expected a finite number")
        # Exact, as written: 1.1 is 11/10, so the seed's 220 comes out exactly.
        return sympy.Rational(Fraction(repr(value))) if isinstance(value, float) else sympy.Integer(value)

    def values(self, names: list[str]) -> dict[str, sympy.Expr]:
        values = self.get("values", dict, {})
        inputs = set(self.doc["inputs"])
        out = {}
        for key, value in values.items():
            if key not in inputs:
                raise self.fail(f"values.{key}", "not an input of this layer")
            out[key] = self.number(f"values.{key}", value)
        if out and set(out) != inputs:
            missing = sorted(inputs - set(out))
            raise self.fail("values", f"missing a value for '{missing[0]}'")
        return out

    def expect(self, names: list[str], input_names: list[str]) -> dict[str, Any]:
        expect = self.get("expect", dict, {})
        if expect and "values" not in self.doc:
            raise self.fail("expect", "needs [values] to compute from")
        out: dict[str, Any] = {"forward": {}, "grad": {}}
        for key, value in expect.items():
            if key == "grad":
                if not isinstance(value, dict):
                    raise self.fail("expect.grad", "expected a table of input = number")
                for k, v in value.items():
                    if k not in input_names:
                        raise self.fail(f"expect.grad.{k}", "not an input of this layer")
                    out["grad"][k] = self.number(f"expect.grad.{k}", v)
            elif key in names:
                out["forward"][key] = self.number(f"expect.{key}", value)
            else:
                raise self.fail(f"expect.{key}", "not a name of this layer (an input, a node, or grad)")
        return out if expect else {}

    def claims(self, names: list[str]) -> tuple[Claim, ...]:
        claims = self.get("claims", dict, {})
        allowed = [*names, DOUT.name]
        self.symbols.setdefault(DOUT.name, DOUT)
        out = []
        for kind, table in claims.items():
            if kind not in ("backward", "local") or not isinstance(table, dict):
                raise self.fail(f"claims.{kind}", "expected backward.<input> = \"...\" or local.<input> = \"...\"")
            for key, text in table.items():
                if key not in self.doc["inputs"] and key not in self.doc.get("params", {}):
                    raise self.fail(f"claims.{kind}.{key}", "not an input or parameter of this layer")
                out.append(Claim(f"{kind}.{key}", text, self.parse(f"claims.{kind}.{key}", text, allowed=allowed)))
        return tuple(out)

    def chains(self, names: list[str]) -> tuple[Chain, ...]:
        chains = self.get("chains", list, [])
        allowed = [*names, DOUT.name]
        self.symbols.setdefault(DOUT.name, DOUT)
        out = []
        for i, chain in enumerate(chains):
            where, of, steps = self.chain_head(i, chain, _CHAIN_FIELDS, "backward.x")
            exprs = tuple(self.parse(f"{where}.steps[{j}]", s, allowed=allowed) for j, s in enumerate(steps))
            constraints, at = self.chain_tail(where, chain)
            at = {k: float(self.number(f"{where}.at.{k}", v)) for k, v in at.items()}
            out.append(Chain(of, tuple(steps), exprs, tuple(constraints), at))
        return tuple(out)


def array_dout(output_shape: tuple) -> sympy.Symbol:
    """The upstream gradient of an array layer: an array, or a scalar for a loss."""
    from .arrays import ArrayVar

    return ArrayVar(DOUT.name, real=True) if output_shape else DOUT


def _toml_kind(python_type: str) -> str:
    return {"str": "a string", "int": "an integer", "float": "a number", "list": "an array",
            "dict": "a table", "bool": "a boolean"}.get(python_type, python_type)
