r"""What every check of a layer class shares, elementwise or array: calls into the class
under test, findings, tallies of errors, and the probes that do not depend on the kind of
layer (memory, linearity in ``dout``, arrays overwritten by a later call).

The error of a value :math:`a` against the reference :math:`b`, per element, is

.. math:: e = \frac{|a - b|}{\max(|a|, |b|, \phi\, s)}

with :math:`s` the quantity's typical size and :math:`\phi` = :data:`FLOOR`.
"""
from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..reports import KINDS, Finding

#: Largest error a float64 implementation is allowed.
RTOL = 1e-8
#: Fraction of the typical size below which values are judged absolutely.
FLOOR = 1e-6
#: Tolerance of the linearity checks (relative, and of the gradient's typical size).
LINEAR_RTOL = 1e-6
#: Results in a lower precision are compared with the float64 results of the same class on the
#: same (rounded) values, relative to this many roundings (eps = 1.2e-7 in float32): a few
#: operations and an exp or tanh stay well inside, a float64 result or a wrong formula does not.
DTYPE_ULPS = 1000


class UserError(Exception):
    """The layer under test raised: carried to an ``exception`` finding."""

    def __init__(self, phase: str, exc: BaseException, shape: tuple | None):
        self.phase, self.exc, self.shape = phase, exc, shape
        super().__init__(phase)


class Mismatch(Exception):
    """The class does not have the interface the declaration needs: carried to a finding."""

    def __init__(self, kind: str, message: str):
        self.kind, self.message = kind, message
        super().__init__(message)


def severity(error: float) -> float:
    """An error figure for comparing and keeping the worst: nan (an undefined value) is worst of all."""
    return float("inf") if error != error else error


def directional_error(got: float, want: float, noise: float, gradient: np.ndarray, direction: np.ndarray) -> float:
    r"""The error of a directional derivative :math:`\langle g, v \rangle` = ``got`` against the
    reference ``want`` known to within ``noise``, in the one model of every check:

    .. math:: e = \frac{\max(|a - b| - \nu, 0)}{\max(|a|, |b|, \phi\, \|g\| \|v\|)}

    (:math:`\phi` = :data:`FLOOR`; :math:`\|g\|\|v\|` is the size the value would have
    without cancellation between the elements)."""
    floor = FLOOR * float(np.linalg.norm(gradient) * np.linalg.norm(direction))
    return max(0.0, abs(got - want) - noise) / max(abs(got), abs(want), floor, 1e-300)


def exceeds(error: float, tolerance: float) -> bool:
    """Whether ``error`` fails ``tolerance``: nan and inf always do, so that no check passes on them."""
    return not error <= tolerance


def call(phase: str, fn: Callable, args: tuple, shape) -> Any:
    """``fn(*args)`` of the layer under test, warnings off; its exceptions as :class:`UserError`."""
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        try:
            return fn(*args)
        except Exception as exc:  # the layer's own bug, reported as a finding
            raise UserError(phase, exc, shape) from None


# -- values -------------------------------------------------------------------------------------
def gradients_of(value: Any, n: int) -> list | None:
    """The gradients backward returned, as a list; None if their number is wrong.  With no inputs
    (an embedding: only parameters), ``None`` (the book's) or an empty tuple."""
    if n == 0:
        return [] if value is None or (isinstance(value, (tuple, list)) and not value) else None
    items = list(value) if isinstance(value, (tuple, list)) else [value]
    if n == 1 and isinstance(value, (tuple, list)) and len(value) != 1:
        items = [value]
    return items if len(items) == n else None


def as_array(value: Any) -> np.ndarray | None:
    """``value`` as an array of numbers, or None."""
    if value is None:
        return None
    try:
        out = np.asarray(value)
    except (TypeError, ValueError):
        return None
    return out if out.dtype.kind in "fiub" else None


def copy(value: Any) -> Any:
    return value.copy() if isinstance(value, np.ndarray) else value


def douts(rng: np.random.Generator, shape) -> np.ndarray:
    """Upstream gradients away from 0 (magnitudes 0.5 to 2, both signs), never all ones."""
    return rng.choice([-1.0, 1.0], shape) * rng.uniform(0.5, 2.0, shape)


def first(mask: np.ndarray) -> tuple:
    return tuple(int(i) for i in np.argwhere(mask)[0])


def argmax(values: np.ndarray) -> tuple:
    return tuple(int(i) for i in np.unravel_index(int(np.argmax(values)), values.shape))


def same(a, b) -> bool:
    """Equal shapes and values (to 1e-12 relative, nan equal to nan)."""
    if a is None or b is None:
        return a is b
    a, b = np.asarray(a), np.asarray(b)
    return a.shape == b.shape and bool(np.allclose(a, b, rtol=1e-12, atol=0.0, equal_nan=True))


def all_same(a: list | dict | None, b: list | dict | None) -> bool:
    """:func:`same` for every item of two lists (or dicts with the same keys) of values."""
    if a is None or b is None:
        return a is b
    if isinstance(a, Mapping):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return all(same(as_array(u), as_array(v)) for u, v in zip(a, b))


def near(a: np.ndarray, b: np.ndarray, scale: float) -> bool:
    """Equal up to float32-sized rounding: linearity is about the formula, not precision."""
    return bool(np.all(np.abs(a - b) <= LINEAR_RTOL * (np.maximum(np.abs(a), np.abs(b)) + scale)))


def linearity_problems(g: Mapping[str, np.ndarray]) -> list[str]:
    """What breaks linearity in ``dout``, from the gradients at ``d``, ``e``, ``2d``, ``d+e``
    and ``0``; ``"ignores"`` first when ``backward(2 d) = backward(d)``.  Judged where every
    run is finite (an overflow is judged by the value checks, not here)."""
    finite = np.logical_and.reduce([np.isfinite(v) for v in g.values()])
    g = {k: v[finite] for k, v in g.items()}
    scale = max(float(np.max(np.abs(g["d"]), initial=0.0)), 1e-300)
    problems = []
    if same(g["2d"], g["d"]) and np.max(np.abs(g["d"]), initial=0.0) > 0:
        problems.append("ignores")
    elif not near(g["2d"], 2 * g["d"], scale):
        problems.append("backward(2*dout) is not 2*backward(dout)")
    if np.max(np.abs(g["0"]), initial=0.0) > 1e-12 * scale:
        problems.append("backward(0) is not 0")
    if not near(g["d+e"], g["d"] + g["e"], scale):
        problems.append("backward(d + e) is not backward(d) + backward(e)")
    return problems


IGNORES = "backward ignores dout (backward(2*dout) = backward(dout))"


def dtype_tolerance(dtype) -> float:
    """The relative tolerance of results computed in ``dtype``."""
    return DTYPE_ULPS * float(np.finfo(dtype).eps)


def dtype_problems(dtype, low: Mapping[str, Any], high: Mapping[str, Any],
                   error: Callable[[str, np.ndarray, np.ndarray], float]) -> list[str]:
    """Results (by label) computed in ``dtype`` of another dtype, or further from the float64
    results ``high`` than :func:`dtype_tolerance`, by ``error(label, got, want)``."""
    name, tol = np.dtype(dtype).name, dtype_tolerance(dtype)
    problems = [f"{name} in, {np.asarray(got).dtype} out ({label})" for label, got in low.items()
                if np.asarray(got).dtype != dtype]
    for label, got in low.items():
        want = np.asarray(high[label], dtype=float)
        fits = np.abs(want) < np.finfo(dtype).max  # where the dtype can hold the value (gamma(40) cannot)
        got = np.where(fits, np.asarray(got, dtype=float), 0.0)
        err = error(label, got, np.where(fits, want, 0.0))
        if exceeds(err, tol):
            problems.append(f"{label} in {name} differs from float64 by {err:.1e} (tolerance {tol:.1e})")
    return problems


# -- samples, tallies and their messages -------------------------------------------------------
@dataclass
class Sample:
    """Values the layer is run on: the inputs ``xs`` of an elementwise layer, or an array
    layer's ``problem`` (an :class:`~symbackprop.checker.arrays.ArrayProblem`); ``bulk``
    for ordinary values (judged strictly), ``given`` for a caller's example."""

    label: str
    bulk: bool
    xs: list | None = None
    problem: Any = None
    given: bool = False
    ref: tuple | None = None
    grads: dict = field(default_factory=dict)

    @property
    def sizes(self) -> dict[str, int]:
        return {d.name: int(n) for d, n in sorted(self.problem.sizes.items(), key=lambda kv: kv[0].name)}


# -- tallies and their messages -----------------------------------------------------------------
@dataclass
class Tally:
    """What the value checks found for one quantity (the forward, or one gradient)."""

    scale: float = 1.0
    worst: float = 0.0
    worst_at: dict | None = None
    bulk_scaled: float = 0.0
    bulk_at: dict | None = None
    nonfinite_bulk: dict | None = None
    nonfinite_edge: dict | None = None
    low_dtype: str | None = None
    kink_outside: dict | None = None
    kink_other: dict | None = None

    def record(self, got: np.ndarray, want: np.ndarray, noise: Any, scale: Any, bulk: bool,
               where: Callable[[tuple, float], dict]) -> None:
        """Take in one comparison: the worst error, the worst relative to the typical size
        ``scale`` on the bulk, the first non-finite value where the reference is finite;
        ``where(index, error)`` describes an element.  Errors below ``noise`` do not count."""
        usable, finite = np.isfinite(want), np.isfinite(got)
        with np.errstate(all="ignore"):
            excess = np.maximum(np.abs(got - want) - noise, 0.0)
            error = excess / np.maximum(np.maximum(np.abs(got), np.abs(want)), np.maximum(FLOOR * scale, 1e-300))
            scaled = excess / np.maximum(np.abs(want), np.maximum(scale, 1e-300))
        bad = usable & ~finite
        if bad.any():
            at = where(first(bad), float("inf"))
            if bulk:
                self.nonfinite_bulk = self.nonfinite_bulk or at
            else:
                self.nonfinite_edge = self.nonfinite_edge or at
        ok = usable & finite
        if not ok.any():
            return
        k = argmax(np.where(ok, error, -1.0))
        if error[k] > self.worst:
            self.worst, self.worst_at = float(error[k]), where(k, float(error[k]))
        k = argmax(np.where(ok, scaled, -1.0))
        if bulk and scaled[k] > self.bulk_scaled:
            self.bulk_scaled, self.bulk_at = float(scaled[k]), where(k, float(error[k]))


def precision_cause(bulk_scaled: float) -> str:
    """The likely cause of an error that is small on typical inputs but above float64's."""
    if bulk_scaled < 1e-6:
        return ("float32 arithmetic (which rounds at about 6e-08) or a small constant such as 1e-7 added to "
                "avoid a division by zero or log(0)")
    return ("a small constant such as 1e-7 added to avoid log(0) or a division by zero (its effect grows as the "
            "value it guards gets small), or a formula that loses accuracy")


def precision_message(what: str, t: Tally, place: Callable[[dict], str]) -> str:
    """The message of a ``precision`` finding: one clause per thing the tally found;
    ``place(record)`` says where a record was taken ("at x = 1.5")."""
    parts = []
    if t.low_dtype:
        parts.append(f"is {t.low_dtype} for float64 input")
    if t.nonfinite_edge:
        at = t.nonfinite_edge
        parts.append(f"is {at['got']} {place(at)} where the declaration gives {at['expected']:.6g} "
                     "(an overflow or an underflow in float64)")
    if t.worst > RTOL:
        at = t.worst_at
        parts.append(f"relative error up to {t.worst:.2g} ({place(at)} it gives {at['got']:.12g}, the declaration "
                     f"{at['expected']:.12g}); on typical inputs it stays within {t.bulk_scaled:.2g} of the "
                     f"typical size: consistent with {precision_cause(t.bulk_scaled)}")
    return f"{what} is less accurate than float64 allows: " + "; ".join(parts)


# -- the findings -----------------------------------------------------------------------------------
class Checker:
    """Findings, one per kind and input, and the probes every kind of layer shares.

    ``current(obj)`` reads the contents an object returned by the layer *earlier* has now
    (identity here; a proxy of a layer in another process fetches them from there).
    """

    def __init__(self, current: Callable[[Any], Any] | None = None) -> None:
        self.findings: dict[tuple, Finding] = {}
        self.notes: list[str] = []
        self.current = current or (lambda obj: obj)

    def add(self, kind: str, input: str | None, message: str, error: float | None = None,
            counterexample: dict | None = None, topic: str = "") -> None:
        """Record a finding; one per kind and input, later ones on another topic appended."""
        key = (kind, input)
        if key in self.findings:
            old = self.findings[key]
            if topic not in old.topics and len(old.message) < 600:
                old.message += f"; also: {message}"
                old.topics.add(topic)
            if error is not None and (old.max_rel_error is None or error > old.max_rel_error):
                old.max_rel_error, old.counterexample = error, counterexample or old.counterexample
            return
        self.findings[key] = Finding(kind, input, message, error, counterexample, {topic})

    def guarded(self, check: Callable[[], None]) -> bool:
        """Run one check; an exception of the layer becomes an ``exception`` finding."""
        try:
            check()
            return True
        except UserError as err:
            where = f" (first with inputs of shape {err.shape})" if err.shape is not None else ""
            self.add("exception", None, f"{err.phase} raised {type(err.exc).__name__}: {err.exc}{where}",
                     topic=f"{err.phase} {type(err.exc).__name__}")
            return False
        except Mismatch as err:
            self.add(err.kind, None, err.message, topic=err.message)
            return False

    def judge(self, t: Tally, target: str | None, what: str, wrong: float, place: Callable[[dict], str],
              hint: Callable[[], str] = str) -> None:
        """``wrong-math`` when the error relative to the typical size exceeds ``wrong`` on the
        bulk (or a value there is not finite), else ``precision`` when it exceeds :data:`RTOL`,
        a value overflows at the edges or the result dtype is below float64."""
        if t.nonfinite_bulk or t.bulk_scaled > wrong:
            at = t.nonfinite_bulk or t.bulk_at
            error = at.get("relative_error", 0.0)
            measured = f"relative error {error:.2g} " if "relative_error" in at else ""
            self.add("wrong-math", target, f"{what} differs from the declaration: {measured}{place(at)} it gives "
                     f"{at['got']:.12g}, the declaration {at['expected']:.12g}{hint()}", max(t.worst, error), at,
                     topic=what)
        elif t.worst > RTOL or t.nonfinite_edge or t.low_dtype:
            at = {**(t.nonfinite_edge or t.worst_at or {}), "ordinary_error": t.bulk_scaled}
            self.add("precision", target, precision_message(what, t, place), t.worst or None, at, topic=what)

    def sorted_findings(self) -> list[Finding]:
        return sorted(self.findings.values(), key=lambda f: (KINDS.index(f.kind), f.input or ""))

    def snapshot(self, returned: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """Copies of what a call returned (by label), to see later whether it changed."""
        return {k: np.array(a) for k, v in returned.items() if (a := as_array(self.current(v))) is not None}

    def overwritten(self, returned: Mapping[str, Any], kept: Mapping[str, np.ndarray], call: str,
                    later: str) -> None:
        """``stale-cache`` when an array ``call`` returned has other contents after ``later``:
        the layer hands out a buffer it keeps and overwrites."""
        changed = [k for k, v in kept.items() if not same(as_array(self.current(returned[k])), v)]
        if changed:
            self.add("stale-cache", None, f"{', '.join(changed)} returned by {call} changed when {later} ran: "
                     "the layer returns a buffer it keeps and overwrites on the next call (return a new array, "
                     "or a copy)", topic=f"buffer {call}")

    def memory_problems(self, grads: Mapping[str, np.ndarray], given: Any, dout: Any) -> tuple[list[str], dict | None]:
        """What one backward did to ``dout``, and memory its gradients share with it or each other.

        ``given`` is the array passed to backward, ``dout`` its copy kept before."""
        problems, example = [], None
        given = self.current(given)
        if isinstance(dout, np.ndarray) and not same(given, dout):
            changed = ~np.isclose(given, dout, rtol=1e-12, atol=0.0, equal_nan=True)
            k = first(changed)
            example = {"index": list(k), "dout_before": float(dout[k]), "dout_after": float(given[k])}
            problems.append(f"backward writes into dout ({int(changed.sum())} of {dout.size} elements changed)")
        arrays = [(k, g) for k, g in grads.items() if isinstance(g, np.ndarray)]
        if isinstance(given, np.ndarray):
            aliased = [f"d{n}" for n, g in arrays if np.shares_memory(g, given)]
            if aliased:
                problems.append(f"{', '.join(aliased)} shares memory with dout (returned without a copy)")
        pairs = [f"d{a} and d{b}" for i, (a, g) in enumerate(arrays) for b, h in arrays[i + 1:]
                 if np.shares_memory(g, h)]
        if pairs:
            problems.append(f"{', '.join(pairs)} share memory")
        return problems, example
