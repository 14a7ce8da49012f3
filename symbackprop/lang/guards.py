"""Guards on the numbers SymPy would build from a declaration.

SymPy evaluates numeric sub-expressions eagerly: ``9**9**9`` would build a number of
hundreds of millions of digits, ``sqrt(large)`` factors its argument.  The parser and
the function table build powers, products and exponentials through the guarded
constructors here, which refuse (:class:`Refusal`) before any costly work:

* numeric exponents beyond :data:`MAX_EXPONENT`;
* numbers of more than :data:`MAX_NUMBER_DIGITS` digits;
* fractional powers of large numbers (SymPy factors those), bounded per power and,
  within one parse (:func:`budget`), in all.
"""
from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

import sympy

MAX_INT_DIGITS = 100       # integer literal digits
MAX_EXPONENT = 1000        # |numeric exponent| allowed in a ** b
MAX_NUMBER_DIGITS = 4000   # any number built (CPython prints at most 4300 digits by default)
_MAX_BITS = int(MAX_NUMBER_DIGITS * math.log2(10))
_ROOT_BITS = 1_200         # one fractional power of a number (SymPy factors it)
_ROOT_BUDGET = 12_000      # all fractional powers of numbers in one parse
_root_spent: ContextVar[list[int] | None] = ContextVar("_root_spent", default=None)


class Refusal(Exception):
    """A guard refused a computation; the parser adds the column."""


@contextmanager
def budget() -> Iterator[None]:
    """One parse: fractional powers of numbers share one budget."""
    token = _root_spent.set([0])
    try:
        yield
    finally:
        _root_spent.reset(token)


def _bits(r: sympy.Rational) -> int:
    return abs(int(r.p)).bit_length() + int(r.q).bit_length()


def _num_bits(expr: sympy.Basic) -> int:
    """Largest rational in ``expr`` up to two levels down (what SymPy may multiply out)."""
    nodes = [expr, *expr.args, *(g for a in expr.args for g in a.args)]
    return max((_bits(n) for n in nodes if isinstance(n, sympy.Rational)), default=0)


def _root_bits(expr: sympy.Basic) -> int:
    """Size of the numbers under fractional powers among the factors of ``expr``."""
    return sum(_bits(f.base) for f in sympy.Mul.make_args(expr)
               if f.is_Pow and f.base.is_Rational and not f.exp.is_Integer)


def _charge_roots(bits: int) -> None:
    spent = _root_spent.get()
    if bits > _ROOT_BITS or (spent is not None and spent[0] + bits > _ROOT_BUDGET):
        raise Refusal("fractional power of a number too large")
    if spent is not None:
        spent[0] += bits


def _coeff_bits(expr: sympy.Basic) -> int:
    """Size of the numeric factors of ``expr`` (what a fractional power would root)."""
    return sum(_bits(f) for f in sympy.Mul.make_args(expr) if f.is_Rational)


def _check_power(base: sympy.Basic, e: sympy.Rational) -> None:
    """Refuse ``base**e`` if SymPy would build a huge number or factor a large one."""
    if abs(e) > MAX_EXPONENT:
        raise Refusal(f"exponent too large (|exponent| > {MAX_EXPONENT})")
    n = abs(int(e.p))
    if _num_bits(base) * n > _MAX_BITS:
        raise Refusal(f"number too large (more than {MAX_NUMBER_DIGITS} digits)")
    rooted = _root_bits(base) + (0 if e.is_Integer else _coeff_bits(base))
    if rooted:
        _charge_roots(rooted * n)


def _check_exp(arg: sympy.Expr) -> None:
    """``exp(c*log(n))`` evaluates to ``n**c``: bound it like a power."""
    for term in sympy.Add.make_args(arg):
        coeff, rest = term.as_coeff_Mul()
        for f in sympy.Mul.make_args(rest):
            if isinstance(f, sympy.log) and f.args[0].is_number and coeff.is_Rational:
                _check_power(f.args[0], coeff)


def power(base: sympy.Expr, e: sympy.Expr) -> sympy.Expr:
    """``base**e`` after checking that SymPy will not compute something huge."""
    if e.is_Rational:
        _check_power(base, e)
    if base is sympy.E or isinstance(base, sympy.exp):
        _check_exp(e if base is sympy.E else base.args[0] * e)
    return sympy.Pow(base, e)


def product(factors: list[sympy.Expr]) -> sympy.Expr:
    if sum(_num_bits(f) for f in factors) > _MAX_BITS:
        raise Refusal(f"number too large (more than {MAX_NUMBER_DIGITS} digits)")
    roots = [b for b in map(_root_bits, factors) if b]
    if len(roots) > 1:  # SymPy merges sqrt(a)*sqrt(b) into sqrt(a*b)
        _charge_roots(sum(roots))
    return sympy.Mul(*factors)


def exp(u: sympy.Expr) -> sympy.Expr:
    _check_exp(u)
    return sympy.exp(u)

