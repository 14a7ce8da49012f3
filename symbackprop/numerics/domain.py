r"""Where a declaration's inputs live, and how they are sampled: one model for every stage.

The derivation verifies its candidate forms at sampled points, the checker draws the
inputs of a generated class, ``verify-layer`` those of a hand-written one, and
``verify-steps`` the points of a comparison; all of them ask :func:`domain_of` a
symbol's :class:`Domain` and sample from it, so that a declaration is tested on the
same inputs everywhere.

A domain comes from the symbol's SymPy assumptions: ``positive`` and ``nonnegative``
give :math:`x > 0` (a nonnegative input is sampled where its derivatives exist),
``negative`` and ``nonpositive`` give :math:`x < 0`, ``integer`` the integers, anything
else the reals (``nonzero`` reals exclude 0 from the edge values).  A declaration may
state an interval (``x = "interval(-1, 1)"``), and :func:`natural_domains` narrows each
input to where the forward pass is real and differentiable (``arctanh(x)``: :math:`|x| < 1`).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import mpmath
import numpy as np
import sympy

from ..lang.functions import BY_CLASS
from .evaluate import mp_value

#: Edge values of a real input: tiny, moderate, float64 saturation (30 to 40), float32's exp overflow (88.7),
#: float64's (709.8) and beyond (1000).
REAL_EDGES = (0.0, 1e-8, -1e-8, 1e-3, -1e-3, 0.5, -0.5, 1.0, -1.0, 2.0, -2.0, 5.0, -5.0, 10.0, -10.0,
              20.0, -20.0, 30.0, -30.0, 33.0, -33.0, 36.0, -36.0, 37.0, -37.0, 38.0, -38.0, 40.0, -40.0,
              88.0, -88.0, 89.0, -89.0, 100.0, -100.0, 700.0, -700.0, 709.0, -709.0, 710.0, -710.0,
              1000.0, -1000.0)
POSITIVE_EDGES = (1e-8, 1e-3, 0.1, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 37.0, 40.0, 88.0, 89.0, 100.0, 700.0, 709.0,
                  710.0, 1000.0)
#: Tail values, where the float64 accuracy of a form is judged against mpmath.
REAL_TAILS = (-1000.0, -700.0, -100.0, -30.0, -5.0, -0.5, -1e-3, 1e-3, 0.5, 5.0, 30.0, 100.0, 700.0, 1000.0)
POSITIVE_TAILS = (1e-8, 1e-3, 0.1, 0.5, 2.0, 5.0, 30.0, 100.0, 700.0, 1000.0)
#: Half-width of the bulk of a real input, and the log-range of a positive one.
REAL_BULK = 6.0
LOG_BULK = 3.0
#: The range a search (hypothesis) explores, wider than the bulk.
REAL_SEARCH = (-20.0, 20.0)
POSITIVE_SEARCH = (1e-2, 50.0)


INF = float("inf")
#: Fractions of a bounded interval's width where its edge values sit, from either end.
EDGE_FRACTIONS = (1e-8, 1e-3, 0.1, 0.25)
TAIL_FRACTIONS = (1e-8, 1e-3, 0.1)


@dataclass(frozen=True)
class Domain:
    """The set an input ranges over: an open interval of the reals (or of the integers).

    Attributes
    ----------
    kind : {"real", "positive", "negative", "integer"}
        What the assumptions say; ``lo`` and ``hi`` may narrow it further.
    nonzero : bool
        0 excluded (a real input declared ``nonzero``, or one a ``1/x`` needs).
    lo, hi : float
        The open interval :math:`(lo, hi)`; infinite ends allowed.
    """

    kind: str = "real"
    nonzero: bool = False
    lo: float = -INF
    hi: float = INF

    def narrowed(self, lo: float = -INF, hi: float = INF, nonzero: bool = False) -> "Domain":
        """This domain intersected with :math:`(lo, hi)` (and without 0 if ``nonzero``)."""
        lo, hi = max(self.lo, lo), min(self.hi, hi)
        if not lo < hi:
            return self  # an empty intersection: the declaration's word stands, the checks will say
        return Domain(self.kind, self.nonzero or nonzero, lo, hi)

    @property
    def width(self) -> float:
        return self.hi - self.lo

    def _from_ends(self, fractions: Sequence[float]) -> tuple[float, ...]:
        """Points of a bounded interval at these fractions of its width from each end."""
        values = [self.lo + f * self.width for f in fractions] + [self.hi - f * self.width for f in fractions]
        return tuple(sorted({v for v in values if self.lo < v < self.hi}))

    def _half_line(self, distances: Sequence[float]) -> tuple[float, ...]:
        """Points at these distances inside the one finite end."""
        if np.isfinite(self.lo):
            return tuple(v for d in distances if self.lo < (v := self.lo + d) < self.hi)
        return tuple(v for d in distances if self.lo < (v := self.hi - d) < self.hi)

    @property
    def bounded(self) -> bool:
        return bool(np.isfinite(self.lo) and np.isfinite(self.hi))

    @property
    def unbounded(self) -> bool:
        return not (np.isfinite(self.lo) or np.isfinite(self.hi))

    def draw(self, rng: np.random.Generator, shape=None) -> np.ndarray:
        """Bulk values: uniform on (-6, 6) for a real input, :math:`e^{U(-3, 3)}` from the
        finite end of a half-line, uniform inside a bounded interval, integers in [-6, 6]
        for an integer one."""
        if self.kind == "integer":
            return rng.integers(-6, 7, shape).astype(float)
        if self.unbounded:
            return rng.uniform(-REAL_BULK, REAL_BULK, shape)
        if self.bounded:
            margin = 1e-3 * self.width
            return rng.uniform(self.lo + margin, self.hi - margin, shape)
        offset = np.exp(rng.uniform(-LOG_BULK, LOG_BULK, shape))
        return self.lo + offset if np.isfinite(self.lo) else self.hi - offset

    def draw_far(self, rng: np.random.Generator) -> float:
        """One value over many scales, for what the bulk may miss (a side defined only
        for :math:`x > 10`): :math:`\\pm 10^{U(-3, 6)}` on the reals, the same distance
        from the finite end of a half-line, uniform inside a bounded interval, integers
        in [-1000, 1000]."""
        if self.kind == "integer":
            return float(rng.integers(-1000, 1001))
        if self.bounded:
            return float(self.draw(rng))
        distance = 10.0 ** rng.uniform(-3.0, 6.0)
        if self.unbounded:
            return float(distance if rng.random() < 0.5 else -distance)
        return float(self.lo + distance if np.isfinite(self.lo) else self.hi - distance)

    def draw_mp(self, rng: np.random.Generator) -> mpmath.mpf:
        """One bulk value as an exact mpmath number (the float64 value drawn)."""
        return mpmath.mpf(float(self.draw(rng)))

    @property
    def search(self) -> tuple[float, float]:
        """The interval a search of inputs explores."""
        if self.unbounded:
            return REAL_SEARCH
        if self.bounded:
            margin = 1e-3 * self.width
            return (self.lo + margin, self.hi - margin)
        near, far = POSITIVE_SEARCH
        return (self.lo + near, self.lo + far) if np.isfinite(self.lo) else (self.hi - far, self.hi - near)

    def edges(self) -> tuple[float, ...]:
        """Values at the edges of float64 arithmetic (tiny, saturating, overflowing), and
        next to the ends of a bounded interval."""
        if self.unbounded:
            return tuple(v for v in REAL_EDGES if not (self.nonzero and v == 0))
        if self.bounded:
            return self._from_ends(EDGE_FRACTIONS) + ((self.lo + self.hi) / 2,)
        return self._half_line(POSITIVE_EDGES)

    def tails(self) -> tuple[float, ...]:
        """Values in the tails, out to :math:`|x| = 1000` (next to the ends of a bounded interval)."""
        if self.unbounded:
            return REAL_TAILS
        if self.bounded:
            return self._from_ends(TAIL_FRACTIONS)
        return self._half_line(POSITIVE_TAILS)

    def contains(self, value: float) -> bool:
        if not np.isfinite(value):
            return False
        return self.lo < value < self.hi and not (self.nonzero and value == 0)


def domain_of(symbol: sympy.Symbol, domains: Mapping[sympy.Symbol, Domain] | None = None) -> Domain:
    """The domain of an input: from ``domains`` (a declaration's, see :func:`natural_domains`)
    when it has one, else from the symbol's assumptions (see the module docstring)."""
    if domains is not None and symbol in domains:
        return domains[symbol]
    if symbol.is_positive or symbol.is_nonnegative:
        return Domain("positive", lo=0.0)
    if symbol.is_negative or symbol.is_nonpositive:
        return Domain("negative", hi=0.0)
    if symbol.is_integer:
        return Domain("integer")
    return Domain("real", nonzero=bool(symbol.is_nonzero))


def natural_domains(inputs: Sequence[sympy.Symbol], graph: Sequence[tuple[sympy.Symbol, sympy.Expr]] = (),
                    declared: Mapping[sympy.Symbol, tuple[float, float]] | None = None) -> dict[sympy.Symbol, Domain]:
    r"""Each input's domain: its assumptions, narrowed by a declared interval and by what
    the forward pass needs to be real and differentiable.

    Every function application and power of the forward whose argument depends on one
    input only contributes: a row's domain (``log(1 + x)``: :math:`1 + x > 0`, so
    :math:`x > -1`) mapped back through an affine argument, :math:`(0, \infty)` for a
    fractional power, :math:`x 
e 0` for a negative one.  Arguments of several inputs
    constrain nothing here; their points are sampled and dropped where undefined.
    """
    domains = {s: domain_of(s) for s in inputs}
    for s, (lo, hi) in (declared or {}).items():
        domains[s] = domains[s].narrowed(lo, hi)
    defined: dict[sympy.Symbol, sympy.Expr] = {}
    seen: set[sympy.Basic] = set()  # a later node's expansion holds the earlier ones: look at each once
    for name, expr in graph:
        expanded = expr.xreplace(defined)
        defined[name] = expanded
        walk = sympy.preorder_traversal(expanded)
        for node in walk:
            if node in seen:
                walk.skip()
                continue
            seen.add(node)
            for s, lo, hi, nonzero in _needs(node, domains):
                domains[s] = domains[s].narrowed(lo, hi, nonzero)
    return domains


def _needs(node: sympy.Basic, domains: Mapping[sympy.Symbol, Domain]):
    """``(input, lo, hi, nonzero)`` that ``node`` needs of the one input its argument depends on."""
    if isinstance(node, sympy.Pow) and node.exp.is_Number:
        interval = (0.0, INF, False) if not node.exp.is_integer else (-INF, INF, True) if node.exp < 0 else None
        arg = node.base
    else:
        row = BY_CLASS.get(type(node))
        interval = (*row.domain, False)[:3] if row is not None and row.domain is not None else None
        arg = node.args[-1] if interval is not None else None
    if interval is None or len(arg.free_symbols) != 1 or arg.atoms(sympy.Tuple):
        return []  # (an argument with axes in it reduces an array: it says nothing of one element)
    (s,) = arg.free_symbols
    if s not in domains:
        return []
    back = _affine_preimage(arg, s, *interval) or _solved_preimage(node, s)
    return [] if back is None else [(s, *back)]


#: Arguments larger than this are not handed to SymPy's domain solver (it may take long).
SOLVER_OPS = 25


def _solved_preimage(node: sympy.Basic, s: sympy.Symbol):
    """Where ``node`` is continuous in ``s`` (``log(x/(1 - x))``: :math:`0 < x < 1`), by
    SymPy's ``continuous_domain``: its widest interval, or None when it cannot say."""
    from sympy.calculus.util import continuous_domain  # noqa: PLC0415 - a slow import, rarely needed

    if sympy.count_ops(node) > SOLVER_OPS:
        return None
    try:
        found = continuous_domain(node, s, sympy.S.Reals)
    except (NotImplementedError, ValueError, TypeError, RecursionError):
        return None
    parts = found.args if isinstance(found, sympy.Union) else (found,)
    intervals = [p for p in parts if isinstance(p, sympy.Interval)]
    if not intervals or (sympy.S.Reals - found).measure == 0:
        return None  # only points are excluded: the sampler drops them
    widest = max(intervals, key=lambda i: float(i.measure))
    return float(widest.start), float(widest.end), False


def _affine_preimage(arg: sympy.Expr, s: sympy.Symbol, lo: float, hi: float, nonzero: bool):
    """The interval of ``s`` where ``arg = a*s + b`` lies in :math:`(lo, hi)` (and is nonzero)."""
    if not _maybe_affine(arg):
        return None  # (diff and subs of a deep nest would be slow, and it is not affine)
    a, b = arg.diff(s), arg.subs(s, 0)
    if a.free_symbols or b.free_symbols or not (a.is_real and b.is_real) or a == 0:
        return None
    a, b = float(a), float(b)
    ends = sorted(((lo - b) / a, (hi - b) / a))
    if nonzero and b != 0:
        return None  # a*s + b != 0 excludes one point that is not 0: left to the sampler
    return ends[0], ends[1], nonzero


def _maybe_affine(arg: sympy.Expr) -> bool:
    """Arithmetic of the symbol with integer powers only: no function application."""
    return not any(isinstance(e, (sympy.Function, sympy.Max, sympy.Min, sympy.Piecewise))
                   or (isinstance(e, sympy.Pow) and not e.exp.is_Integer and e.base.free_symbols)
                   for e in sympy.preorder_traversal(arg))


def rotated(columns: Sequence[Sequence[float]], length: int | None = None) -> list[np.ndarray]:
    """One array per input from per-input value lists, rotated against each other so that
    the same position pairs different values: input ``i`` starts ``5 i`` places on."""
    n = length or max(len(v) for v in columns)
    return [np.array([v[(k + 5 * i) % len(v)] for k in range(n)]) for i, v in enumerate(columns)]


def with_graph(graph: Sequence[tuple[sympy.Symbol, sympy.Expr]], point: dict) -> bool:
    """Add every graph value at ``point`` (mpmath, 40 digits); False where one is undefined."""
    for name, expr in graph:
        value = mp_value(expr, point)
        if value is None or isinstance(value, bool):
            return False
        point[name] = value
    return True


def sample_points(inputs: Sequence[sympy.Symbol], graph: Sequence[tuple[sympy.Symbol, sympy.Expr]] = (),
                  n: int = 12, seed: int = 0, domains: Mapping[sympy.Symbol, Domain] | None = None) -> list[dict]:
    """``n`` random points (mpmath numbers) of the inputs' domains where every graph value
    is defined, with those values; fewer when the graph is undefined almost everywhere."""
    rng = np.random.default_rng(seed)
    points: list[dict] = []
    for _ in range(n * 3):
        point: dict = {s: domain_of(s, domains).draw_mp(rng) for s in inputs}
        if with_graph(graph, point):
            points.append(point)
        if len(points) == n:
            break
    return points


def tail_points(inputs: Sequence[sympy.Symbol], graph: Sequence[tuple[sympy.Symbol, sympy.Expr]] = (),
                domains: Mapping[sympy.Symbol, Domain] | None = None) -> list[dict]:
    """Points in the tails of every input's domain (inputs rotated against each other),
    with every graph value; points where a value is undefined are dropped."""
    columns = rotated([domain_of(s, domains).tails() for s in inputs], len(REAL_TAILS))
    points = []
    for k in range(len(REAL_TAILS)):
        point: dict = {s: mpmath.mpf(float(col[k])) for s, col in zip(inputs, columns)}
        if with_graph(graph, point):
            points.append(point)
    return points


def values_at(point: Mapping, symbols: Sequence[sympy.Symbol]) -> list:
    """The values of ``symbols`` at ``point``, in order."""
    return [point[s] for s in symbols]
