r"""Where a declaration's inputs live, and how they are sampled: one model for every stage.

The derivation verifies its candidate forms at sampled points, the checker draws the
inputs of a generated class, ``verify-layer`` those of a hand-written one, and
``verify-steps`` the points of a comparison; all of them ask :func:`domain_of` a
symbol's :class:`Domain` and sample from it, so that a declaration is tested on the
same inputs everywhere.

A domain comes from the symbol's SymPy assumptions: ``positive`` and ``nonnegative``
give :math:`x > 0` (a nonnegative input is sampled where its derivatives exist),
``negative`` and ``nonpositive`` give :math:`x < 0`, ``integer`` the integers, anything
else the reals (``nonzero`` reals exclude 0 from the edge values).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import mpmath
import numpy as np
import sympy

from .evaluate import mp_value

#: Edge values of a real input: tiny, moderate, float64 saturation (30 to 40), overflow (700 to 1000).
REAL_EDGES = (0.0, 1e-8, -1e-8, 1e-3, -1e-3, 0.5, -0.5, 1.0, -1.0, 2.0, -2.0, 5.0, -5.0, 10.0, -10.0,
              20.0, -20.0, 30.0, -30.0, 33.0, -33.0, 36.0, -36.0, 37.0, -37.0, 38.0, -38.0, 40.0, -40.0,
              100.0, -100.0, 700.0, -700.0, 710.0, -710.0, 1000.0, -1000.0)
POSITIVE_EDGES = (1e-8, 1e-3, 0.1, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 37.0, 40.0, 100.0, 700.0, 1000.0)
#: Tail values, where the float64 accuracy of a form is judged against mpmath.
REAL_TAILS = (-1000.0, -700.0, -100.0, -30.0, -5.0, -0.5, -1e-3, 1e-3, 0.5, 5.0, 30.0, 100.0, 700.0, 1000.0)
POSITIVE_TAILS = (1e-8, 1e-3, 0.1, 0.5, 2.0, 5.0, 30.0, 100.0, 700.0, 1000.0)
#: Half-width of the bulk of a real input, and the log-range of a positive one.
REAL_BULK = 6.0
LOG_BULK = 3.0
#: The range a search (hypothesis) explores, wider than the bulk.
REAL_SEARCH = (-20.0, 20.0)
POSITIVE_SEARCH = (1e-2, 50.0)


@dataclass(frozen=True)
class Domain:
    """The set an input ranges over.

    Attributes
    ----------
    kind : {"real", "positive", "negative", "integer"}
    nonzero : bool
        0 excluded (a real input declared ``nonzero``).
    """

    kind: str = "real"
    nonzero: bool = False

    @property
    def sign(self) -> float:
        return -1.0 if self.kind == "negative" else 1.0

    def draw(self, rng: np.random.Generator, shape=None) -> np.ndarray:
        """Bulk values: uniform on (-6, 6) for a real input, :math:`\\pm e^{U(-3, 3)}` for
        a signed one, integers in [-6, 6] for an integer one."""
        if self.kind == "integer":
            return rng.integers(-6, 7, shape).astype(float)
        if self.kind == "real":
            return rng.uniform(-REAL_BULK, REAL_BULK, shape)
        return self.sign * np.exp(rng.uniform(-LOG_BULK, LOG_BULK, shape))

    def draw_mp(self, rng: np.random.Generator) -> mpmath.mpf:
        """One bulk value as an exact mpmath number (the float64 value drawn)."""
        return mpmath.mpf(float(self.draw(rng)))

    @property
    def search(self) -> tuple[float, float]:
        """The interval a search of inputs explores."""
        if self.kind == "real" or self.kind == "integer":
            return REAL_SEARCH
        lo, hi = POSITIVE_SEARCH
        return (lo, hi) if self.kind == "positive" else (-hi, -lo)

    def edges(self) -> tuple[float, ...]:
        """Values at the edges of float64 arithmetic (tiny, saturating, overflowing)."""
        if self.kind in ("real", "integer"):
            return tuple(v for v in REAL_EDGES if not (self.nonzero and v == 0))
        return tuple(self.sign * v for v in POSITIVE_EDGES)

    def tails(self) -> tuple[float, ...]:
        """Values in the tails, out to :math:`|x| = 1000`."""
        if self.kind in ("real", "integer"):
            return REAL_TAILS
        return tuple(self.sign * v for v in POSITIVE_TAILS)

    def contains(self, value: float) -> bool:
        if not np.isfinite(value):
            return False
        if self.kind == "positive":
            return value > 0
        if self.kind == "negative":
            return value < 0
        return not (self.nonzero and value == 0)


def domain_of(symbol: sympy.Symbol) -> Domain:
    """The domain a symbol's assumptions declare (see the module docstring)."""
    if symbol.is_positive or symbol.is_nonnegative:
        return Domain("positive")
    if symbol.is_negative or symbol.is_nonpositive:
        return Domain("negative")
    if symbol.is_integer:
        return Domain("integer")
    return Domain("real", nonzero=bool(symbol.is_nonzero))


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
                  n: int = 12, seed: int = 0) -> list[dict]:
    """``n`` random points (mpmath numbers) of the inputs' domains where every graph value
    is defined, with those values; fewer when the graph is undefined almost everywhere."""
    rng = np.random.default_rng(seed)
    points: list[dict] = []
    for _ in range(n * 3):
        point: dict = {s: domain_of(s).draw_mp(rng) for s in inputs}
        if with_graph(graph, point):
            points.append(point)
        if len(points) == n:
            break
    return points


def tail_points(inputs: Sequence[sympy.Symbol],
                graph: Sequence[tuple[sympy.Symbol, sympy.Expr]] = ()) -> list[dict]:
    """Points in the tails of every input's domain (inputs rotated against each other),
    with every graph value; points where a value is undefined are dropped."""
    columns = rotated([domain_of(s).tails() for s in inputs], len(REAL_TAILS))
    points = []
    for k in range(len(REAL_TAILS)):
        point: dict = {s: mpmath.mpf(float(col[k])) for s, col in zip(inputs, columns)}
        if with_graph(graph, point):
            points.append(point)
    return points


def values_at(point: Mapping, symbols: Sequence[sympy.Symbol]) -> list:
    """The values of ``symbols`` at ``point``, in order."""
    return [point[s] for s in symbols]
