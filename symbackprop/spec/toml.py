"""Reading declarations from TOML: layers, and standalone hand derivations.

Every error is one line naming the file and the field (``file: field: problem``).
Expression strings go through the safe parser (:mod:`symbackprop.lang.parser`) only.
"""
from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any

import sympy

from .. import indexed, ops
from ..errors import ParseError, SpecError
from ..lang.parser import is_identifier, parse_expression, parse_index_statement
from .model import ASSUMPTIONS, DOUT, Chain, Claim, Spec, array_dout, default_output

_TOP_LEVEL_FIELDS = (
    "name", "section", "description", "inputs", "params", "constants", "assume", "output", "forward",
    "graph", "predict", "symbols", "values", "expect", "claims", "chains", "hyper", "tile", "outputs",
)
_CHAIN_FIELDS = ("of", "steps", "constraints", "at")
_NUMBER = r"\s*([-+]?(?:inf|\d+(?:\.\d*)?(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?))\s*"
#: ``interval(a, b)``: the open interval of an input (``-inf`` and ``inf`` allowed as ends).
#: ``y[n, f, i, j] = ...``: a statement in index notation (:mod:`symbackprop.indexed`).
_STATEMENT = re.compile(r"\s*[A-Za-z_]\w*\s*\[[^\]]*\]\s*=(?!=)")
#: ``"4*H"``: an axis of a multiple of a dimension (an LSTM's four gates side by side).
_MULTIPLE = re.compile(r"\s*([1-9]\d{0,3})\s*\*\s*([A-Za-z_]\w{0,63})\s*")
#: ``range(V)``: an integer constant's entries, ``0 <= x < V`` (``V`` a dimension or a size).
_RANGE = re.compile(r"\s*range\(\s*([A-Za-z_]\w{0,63}|[1-9]\d{0,8})\s*\)\s*")
INTERVAL = re.compile(rf"\s*interval\({_NUMBER},{_NUMBER}\)\s*")


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
        self.intervals: dict[str, tuple[float, float]] = {}

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
        """The SymPy assumptions of a ``[symbols]`` word (``also``: more known words, listed);
        ``interval(a, b)`` is kept in :attr:`intervals` (the open interval, ends may be
        ``-inf``/``inf``), the symbol real."""
        interval = INTERVAL.fullmatch(word) if isinstance(word, str) else None
        if interval is not None:
            lo, hi = (float(v) for v in interval.groups())
            if not lo < hi:
                raise self.fail(fieldname, f"empty interval {word!r} (need a < b)")
            self.intervals[fieldname.rpartition(".")[2]] = (lo, hi)
            return ASSUMPTIONS["real"]
        if not isinstance(word, str) or word not in ASSUMPTIONS:
            raise self.fail(fieldname, f"unknown assumption {word!r} (known: {', '.join(ASSUMPTIONS)}, "
                                       f"interval(a, b){also})")
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
        self.constraints: list = []
        self.hyper: dict[sympy.Symbol, int] = {}
        self.tile = False
        self.integers: dict[sympy.Symbol, sympy.Expr] = {}
        self.multiples: list[tuple[str, str]] = []
        if isinstance(self.doc.get("inputs"), dict) or ("inputs" not in self.doc and isinstance(
                self.doc.get("params"), dict) and isinstance(self.doc.get("constants"), dict)):
            inputs = self.arrays("inputs", required="inputs" in self.doc)
            params, constants = self.arrays("params"), self.arrays("constants")
            self.plain_multiples()
            self.hyper, self.tile = self.hyperparameters(), self.get("tile", bool, False)
        else:
            inputs, params, constants = self.inputs(), [], []
            for key in ("params", "constants", "assume", "hyper", "tile"):
                if key in self.doc:
                    raise self.fail(key, "needs array inputs with shapes, e.g. inputs = { x = [\"N\", \"D\"] }")
        graph = self.graph([*inputs, *params, *constants])
        outputs = self.outputs(graph)
        names = [s.name for s in (*inputs, *params, *constants)] + [n.name for n, _ in graph]
        names += [d.name for d in self.dims.values()]
        names += [h.name for h in self.hyper]
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
            intervals={self.symbols[n]: ends for n, ends in self.intervals.items() if n in self.symbols},
            hyper=dict(self.hyper),
            constraints=tuple(self.constraints),
            integers=dict(self.integers),
            outputs=outputs,
        )
        if spec_kwargs["section"] is not None:
            spec_kwargs["section"] = str(spec_kwargs["section"])
        try:
            return Spec(**spec_kwargs)
        except SpecError as exc:
            raise SpecError(str(exc)) from None

    def arrays(self, key: str, required: bool = False) -> list[sympy.Symbol]:
        """``{ x = ["N", "D"] }``: array names with symbolic shapes (dims become positive integers)."""
        table = self.get(key, dict, None if required else {})
        if table is None or (required and not table):
            raise self.fail(key, 'missing (a table of names and shapes, e.g. { x = ["N", "D"] })')
        out = []
        for n, shape in table.items():
            if not is_identifier(n) or n == DOUT.name or n in self.symbols:
                raise self.fail(f"{key}.{n}", "cannot name an array (reserved, not an identifier, or used twice)")
            if isinstance(shape, list):  # a size written as text, "1" for 1, means the same
                shape = [int(d) if isinstance(d, str) and d.isascii() and d.isdigit() and len(d) <= 9 else d
                         for d in shape]
            if not isinstance(shape, list) or not all(
                    (isinstance(d, str) and (is_identifier(d) or _MULTIPLE.fullmatch(d))) or (type(d) is int and d > 0)
                    for d in shape):
                raise self.fail(f"{key}.{n}", 'expected a shape: a list of dimension names or sizes, e.g. ["N", "D"]')
            dims = tuple(self.axis_size(f"{key}.{n}", d) for d in shape)
            word = self.get("symbols", dict, {}).get(n, "real")
            size = self.integer_range(key, n, word)
            symbol = ops.ArrayVar(n, **self.assumption(f"symbols.{n}", "real" if size is not None else word))
            if size is not None:
                self.integers[symbol] = size
            self.symbols[n] = symbol
            self.shapes[symbol] = dims
            out.append(symbol)
        return out

    def axis_size(self, fieldname: str, d: str | int) -> sympy.Expr:
        """An axis's size: a number, a dimension, or a multiple of one (``"4*H"``, the width of
        an LSTM's four gates: ``H`` must also be some array's axis, so that code can read it off)."""
        if isinstance(d, int):
            return sympy.Integer(d)
        multiple = _MULTIPLE.fullmatch(d)
        if multiple is None or not is_identifier(multiple.group(2)):
            return self.dim(fieldname, d)
        self.multiples.append((fieldname, multiple.group(2)))
        return sympy.Integer(int(multiple.group(1))) * self.dim(fieldname, multiple.group(2))

    def plain_multiples(self) -> None:
        """Every dimension used in a multiple (``4*H``) is also an axis of its own somewhere."""
        plain = {d for shape in self.shapes.values() for d in shape if isinstance(d, sympy.Symbol)}
        for fieldname, name in self.multiples:
            if self.symbols[name] not in plain:
                raise self.fail(fieldname, f"dimension {name} appears only in a multiple: declare an array "
                                           f"with {name} as an axis (its size is read off it)")

    def integer_range(self, key: str, name: str, word: Any) -> sympy.Expr | None:
        """``symbols = { x = "range(V)" }``: the constant ``x`` holds integers in ``range(V)``
        (an embedding's indices; ``V`` a dimension or a size), drawn so by the checkers."""
        match = _RANGE.fullmatch(word) if isinstance(word, str) else None
        if match is None:
            return None
        if key != "constants":
            raise self.fail(f"symbols.{name}", f"range({match.group(1)}) is for integer constants "
                                               f"(declare {name} under constants, it has no gradient)")
        size = match.group(1)
        return sympy.Integer(int(size)) if size.isdigit() else self.dim(f"symbols.{name}", size)

    def hyperparameters(self) -> dict[sympy.Symbol, int]:
        """``hyper = { stride = 1, pad = 0 }``: integers fixed when the layer is built, with defaults."""
        out = {}
        for n, value in self.get("hyper", dict, {}).items():
            if not is_identifier(n) or n == DOUT.name or n in self.symbols:
                raise self.fail(f"hyper.{n}", "cannot name a hyperparameter (reserved, not an identifier, or used twice)")
            if type(value) is not int or not 0 <= value < 2**16:
                raise self.fail(f"hyper.{n}", "expected a nonnegative integer (its default)")
            symbol = sympy.Symbol(n, integer=True, nonnegative=True)
            self.symbols[n] = symbol
            out[symbol] = value
        return out

    @property
    def dims(self) -> dict[str, sympy.Symbol]:
        return {n: s for n, s in self.symbols.items() if s.is_integer and s.is_positive}

    def dim(self, fieldname: str, name: str) -> sympy.Symbol:
        existing = self.symbols.get(name)
        if existing is not None and not (existing.is_integer and existing.is_positive):
            raise self.fail(fieldname, f"dimension {name!r} is also the name of an array")
        return self.symbols.setdefault(name, sympy.Symbol(name, positive=True, integer=True))

    def outputs(self, graph: list) -> tuple[sympy.Symbol, ...]:
        """``outputs = ["next_h", "next_c"]``: a layer of several outputs (graph values of one shape,
        an array declaration), returned by ``forward`` in this order, each with its upstream
        gradient in ``backward``; appended to the graph as their stack, the node ``outputs``."""
        names = self.get("outputs", list)
        if names is None:
            return ()
        nodes = {s.name: s for s, _ in graph}
        if not self.shapes or len(names) < 2 or not all(isinstance(n, str) and n in nodes for n in names) \
                or len(set(names)) != len(names):
            raise self.fail("outputs", "expected two or more names of graph values of an array declaration")
        if "outputs" in nodes or self.get("predict", str) is not None:
            raise self.fail("outputs", "a graph value is named outputs, or predict is declared (a network)")
        chosen = tuple(nodes[n] for n in names)
        stacked = ops.Stack(*chosen)
        try:
            shape = ops.shape_of(stacked, self.shapes)
        except SpecError as exc:
            raise self.fail("outputs", str(exc)) from None
        symbol = ops.ArrayVar("outputs", real=True)
        self.shapes[symbol] = shape
        self.symbols["outputs"] = symbol
        graph.append((symbol, stacked))
        return chosen

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
            word = assumptions.get(n, "real")
            if n in self.intervals:
                word = "positive" if self.intervals[n][0] >= 0 else "negative" if self.intervals[n][1] <= 0 else "real"
            self.symbols[n] = sympy.Symbol(n, **ASSUMPTIONS[word])
        return [self.symbols[n] for n in raw]

    def graph(self, inputs: list[sympy.Symbol]) -> list[tuple[sympy.Symbol, sympy.Expr]]:
        forward, graph = self.doc.get("forward"), self.get("graph", dict)
        if (forward is None) == (graph is None):
            raise self.fail("forward", "give exactly one of 'forward' (one expression) or [graph] (named steps)")
        if forward is not None:
            output = self.get("output", str, default_output(s.name for s in inputs))
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
            if self.shapes and isinstance(text, str) and _STATEMENT.match(text):
                expr, shape = self.index_statement(fieldname, key, text, nodes)
                symbol = ops.ArrayVar(key, real=True)
                self.shapes[symbol] = shape
                self.symbols[key] = symbol
                known.append(key)
                nodes.append((symbol, expr))
                continue
            expr = self.parse(fieldname, text, allowed=known)
            symbol = sympy.Symbol(key, real=True)
            if self.shapes:
                try:
                    shape = ops.shape_of(expr, self.shapes)
                except SpecError as exc:
                    raise self.fail(fieldname, str(exc)) from None
                symbol = ops.ArrayVar(key, real=True) if shape else symbol
                self.shapes[symbol] = shape
            self.symbols[key] = symbol
            known.append(key)
            nodes.append((symbol, expr))
        return nodes

    def index_statement(self, fieldname: str, key: str, text: str,
                        nodes: list[tuple[sympy.Symbol, sympy.Expr]]) -> tuple[sympy.Expr, tuple]:
        """``y[n, f, i, j] = ...``: index notation (:mod:`symbackprop.indexed`), shapes inferred.

        A size only parameters have that the statement infers (the pooled ``PH`` of a 4-D
        affine weight ``W2[f, i, j, h]``) is replaced by its extent in every shape and in the
        earlier ``nodes`` (in place)."""
        try:
            lhs, rhs = parse_index_statement(text, key, symbols=self.symbols)
            expr, shape, constraints, inferred = indexed.build_statement(
                sympy.Symbol(key), lhs, rhs, self.shapes, self.hyper, tile=self.tile,
                inferable=self.parameter_sizes(), integers=self.integers)
        except (ParseError, SpecError) as exc:
            raise self.fail(fieldname, str(exc)) from None
        self.constraints += constraints
        if inferred:
            self.shapes.update({a: tuple(d.xreplace(inferred) for d in dims) for a, dims in self.shapes.items()})
            nodes[:] = [(s, e.xreplace(inferred)) for s, e in nodes]
            self.constraints = [(kind, e.xreplace(inferred) if kind == "positive"
                                 else tuple(v.xreplace(inferred) for v in e)) for kind, e in self.constraints]
        return expr, shape

    def parameter_sizes(self) -> set[sympy.Symbol]:
        """The sizes only parameters have (no input, constant or node): a statement may infer them."""
        params = {s for s in self.shapes if s.name in self.get("params", dict, {})}
        elsewhere = {d for a, dims in self.shapes.items() if a not in params for d in dims}
        return {d for a in params for d in self.shapes[a] if d.is_Symbol and d not in elsewhere}

    def number(self, fieldname: str, value: Any) -> sympy.Expr:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.fail(fieldname, f"expected a number, got {_toml_kind(type(value).__name__)}")
        if isinstance(value, float) and not (abs(value) < float("inf")):
            raise self.fail(fieldname, "expected a finite number")
        # Exact, as written: 1.1 is 11/10, so the seed's 220 comes out exactly.
        return sympy.Rational(Fraction(repr(value))) if isinstance(value, float) else sympy.Integer(value)

    def values(self, names: list[str]) -> dict[str, sympy.Expr]:
        values = self.get("values", dict, {})
        inputs = set(self.doc.get("inputs", ()))
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
                if key not in self.doc.get("inputs", ()) and key not in self.doc.get("params", {}):
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




def _toml_kind(python_type: str) -> str:
    return {"str": "a string", "int": "an integer", "float": "a number", "list": "an array",
            "dict": "a table", "bool": "a boolean"}.get(python_type, python_type)
