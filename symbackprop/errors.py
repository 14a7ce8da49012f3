"""The project's error types.

Every error a user can cause is a :class:`SymbackpropError`; the command line turns
each into a one-line message on stderr and exit code 2.  The message names *where*
the problem is (file and field, or column) so it can be fixed without a traceback.
"""
from __future__ import annotations


class SymbackpropError(Exception):
    """Base class of every error symbackprop raises on bad input."""


class ParseError(SymbackpropError, ValueError):
    """An expression string is malformed or uses something outside the whitelist.

    Parameters
    ----------
    message : str
        What is wrong, in one line.
    text : str, optional
        The offending expression.
    column : int, optional
        1-based column of the offending token in ``text``.
    """

    def __init__(self, message: str, *, text: str | None = None, column: int | None = None):
        self.text = text
        self.column = column
        where = f" at column {column}" if column is not None else ""
        super().__init__(f"{message}{where}")


class SpecError(SymbackpropError, ValueError):
    """A declaration (TOML file or Python call) is malformed or inconsistent."""


class DerivationTimeout(SymbackpropError, TimeoutError):
    """A symbolic step ran past its time bound (raised only where no fallback exists)."""


class GenerationError(SymbackpropError):
    """Code could not be generated (an unsafe identifier, an unprintable function)."""


class OutputExistsError(SymbackpropError, FileExistsError):
    """Refusing to overwrite an existing file without ``force``."""
