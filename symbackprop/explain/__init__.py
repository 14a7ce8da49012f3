r"""Explaining a derivation: the chain-rule steps in LaTeX, the computational graph in DOT.

>>> from symbackprop.spec import catalog
>>> from symbackprop.explain import chain_rule_steps, graph
>>> steps = chain_rule_steps(catalog.load("sigmoid"))      # displays as math in Jupyter
>>> print(steps.latex())                                    # an align* block     # doctest: +SKIP
>>> graph(catalog.load("apple_orange")).save("fig.svg")    # the seed's figure 5-9  # doctest: +SKIP

Array layers (declared shapes) are explained too: ``graph`` labels their edges with
shapes and their backward arrows with the derivation's statements (``dW1``), and
``chain_rule_steps`` writes the backward pass in matrix notation
(``\frac{\partial L}{\partial W} = x^{T} \frac{\partial L}{\partial y}``).

Everything explained is read from the derivation: its one-operation nodes and their
backward (:func:`~symbackprop.derivation.operations_of`,
split and accumulated once in :mod:`symbackprop.derivation.operations`), its statements,
its cache, and higher derivatives from :mod:`symbackprop.derivation.order`.

Modules: :mod:`.latex` writes the steps, :mod:`.graph` draws the graph, :mod:`.tex` and
:mod:`.dot` hold what both kinds of layer share (rows of equalities and typesetting;
DOT text and Graphviz); for array layers :mod:`.arrays_graph` draws the operations
with their backward arrows and :mod:`.arrays_latex` writes the matrix calculus.
"""
from __future__ import annotations

from pathlib import Path

from ..derivation import Derivation, derivation_of, operations_of
from ..derivation.operations import Operations
from ..derivation.order import HigherDerivative, higher_order
from ..errors import OutputExistsError, SymbackpropError
from ..files import write_atomic
from ..lang.numbers import format_number
from ..spec.model import Spec
from .arrays_graph import array_graph
from .arrays_latex import ArraySteps, array_derivation_latex, array_steps
from .dot import Graph, GraphvizFailed, GraphvizMissing
from .graph import elementwise_graph
from .latex import ChainRuleSteps, elementwise_derivation_latex, elementwise_steps
from .tex import TeXFailed, TeXMissing, render

__all__ = [
    "ArraySteps", "ChainRuleSteps", "Graph", "GraphvizFailed", "GraphvizMissing", "HigherDerivative",
    "Operations", "TeXFailed", "TeXMissing", "array_steps", "chain_rule_steps", "derivation_latex",
    "format_number", "graph", "higher_order", "latex", "operations", "render", "save_latex", "split",
    "split_arrays",
]

#: What ``latex -o FILE`` writes, by the file's suffix.
LATEX_FORMATS = ("tex", "pdf", "png")


def _spec_of(obj: Spec | Derivation) -> Spec:
    return obj.spec if isinstance(obj, Derivation) else obj


def operations(obj: Spec | Derivation) -> Operations:
    """The declaration one operation at a time, with the gradient each node sends back:
    the derivation's :func:`~symbackprop.derivation.operations_of`."""
    return operations_of(obj)


#: The names of :func:`operations` before both kinds of layer shared it.
split = split_arrays = operations


def chain_rule_steps(obj: Spec | Derivation, order: int = 1) -> ChainRuleSteps | ArraySteps:
    """The chain-rule steps of a declaration: :func:`.latex.elementwise_steps`, or for an
    array layer :func:`.arrays_latex.array_steps` (matrix notation).

    Its ``latex()`` is an ``align*`` block; in Jupyter it displays as typeset math.
    """
    if _spec_of(obj).is_array:
        return array_steps(obj, order)
    return elementwise_steps(obj, order)


def latex(obj: Spec | Derivation, inline: bool = False, order: int = 1) -> str:
    """The chain-rule steps as LaTeX: an ``align*`` block, or notebook blocks with ``inline``."""
    return chain_rule_steps(obj, order).latex(inline=inline)


def derivation_latex(obj: Spec | Derivation) -> str:
    """A derivation in brief, typeset (how a derivation shows in Jupyter)."""
    derivation = derivation_of(obj)
    if derivation.spec.is_array:
        return array_derivation_latex(derivation)
    return elementwise_derivation_latex(derivation)


def graph(obj: Spec | Derivation, *, symbolic: bool = False, backward: bool = True,
          collapse: bool | str = False) -> Graph:
    """The computational graph of a declaration (:func:`.graph.elementwise_graph`; for an
    array layer :func:`.arrays_graph.array_graph`, edges labelled with shapes)."""
    draw = array_graph if _spec_of(obj).is_array else elementwise_graph
    return draw(obj, symbolic=symbolic, backward=backward, collapse=collapse)


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
