"""Ctrl-C that is never lost.

Python turns SIGINT into ``KeyboardInterrupt`` wherever the main thread happens to be;
raised inside a garbage-collector callback, a ``__del__`` or a library that converts
exceptions, it can be swallowed ("Exception ignored in ...") or reported as another
error.  :func:`ctrl_c_latched` installs a handler that also *latches* the press, so
that a command asks :func:`pressed` (or calls :func:`checkpoint` between units of work)
and ends with exit code 130 whatever became of the exception.  A press that lands in a
garbage collection is held back and sent again a moment later, outside it.
"""
from __future__ import annotations

import gc
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_pressed = False
#: Seconds after which a press held back during a garbage collection is sent again.
RETRY_SECONDS = 0.02
_again: threading.Timer | None = None


def _on_sigint(signum, frame):
    global _pressed
    _pressed = True
    if in_gc_callback(frame):  # there it would only be printed ("Exception ignored ..."): once it is over
        _send_again()
    else:
        raise KeyboardInterrupt


def _send_again() -> None:
    """SIGINT to the main thread again in :data:`RETRY_SECONDS`, by then (most likely) outside
    the collection: a press that lands in one is raised after it, not at the next
    :func:`checkpoint` only (which may be many seconds away, e.g. while modules import)."""
    global _again
    if _again is None or not _again.is_alive():
        _again = threading.Timer(RETRY_SECONDS, signal.pthread_kill, (threading.main_thread().ident, signal.SIGINT))
        _again.daemon = True
        _again.start()


def _cancel_again() -> None:
    global _again
    if _again is not None:
        _again.cancel()
        _again.join()
        _again = None


_collecting = False


def _collection(phase: str, info: dict) -> None:
    global _collecting
    _collecting = phase == "start"


def watch_collections() -> None:
    """Track whether a garbage collection is running (a ``gc.callbacks`` entry, added once):
    what it runs (callbacks, finalizers such as an event loop's ``__del__``, weakref callbacks)
    swallows exceptions."""
    if _collection not in gc.callbacks:
        gc.callbacks.insert(0, _collection)


def in_gc_callback(frame, depth: int = 8) -> bool:
    """Is a garbage collection running (:func:`watch_collections`), or is ``frame`` (or one of
    its callers, a few levels up) a ``gc.callbacks`` function, such as the one hypothesis
    installs to time garbage collection?  An exception raised there is printed and swallowed,
    so signal handlers hold theirs back."""
    if _collecting:
        return True
    codes = {getattr(cb, "__code__", None) for cb in gc.callbacks}
    while frame is not None and depth:
        if frame.f_code in codes:
            return True
        frame, depth = frame.f_back, depth - 1
    return False


@contextmanager
def ctrl_c_latched() -> Iterator[None]:
    """Within the block, Ctrl-C raises ``KeyboardInterrupt`` and is remembered."""
    global _pressed
    _pressed = False
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    watch_collections()
    previous = signal.signal(signal.SIGINT, _on_sigint)
    try:
        yield
    finally:
        _cancel_again()
        signal.signal(signal.SIGINT, previous)


def pressed() -> bool:
    """Was Ctrl-C pressed inside the current :func:`ctrl_c_latched` block?"""
    return _pressed


def checkpoint() -> None:
    """Raise ``KeyboardInterrupt`` if Ctrl-C was pressed, even if its exception was lost."""
    if _pressed:
        raise KeyboardInterrupt
