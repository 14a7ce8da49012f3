r"""Reverse accumulation over a graph's nodes: the one place a backward pass is assembled.

With :math:`\bar y = \text{dout}`, every node :math:`v = f(a_1, \dots, a_k)` taken from
the output back adds its contribution to each argument's gradient,
:math:`\bar a_i \mathrel{+}= \bar v\,\partial f/\partial a_i` (an elementwise node), or the
node's vector-Jacobian product of :math:`\bar v` (an array node).  The result is the
backward pass as statements ``d<name> = ...`` node by node, and each gradient flattened
into one expression.  Explanations read these statements; they never accumulate again.
"""
from __future__ import annotations

import sympy

from ..spec.model import DOUT, Spec
from ..timebound import attempt
from .cost import arithmetic_cost
from .model import NodeDerivation

SECONDS_PER_TIDY = 1.0


def grad_symbol(s: sympy.Symbol) -> sympy.Symbol:
    """``dx`` for ``x``: an array symbol for an array."""
    return type(s)(f"d{s.name}", real=True)


def reverse_accumulate(spec: Spec, nodes: list[NodeDerivation], dout: sympy.Symbol = DOUT,
                        tidy=None):
    """Statements ``d<name> = ...`` from the output back to the inputs (and parameters),
    and the flattened backward expression of each."""
    tidy = tidy or (lambda e: e)
    contributions: dict[sympy.Symbol, list[sympy.Expr]] = {}
    steps: list[tuple[sympy.Symbol, sympy.Expr]] = []
    flat: dict[sympy.Symbol, sympy.Expr] = {}
    for index, node in enumerate(reversed(nodes)):
        if index == 0:
            grad = dout
        elif node.symbol in contributions:
            grad = grad_symbol(node.symbol)
            steps.append((grad, tidy(sympy.Add(*contributions[node.symbol]))))
            flat[grad] = steps[-1][1].xreplace(flat)
        else:
            continue  # a dead node: nothing downstream uses it
        for a in node.args:
            contributions.setdefault(a, []).append(node.contribution(a, grad))
    backward = {}
    for s in spec.differentiated:
        expr = tidy(sympy.Add(*contributions.get(s, [sympy.S.Zero])))
        g = grad_symbol(s)
        steps.append((g, expr))
        backward[s.name] = simplest(tidy(expr.xreplace(flat)))
    return steps, backward


def simplest(expr: sympy.Expr) -> sympy.Expr:
    """Flattened expressions stay as accumulated; only pull common factors when cheaper."""
    factored, ok = attempt(lambda: sympy.factor_terms(expr), expr, SECONDS_PER_TIDY)
    return factored if ok and arithmetic_cost(factored) < arithmetic_cost(expr) else expr
