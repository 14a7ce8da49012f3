r"""Explaining a derivation: the chain-rule steps in LaTeX, the computational graph in DOT.

>>> from symbackprop import catalog
>>> from symbackprop.explain import chain_rule_steps, graph
>>> steps = chain_rule_steps(catalog.load("sigmoid"))      # displays as math in Jupyter
>>> print(steps.latex())                                    # an align* block     # doctest: +SKIP
>>> graph(catalog.load("apple_orange")).save("fig.svg")    # the seed's figure 5-9  # doctest: +SKIP

Array layers (declared shapes) are explained too: ``graph`` labels their edges with
shapes and their backward arrows with the derivation's statements (``dW1``), and
``chain_rule_steps`` writes the backward pass in matrix notation
(``\frac{\partial L}{\partial W} = x^{T} \frac{\partial L}{\partial y}``).

Modules: :mod:`.primitives` splits a declaration into one-operation nodes,
:mod:`.latex` writes the steps, :mod:`.graph` draws the graph, :mod:`.order` finds
higher derivatives in cached values, :mod:`.numbers` spells numbers as people do;
for array layers :mod:`.array_nodes` splits into array operations with their backward
arrows, :mod:`.arrays_graph` draws them and :mod:`.arrays_latex` writes the matrix calculus.
"""
from __future__ import annotations

from pathlib import Path

from ..errors import OutputExistsError, SymbackpropError
from ..files import write_atomic
from .array_nodes import ArrayGraph, split_arrays
from .arrays_latex import ArraySteps, array_steps
from .graph import Graph, GraphvizFailed, GraphvizMissing, graph
from .latex import (
    ChainRuleSteps,
    TeXFailed,
    TeXMissing,
    chain_rule_steps,
    derivation_latex,
    latex,
    render,
)
from .numbers import format_number
from .order import HigherDerivative, higher_order
from .primitives import PrimitiveGraph, split

__all__ = [
    "ArrayGraph", "ArraySteps", "ChainRuleSteps", "Graph", "GraphvizFailed", "GraphvizMissing",
    "HigherDerivative", "PrimitiveGraph", "TeXFailed", "TeXMissing", "array_steps", "chain_rule_steps",
    "derivation_latex", "format_number", "graph", "higher_order", "latex", "render", "save_latex", "split",
    "split_arrays",
]

#: What ``latex -o FILE`` writes, by the file's suffix.
LATEX_FORMATS = ("tex", "pdf", "png")


def save_latex(text: str, path: str | Path, *, force: bool = False) -> Path:
    """Write LaTeX text (``.tex``), or typeset it (``.pdf`` with ``pdflatex``, ``.png`` with
    ``latex`` and ``dvipng``); atomically, never over an existing file unless ``force``."""
    suffix = Path(path).suffix.lower().lstrip(".")
    if suffix not in LATEX_FORMATS:
        raise SymbackpropError(f"{path}: unknown format (use .tex, .pdf or .png)")
    if Path(path).exists() and not force:
        raise OutputExistsError(f"{path}: exists; pass --force to overwrite")  # before any drawing
    data = text if suffix == "tex" else render(text, suffix)
    return write_atomic(path, data, force=force)
