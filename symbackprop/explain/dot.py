"""Graphs in the DOT language, and drawing them with Graphviz.

:class:`Graph` holds DOT text, renders it with Graphviz's ``dot`` (svg, png, pdf) and
shows in Jupyter; :class:`Dot` writes the text, node by node and arrow by arrow, in the
seed's colours (forward values above black arrows, backward gradients on red ones).
Every label is quoted (:func:`quote`): declaration text never leaves its string.
"""
from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from ..errors import OutputExistsError, SymbackpropError
from ..files import write_atomic

#: Seconds ``dot`` may take.
DOT_TIMEOUT = 30
#: Formats ``dot`` renders for us.
FORMATS = ("svg", "png", "pdf")
INSTALL_HINT = ("Graphviz's 'dot' is not installed: apt-get install graphviz (Debian/Ubuntu), "
                "brew install graphviz (macOS), or see graphviz.org/download")


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


def node_ids(leaves: tuple, nodes: list) -> dict:
    """DOT ids: ``in_<name>`` for a leaf, ``op<k>`` for the k-th operation."""
    ids = {s: f"in_{s.name}" for s in leaves}
    ids.update({n.symbol: f"op{i + 1}" for i, n in enumerate(nodes)})
    return ids


def quote(text: str) -> str:
    """``text`` as a DOT string (backslashes, quotes and newlines escaped)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


class Dot:
    """DOT text of one graph, written node by node and arrow by arrow."""

    def __init__(self, name: str):
        self.lines = [f"digraph {quote(name)} {{", "    rankdir=LR;",
                      '    node [shape=circle, fontname="Helvetica"];',
                      '    edge [fontname="Helvetica"];']

    def node(self, ident: str, label: str, **attrs: str) -> None:
        extra = "".join(f", {k}={quote(v)}" for k, v in attrs.items())
        self.lines.append(f"    {quote(ident)} [label={quote(label)}{extra}];")

    def forward(self, a: str, b: str, label: str) -> None:
        self.lines.append(f"    {quote(a)} -> {quote(b)} [label={quote(label)}];")

    def backward(self, a: str, b: str, label: str) -> None:
        """A red bold arrow from ``a`` back to ``b``, written ``b -> a`` with ``dir=back`` so that
        Graphviz lays it out beside its forward arrow (the picture points from ``a`` to ``b``)."""
        self.lines.append(f'    {quote(b)} -> {quote(a)} [label={quote(label)}, dir="back", color="red", '
                          f'fontcolor="red", style="bold"];')

    def collapsed(self, layer: str, leaves: dict[str, str], output: tuple[str, str],
                  backward: dict[str, str] | None, dout: str = "dout", dashed: frozenset = frozenset()) -> None:
        """The layer as one box: ``leaves`` (name to the label of its arrow) into it, ``output``
        (name, label) out of it, and with ``backward`` (leaf name to label) red arrows back
        (``dout`` on the output's); leaves in ``dashed`` are drawn dashed."""
        for name in leaves:
            self.node(f"in_{name}", name, shape="ellipse", **({"style": "dashed"} if name in dashed else {}))
        self.node("layer", layer, shape="box", style="rounded")
        self.node("out", output[0], shape="ellipse")
        for name, label in leaves.items():
            self.forward(f"in_{name}", "layer", label)
        self.forward("layer", "out", output[1])
        if backward is not None:
            self.backward("out", "layer", dout)
            for name, label in backward.items():
                self.backward("layer", f"in_{name}", label)

    def text(self) -> str:
        return "\n".join([*self.lines, "}"]) + "\n"
