"""Numbers as a person writes them: ``110``, ``3.3``, ``0.731059``; never ``110.00000000000001``.

Worked values come from the declarations as exact rationals (``1.1`` is ``11/10``), so
the forward and backward numbers of the seed's examples are computed exactly with
SymPy and printed exactly.  Only a number whose decimal expansion does not end
(``1/3``, ``exp(-1)``) is rounded, to a few significant digits.
"""
from __future__ import annotations

import numbers

import sympy

#: Significant digits kept for a number that is not a terminating decimal.
DIGITS = 6
#: A terminating decimal longer than this many significant digits is rounded too.
MAX_EXACT_DIGITS = 15


def as_sympy(value: sympy.Basic | complex) -> sympy.Basic:
    """A SymPy object for a SymPy object or a Python (or NumPy) number, without parsing.

    Parameters
    ----------
    value : sympy.Basic or number
        A SymPy object (returned as is), a bool, an integer, a fraction, a float or a
        complex number.

    Returns
    -------
    sympy.Basic
        ``value`` itself, ``true``/``false``, an ``Integer``, a ``Rational``, a ``Float``
        or ``a + b*I``, the objects SymPy itself converts these numbers to.

    Raises
    ------
    TypeError
        For anything else: text is parsed only by :mod:`symbackprop.lang.parser`.
    """
    if isinstance(value, sympy.Basic):
        return value
    if isinstance(value, bool):
        return sympy.true if value else sympy.false
    if isinstance(value, numbers.Integral):
        return sympy.Integer(int(value))
    if isinstance(value, numbers.Rational):
        return sympy.Rational(value.numerator, value.denominator)
    if isinstance(value, numbers.Real):
        return sympy.Float(value)
    if isinstance(value, numbers.Complex):
        return as_sympy(value.real) + as_sympy(value.imag) * sympy.I
    raise TypeError(f"not a number or a SymPy object: {value!r}")


def _terminates(q: int) -> bool:
    for p in (2, 5):
        while q % p == 0:
            q //= p
    return q == 1


def _exact_decimal(r: sympy.Rational) -> str | None:
    """The decimal spelling of a rational whose expansion terminates, else None."""
    if r.q == 1:
        return str(r.p)
    if not _terminates(int(r.q)):
        return None
    places = 0
    while 10**places % int(r.q):
        places += 1
    scaled = abs(int(r.p)) * 10**places // int(r.q)
    whole, frac = divmod(scaled, 10**places)
    text = f"{whole}.{str(frac).zfill(places)}".rstrip("0").rstrip(".")
    if len(text.replace(".", "").lstrip("0")) > MAX_EXACT_DIGITS:
        return None
    return ("-" if r < 0 else "") + text


def _rounded(value: sympy.Expr, digits: int) -> str:
    number = sympy.N(value, digits + 5)
    if number.is_real is False or not number.is_number:
        raise ValueError(f"{value} is not a real number")
    text = f"{float(number):.{digits}g}"
    if "e" in text:
        mantissa, exponent = text.split("e")
        return f"{mantissa}e{int(exponent)}"
    return text


def format_number(value: sympy.Basic | float, digits: int = DIGITS) -> str:
    """Spell a real number the way a person writes it.

    Parameters
    ----------
    value : number or sympy.Expr
        An exact SymPy number (``Rational(11, 10)``, ``exp(-1)``) or a Python number.
    digits : int
        Significant digits for numbers that are not terminating decimals.

    Returns
    -------
    str
        ``"110"``, ``"3.3"``, ``"-0.25"``, ``"0.367879"``; floats are read through
        their shortest ``repr`` first, so ``110.00000000000001`` becomes ``"110"`` only
        when rounding to ``digits`` allows it.

    Examples
    --------
    >>> format_number(sympy.Rational(11, 5))
    '2.2'
    >>> format_number(110.00000000000001)
    '110'
    """
    expr = as_sympy(value)
    if isinstance(expr, sympy.Float):
        expr = sympy.Rational(repr(float(expr)))
        exact = _exact_decimal(expr)
        rounded = _rounded(expr, digits)
        return exact if exact is not None and len(exact) <= len(rounded) + 1 else rounded
    if isinstance(expr, sympy.Rational):
        exact = _exact_decimal(expr)
        return exact if exact is not None else _rounded(expr, digits)
    return _rounded(expr, digits)
