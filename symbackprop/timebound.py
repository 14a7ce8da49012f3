"""Time bounds for symbolic work that can blow up (``simplify``, ``solve``, ``equals``).

SymPy offers no time limit of its own.  In the main thread we use ``SIGALRM``
(``signal.setitimer``): when the bound is hit, the running SymPy call is interrupted
by an exception and the caller keeps its fallback, typically the unsimplified but
correct form.  Bounds nest: an inner bound never outlives an outer one.  Outside the
main thread (where signals cannot be delivered) the work runs unbounded; the
command line and the test suite always run symbolic work in the main thread.
"""
from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from .errors import DerivationTimeout
from .interrupts import in_gc_callback, watch_collections

T = TypeVar("T")

#: Default bound, in seconds, for one symbolic attempt.
DEFAULT_SECONDS = 2.0

_deadlines: list[float] = []


class _Expired(BaseException):
    """Raised inside the interrupted computation; a BaseException so that SymPy's
    own ``except Exception`` clauses cannot swallow it."""


def _on_alarm(signum, frame):  # pragma: no cover - exercised through bounded()
    # Re-arm first: if this exception lands somewhere that swallows it (a __del__),
    # the next alarm interrupts the work again.
    signal.setitimer(signal.ITIMER_REAL, 0.05)
    if not in_gc_callback(frame):  # there it would only be printed ("Exception ignored"): wait 50 ms
        raise _Expired()


def _can_use_signals() -> bool:
    return threading.current_thread() is threading.main_thread() and hasattr(signal, "setitimer")


def bounded(fn: Callable[[], T], seconds: float = DEFAULT_SECONDS) -> T:
    """Run ``fn()`` and return its result, or raise :class:`DerivationTimeout`.

    Parameters
    ----------
    fn : callable
        The symbolic work, without arguments.
    seconds : float
        Wall-clock bound.  Nested calls are bounded by the tightest enclosing bound.
    """
    if not _can_use_signals():
        return fn()
    now = time.monotonic()
    deadline = min([now + seconds, *_deadlines])
    if deadline <= now:
        raise DerivationTimeout(f"no time left for this step (bound {seconds:g} s)")
    watch_collections()
    outer_handler = signal.signal(signal.SIGALRM, _on_alarm)
    _deadlines.append(deadline)
    signal.setitimer(signal.ITIMER_REAL, deadline - now)
    try:
        return fn()
    except _Expired:
        if _deadlines and _deadlines[-1] == deadline and deadline < min(_deadlines[:-1] or [float("inf")]):
            raise DerivationTimeout(f"symbolic step exceeded its bound of {seconds:g} s") from None
        raise  # an enclosing bound expired: let it reach its own owner
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        _deadlines.pop()
        signal.signal(signal.SIGALRM, outer_handler)
        if _deadlines:  # re-arm the enclosing bound
            remaining = _deadlines[-1] - time.monotonic()
            signal.setitimer(signal.ITIMER_REAL, max(remaining, 1e-4))


def attempt(fn: Callable[[], T], fallback: T, seconds: float = DEFAULT_SECONDS) -> tuple[T, bool]:
    """Run ``fn()`` under a bound; on timeout return ``(fallback, False)``.

    Returns
    -------
    (value, finished) : tuple
        ``finished`` is False when the bound was hit and ``fallback`` is returned.
    """
    try:
        return bounded(fn, seconds), True
    except DerivationTimeout:
        return fallback, False
