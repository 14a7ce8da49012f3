"""Deciding whether two expressions are equal: proved, numerically equal, or not.

Equality of SymPy expressions has three outcomes: equal, not equal, unknown.  A
symbolic attempt (bounded in time) may prove it; otherwise we compare the two
expressions at many points with mpmath at high precision (40 digits), so that
floating-point cancellation never makes a true equality look false.
"""
from __future__ import annotations

import functools
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import mpmath
import sympy

from .timebound import attempt

#: Working precision (decimal digits) of numerical comparisons.
DPS = 40
#: Relative tolerance of a numerical comparison at ``DPS`` digits.
RTOL = mpmath.mpf(10) ** -25

Point = Mapping[sympy.Symbol, object]


@dataclass(frozen=True)
class Mismatch:
    """A point where two expressions differ, with both values."""

    point: dict[str, float]
    left: complex | float
    right: complex | float


def mp_function(expr: sympy.Expr, symbols: Sequence[sympy.Symbol]) -> Callable:
    """Compile ``expr`` of our own SymPy objects for mpmath evaluation (memoized).

    ``lambdify`` generates code from the SymPy tree (never from user text).
    """
    return _mp_function(expr, tuple(symbols))


@functools.lru_cache(maxsize=4096)
def _mp_function(expr: sympy.Expr, symbols: tuple[sympy.Symbol, ...]) -> Callable:
    return sympy.lambdify(list(symbols), expr, modules="mpmath")


def evaluate(fn: Callable, values: Sequence[object]) -> mpmath.mpc | mpmath.mpf | None:
    """Evaluate a compiled function; ``None`` where it is undefined there."""
    with mpmath.workdps(DPS), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            value = fn(*values)
        except (ZeroDivisionError, ValueError, TypeError, OverflowError, ArithmeticError):
            return None
        try:
            value = mpmath.mpmathify(value)
        except (TypeError, ValueError):
            return None
        if not mpmath.isfinite(value):
            return None
        return value


def close(a, b, rtol=RTOL) -> bool:
    """``|a - b| <= rtol * max(|a|, |b|)`` plus a tiny absolute floor."""
    with mpmath.workdps(DPS):
        return abs(a - b) <= rtol * max(abs(a), abs(b)) + mpmath.mpf(10) ** (-(DPS - 5))


def first_mismatch(
    left: sympy.Expr, right: sympy.Expr, points: Sequence[Point]
) -> tuple[Mismatch | None, int]:
    """Compare at every point; return the first mismatch and how many points were usable.

    A point where either side is undefined (division by zero, log of a negative
    number) is skipped rather than counted against the equality.
    """
    symbols = sorted(set().union(*(p.keys() for p in points)) if points else set(), key=lambda s: s.name)
    f, g = mp_function(left, symbols), mp_function(right, symbols)
    used = 0
    for point in points:
        values = [point[s] for s in symbols]
        a, b = evaluate(f, values), evaluate(g, values)
        if a is None or b is None:
            continue
        used += 1
        if not close(a, b):
            return Mismatch({s.name: _plain(point[s]) for s in symbols}, _plain(a), _plain(b)), used
    return None, used


def proved_zero(expr: sympy.Expr, seconds: float = 1.0) -> bool:
    """True when a bounded symbolic attempt shows ``expr == 0``; False means unknown."""

    def decide() -> bool:
        if expr == 0:
            return True
        for step in (sympy.cancel, lambda e: sympy.simplify(e.rewrite(sympy.exp))):
            if step(expr) == 0:
                return True
        return False

    return attempt(decide, False, seconds)[0]


def _plain(value) -> float | complex | bool:
    if isinstance(value, bool):
        return value
    value = mpmath.mpmathify(value)
    if isinstance(value, mpmath.mpc):
        return complex(value) if value.imag else float(value.real)
    return float(value)
