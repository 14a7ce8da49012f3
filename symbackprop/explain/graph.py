"""Computational graphs in the seed's style, as DOT, rendered by Graphviz.

The seed draws its figures 5-4 and 5-9 with Graphviz: left to right, round
operation nodes labelled ``×``, ``+``, ``exp``, ``/``, the forward value above each
black arrow, and the backward gradient on a red bold arrow pointing back.
:func:`elementwise_graph` draws any elementwise declaration that way, from the derivation's
primitive nodes (:mod:`symbackprop.derivation.operations`) (array declarations, with shapes on their edges, are
:mod:`.arrays_graph`'s):

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

The :class:`~.dot.Graph` renders with Graphviz's ``dot`` (``render``, ``save``) and shows
as a picture in Jupyter.
"""
from __future__ import annotations

import re

import sympy

from ..derivation import Derivation, operations_of
from ..derivation.operations import Operations
from ..lang.numbers import format_number
from ..lang.text import format_expression
from ..spec.model import DOUT, Spec
from .dot import Dot, Graph, node_ids

_SUPERSCRIPTS = str.maketrans("0123456789", "⁰¹²³⁴⁵⁶⁷⁸⁹")

# -- labels -------------------------------------------------------------------------------------
def expression_text(expr: sympy.Expr, output: sympy.Symbol) -> str:
    """An expression as a short label: ``∂L/∂y`` for ``dout``, written first; ``·`` for
    products, superscripts for small powers (``-∂L/∂y·y²·exp(-x)``)."""
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

    def __init__(self, g: Operations, symbolic: bool):
        self.g = g
        self.numbers = g.values is not None and not symbolic

    def forward(self, v: sympy.Symbol) -> str:
        if self.numbers:
            return format_number(self.g.values[v])
        shown = self.g.readable.get(v)
        text = v.name if shown is None else expression_text(shown, self.g.output)
        return v.name if len(text) > 28 else text

    def backward(self, expr: sympy.Expr) -> str:
        """The gradient an arrow carries back (an expression in ``dout`` and values)."""
        if self.numbers:
            return format_number(self.g.worked(expr))
        return expression_text(expr, self.g.output)


# -- DOT -------------------------------------------------------------------------------------------
def _draw_nodes(g: Operations, dot: Dot, backward: bool, labels: _Labels) -> None:
    ids = node_ids(g.leaves, g.nodes)
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
    for arrow in g.arrows:
        dot.backward(ids[arrow.source], ids[arrow.target], labels.backward(arrow.expr))


def _draw_collapsed(g: Operations, dot: Dot, backward: bool, labels: _Labels, product: bool) -> None:
    d = g.derivation

    def label(s: sympy.Symbol) -> str:
        grad = g.gradients[s] if product else d.backward[s.name].xreplace(d.masks).xreplace(
            {c.symbol: c.expr for c in d.recompute if not c.mask} if labels.numbers else {})
        return labels.backward(grad.xreplace(d.definitions) if labels.numbers else grad)

    dot.collapsed(g.spec.name.lower(), {s.name: labels.forward(s) for s in g.inputs},
                  (g.output.name, labels.forward(g.output)),
                  {s.name: label(s) for s in g.inputs} if backward else None, labels.backward(DOUT))


def elementwise_graph(obj: Spec | Derivation, *, symbolic: bool = False, backward: bool = True,
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
        ``elementwise_graph(load("apple_orange")).dot`` reproduces the seed's figure 5-9.
    """
    g = operations_of(obj)
    spec = g.spec
    labels = _Labels(g, symbolic)
    dot = Dot(spec.name)
    if collapse:
        _draw_collapsed(g, dot, backward, labels, product=collapse == "product")
    else:
        _draw_nodes(g, dot, backward, labels)
    return Graph(dot.text(), spec.name)
