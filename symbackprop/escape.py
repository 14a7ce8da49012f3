"""User text made safe where it is shown: in a text report, in generated source.

Declarations, paths, submission names and the messages of a submission's exceptions are
written by people the reader may not trust.  Shown verbatim, a newline forges a report
line (``a.py:Sigmoid  ok``), an ANSI escape rewrites the terminal, and ``\"\"\"`` in a
path ends a generated docstring and turns the rest into code.  Each character that could
do so is written as its Python escape, which reads back as the same text.
"""
from __future__ import annotations

import html


def _escaped(ch: str) -> str:
    return ch.encode("unicode_escape").decode("ascii")


def shown(text: object) -> str:
    r"""``text`` on one line, for a text report: control characters, newlines and other
    unprintable characters as their escapes (``\n``, ``\x1b``), everything else as is."""
    text = str(text)
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else _escaped(ch) for ch in text)


def in_docstring(text: object) -> str:
    r"""``text`` as it may stand inside a ``\"\"\"`` docstring of generated source: backslashes
    and double quotes escaped as well, so that it can neither end the string nor escape
    out of it, and the docstring still reads as ``text``."""
    return "".join("\\" + ch if ch in '\\"' else ch if ch.isprintable() else _escaped(ch) for ch in str(text))


def markdown_text(text: object) -> str:
    """``text`` for a Markdown page: :func:`shown`, with HTML and Markdown markup characters
    as entities, so that a name can neither open a tag nor a table cell."""
    return html.escape(shown(text)).replace("|", "&#124;").replace("`", "&#96;")
