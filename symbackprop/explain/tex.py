r"""LaTeX that compiles: the rows of an explanation, names, escaping, and typesetting.

The chain-rule steps of elementwise layers (:mod:`.latex`) and the matrix calculus of
array layers (:mod:`.arrays_latex`) are both :class:`StepsText`: titled sections of
:class:`Row` equalities, written as one ``align*`` block or as notebook blocks.  Text
from a declaration (names, titles) reaches LaTeX only through :func:`tex_text` or
:func:`tex_name`.
"""
from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import sympy

from ..errors import SymbackpropError
from ..lang.numbers import as_sympy

#: Seconds a TeX run may take.
TEX_TIMEOUT = 60
_GREEK = {"alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota", "kappa", "lambda",
          "mu", "nu", "xi", "pi", "rho", "sigma", "tau", "upsilon", "phi", "chi", "psi", "omega"}
_TEX_SPECIALS = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                 "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


class TeXMissing(SymbackpropError):
    """No TeX engine (``latex``/``pdflatex``) or ``dvipng`` on the PATH."""


class TeXFailed(SymbackpropError):
    """The TeX engine rejected a document (the message holds its first error line)."""


@dataclass(frozen=True)
class Form:
    """One side of an equality: a sum of products, printed factor by factor.

    ``numeric`` forms hold worked numbers (``1.1 · 2``) and are printed as a person writes
    them; they hold only at the declaration's ``[values]`` with ``dout = 1``.
    """

    terms: tuple[tuple[sympy.Expr, ...], ...]
    numeric: bool = False

    @classmethod
    def of(cls, expr: sympy.Expr, numeric: bool = False) -> Form:
        return cls(((as_sympy(expr),),), numeric)

    @property
    def value(self) -> sympy.Expr:
        """The form as one SymPy expression."""
        return sympy.Add(*[sympy.Mul(*t) for t in self.terms])


@dataclass(frozen=True)
class Row:
    """``lhs = forms[0] = forms[1] = ...``; ``kind`` is forward, define, local, backward,
    chain, total or order."""

    kind: str
    lhs: sympy.Expr
    forms: tuple[Form, ...]


@dataclass
class Section:
    title: str
    rows: list[Row] = field(default_factory=list)


class StepsText:
    """What the chain-rule steps and the array steps share: titled sections of rows, written
    as LaTeX by a row writer of their own (see :func:`sections_latex`)."""

    sections: list[Section]

    @property
    def rows(self) -> list[Row]:
        return [r for s in self.sections for r in s.rows]

    def row_writer(self) -> Callable[[Row], str]:
        """A function writing one row as ``lhs &= ...``."""
        raise NotImplementedError  # pragma: no cover

    def latex(self, inline: bool = False) -> str:
        """An ``align*`` block, or titled ``$$\\begin{aligned}`` blocks with ``inline``."""
        return sections_latex(self.sections, self.row_writer(), inline)

    def _repr_latex_(self) -> str:
        return self.latex(inline=True)

    def __str__(self) -> str:
        return self.latex()

    def __repr__(self) -> str:
        parts = sum(1 for s in self.sections if s.rows)
        return f"<{type(self).__name__} of {self.spec.name}: {len(self.rows)} rows in {parts} parts>"


def sections_latex(sections: list[Section], row: Callable[[Row], str], inline: bool = False) -> str:
    """Sections of rows as one ``align*`` block, or as titled ``$$\\begin{aligned}`` blocks.

    Parameters
    ----------
    sections : list of Section
        Titled groups of rows; empty sections are left out.
    row : callable
        Writes one row as ``lhs &= ...`` (without the line break).
    inline : bool
        Titled ``$$\\begin{aligned}...\\end{aligned}$$`` blocks for a notebook or a Markdown
        cell instead of one ``align*`` block with ``\\intertext`` titles.

    Returns
    -------
    str
        The LaTeX, ending in a newline.
    """
    shown = [s for s in sections if s.rows]
    if inline:
        return "\n\n".join(aligned(s.title, [row(r) for r in s.rows]) for s in shown) + "\n"
    body = []
    for s in shown:
        body.append(rf"\intertext{{{s.title}}}")
        body += [row(r) + r" \\" for r in s.rows]
    body[-1] = body[-1].removesuffix(r" \\")
    return "\\begin{align*}\n" + "\n".join(body) + "\n\\end{align*}\n"


def aligned(title: str, rows: list[str]) -> str:
    """``title`` over one ``$$\\begin{aligned}...\\end{aligned}$$`` block of ``rows``."""
    return f"{title}\n$$\\begin{{aligned}}\n" + " \\\\\n".join(rows) + "\n\\end{aligned}$$"


def tex_name(symbol: sympy.Symbol) -> str:
    """``x``, ``u_{1}``, ``\\alpha``, ``\\mathit{apple\\_num}``."""
    name = symbol.name
    match = re.fullmatch(r"([A-Za-z]|[a-z]+)(\d*)", name)
    if match and (len(match.group(1)) == 1 or match.group(1) in _GREEK):
        stem = match.group(1) if len(match.group(1)) == 1 else "\\" + match.group(1)
        return stem + (f"_{{{match.group(2)}}}" if match.group(2) else "")
    return r"\mathit{" + name.replace("_", r"\_") + "}"


def tex_text(text: str) -> str:
    """Plain text safe inside LaTeX: its special characters escaped."""
    return "".join(_TEX_SPECIALS.get(ch, ch) for ch in text)


def document(*blocks: str) -> str:
    """A LaTeX document around one or more blocks (``align*`` or inline), for ``pdflatex``."""
    head = ("\\documentclass[fleqn]{article}\n\\usepackage[utf8]{inputenc}\n\\usepackage{amsmath}\n"
            "\\usepackage[paperwidth=24cm,paperheight=200cm,margin=1cm]{geometry}\n"
            "\\setlength{\\mathindent}{2em}\n"
            "\\allowdisplaybreaks\n\\pagestyle{empty}\n\\begin{document}\n")
    return head + "\n\\bigskip\n".join(blocks) + "\n\\end{document}\n"


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise TeXMissing(f"'{name}' not found: install a TeX engine, e.g. apt-get install "
                         "texlive-latex-base texlive-latex-recommended dvipng (Debian/Ubuntu)")
    return path


def run_tex(source: str, engine: str = "pdflatex", folder: Path | None = None) -> Path:
    """Compile a document; return the PDF (``pdflatex``) or DVI (``latex``) it made.

    Raises
    ------
    TeXMissing, TeXFailed
    """
    folder = Path(folder or tempfile.mkdtemp(prefix="symbackprop-tex-"))
    (folder / "steps.tex").write_text(source, encoding="utf-8")
    command = [_tool(engine), "-interaction=nonstopmode", "-halt-on-error", "-no-shell-escape", "steps.tex"]
    try:
        result = subprocess.run(command, cwd=folder, capture_output=True, timeout=TEX_TIMEOUT, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise TeXFailed(f"{engine} ran past {TEX_TIMEOUT} s") from None
    out = folder / ("steps.pdf" if engine == "pdflatex" else "steps.dvi")
    if result.returncode != 0 or not out.exists():
        log = result.stdout.decode("utf-8", "replace")
        first = next((line for line in log.splitlines() if line.startswith("!")), "see the TeX log")
        raise TeXFailed(f"{engine} failed: {first}")
    return out


def render(block: str, fmt: str, dpi: int = 160) -> bytes:
    """The block typeset as ``pdf`` or ``png`` (``latex`` + ``dvipng``, cropped tight)."""
    with tempfile.TemporaryDirectory(prefix="symbackprop-tex-") as folder:
        if fmt == "pdf":
            return run_tex(document(block), "pdflatex", Path(folder)).read_bytes()
        if fmt != "png":
            raise SymbackpropError(f"cannot render LaTeX as {fmt!r} (tex, pdf or png)")
        dvi = run_tex(document(block), "latex", Path(folder))
        png = Path(folder) / "steps.png"
        command = [_tool("dvipng"), "-q", "-T", "tight", "-D", str(dpi), "-bg", "White", "-o", str(png), str(dvi)]
        result = subprocess.run(command, capture_output=True, timeout=TEX_TIMEOUT, stdin=subprocess.DEVNULL)
        if result.returncode != 0 or not png.exists():
            raise TeXFailed(f"dvipng failed: {result.stderr.decode('utf-8', 'replace').strip()[:200]}")
        return png.read_bytes()
