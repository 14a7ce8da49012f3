"""``symbackprop check --markdown report.md``: the checked declarations as a Markdown page.

For every declaration: the forward pass, the derived backward pass (node by node for
an array layer), the cache, the error figures of the numerical check (per parameter for a
network), and the computational graph as a picture beside them, array layers included.
Pictures are SVG files in a folder beside the report, named after it as a notebook's
export names its own (``report_files/sigmoid.svg``), drawn by Graphviz; without Graphviz the DOT text is written instead (``.dot``) and
the report says how to install it.  Nothing is written over an existing file unless
``force`` is given; :func:`planned_paths` lists every file before the checks run, so
that a refusal comes first.
"""
from __future__ import annotations

import re
import shutil
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import quote

from .derivation import derive
from .errors import OutputExistsError, SymbackpropError
from .escape import markdown_text
from .explain import graph
from .files import write_atomic
from .lang.text import format_expression
from .reports import CheckReport
from .spec.model import Spec


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "layer"


def picture_suffix() -> str:
    """``svg`` with Graphviz installed, else ``dot``."""
    return "svg" if shutil.which("dot") else "dot"


def pictures_folder(path: str | Path) -> Path:
    """Where the pictures of the report ``path`` go: ``report.md`` -> ``report_files/``."""
    path = Path(path)
    return path.with_name(f"{path.stem}_files")


def planned_paths(path: str | Path, specs: Sequence[Spec]) -> list[Path]:
    """The report, then one picture per declaration, in order (names made unique)."""
    path = Path(path)
    folder = pictures_folder(path)
    seen: set[str] = set()
    out = [path]
    for spec in specs:
        slug, k = _slug(spec.name), 2
        base = slug
        while slug in seen:
            slug, k = f"{base}-{k}", k + 1
        seen.add(slug)
        out.append(folder / f"{slug}.{picture_suffix()}")
    return out


def refuse_existing(paths: Sequence[Path], force: bool) -> None:
    """Raise before any work if a file would be overwritten without ``force``."""
    if not force:
        for p in paths:
            if p.exists():
                raise OutputExistsError(f"{p}: exists; pass --force to overwrite")
    if not paths[0].parent.is_dir():
        raise SymbackpropError(f"{paths[0]}: folder {paths[0].parent} does not exist")
    folder = pictures_folder(paths[0])
    if folder.exists() and not folder.is_dir():
        raise OutputExistsError(f"{folder}: exists and is not a folder (the report's pictures go there)")


def _picture(spec: Spec, path: Path, force: bool) -> str:
    """Draw the graph to ``path``; return the Markdown that shows it (or says why not)."""
    try:
        drawing = graph(spec)
    except SymbackpropError as exc:
        return f"*no graph: {exc}*"
    link = quote(f"{path.parent.name}/{path.name}")  # a report named "my report.md" still links
    if path.suffix == ".dot":
        write_atomic(path, drawing.dot, force=force)
        return f"[graph as DOT]({link}) *(install Graphviz to draw it: apt-get install graphviz)*"
    write_atomic(path, drawing.render("svg"), force=force)
    return f"![computational graph of {markdown_text(spec.name)}]({link})"


def _backward(d) -> str:
    """The backward pass: one statement per input, or node by node for an array layer
    (``dz1 = da2 @ W2.T``), as ``symbackprop derive`` prints it."""
    if d.spec.is_array:
        statements = [(target.name, expr) for target, expr in d.steps]
    else:
        statements = [(f"d{k}", v) for k, v in d.backward.items()]
    return "<br>".join(f"`{name} = {d.readable(expr, standalone=False)}`" for name, expr in statements)


def _facts(spec: Spec, report: CheckReport) -> list[tuple[str, str]]:
    rows = [("forward", "<br>".join(f"`{n} = {format_expression(e)}`" for n, e in spec.graph))]
    try:
        d = derive(spec)
        rows.append(("backward", _backward(d)))
        rows.append(("cache", ", ".join(f"`{c}`" for c in d.cache_names) or "nothing"))
        rows += [("where", f"`{c.symbol.name} = {d.readable(c.expr, standalone=False)}` (recomputed)")
             for c in d.recompute if not c.mask]
    except SymbackpropError as exc:
        rows.append(("derivation", f"failed: {exc}"))
    rows.append(("max rel. error", f"{report.backward_max_rel_error:.1e} ({report.method})"))
    if report.tails_max_error is not None:
        rows.append(("error in the tails", f"{report.tails_max_error:.1e}"))
    if report.parameters:
        rows.append(("gradient check", "mean |backprop - numerical|: " + ", ".join(
            f"{name} {f['central']:.1e}" for name, f in report.parameters.items())))
    rows.append(("checked", "yes" if report.ok else "**NO**: " + "; ".join(report.problems)))
    return rows


def _section(spec: Spec, report: CheckReport, picture: str) -> str:
    table = "\n".join(f"| {k} | {v.replace('|', '&#124;')} |" for k, v in _facts(spec, report))
    origin = f" ({markdown_text(spec.source)})" if spec.source else ""
    return (f"## {markdown_text(spec.name)}{origin}\n\n<table><tr><td valign=\"top\">\n\n| | |\n| --- | --- |\n{table}\n\n"
            f"</td><td>\n\n{picture}\n\n</td></tr></table>\n")


def write_markdown(path: str | Path, specs: Sequence[Spec], reports: Sequence[CheckReport], *,
                   force: bool = False) -> list[Path]:
    """Write the report and its pictures; return every path written.

    Parameters
    ----------
    path : str or Path
        The Markdown file; pictures go in :func:`pictures_folder` beside it.
    specs, reports : sequences
        The declarations and their check reports, in the same order.
    force : bool
        Overwrite existing files.
    """
    paths = planned_paths(path, specs)
    refuse_existing(paths, force)
    pictures_folder(path).mkdir(exist_ok=True)
    ok = sum(r.ok for r in reports)
    parts = [(f"# symbackprop check\n\n{ok} of {len(reports)} declarations checked OK. Errors: the largest "
              "relative error of the backward pass against numerical differentiation (complex step or "
              "central differences), and against mpmath in the tails (|x| up to 1e3).\n")]
    for spec, report, picture_path in zip(specs, reports, paths[1:]):
        parts.append(_section(spec, report, _picture(spec, picture_path, force)))
    write_atomic(paths[0], "\n".join(parts), force=force)
    return paths
