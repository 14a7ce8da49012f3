"""Deciding whether two expressions are equal: proved, numerically equal, or not.

Equality of SymPy expressions has three outcomes: equal, not equal, unknown.  A
symbolic attempt (bounded in time) may prove it; otherwise we compare the two
expressions at many points with mpmath at high precision (40 digits), so that
floating-point cancellation never makes a true equality look false.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import mpmath
import sympy

from ..timebound import attempt
from .evaluate import DPS, mp_call, mp_function

#: Relative tolerance of a numerical comparison at ``DPS`` digits.
RTOL = mpmath.mpf(10) ** -25

Point = Mapping[sympy.Symbol, object]


@dataclass(frozen=True)
class Mismatch:
    """A point where two expressions differ, with both values."""

    point: dict[str, float]
    left: float
    right: float


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
        a, b = mp_call(f, values), mp_call(g, values)
        if a is None or b is None:
            continue
        used += 1
        if not close(a, b):
            return Mismatch({s.name: float(point[s]) for s in symbols}, float(a), float(b)), used
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
