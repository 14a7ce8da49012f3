"""The stable rewrites applied before an expression is computed in floating point.

====================  =====================  ==========================================
 written               computed as            why
====================  =====================  ==========================================
 ``log(1 + exp(u))``   ``softplus(u)``         ``exp(1000)`` is inf (numpy: ``logaddexp``)
 ``log(1 + u)``        ``log1p(u)``            ``1 + 1e-20`` is 1
 ``exp(u) - 1``        ``expm1(u)``            cancellation near 0
 ``exp(u)/(1 + exp(u))`` ``1/(1 + exp(-u))``   inf/inf for large ``u`` (the logistic function)
====================  =====================  ==========================================

Both the code printers (:mod:`symbackprop.codegen`) and the float64 evaluator
(:mod:`symbackprop.numerics.evaluate`) apply :func:`stable`, so that a form judged
accurate in float64 is computed the same way by the generated code.
"""
from __future__ import annotations

import sympy

from .functions import expm1, log1p, softplus


def stable(expr: sympy.Basic) -> sympy.Basic:
    """Apply the rewrites of the module docstring, innermost first."""
    expr = expr.replace(
        lambda e: isinstance(e, sympy.log) and _one_plus(e.args[0]) is not None
        and isinstance(_one_plus(e.args[0]), sympy.exp),
        lambda e: softplus(_one_plus(e.args[0]).args[0]),
    )
    expr = expr.replace(
        lambda e: isinstance(e, sympy.log) and _one_plus(e.args[0]) is not None,
        lambda e: log1p(_one_plus(e.args[0])),
    )
    expr = expr.replace(lambda e: isinstance(e, sympy.Mul), _logistic_in_product)
    return expr.replace(lambda e: isinstance(e, sympy.Add), _expm1_in_sum)


def _logistic_in_product(e: sympy.Mul) -> sympy.Expr:
    """``exp(u) * (1 + exp(u))**-1 * rest`` -> ``(1 + exp(-u))**-1 * rest``."""
    factors = list(e.args)
    for f in factors:
        if isinstance(f, sympy.Pow) and f.exp == -1:
            u = _one_plus(f.base)
            if isinstance(u, sympy.exp) and u in factors:
                rest = [g for g in factors if g is not f and g is not u]
                return sympy.Mul(*rest, 1 / (1 + sympy.exp(-u.args[0])))
    return e


def _one_plus(e: sympy.Basic) -> sympy.Expr | None:
    """``u`` when ``e`` is ``1 + u`` with ``u`` not constant, else None."""
    if isinstance(e, sympy.Add) and sympy.S.One in e.args:
        rest = e - 1
        if rest.free_symbols:
            return rest
    return None


def _expm1_in_sum(e: sympy.Add) -> sympy.Expr:
    coeff, terms = e.as_coeff_add()
    if coeff not in (1, -1):
        return e
    for term in terms:
        if isinstance(term, sympy.exp) and coeff == -1:
            return expm1(term.args[0]) + (e - term + 1)
        if isinstance(-term, sympy.exp) and coeff == 1:
            return -expm1((-term).args[0]) + (e + (-term) - 1)
    return e
