r"""The cost model: which form of a derivative is cheaper to compute and to keep.

Forms are ranked by memory first (bytes cached per element: a float is 8, a boolean
mask 1), then by weighted arithmetic: a multiplication or addition costs 1, a division
4, a square root 5, a function its row's cost in the function table (``exp``, ``log``,
``tanh`` about 10), any other power 20, after common-subexpression elimination.
"""
from __future__ import annotations

import numpy as np
import sympy

from ..lang.functions import DIVISION_COST, GENERIC_COST, SQRT_COST, cost_of


def arithmetic_cost(expr: sympy.Basic) -> int:
    """Weighted operation count after common-subexpression elimination."""
    replacements, reduced = sympy.cse(expr, order="none")
    return sum(tree_cost(e) for _, e in replacements) + sum(tree_cost(e) for e in reduced)


def tree_cost(e: sympy.Basic) -> int:
    """Weighted operation count of the tree as written (no sharing)."""
    if e.is_Atom or not e.args:
        return 0
    if isinstance(e, sympy.Add):
        return len(e.args) - 1 + sum(tree_cost(a) for a in e.args)
    if isinstance(e, sympy.Mul):
        num, den = e.as_numer_denom() if not e.has(sympy.Piecewise) else (e, sympy.S.One)
        if den != 1:
            return DIVISION_COST + tree_cost(num) + tree_cost(den)
        coeff, factors = e.as_coeff_mul()
        return (len(factors) - 1) + (coeff != 1) + sum(tree_cost(f) for f in factors)
    if isinstance(e, sympy.Pow):
        base, ex = e.args
        inner = tree_cost(base)
        if ex == sympy.S.Half:
            return inner + SQRT_COST
        if ex == -sympy.S.Half:
            return inner + SQRT_COST + DIVISION_COST
        if ex.is_Integer:
            n = abs(int(ex))
            return inner + max(1, 2 * int(np.log2(n))) - (n == 1) + (DIVISION_COST if ex < 0 else 0)
        return inner + tree_cost(ex) + GENERIC_COST
    if isinstance(e, sympy.Piecewise):
        return 2 + sum(tree_cost(v) + tree_cost(c) for v, c in e.args)
    if isinstance(e, sympy.core.relational.Relational):
        return 1 + sum(tree_cost(a) for a in e.args)
    return cost_of(e.func) + sum(tree_cost(a) for a in e.args)
