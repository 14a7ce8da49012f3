"""Computational graphs of array layers, in the seed's style (figures 5-25 and 5-29).

The nodes are the operations of the declared steps (:mod:`symbackprop.derivation.operations_arrays`): ``@``, ``+``,
``relu``, ``softmax`` with its axis, ``sum``, ``×(-1/N)``; the leaves are the inputs,
the parameters, and the constants (dashed, never differentiated).  A forward arrow
carries the shape of its value (``N×D``; a declared value is named, ``a1: N×H``); a
red backward arrow carries the name of the derivation's statement it computes
(``dW1``), or with ``symbolic=True`` its formula (``x.T @ da1``).  A fused step
(Softmax-with-Loss) is boxed with a dashed frame, its gradient going straight to the
fused operand.  ``collapse=True`` draws the whole layer as one box.
"""
from __future__ import annotations

import sympy

from ..derivation import Derivation, operations_of
from ..derivation.operations import Operations
from ..lang.text import format_expression
from ..spec.model import Spec
from .dot import Dot, Graph, node_ids, quote


def shape_text(shape: tuple) -> str:
    """``N×D``, ``H``, ``N×1``; ``scalar`` for ``()``."""
    return "×".join(str(d) if d.is_Atom else f"({format_expression(d)})" for d in shape) if shape else "scalar"


class _ArrayDrawing:
    """DOT for one array declaration's :class:`~symbackprop.derivation.operations.Operations`."""

    def __init__(self, g: Operations, symbolic: bool):
        self.g, self.symbolic = g, symbolic
        self.dot = Dot(g.spec.name)
        self.ids = node_ids(g.leaves, g.nodes)
        self.declared = {s for s, _ in g.spec.graph}
        self.statements = {t.name: e.xreplace(g.derivation.kept) for t, e in g.derivation.steps}

    def value_label(self, v: sympy.Symbol) -> str:
        shape = shape_text(self.g.shapes[v])
        return f"{v.name}: {shape}" if v in self.declared and v != self.g.spec.output else shape

    def formula(self, expr: sympy.Expr) -> str:
        return self.g.derivation.readable(expr, standalone=False)

    def leaves(self) -> None:
        constants = set(self.g.spec.constants)
        for s in self.g.leaves:
            extra = {"style": "dashed"} if s in constants else {}
            self.dot.node(self.ids[s], s.name, shape="ellipse", **extra)

    def forward(self) -> None:
        self.leaves()
        for n in self.g.nodes:
            self.dot.node(self.ids[n.symbol], n.op, **({"shape": "ellipse"} if len(n.op) > 3 else {}))
        self.dot.node("out", self.g.spec.output.name, shape="ellipse")
        for n in self.g.nodes:
            for a in n.args:
                self.dot.forward(self.ids[a], self.ids[n.symbol], self.value_label(a))
        self.dot.forward(self.ids[self.g.spec.output], "out", shape_text(self.g.shapes[self.g.spec.output]))
        self.rank_hints()
        self.clusters()

    def rank_hints(self) -> None:
        """A leaf stands beside the operand it is combined with (``W2`` in the column of
        ``relu``, as ``W`` beside ``X`` in the seed's figure 5-25), not all at the left.
        Not inside a fused box: Graphviz draws a same-rank group out of its cluster."""
        placed = set()
        boxed = {s for k in range(len(self.g.fused)) for s in self.boxed(k)}
        for n in self.g.nodes:
            computed = [a for a in n.args if self.g.producer(a) is not None and a not in boxed]
            for a in n.args:
                if a in self.ids and self.g.producer(a) is None and computed and a not in placed:
                    placed.add(a)
                    self.dot.lines.append(f"    {{rank=same; {quote(self.ids[a])}; "
                                          f"{quote(self.ids[computed[0]])};}}")

    def boxed(self, k: int) -> list[sympy.Symbol]:
        """The nodes of the ``k``-th fused step, and the leaves only they read (``t``)."""
        f = self.g.fused[k]
        members = [n.symbol for n in self.g.nodes if n.step == f.step or n.step in f.dropped]
        readers = {a: [n.symbol for n in self.g.nodes if a in n.args] for a in self.g.leaves}
        return [a for a in self.g.leaves if readers[a] and set(readers[a]) <= set(members)] + members

    def clusters(self) -> None:
        for k, f in enumerate(self.g.fused):
            self.dot.lines += [f"    subgraph {quote(f'cluster_fused{k + 1}')} {{",
                               f"        label={quote('backward fused: ' + f.text)};",
                               '        style="dashed"; color="gray50"; fontname="Helvetica"; fontsize="10";',
                               *[f"        {quote(self.ids[s])};" for s in self.boxed(k)], "    }"]

    def backward(self) -> None:
        output = self.g.spec.output
        self.dot.backward("out", self.ids[output], "dout")
        for arrow in self.g.arrows:
            if arrow.name is None:
                label = self.formula(arrow.expr)
            else:
                label = self.formula(self.statements[arrow.name]) if self.symbolic else arrow.name
            self.dot.backward(self.ids[arrow.source], self.ids[arrow.target], label)


def _collapsed(g: Operations, symbolic: bool, backward: bool) -> Dot:
    spec, d = g.spec, g.derivation
    dot = Dot(spec.name)
    labels = {s.name: d.readable(d.backward[s.name].xreplace(d.kept), standalone=False) if symbolic else f"d{s.name}"
              for s in spec.differentiated}
    dot.collapsed(spec.name, {s.name: shape_text(g.shapes[s]) for s in g.leaves},
                  (spec.output.name, shape_text(g.shapes[spec.output])), labels if backward else None,
                  dashed=frozenset(s.name for s in spec.constants))
    return dot


def array_graph(obj: Spec | Derivation, *, symbolic: bool = False, backward: bool = True,
                collapse: bool | str = False) -> Graph:
    """The computational graph of an array declaration.

    Parameters
    ----------
    obj : Spec or Derivation
        An array declaration (declared shapes), or its derivation.
    symbolic : bool
        Label the backward arrows with formulas (``dout @ W.T``) instead of the
        statements' names (``dx``).
    backward : bool
        Draw the backward arrows (red); False draws the forward pass only.
    collapse : bool or str
        Draw the layer as one box; its backward arrows carry each input's whole gradient.

    Returns
    -------
    Graph
    """
    g = operations_of(obj)
    if collapse:
        return Graph(_collapsed(g, symbolic, backward).text(), g.spec.name)
    drawing = _ArrayDrawing(g, symbolic)
    drawing.forward()
    if backward:
        drawing.backward()
    return Graph(drawing.dot.text(), g.spec.name)
