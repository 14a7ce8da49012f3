r"""Kinks: the points where a forward pass is not differentiable, and the convention there.

A kink is where ``where``/``Piecewise`` switches branch, where ``abs``, ``sign`` or
``heaviside`` change at 0, or where two arguments of ``maximum``/``minimum`` tie.  Each
is described by an expression :math:`u` that is zero exactly there
(:func:`kink_arguments`); :func:`linear_root` solves one for an input, to put points on
the kink.

At a kink the derivative is taken by the book's convention (ReLU'(0) = 0): a step
:math:`H(u)` is 1 for :math:`u > 0` and 0 otherwise (:func:`book_convention`); the
derivation prints it as a boolean mask, the checkers accept any value between the
one-sided derivatives.
"""
from __future__ import annotations

import sympy

#: Node types whose presence makes an expression non-differentiable somewhere.
NON_ANALYTIC = (sympy.Piecewise, sympy.Abs, sympy.sign, sympy.Max, sympy.Min, sympy.Heaviside)

#: The note a derivation carries when it applies the convention.
CONVENTION_NOTE = "the gradient at a kink is taken as 0 there (the book's convention: ReLU'(0) = 0)"
DIRAC_NOTE = "point masses (DiracDelta) of a step's derivative are dropped: zero almost everywhere"


def kink_arguments(expr: sympy.Basic) -> list[sympy.Expr]:
    """Expressions that are zero exactly where ``expr`` has a kink (deduplicated, each
    depending on some symbol)."""
    out: list[sympy.Expr] = []
    for sub in sympy.preorder_traversal(expr):
        if isinstance(sub, sympy.core.relational.Relational):
            out.append(sub.lhs - sub.rhs)
        elif isinstance(sub, (sympy.Abs, sympy.sign, sympy.Heaviside)):
            out.append(sub.args[0])
        elif isinstance(sub, (sympy.Max, sympy.Min)):
            out += [a - b for a, b in zip(sub.args, sub.args[1:])]
    return [u for u in dict.fromkeys(out) if u.free_symbols]


def rounding_scale(u: sympy.Expr) -> sympy.Expr:
    r"""The size of float64's rounding of ``u``, in units of machine epsilon: every sum
    taken over the magnitudes of its terms, every product over its factors',
    :math:`|a| + |b|` for :math:`a + b` (the error of a float64 sum is at most
    :math:`\varepsilon` times that).  An input whose kink argument is within a few
    epsilons of it lies on the kink as far as float64 can tell (``w*x + b`` at w = 1000,
    x = 0.001, b = -1 is exactly 2.1e-17, and 0.0 in float64)."""
    if isinstance(u, sympy.Add):
        return sympy.Add(*(rounding_scale(a) for a in u.args))
    if isinstance(u, sympy.Mul):
        return sympy.Mul(*(rounding_scale(a) for a in u.args))
    return sympy.Abs(u)


def linear_root(u: sympy.Expr, symbol: sympy.Symbol | None = None) -> tuple[sympy.Symbol, sympy.Expr] | None:
    """``(s, r)`` with ``u = 0`` exactly when ``s = r``, for ``u`` linear in ``s`` (the
    given ``symbol``, or the first by name that works)."""
    for s in ([symbol] if symbol is not None else sorted(u.free_symbols, key=lambda t: t.name)):
        try:
            poly = sympy.Poly(u, s)
        except (sympy.PolynomialError, sympy.GeneratorsError):
            continue
        if poly.degree() == 1:
            a, b = poly.all_coeffs()
            if not a.free_symbols and a != 0:
                return s, -b / a
    return None


def book_convention(expr: sympy.Expr, notes: set[str]) -> sympy.Expr:
    """Write kinks the book's way: a step ``Heaviside(u)`` is 1 for ``u > 0``, else 0;
    point masses ``DiracDelta`` are dropped.  What was applied is added to ``notes``."""

    def step(u, *h0):
        notes.add(CONVENTION_NOTE)
        return sympy.Piecewise((1, u > 0), (0, True))

    expr = expr.replace(sympy.Heaviside, step)
    if expr.has(sympy.DiracDelta):
        notes.add(DIRAC_NOTE)
        expr = expr.replace(sympy.DiracDelta, lambda *a: sympy.S.Zero)
    return expr
