"""A derivation as plain data (JSON), and back: what the on-disk cache stores.

Every expression is written in the declaration syntax (:func:`symbackprop.lang.text.format_expression`)
and read back by the safe parser only (:func:`symbackprop.lang.parser.parse_expression`),
with a table of the symbols it may name and their assumptions: nothing in a record can
execute.  :func:`to_record` refuses (``None``) a derivation whose record would not read
back equal, so that a cached derivation is always the derivation itself.
"""
from __future__ import annotations

from collections.abc import Iterable

import sympy

from .. import ops
from ..errors import SymbackpropError
from ..lang.parser import parse_expression
from ..lang.text import format_expression
from ..spec.model import Spec
from .model import Cached, Derivation, NodeDerivation

#: The format of a record; a record of another format is not read.
FORMAT = 2  # 2: a node says whether it is spread ("spread"), not to which shape


class RecordError(SymbackpropError):
    """A record that does not describe a derivation of this declaration."""


def to_record(derivation: Derivation) -> dict | None:
    """The derivation as JSON-ready data, or None when it cannot be written faithfully
    (an expression outside the syntax, two symbols of one name, a round trip that differs)."""
    try:
        record = _Writer(derivation).record()
        if from_record(record, derivation.spec) != derivation:
            return None
    except (ValueError, TypeError, SymbackpropError, RecursionError):
        return None
    return record


def from_record(record: dict, spec: Spec) -> Derivation:
    """The derivation a record describes, for ``spec`` (the declaration it was derived from).

    Raises
    ------
    RecordError
        A malformed record, or one of another format.
    """
    try:
        return _Reader(record, spec).derivation()
    except (KeyError, TypeError, ValueError, AttributeError, IndexError, SymbackpropError, RecursionError) as exc:
        raise RecordError(f"not a derivation record: {type(exc).__name__}: {exc}") from None


# -- writing ------------------------------------------------------------------------------------
class _Writer:
    def __init__(self, derivation: Derivation):
        self.d = derivation
        self.symbols: dict[str, sympy.Symbol] = {}

    def name(self, s: sympy.Symbol) -> str:
        if isinstance(s, sympy.Dummy) or self.symbols.setdefault(s.name, s) != s:
            raise ValueError(f"symbol {s.name!r} cannot be named uniquely")
        return s.name

    def text(self, e: sympy.Basic) -> str:
        for s in e.free_symbols:
            self.name(s)
        return format_expression(e)

    def cached(self, c: Cached) -> dict:
        expr = sympy.Piecewise((1, c.expr), (0, True)) if c.mask else c.expr  # a condition as where(c, 1, 0)
        return {"symbol": self.name(c.symbol), "expr": self.text(expr), "mask": c.mask}

    def texts(self, table: dict) -> dict:
        return {self.name(k) if isinstance(k, sympy.Symbol) else k: self.text(v) for k, v in table.items()}

    def node(self, n: NodeDerivation) -> dict:
        return {"symbol": self.name(n.symbol), "expr": self.text(n.expr), "args": [self.name(a) for a in n.args],
                "raw": self.texts(n.raw), "local": self.texts(n.local),
                "helpers": [self.cached(h) for h in n.helpers.values()],
                "pullback": None if n.pullback is None else self.texts(n.pullback),
                "upstream": None if n.upstream is None else self.name(n.upstream),
                "spread": self._spread(n)}

    def _spread(self, n: NodeDerivation) -> bool:
        """Whether a scalar gradient of ``n`` is spread to its shape, which is the node's
        declared shape (a window count is a floor division, which expressions do not write)."""
        if n.spread_to and tuple(n.spread_to) != tuple(self.d.spec.shapes[n.symbol]):
            raise ValueError(f"{n.symbol} is spread to {n.spread_to}, not to its shape")
        return bool(n.spread_to)

    def record(self) -> dict:
        d = self.d
        body = {
            "nodes": [self.node(n) for n in d.nodes],
            "cache": [self.cached(c) for c in d.cache],
            "recompute": [self.cached(c) for c in d.recompute],
            "steps": [[self.name(t), self.text(e)] for t, e in d.steps],
            "local": self.texts(d.local), "backward": self.texts(d.backward), "raw_local": self.texts(d.raw_local),
            "notes": list(d.notes), "dout": self.name(d.dout), "dims_used": [self.name(s) for s in d.dims_used],
        }
        symbols = [{"name": s.name, "array": isinstance(s, ops.ArrayVar),
                    "assumptions": {k: v for k, v in s.assumptions0.items() if isinstance(v, bool)}}
                   for s in sorted(self.symbols.values(), key=lambda s: s.name)]
        return {"format": FORMAT, "symbols": symbols, **body}


# -- reading ------------------------------------------------------------------------------------
class _Reader:
    def __init__(self, record: dict, spec: Spec):
        if record.get("format") != FORMAT:
            raise RecordError(f"record format {record.get('format')!r}, expected {FORMAT}")
        self.r, self.spec = record, spec
        self.symbols = {entry["name"]: self.symbol(entry) for entry in record["symbols"]}
        self.masks = {str(c["symbol"]) for c in self.all_cached() if c["mask"] is True}

    @staticmethod
    def symbol(entry: dict) -> sympy.Symbol:
        assumptions = {str(k): bool(v) for k, v in dict(entry["assumptions"]).items()}
        kind = ops.ArrayVar if entry["array"] is True else sympy.Symbol
        return kind(str(entry["name"]), **assumptions)

    def named(self, name: str) -> sympy.Symbol:
        return self.symbols[str(name)]

    def expr(self, text: str) -> sympy.Expr:
        return parse_expression(str(text), symbols=self.symbols, allowed_names=set(self.symbols), arrays=True,
                                masks=self.masks)

    def all_cached(self) -> list[dict]:
        r = self.r
        return [*r["cache"], *r["recompute"], *(h for n in r["nodes"] for h in n["helpers"])]

    def table(self, texts: dict, keys_are_symbols: bool = True) -> dict:
        return {(self.named(k) if keys_are_symbols else str(k)): self.expr(v) for k, v in texts.items()}

    def cached(self, entry: dict) -> Cached:
        expr = self.expr(entry["expr"])
        mask = entry["mask"] is True
        return Cached(self.named(entry["symbol"]), expr.args[0].cond if mask else expr, mask)

    def node(self, entry: dict) -> NodeDerivation:
        helpers = [self.cached(h) for h in entry["helpers"]]
        pullback = entry["pullback"]
        node = NodeDerivation(
            self.named(entry["symbol"]), self.expr(entry["expr"]), tuple(self.named(a) for a in entry["args"]),
            self.table(entry["raw"]), self.table(entry["local"]), {h.symbol: h for h in helpers},
            None if pullback is None else self.table(pullback),
            None if entry["upstream"] is None else self.named(entry["upstream"]))
        node.spread_to = tuple(self.spec.shapes[node.symbol]) if entry.get("spread") else ()
        return node

    def derivation(self) -> Derivation:
        r = self.r
        return Derivation(
            self.spec, [self.node(n) for n in r["nodes"]], self.cachelist(r["cache"]), self.cachelist(r["recompute"]),
            [(self.named(t), self.expr(e)) for t, e in r["steps"]],
            self.table(r["local"], False), self.table(r["backward"], False), self.table(r["raw_local"], False),
            [str(n) for n in r["notes"]], self.named(r["dout"]), [self.named(s) for s in r["dims_used"]])

    def cachelist(self, entries: Iterable[dict]) -> list[Cached]:
        return [self.cached(c) for c in entries]
