"""Computational graphs in the seed's style, as DOT, rendered by Graphviz.

The seed draws its figures 5-4 and 5-9 with Graphviz: left to right, round
operation nodes labelled ``×``, ``+``, ``exp``, ``/``, the forward value above each
black arrow, and the backward gradient on a red bold arrow pointing back.
:func:`graph` draws any elementwise declaration that way, from its primitive nodes
(:mod:`.primitives`), and array declarations with shapes on their edges
(:mod:`.arrays_graph`):

- with worked ``[values]``, arrows carry numbers written as a person writes them
  (``110``, ``3.3``), computed exactly from the declaration;
- without values, or with ``symbolic=True``, forward arrows carry the names and
  expressions of the values, and backward arrows the gradient each one carries back
  (``-∂L/∂y·y²·exp(-x)``): the upstream gradient times the node's local derivative,
  as in the seed's figures 5-10 to 5-12;
- ``collapse=True`` draws the layer as one node whose backward arrow carries the
  chosen backward form (figure 5-12, ``∂L/∂y·y·(1 - y)``), ``collapse="product"`` the
  raw product (figure 5-11);
- ``backward=False`` draws the forward pass only (figures 5-1 to 5-3).

:class:`Graph` renders with Graphviz's ``dot`` (``render``, ``save``) and shows as a
picture in Jupyter (``_repr_svg_``, ``_repr_mimebundle_``).
"""
from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import sympy

from ..derive import Derivation
from ..errors import OutputExistsError, SymbackpropError
from ..files import write_atomic
from ..spec import DOUT, Spec
from .primitives import PrimitiveGraph, split

#: Seconds ``dot`` may take.
DOT_TIMEOUT = 30
#: Formats ``dot`` renders for us.
FORMATS = ("svg", "png", "pdf")
INSTALL_HINT = ("Graphviz's 'dot' is not installed: apt-get install graphviz (Debian/Ubuntu), "
                "brew install graphviz (macOS), or see graphviz.org/download")
_SUPERSCRIPTS = str.maketrans("0123456789", "⁰¹²³⁴⁵⁶⁷⁸⁹")


class GraphvizMissing(SymbackpropError):
    """Graphviz's ``dot`` is not on the PATH."""


class GraphvizFailed(SymbackpropError):
    """``dot`` rejected the graph or ran past its time limit."""


@dataclass
class Graph:
    """A computational graph: DOT text that Graphviz renders.

    Attributes
    ----------
    dot : str
        The graph in the DOT language (``str(graph)`` gives it too).
    name : str
        The declaration's name.
    """

    dot: str
    name: str

    def __str__(self) -> str:
        return self.dot

    def render(self, fmt: str = "svg") -> bytes:
        """The picture as ``svg``, ``png`` or ``pdf`` bytes, drawn by ``dot``.

        Raises
        ------
        GraphvizMissing
            Without ``dot`` on the PATH (the message says how to install it).
        GraphvizFailed
            When ``dot`` fails or runs past ``DOT_TIMEOUT`` seconds.
        """
        if fmt not in FORMATS:
            raise SymbackpropError(f"cannot draw a graph as {fmt!r} (dot, {', '.join(FORMATS)})")
        exe = shutil.which("dot")
        if exe is None:
            raise GraphvizMissing(INSTALL_HINT)
        try:
            result = subprocess.run([exe, f"-T{fmt}"], input=self.dot.encode("utf-8"),
                                    capture_output=True, timeout=DOT_TIMEOUT)
        except subprocess.TimeoutExpired:
            raise GraphvizFailed(f"dot ran past {DOT_TIMEOUT} s") from None
        if result.returncode != 0:
            raise GraphvizFailed(f"dot failed: {result.stderr.decode('utf-8', 'replace').strip()[:300]}")
        return result.stdout

    def save(self, path: str | Path, *, force: bool = False) -> Path:
        """Write DOT (``.dot``/``.gv``) or a picture (``.svg``, ``.png``, ``.pdf``), atomically;
        never over an existing file unless ``force``."""
        suffix = Path(path).suffix.lower().lstrip(".")
        if suffix in ("dot", "gv"):
            return write_atomic(path, self.dot, force=force)
        if suffix not in FORMATS:
            raise SymbackpropError(f"{path}: unknown picture format (use .dot, .svg, .png or .pdf)")
        if Path(path).exists() and not force:
            raise OutputExistsError(f"{path}: exists; pass --force to overwrite")  # before any drawing
        return write_atomic(path, self.render(suffix), force=force)

    def svg(self) -> str:
        """The picture as SVG text."""
        return self.render("svg").decode("utf-8")

    def _repr_svg_(self) -> str | None:
        try:
            return self.svg()
        except GraphvizMissing:
            return None

    def _repr_mimebundle_(self, include=None, exclude=None) -> dict:
        bundle = {"text/plain": self.dot}
        picture = self._repr_svg_()
        if picture is not None:
            bundle["image/svg+xml"] = picture
        return bundle


# -- labels -------------------------------------------------------------------------------------
def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def expression_text(expr: sympy.Expr, output: sympy.Symbol) -> str:
    """An expression as a short label: ``∂L/∂y`` for ``dout``, written first; ``·`` for
    products, superscripts for small powers (``-∂L/∂y·y²·exp(-x)``)."""
    from ..parsing import format_expression

    dl = f"∂L/∂{output.name}"
    if isinstance(expr, sympy.Add) and expr.has(DOUT):
        parts = [expression_text(t, output) for t in expr.as_ordered_terms()]
        return parts[0] + "".join(f" - {p[1:]}" if p.startswith("-") else f" + {p}" for p in parts[1:])
    if isinstance(expr, sympy.Mul) and DOUT in expr.args:
        rest = sympy.Mul(*[a for a in expr.args if a != DOUT])
        coeff, body = rest.as_coeff_Mul()
        sign, coeff = ("-" if coeff < 0 else ""), abs(coeff)
        lead = "" if coeff == 1 else _pretty(format_expression(coeff)) + "·"
        text = "" if body == 1 else "·" + _pretty(format_expression(body), parenthesize=isinstance(body, sympy.Add))
        return f"{sign}{lead}{dl}{text}"
    return _pretty(format_expression(expr)).replace("dout", dl)


def _pretty(text: str, parenthesize: bool = False) -> str:
    text = re.sub(r"\*\*(\d)(?![\d.])", lambda m: m.group(1).translate(_SUPERSCRIPTS), text)
    text = text.replace("*", "·")
    return f"({text})" if parenthesize else text


class _Labels:
    """What each arrow says: numbers with values, else names and expressions."""

    def __init__(self, g: PrimitiveGraph, symbolic: bool):
        self.g = g
        self.numbers = g.values is not None and not symbolic

    def forward(self, v: sympy.Symbol) -> str:
        if self.numbers:
            return self.g.number(v)
        shown = self.g.readable.get(v)
        text = v.name if shown is None else expression_text(shown, self.g.output)
        return v.name if len(text) > 28 else text

    def backward(self, expr: sympy.Expr) -> str:
        """The gradient an arrow carries back (an expression in ``dout`` and values)."""
        if self.numbers:
            from .numbers import format_number

            return format_number(expr.xreplace(self.g.definitions).xreplace({**self.g.values, DOUT: 1}))
        return expression_text(expr, self.g.output)


# -- DOT -------------------------------------------------------------------------------------------
class _Dot:
    def __init__(self, name: str):
        self.lines = [f"digraph {_quote(name)} {{", "    rankdir=LR;",
                      '    node [shape=circle, fontname="Helvetica"];',
                      '    edge [fontname="Helvetica"];']

    def node(self, ident: str, label: str, **attrs: str) -> None:
        extra = "".join(f", {k}={_quote(v)}" for k, v in attrs.items())
        self.lines.append(f"    {_quote(ident)} [label={_quote(label)}{extra}];")

    def forward(self, a: str, b: str, label: str) -> None:
        self.lines.append(f"    {_quote(a)} -> {_quote(b)} [label={_quote(label)}];")

    def backward(self, a: str, b: str, label: str) -> None:
        """A red bold arrow from ``a`` back to ``b``, written ``b -> a`` with ``dir=back`` so that
        Graphviz lays it out beside its forward arrow (the picture points from ``a`` to ``b``)."""
        self.lines.append(f'    {_quote(b)} -> {_quote(a)} [label={_quote(label)}, dir="back", color="red", '
                          f'fontcolor="red", style="bold"];')

    def text(self) -> str:
        return "\n".join([*self.lines, "}"]) + "\n"


def _ids(g: PrimitiveGraph) -> dict[sympy.Symbol, str]:
    ids = {s: f"in_{s.name}" for s in g.inputs}
    ids.update({n.symbol: f"op{i + 1}" for i, n in enumerate(g.nodes)})
    return ids


def _draw_nodes(g: PrimitiveGraph, dot: _Dot, ids: dict, backward: bool, labels: _Labels) -> None:
    for s in g.inputs:
        dot.node(ids[s], s.name, shape="ellipse")
    for n in g.nodes:
        dot.node(ids[n.symbol], n.op)
    dot.node("out", g.output.name, shape="ellipse")
    for n in g.nodes:
        for a in n.args:
            dot.forward(ids[a], ids[n.symbol], labels.forward(a))
    dot.forward(ids[g.output], "out", labels.forward(g.output))
    if not backward:
        return
    dot.backward("out", ids[g.output], labels.backward(DOUT))
    for n in reversed(g.nodes):
        grad = g.gradients.get(n.symbol)
        if grad is None:
            continue
        for a in n.args:
            dot.backward(ids[n.symbol], ids[a], labels.backward((grad * n.local[a]).xreplace(g.readable)))


def _draw_collapsed(g: PrimitiveGraph, d: Derivation, dot: _Dot, backward: bool, labels: _Labels,
                    product: bool) -> None:
    for s in g.inputs:
        dot.node(f"in_{s.name}", s.name, shape="ellipse")
    dot.node("layer", g.spec.name.lower(), shape="box", style="rounded")
    dot.node("out", g.output.name, shape="ellipse")
    for s in g.inputs:
        dot.forward(f"in_{s.name}", "layer", labels.forward(s))
    dot.forward("layer", "out", labels.forward(g.output))
    if not backward:
        return
    dot.backward("out", "layer", labels.backward(DOUT))
    masks = {c.symbol: c.expr for c in (*d.cache, *d.recompute) if c.mask}
    for s in g.inputs:
        grad = g.gradients[s] if product else d.backward[s.name].xreplace(masks).xreplace(
            {c.symbol: c.expr for c in d.recompute if not c.mask} if labels.numbers else {})
        dot.backward("layer", f"in_{s.name}", labels.backward(grad.xreplace(d.definitions) if labels.numbers else grad))


def graph(obj: Spec | Derivation, *, symbolic: bool = False, backward: bool = True,
          collapse: bool | str = False) -> Graph:
    """The computational graph of a declaration.

    Parameters
    ----------
    obj : Spec or Derivation
        The declaration (or its derivation).
    symbolic : bool
        Label arrows with expressions even when the declaration has worked values.
    backward : bool
        Draw the backward arrows (red); False draws the forward pass only.
    collapse : bool or "product"
        Draw the layer as one node: its backward arrow carries the chosen backward
        form, or with ``"product"`` the raw chain-rule product.

    Returns
    -------
    Graph
        ``graph(load("apple_orange")).dot`` reproduces the seed's figure 5-9.  An array
        declaration is drawn by :func:`.arrays_graph.array_graph` (edges carry shapes).
    """
    spec = obj.spec if isinstance(obj, Derivation) else obj
    if spec.is_array:
        from .arrays_graph import array_graph

        return array_graph(obj, symbolic=symbolic, backward=backward, collapse=collapse)
    g = split(spec)
    labels = _Labels(g, symbolic)
    dot = _Dot(spec.name)
    if collapse:
        derivation = obj if isinstance(obj, Derivation) else spec.derive()
        _draw_collapsed(g, derivation, dot, backward, labels, product=collapse == "product")
    else:
        _draw_nodes(g, dot, _ids(g), backward, labels)
    return Graph(dot.text(), spec.name)
