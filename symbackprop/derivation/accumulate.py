r"""Reverse accumulation over a graph's nodes: the one place a backward pass is assembled.

With :math:`\bar y = \text{dout}`, every node :math:`v = f(a_1, \dots, a_k)` taken from
the output back adds its contribution to each argument's gradient,
:math:`\bar a_i \mathrel{+}= \bar v\,\partial f/\partial a_i` (an elementwise node), or the
node's vector-Jacobian product of :math:`\bar v` (an array node).

:func:`backpropagate` is that loop, for any graph: the derivation's declared nodes
(:func:`reverse_accumulate`, which writes the backward pass as statements ``d<name> = ...``
and each gradient flattened into one expression) and the one-operation graphs that
explanations draw (:mod:`.operations`).  Explanations read what it computed; they never
accumulate again.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import sympy

from .. import ops
from ..spec.model import DOUT, Spec
from ..timebound import attempt
from .cost import arithmetic_cost

if TYPE_CHECKING:
    from .model import NodeDerivation

SECONDS_PER_TIDY = 1.0


class Node(Protocol):
    symbol: sympy.Symbol
    args: tuple[sympy.Symbol, ...]


@dataclass(frozen=True)
class Arrow:
    """What the node computing ``source`` sends back to its argument ``target``: a term of
    ``target``'s gradient.  ``name`` is the statement it carries whole (``dW1``), else None."""

    source: sympy.Symbol
    target: sympy.Symbol
    expr: sympy.Expr
    name: str | None = None


def backpropagate(nodes: Sequence[Node], seed: dict[sympy.Symbol, list[sympy.Expr]],
                  gradient: Callable[[Node, list[sympy.Expr]], sympy.Expr],
                  send: Callable[[Node, sympy.Expr], Iterable[tuple[sympy.Symbol, sympy.Expr]]],
                  ) -> tuple[dict[sympy.Symbol, list[sympy.Expr]], list[Arrow]]:
    """Reverse accumulation over ``nodes`` (in forward order).

    Parameters
    ----------
    nodes : sequence
        Nodes with a ``symbol`` (the value computed); the last computes the output.
    seed : dict
        Initial contributions (the output's: ``[dout]``).
    gradient : callable
        ``gradient(node, contributions)``: the node's gradient from the terms sent to it
        (their sum, or a symbol naming it).
    send : callable
        ``send(node, grad)``: pairs ``(argument, term)`` the node sends back.

    Returns
    -------
    contributions : dict
        Every value's terms; a value that nothing sends to (a dead node) has none.
    arrows : list of Arrow
        Every term sent, from the output back.
    """
    contributions = {s: list(terms) for s, terms in seed.items()}
    arrows: list[Arrow] = []
    for node in reversed(nodes):
        if node.symbol not in contributions:
            continue  # a dead node: nothing downstream uses it
        grad = gradient(node, contributions[node.symbol])
        for target, term in send(node, grad):
            contributions.setdefault(target, []).append(term)
            arrows.append(Arrow(node.symbol, target, term))
    return contributions, arrows


def live_values(differentiated: Iterable[sympy.Symbol],
                nodes: Iterable[tuple[sympy.Symbol, set]]) -> set[sympy.Symbol]:
    """The differentiated symbols and every value that depends on them; ``nodes`` are
    ``(symbol, symbols it reads)`` in forward order."""
    live = set(differentiated)
    for symbol, reads in nodes:
        if reads & live:
            live.add(symbol)
    return live


def grad_symbol(s: sympy.Symbol) -> sympy.Symbol:
    """``dx`` for ``x``: an array symbol for an array."""
    return type(s)(f"d{s.name}", real=True)


def reverse_accumulate(spec: Spec, nodes: list[NodeDerivation], dout: sympy.Symbol = DOUT,
                       tidy=None):
    """Statements ``d<name> = ...`` from the output back to the inputs (and parameters),
    and the flattened backward expression of each."""
    tidy = tidy or (lambda e: e)
    steps: list[tuple[sympy.Symbol, sympy.Expr]] = []
    flat: dict[sympy.Symbol, sympy.Expr] = {}

    def gradient(node, terms: list[sympy.Expr]) -> sympy.Expr:
        if node is nodes[-1]:
            return dout
        grad = grad_symbol(node.symbol)
        value = tidy(sympy.Add(*terms))
        if node.spread_to and not value.atoms(ops.ArrayVar, ops.ArrayOp):
            # a sum's scalar gradient standing for a whole array, about to be summed over the
            # axes the node broadcast: spread it (sum(x + b) gives db = N*dout, not dout)
            value = ops.BroadcastTo(value, sympy.Tuple(*node.spread_to))
        steps.append((grad, value))
        flat[grad] = steps[-1][1].xreplace(flat)
        return grad

    def send(node, grad: sympy.Expr):
        return [(a, node.contribution(a, grad)) for a in node.args]

    contributions, _ = backpropagate(nodes, {nodes[-1].symbol: []}, gradient, send)
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
