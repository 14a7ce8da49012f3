"""Higher-order local derivatives in the cheapest cached form (``derive --order 2``).

The first derivative is the derivation's chosen local form ``g`` in cached values
(``tanh' = 1 - y**2``).  The next one is its total derivative, through every cached
value ``s`` it uses: ``d g/dx = Σ ∂g/∂s · ds/dx``, where ``dy/dx`` is again the chosen
local form, an input's rate is 1 or 0, a boolean mask's rate is 0 (the derivative is
taken almost everywhere), and a helper's rate (``t = sigmoid(x)`` in swish) is found
the same way as any local derivative.  For tanh this gives
``-2*y*(1 - y**2)`` straight away.  Bounded rewrites of it (``factor``, ``expand``,
``cancel``) compete by the number of numpy array operations they need, and every
form is compared with SymPy's ``diff`` of the whole forward pass at random points
(mpmath, 40 digits) before it is accepted.
"""
from __future__ import annotations

from dataclasses import dataclass

import sympy

from ..errors import SpecError
from ..lang.functions import cost_of
from ..numerics.domain import sample_points, tail_points
from ..numerics.equality import first_mismatch
from ..numerics.kinks import book_convention
from ..spec.model import DOUT
from ..timebound import attempt
from .model import Derivation
from .search import derive_node

#: Largest order ``derive --order`` accepts.
MAX_ORDER = 4
SECONDS_PER_REWRITE = 1.0
#: An integer power other than a square, or a non-integer power, in array operations.
GENERIC_POWER_OPS = 20


@dataclass(frozen=True)
class HigherDerivative:
    """One derivative of order two or more, ``∂^k y / ∂x_1 ... ∂x_k``.

    Attributes
    ----------
    wrt : tuple of sympy.Symbol
        The inputs, in the order of differentiation.
    expr : sympy.Expr
        The chosen form, in cached values (masks written as their comparisons).
    previous : sympy.Expr
        The derivative of one order less, which ``expr`` differentiates.
    expansion : sympy.Expr
        ``Σ ∂previous/∂s · D(s)``, the chain rule through cached values ``s``, with the
        rate symbols of ``rates``.
    rates : dict
        Rate symbol ``D(s)`` (named ``ds/dx``) to ``(s, x, cheapest form of ds/dx)``.
    """

    wrt: tuple[sympy.Symbol, ...]
    expr: sympy.Expr
    previous: sympy.Expr
    expansion: sympy.Expr
    rates: dict[sympy.Symbol, tuple[sympy.Symbol, sympy.Symbol, sympy.Expr]]

    @property
    def key(self) -> str:
        """``"x,x"``: the inputs differentiated, in order (the ``--json`` key)."""
        return ",".join(s.name for s in self.wrt)


def numpy_operations(expr: sympy.Basic) -> int:
    """Array operations numpy needs for ``expr``: one per ``+``, ``-``, ``*``, ``/`` and
    square; a function call costs as in the derivation's model; other powers cost
    ``GENERIC_POWER_OPS`` (numpy's generic power is slow).  A product's sign is free."""
    if expr.is_Atom or not expr.args:
        return 0
    if isinstance(expr, sympy.Add):
        return len(expr.args) - 1 + sum(numpy_operations(a) for a in expr.args)
    if isinstance(expr, sympy.Mul):
        coeff, factors = expr.as_coeff_mul()
        return len(factors) - 1 + (abs(coeff) != 1) + sum(numpy_operations(f) for f in factors)
    if isinstance(expr, sympy.Pow):
        base, ex = expr.args
        cost = {2: 1, -1: 1, -2: 2, sympy.S.Half: 5}.get(ex, GENERIC_POWER_OPS)
        return cost + numpy_operations(base)
    if isinstance(expr, (sympy.Piecewise, sympy.core.relational.Relational)):
        return 2 + sum(numpy_operations(a) for a in expr.args)
    return cost_of(expr.func) + sum(numpy_operations(a) for a in expr.args)


def total_symbol(s: sympy.Symbol, wrt: tuple[sympy.Symbol, ...]) -> sympy.Symbol:
    """The notation symbol of ``s`` differentiated through the whole forward pass by ``wrt``
    (``dy/dx``, ``d^2y/dx^2``); printed by :mod:`.latex`."""
    return sympy.Symbol("|".join(("total", s.name, *(x.name for x in wrt))))


class _Engine:
    """Rates of cached values and candidate forms for one derivation."""

    def __init__(self, derivation: Derivation):
        self.d = derivation
        spec = derivation.spec
        self.inputs = set(spec.inputs)
        self.masks = derivation.masks
        self.definitions = {k: v for k, v in derivation.definitions.items() if k not in self.masks}
        points = sample_points(spec.inputs, spec.graph, domains=spec.domains)
        self.points = [{s: p[s] for s in spec.inputs} for p in points]
        self.rates: dict[tuple[sympy.Symbol, sympy.Symbol], sympy.Expr] = {}

    def unmask(self, expr: sympy.Expr) -> sympy.Expr:
        expr = expr.xreplace(self.masks)
        return expr.xreplace({k: v.xreplace(self.masks) for k, v in self.masks.items()})

    def in_inputs(self, expr: sympy.Expr) -> sympy.Expr:
        return expr.xreplace(self.definitions)

    def equal(self, left: sympy.Expr, right: sympy.Expr) -> bool:
        points = [{**p, DOUT: sympy.Float(0.7)} for p in self.points]
        mismatch, used = first_mismatch(self.in_inputs(left), self.in_inputs(right), points)
        return mismatch is None and used >= 3

    def rate(self, s: sympy.Symbol, x: sympy.Symbol) -> sympy.Expr:
        """``ds/dx`` for a cached value ``s``, in cached values."""
        if s in self.inputs:
            return sympy.S.One if s == x else sympy.S.Zero
        if (s, x) not in self.rates:
            self.rates[s, x] = self._rate(s, x)
        return self.rates[s, x]

    def _rate(self, s: sympy.Symbol, x: sympy.Symbol) -> sympy.Expr:
        spec = self.d.spec
        if s == spec.output:
            return self.unmask(self.d.local[x.name])
        definition = self.definitions.get(s)
        if definition is None:
            raise SpecError(f"{spec.source or spec.name}: no definition of {s} for a higher derivative")
        raw = _book(sympy.diff(definition, x))
        if raw == 0:
            return raw
        allowed = set(self.definitions) | self.inputs
        names = {str(n) for n in allowed} | {f"d{n}" for n in allowed} | {DOUT.name}
        args = tuple(a for a in spec.inputs if a in definition.free_symbols)
        points = sample_points(spec.inputs, spec.graph, domains=spec.domains)
        tails = tail_points(spec.inputs, spec.graph, domains=spec.domains)
        node, _, _ = derive_node(s, definition, args, points, tails, names, set())
        candidates = [self.unmask(node.local[x]), raw.subs(definition, s), raw]
        good = [c for c in candidates if c.free_symbols <= allowed | {s} and self.equal(c, raw)]
        return min(good or [raw], key=numpy_operations)

    def derivative(self, g: sympy.Expr, wrt: tuple[sympy.Symbol, ...]) -> HigherDerivative:
        x = wrt[-1]
        rates, expansion, direct = {}, sympy.S.Zero, sympy.S.Zero
        for s in sorted(g.free_symbols - {DOUT}, key=lambda t: t.name):
            partial = _book(sympy.diff(g, s))
            rate = self.rate(s, x)
            if partial == 0 or rate == 0:
                continue
            direct += partial * rate
            if s in self.inputs:
                expansion += partial
            else:
                symbol = total_symbol(s, (x,))
                rates[symbol] = (s, x, rate)
                expansion += partial * symbol
        raw = _book(sympy.diff(self.d.spec.forward, *wrt))
        return HigherDerivative(wrt, self.cheapest(direct, raw), g, expansion, rates)

    def cheapest(self, direct: sympy.Expr, raw: sympy.Expr) -> sympy.Expr:
        candidates = [direct]
        for rewrite in (sympy.factor_terms, sympy.factor, sympy.cancel, sympy.expand):
            value, finished = attempt(lambda: rewrite(direct), None, SECONDS_PER_REWRITE)
            if finished and value is not None and value not in candidates:
                candidates.append(value)
        good = [c for c in candidates if self.equal(c, raw)] or [direct]
        return min(good, key=lambda c: (numpy_operations(c), good.index(c)))


def higher_order(derivation: Derivation, order: int) -> list[HigherDerivative]:
    """Every derivative of ``order`` (2 to ``MAX_ORDER``) of the output, in cached values.

    Parameters
    ----------
    derivation : Derivation
        An elementwise derivation.
    order : int
        The order; one input gives one derivative, several give the mixed ones too
        (each combination once, in the order of the declared inputs).

    Returns
    -------
    list of HigherDerivative
        For ``order = 2`` of tanh: ``[HigherDerivative(wrt=(x, x), expr=-2*y*(1 - y**2), ...)]``.
    """
    if not 2 <= order <= MAX_ORDER:
        raise SpecError(f"--order: expected 1 to {MAX_ORDER}, got {order}")
    if getattr(derivation.spec, "is_array", False):
        raise SpecError(f"{derivation.spec.source or derivation.spec.name}: higher derivatives of "
                        "array layers are not supported")
    engine = _Engine(derivation)
    inputs = derivation.spec.inputs
    level = {(x,): engine.unmask(derivation.local[x.name]) for x in inputs}
    found: list[HigherDerivative] = []
    for _ in range(order - 1):
        found = [engine.derivative(level[w], (*w, x)) for w in level
                 for x in inputs[inputs.index(w[-1]):]]
        level = {h.wrt: h.expr for h in found}
    return found


def _book(expr: sympy.Expr) -> sympy.Expr:
    """A kink's derivative the book's way (:func:`~symbackprop.numerics.kinks.book_convention`)."""
    return book_convention(expr, set())
