"""One submission, graded inside a process of its own: the child side of :mod:`symbackprop.grading.batch`.

:func:`child_main` runs in a fresh process forked by the forkserver (never in the
command's own process).  It confines itself, grades the submission, writes one JSON
outcome ``{"ok": bool, "findings": [...]}`` to the result pipe and leaves with
``os._exit``, so that no ``atexit`` handler, finalizer or thread of the submission runs
after the verdict.  Confinement:

* its own process group (``os.setpgid``), so that the parent can kill whatever the
  submission forks, and a ``kill(0, ...)`` reaches nothing else;
* a watchdog thread that ends the process when the command is gone (the read end of a
  pipe only the command writes to reaches end of file), so that nothing outlives a
  killed command; the forkserver, by contrast, may die (a submission can kill its
  parent) without taking the other submissions' processes with it;
* stdout and stderr (file descriptors 1 and 2, so C code too) go to a pipe the parent
  drains and caps;
* ``RLIMIT_AS`` (memory: the whole address space, the grader's own ~160 MB included),
  ``RLIMIT_CPU`` (a backstop a few seconds past the wall-clock limit the parent
  enforces), ``RLIMIT_CORE = 0`` (a segfault leaves no core file).

What the submission did becomes a finding in the layer checker's schema
(``kind``, ``input``, ``message``, ``max_rel_error``, ``counterexample``): ``memory``
(a ``MemoryError``, wherever it surfaced), ``exception`` (an import that raised,
``sys.exit``, an exception that stopped the check), ``invalid`` (no such file or class,
a derivation file the loader rejects); the parent adds ``timeout`` and ``crash``.
This isolates submissions from the batch and from each other; it is no sandbox: a
submission can still read files, use the network or lie about its own verdict by
patching the checker in its process (run the grader in a container for that).
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import resource
import sys
import threading
import traceback
import types
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..checker import load_class, verify_layer
from ..errors import DerivationTimeout, SymbackpropError
from ..verify import verify

LAYER, STEPS = "layer", "steps"
#: Memory held back from the submission, released before the outcome is written, so that
#: a submission that exhausted its memory limit can still be reported on.
RESERVE_BYTES = 16 << 20
#: Seconds of CPU time past the wall-clock limit before the kernel stops the process
#: (the parent kills it at the wall-clock limit; this only matters if the parent is gone).
CPU_GRACE = 5
_MEMORY_RAISED = re.compile(r"raised \w*MemoryError\b")
_reserve: bytearray | None = None


@dataclass(frozen=True)
class Task:
    """One submission to grade, and the limits to grade it under.

    Attributes
    ----------
    kind : str
        :data:`LAYER` (a class checked with :func:`~symbackprop.checker.verify_layer`)
        or :data:`STEPS` (a derivation file checked with :func:`~symbackprop.verify.verify`).
    path : str
        The submission's file, as the user named it.
    name : str or None
        The class to check, for a layer.
    spec : Spec or None
        The declaration to check a layer against (pickled into the child).
    timeout : float
        Wall-clock limit in seconds (enforced by the parent; here a CPU backstop).
    memory : int
        Address-space limit in bytes.
    """

    kind: str
    path: str
    name: str | None = None
    spec: Any = None
    timeout: float = 10.0
    memory: int = 1 << 30


def finding(kind: str, message: str, counterexample: dict | None = None) -> dict:
    """A finding in :meth:`symbackprop.reports.Finding.to_json`'s schema."""
    return {"kind": kind, "input": None, "message": message, "max_rel_error": None,
            "counterexample": counterexample}


def failed(kind: str, message: str) -> dict:
    """The outcome of a submission stopped by one finding."""
    return {"ok": False, "findings": [finding(kind, message)]}


# -- the child process -------------------------------------------------------------------------
def child_main(task: Task, result: Any, output: Any, alive: Any) -> None:
    """Grade ``task`` in this process and exit; never returns.

    Parameters
    ----------
    task : Task
        What to grade.
    result, output : multiprocessing.connection.Connection
        Write ends of the result pipe (one JSON document) and of the output pipe
        (the submission's stdout and stderr).
    alive : multiprocessing.connection.Connection
        Read end of a pipe that reaches end of file when the command is gone.
    """
    global _reserve
    _watch(alive.fileno())
    confine(task, output.fileno())
    output.close()
    _reserve = bytearray(RESERVE_BYTES)
    outcome = grade(task)
    _release()
    with contextlib.suppress(BaseException):
        sys.stdout.flush()
        sys.stderr.flush()
    _write_all(result.fileno(), json.dumps(outcome, default=str).encode())
    os._exit(0)


def confine(task: Task, output_fd: int) -> None:
    """Own process group, stdout and stderr to ``output_fd``, resource limits (a limit above
    an inherited hard limit is lowered to it)."""
    with contextlib.suppress(OSError):
        os.setpgid(0, 0)
    _forget_forkserver()
    os.dup2(output_fd, 1)
    os.dup2(output_fd, 2)
    cpu = int(task.timeout) + 1 + CPU_GRACE
    for limit, value in ((resource.RLIMIT_CORE, 0), (resource.RLIMIT_CPU, cpu), (resource.RLIMIT_AS, task.memory)):
        with contextlib.suppress(ValueError, OSError):
            _, hard = resource.getrlimit(limit)
            value = value if hard == resource.RLIM_INFINITY else min(value, hard)
            resource.setrlimit(limit, (value, value))


def _watch(fd: int) -> None:
    """End this process as soon as ``fd`` reaches end of file (the command is gone)."""
    def wait() -> None:
        with contextlib.suppress(OSError):
            while os.read(fd, 1):
                pass
        os._exit(70)

    threading.Thread(target=wait, name="symbackprop-watchdog", daemon=True).start()


def _forget_forkserver() -> None:
    """Close our copy of the forkserver's "alive" pipe, so that the forkserver exits when the
    command does (it would wait for this process otherwise)."""
    with contextlib.suppress(Exception):
        from multiprocessing import forkserver

        fd = forkserver._forkserver._forkserver_alive_fd
        if fd is not None:
            os.close(fd)
            forkserver._forkserver._forkserver_alive_fd = None


def _release() -> None:
    global _reserve
    _reserve = None


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


# -- grading ------------------------------------------------------------------------------------
def grade(task: Task) -> dict:
    """The outcome of one submission: ``{"ok": bool, "findings": [finding, ...]}``.

    Whatever the submission raises, including ``SystemExit`` and ``MemoryError``, ends in a
    finding; only the death of the process escapes (the parent reports it).
    """
    try:
        return _GRADERS[task.kind](task)
    except MemoryError as exc:
        _release()
        return failed("memory", _out_of_memory(task, f"{type(exc).__name__}{_where(exc, task.path)}"))
    except DerivationTimeout as exc:
        return failed("timeout", f"symbolic work ran past its bound: {_one_line(exc)}")
    except SymbackpropError as exc:
        return failed("invalid", _one_line(exc))
    except BaseException as exc:  # noqa: BLE001 - sys.exit, KeyboardInterrupt, anything the check let through
        _release()
        return failed("exception", f"the check stopped: {_describe(exc)}{_where(exc, task.path)}")


def grade_layer(task: Task) -> dict:
    """Import the class and check it with :func:`~symbackprop.checker.verify_layer`."""
    target = f"{task.path}:{task.name}"
    try:
        cls = load_class(target)
    except SymbackpropError as exc:
        return _import_failure(task, exc)
    try:
        report = verify_layer(watched(cls), task.spec, name=target)
    except OutOfMemory as exc:
        _release()
        detail = f"{exc.method} raised {type(exc.error).__name__}{_where(exc.error, task.path)}"
        return failed("memory", _out_of_memory(task, detail))
    findings = [_memory_or_same(task, f.to_json()) for f in report.findings]
    return {"ok": report.ok, "findings": findings}


class OutOfMemory(BaseException):
    """A method of the layer ran out of memory: a BaseException, so that the checker (which
    reports a method's ``Exception`` and goes on calling it) stops at once, instead of
    filling the memory again at every call until the time limit."""

    def __init__(self, method: str, error: MemoryError):
        super().__init__(method)
        self.method, self.error = method, error


#: Methods of a layer whose ``MemoryError`` ends the check.
WATCHED = ("forward", "backward")


def watched(cls: Any) -> Any:
    """A subclass of ``cls`` whose ``forward`` and ``backward`` turn a ``MemoryError`` into
    :class:`OutOfMemory`, and behave as the originals otherwise; ``cls`` itself when it is
    not a class or cannot be subclassed."""
    if not isinstance(cls, type):
        return cls
    owner: list[type] = []

    def guard(name: str) -> Callable:
        def method(self, *args, **kwargs):
            try:
                return getattr(super(owner[0], self), name)(*args, **kwargs)
            except MemoryError as exc:
                raise OutOfMemory(name, exc) from None
        method.__name__ = method.__qualname__ = name
        return method

    namespace = {name: guard(name) for name in WATCHED if callable(getattr(cls, name, None))}
    namespace.update(__module__=cls.__module__, __qualname__=cls.__qualname__, __doc__=cls.__doc__)
    try:
        sub = types.new_class(cls.__name__, (cls,), exec_body=lambda ns: ns.update(namespace))
    except Exception:  # noqa: BLE001 - a final class, a metaclass that refuses
        return cls
    owner.append(sub)
    return sub


def grade_steps(task: Task) -> dict:
    """Check a derivation file with :func:`~symbackprop.verify.verify`: wrong claims and wrong
    steps become findings (``numeric`` and ``conditional`` steps hold, and are not)."""
    report = verify(task.path)
    findings = []
    for claim in report.claims:
        if claim.verdict.status == "wrong":
            findings.append(finding("wrong-claim", f"claim {claim.of} = {claim.text}: {claim.verdict.explanation}",
                                    claim.verdict.counterexample))
    for chain in report.chains:
        if not chain.ok:
            step = chain.steps[chain.first_wrong_step]
            findings.append(finding("wrong-step", f"chain {chain.of}: step {step.index} ({step.text}) is wrong: "
                                    f"{step.verdict.explanation}", step.verdict.counterexample))
    return {"ok": report.ok, "findings": findings}


_GRADERS: dict[str, Callable[[Task], dict]] = {LAYER: grade_layer, STEPS: grade_steps}


def _import_failure(task: Task, exc: SymbackpropError) -> dict:
    """``load_class`` says why in one line; the exception it hides (``__context__``) says
    whether the submission's code ran and raised, or ran out of memory."""
    cause = exc.__context__
    if isinstance(cause, MemoryError):
        _release()
        return failed("memory", _out_of_memory(task, f"importing it raised {type(cause).__name__}"))
    if cause is not None:
        return failed("exception", _one_line(exc) + _where(cause, task.path))
    return failed("invalid", _one_line(exc))


def _memory_or_same(task: Task, record: dict) -> dict:
    """An ``exception`` finding whose exception is a ``MemoryError`` is the memory limit."""
    if record["kind"] == "exception" and _MEMORY_RAISED.search(record["message"]):
        return {**record, "kind": "memory", "message": _out_of_memory(task, record["message"])}
    return record


def _out_of_memory(task: Task, detail: str) -> str:
    return f"ran out of memory (limit {task.memory / (1 << 20):g} MiB of address space): {detail}"


def _describe(exc: BaseException) -> str:
    if isinstance(exc, SystemExit):
        return f"the submission called sys.exit({_safe(lambda: repr(exc.code))}) (SystemExit)"
    text = _one_line(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _safe(text: Callable[[], str]) -> str:
    """A string the submission's objects make, or a placeholder if making it raises."""
    try:
        return text()
    except Exception:  # noqa: BLE001 - a hostile __str__ or __repr__
        return "<unprintable>"


def _where(exc: BaseException, path: str) -> str:
    """`` (at FILE:LINE in FUNCTION)``: the last frame of the submission's own file."""
    mine = str(Path(path).resolve())
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if _resolved(f.filename) == mine]
    if not frames:
        return ""
    f = frames[-1]
    return f" (at {Path(path).name}:{f.lineno} in {f.name})"


def _resolved(filename: str) -> str:
    try:
        return str(Path(filename).resolve())
    except (OSError, ValueError):
        return filename


def _one_line(exc: BaseException) -> str:
    return " ".join(_safe(lambda: str(exc)).split())[:2000]
