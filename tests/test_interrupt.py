"""Ctrl-C during ``symbackprop check``: exit code 130, what finished on stderr, no partial files.

(Ctrl-C during a batch of submissions is tested in test_grading.py.)
"""
import os
import signal
import subprocess
import sys
import time


def test_ctrl_c_during_check_writes_nothing_and_says_what_finished(tmp_path):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    check = subprocess.Popen([sys.executable, "-m", "symbackprop", "check", "--no-cache", "--markdown", "report.md"],
                             cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    header = check.stdout.readline()
    first = check.stdout.readline()  # the first declaration checked: 26 more to go
    assert header.startswith("declaration") and first.startswith("Add"), (header, first)
    check.send_signal(signal.SIGINT)
    start = time.monotonic()
    _, stderr = check.communicate(timeout=60)
    assert check.returncode == 130, stderr
    assert time.monotonic() - start < 30
    assert "interrupted after" in stderr and "Add ok" in stderr and "nothing written" in stderr
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != ".hypothesis") == []
