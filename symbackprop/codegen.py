"""Code generation: a :class:`~symbackprop.derive.Derivation` as a numpy layer class.

The class has the shape of the book's layers (``forward`` caches the minimum,
``backward(dout)`` returns the input gradients), imports numpy only, and is printed
by :class:`~symbackprop.npprint.NumpyLayerPrinter` with common-subexpression
elimination.  The same derivation always gives the same bytes.
"""
from __future__ import annotations

import itertools
import linecache
import re

import sympy

from . import __version__
from .derive import Derivation
from .errors import GenerationError
from .npprint import NumpyLayerPrinter, compile_source
from .parsing import format_expression, is_identifier
from .spec import DOUT

INDENT = "    "
_OVERFLOWING = re.compile(r"np\.(exp|expm1|cosh|sinh)\(")


def class_name(name: str) -> str:
    """``"Apples and oranges"`` -> ``ApplesAndOranges``; a valid, non-keyword identifier."""
    words = re.findall(r"[A-Za-z0-9]+", name)
    text = "".join(w[:1].upper() + w[1:] for w in words) or "Layer"
    if text[0].isdigit():
        text = "Layer" + text
    if not is_identifier(text):
        raise GenerationError(f"cannot make a class name from {name!r}")
    return text


def _check_names(derivation: Derivation) -> None:
    names = [s.name for s in derivation.spec.inputs] + [n.name for n, _ in derivation.spec.graph]
    names += [c.symbol.name for c in (*derivation.cache, *derivation.recompute)]
    for name in names:
        if not is_identifier(name) or name in ("self", "np"):
            raise GenerationError(f"'{name}' cannot appear in generated code (not a safe identifier)")


def _statements(pairs: list[tuple[sympy.Symbol, sympy.Expr]], printer: NumpyLayerPrinter,
                reserved: set[str]) -> list[str]:
    """``name = expr`` lines in order, each with its repeated subexpressions pulled out
    first as ``e0, e1, ...`` (constants stay inline: they print as one number)."""
    fresh = (sympy.Symbol(f"e{i}", real=True) for i in itertools.count() if f"e{i}" not in reserved)
    lines = []
    for symbol, expr in pairs:
        replacements, (reduced,) = sympy.cse([expr], symbols=fresh, order="none")
        constants = {s: e for s, e in replacements if not e.free_symbols}
        for s, e in replacements:
            if s not in constants:
                lines.append(f"{printer.doprint(s)} = {printer.doprint(e.xreplace(constants))}")
        lines.append(f"{printer.doprint(symbol)} = {printer.doprint(reduced.xreplace(constants))}")
    return lines


def _guarded(lines: list[str]) -> list[str]:
    """Wrap lines whose ``exp`` may overflow to inf harmlessly (``1/(1 + inf) = 0``)."""
    if not any(_OVERFLOWING.search(line) for line in lines):
        return lines
    return ['with np.errstate(over="ignore"):  # exp overflows to inf where the limit is still exact',
            *[INDENT + line for line in lines]]


def forward_lines(derivation: Derivation) -> list[str]:
    """Body of ``forward``: the graph's nodes in order, each cached value stored on self."""
    spec = derivation.spec
    helpers = {c.symbol: c for c in derivation.cache if c.symbol not in spec.inputs
               and c.symbol not in dict(spec.graph)}
    pairs: list[tuple[sympy.Symbol, sympy.Expr]] = []
    for symbol, expr in spec.graph:
        for h in helpers.values():
            if h.expr.free_symbols <= {s for s, _ in pairs} | set(spec.inputs) and h.symbol not in dict(pairs):
                pairs.append((h.symbol, h.expr))
        known = {h.expr: h.symbol for h in helpers.values() if h.symbol in dict(pairs) and not h.mask}
        pairs.append((symbol, expr.subs(known) if known else expr))
    reserved = {s.name for s, _ in pairs} | set(spec.input_names)
    lines = _guarded(_statements(pairs, NumpyLayerPrinter(), reserved))
    lines += [f"self.{c.symbol.name} = {c.symbol.name}" for c in derivation.cache]
    lines.append(f"return {spec.output.name}")
    return lines


def backward_lines(derivation: Derivation) -> list[str]:
    """Body of ``backward``: recomputed helpers, then ``d<name> = ...`` node by node."""
    spec = derivation.spec
    printer = NumpyLayerPrinter({c.symbol: f"self.{c.symbol.name}" for c in derivation.cache})
    pairs = [(c.symbol, c.expr) for c in derivation.recompute] + list(derivation.steps)
    reserved = {s.name for s, _ in pairs} | {c.symbol.name for c in derivation.cache} | {DOUT.name}
    lines = _guarded(_statements(pairs, printer, reserved))
    grads = ", ".join(f"d{name}" for name in spec.input_names)
    lines.append(f"return {grads}")
    return lines


def _docstring(derivation: Derivation) -> list[str]:
    spec = derivation.spec
    graph = [f"{n.name} = {format_expression(e)}" for n, e in spec.graph]
    backward = [f"d{k} = {derivation.readable(v, standalone=False)}" for k, v in derivation.backward.items()]
    backward += [f"{c.symbol.name} = {derivation.readable(c.expr)}" for c in derivation.recompute if not c.mask]
    cache = ", ".join(derivation.cache_names) or "nothing"
    origin = f" from {spec.source}" if spec.source else ""
    lines = ['"""' + "; ".join(graph), "", "backward: " + "; ".join(backward), f"cache: {cache}"]
    lines += [f"note: {n}" for n in derivation.notes]
    lines += ["", f"Generated by symbackprop {__version__}{origin}.", '"""']
    return lines


def generate(derivation: Derivation, name: str | None = None) -> str:
    """The source of a module defining one layer class.

    Parameters
    ----------
    derivation : Derivation
    name : str, optional
        Class name; default from the declaration's name.
    """
    _check_names(derivation)
    spec = derivation.spec
    cls = class_name(name or spec.name)
    out = ['"""Generated by symbackprop: do not edit; regenerate from the declaration."""',
           "import numpy as np", "", "", f"class {cls}:"]
    out += [INDENT + line if line else "" for line in _docstring(derivation)]
    out += ["", f"{INDENT}def __init__(self):"]
    out += [f"{INDENT * 2}self.{c} = None" for c in derivation.cache_names] or [f"{INDENT * 2}pass"]
    out += ["", f"{INDENT}def forward(self, {', '.join(spec.input_names)}):"]
    out += [INDENT * 2 + line for line in forward_lines(derivation)]
    out += ["", f"{INDENT}def backward(self, dout=1.0):"]
    out += [INDENT * 2 + line for line in backward_lines(derivation)]
    return "\n".join(out) + "\n"


def compile_class(derivation: Derivation, name: str | None = None) -> type:
    """Generate and compile the layer class in memory (no file written)."""
    source = generate(derivation, name)
    cls_name = class_name(name or derivation.spec.name)
    filename = f"<symbackprop:{cls_name}>"
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)  # readable tracebacks
    cls = compile_source(source, filename)[cls_name]
    cls.__symbackprop_source__ = source
    return cls
