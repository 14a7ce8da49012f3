"""Ctrl-C during ``symbackprop check``: exit code 130, what finished on stderr, no partial files.

The press is latched (``symbackprop/interrupts.py``), so it is honoured wherever it lands:
while SymPy is imported, inside hypothesis, in a garbage-collector callback.  (Ctrl-C during
a batch of submissions is tested in test_grading.py.)
"""
import os
import signal
import subprocess
import sys
import time

import pytest


def start_check(tmp_path):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "symbackprop", "check", "--no-cache", "--markdown", "report.md"],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def interrupt(check) -> str:
    check.send_signal(signal.SIGINT)
    start = time.monotonic()
    _, stderr = check.communicate(timeout=60)
    assert check.returncode == 130, stderr
    assert time.monotonic() - start < 30
    return stderr


def files_left(tmp_path) -> list[str]:
    return sorted(p.name for p in tmp_path.iterdir() if p.name != ".hypothesis")


def test_ctrl_c_during_check_writes_nothing_and_says_what_finished(tmp_path):
    check = start_check(tmp_path)
    header = check.stdout.readline()
    first = check.stdout.readline()  # the first declaration checked: 26 more to go
    assert header.startswith("declaration") and first.startswith("Add"), (header, first)
    stderr = interrupt(check)
    assert "interrupted after" in stderr and "Add ok" in stderr and "nothing written" in stderr
    assert files_left(tmp_path) == []


@pytest.mark.parametrize("moment", ["while starting", "inside the first check"])
def test_ctrl_c_at_any_moment_ends_with_130_and_no_file(tmp_path, moment):
    check = start_check(tmp_path)
    if moment == "while starting":
        time.sleep(0.5)  # imports, loading the declarations
    else:
        assert check.stdout.readline().startswith("declaration")
        time.sleep(0.3)  # hypothesis is searching inputs for the first declaration
    stderr = interrupt(check)
    assert "interrupted" in stderr and "Traceback" not in stderr, stderr
    assert files_left(tmp_path) == []


def test_ctrl_c_inside_a_gc_callback_is_latched_not_printed(monkeypatch):
    # hypothesis times garbage collection with a gc callback: a KeyboardInterrupt raised there
    # is printed ("Exception ignored ... Traceback") and lost; the latch holds it back and the
    # press is sent again after the collection (else it would wait for the next checkpoint)
    import gc

    from symbackprop.interrupts import checkpoint, ctrl_c_latched, pressed

    unraisable = []
    monkeypatch.setattr(sys, "unraisablehook", unraisable.append)

    def press_during_collection(phase, info):
        if phase == "start":
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)  # the handler runs here, inside the callback

    with ctrl_c_latched():
        gc.callbacks.append(press_during_collection)
        try:
            with pytest.raises(KeyboardInterrupt):
                gc.collect()
                time.sleep(30)  # the press is sent again once the collection is over: raised here
        finally:
            gc.callbacks.remove(press_during_collection)
        assert pressed() and not unraisable
        with pytest.raises(KeyboardInterrupt):
            checkpoint()
