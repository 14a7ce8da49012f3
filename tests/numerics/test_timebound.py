"""Time bounds on symbolic work."""
import time

import pytest

from symbackprop.errors import DerivationTimeout
from symbackprop.timebound import attempt, bounded


def spin():
    while True:
        pass


def test_a_runaway_step_is_stopped_and_the_fallback_kept():
    start = time.perf_counter()
    assert attempt(spin, "fallback", 0.2) == ("fallback", False)
    assert time.perf_counter() - start < 2


def test_a_quick_step_finishes():
    assert attempt(lambda: 42, 0, 1.0) == (42, True)


def test_bounded_raises_the_projects_error():
    with pytest.raises(DerivationTimeout):
        bounded(spin, 0.1)


def test_an_inner_bound_never_outlives_the_outer_one():
    start = time.perf_counter()
    result = attempt(lambda: attempt(spin, "inner", 30), "outer", 0.3)
    assert result == ("outer", False)
    assert time.perf_counter() - start < 2


def test_sequential_inner_bounds_inside_an_outer_one():
    def two():
        return attempt(spin, "a", 0.1), attempt(spin, "b", 0.1)

    assert attempt(two, None, 5) == ((("a", False), ("b", False)), True)


def test_a_bound_expiring_inside_a_gc_callback_waits_for_it_instead_of_being_swallowed(monkeypatch):
    # hypothesis times garbage collection with a gc callback; an exception raised there
    # is only printed ("Exception ignored") and the bound would be lost for 50 ms
    import gc
    import sys

    finished, unraisable = [], []
    monkeypatch.setattr(sys, "unraisablehook", unraisable.append)

    def slow_callback(phase, info):
        if phase == "start":
            end = time.perf_counter() + 0.3
            while time.perf_counter() < end:
                pass
            finished.append(True)

    def work():
        gc.collect()  # the bound (0.05 s) expires inside the callback
        spin()

    gc.callbacks.append(slow_callback)
    try:
        with pytest.raises(DerivationTimeout):
            bounded(work, 0.05)
    finally:
        gc.callbacks.remove(slow_callback)
    assert finished and not unraisable
