"""One submission, graded by a process of its own: the grader side of :mod:`symbackprop.grading.batch`.

:func:`child_main` runs in a fresh process forked by the forkserver (never in the
command's own process).  This *grader* never imports the submission: it starts the
submission's own process (:mod:`.sandbox`, :mod:`.child`), checks a
:class:`~.remote.RemoteLayer` that stands for the submitted class, writes one JSON outcome
``{"ok": bool, "findings": [...], "isolation": ...}`` to the result pipe and leaves with
``os._exit``.  Nothing the submission's process sends is read as a verdict: only numbers.
Confinement of the grader itself:

* its own process group (``os.setpgid``), so that the parent can kill it and, without a
  sandbox, whatever the submission forks;
* a watchdog thread that ends the process when the command is gone (the read end of a
  pipe only the command writes to reaches end of file), so that nothing outlives a
  killed command (the sandbox dies with the grader);
* stdout and stderr (file descriptors 1 and 2, the submission's too) go to a pipe the
  parent drains and caps;
* ``RLIMIT_AS``, ``RLIMIT_CPU`` and ``RLIMIT_CORE = 0``, as for the submission's process.

What the submission did becomes a finding in the layer checker's schema
(``kind``, ``input``, ``message``, ``max_rel_error``, ``counterexample``): ``memory``
(a ``MemoryError`` in its process), ``exception`` (an import that raised, ``sys.exit``),
``invalid`` (no such file or class, a value that is not plain numeric data, a derivation
file the loader rejects), ``crash`` (its process died); the parent adds ``timeout``.
"""
from __future__ import annotations

import contextlib
import json
import os
import resource
import signal
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..checker import verify_layer
from ..checker.pairs import pair_names
from ..errors import DerivationTimeout, SymbackpropError
from ..verify import verify
from . import remote, sandbox
from .remote import ChildGone, Invalid, LoadFailed, OutOfMemory, Stopped

LAYER, STEPS = "layer", "steps"
#: Memory held back from the grader, released before the outcome is written.
RESERVE_BYTES = 16 << 20
#: Seconds of CPU time past the wall-clock limit before the kernel stops the process
#: (the parent kills it at the wall-clock limit; this only matters if the parent is gone).
CPU_GRACE = sandbox.CPU_GRACE
#: Written first on the result pipe once the submission's process is up: its time starts then.
STARTED = b"\x01"
_reserve: bytearray | None = None
_result_fd: int | None = None


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
        The declaration to check a layer against (pickled into the grader).
    timeout : float
        Wall-clock limit in seconds (enforced by the parent; here a CPU backstop).
    memory : int
        Address-space limit in bytes.
    isolation : str
        ``"bwrap"`` (the submission's process in a sandbox) or ``"none"``.
    hide : tuple of str
        Paths the sandbox empties (the batch's submission folders, the reference declaration).
    folder : str or None
        The submission's own folder, shown read-only around its file in the sandbox (its
        helper modules import), when nothing else the batch hides lies in it.
    """

    kind: str
    path: str
    name: str | None = None
    spec: Any = None
    timeout: float = 10.0
    memory: int = 1 << 30
    isolation: str = sandbox.NONE
    hide: tuple[str, ...] = ()
    folder: str | None = None


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
    global _reserve, _result_fd
    _result_fd = result.fileno()
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


def _started() -> None:
    """Tell the command that the submission's own time starts now."""
    if _result_fd is not None:
        _write_all(_result_fd, STARTED)


def _release() -> None:
    global _reserve
    _reserve = None


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


# -- grading ------------------------------------------------------------------------------------
def grade(task: Task) -> dict:
    """The outcome of one submission: ``{"ok": bool, "findings": [finding, ...], "isolation": ...}``.

    Whatever the submission does ends in a finding; only the death of this process escapes
    (the parent reports it).
    """
    try:
        outcome = _GRADERS[task.kind](task)
    except MemoryError as exc:
        _release()
        outcome = failed("memory", _out_of_memory(task, f"the grader raised {type(exc).__name__}"))
    except DerivationTimeout as exc:
        outcome = failed("timeout", f"symbolic work ran past its bound: {_one_line(exc)}")
    except SymbackpropError as exc:
        outcome = failed("invalid", _one_line(exc))
    except BaseException as exc:  # noqa: BLE001 - KeyboardInterrupt, anything the check let through
        _release()
        outcome = failed("exception", f"the check stopped: {_describe(exc)}")
    return {**outcome, "isolation": task.isolation}


def grade_layer(task: Task) -> dict:
    """Load the class in the submission's own process (sandboxed, see :mod:`.sandbox`) and check
    the :class:`~.remote.RemoteLayer` standing for it with :func:`~symbackprop.checker.verify_layer`:
    every finding and the verdict are computed here, from the numbers the child sent."""
    target = f"{task.path}:{task.name}"
    if not task.path.endswith(".py"):
        return failed("invalid", f"{task.path}: no such Python file")
    session = None
    try:
        session = sandbox.start(task.path, task.isolation, memory=task.memory, timeout=task.timeout, hide=task.hide,
                                folder=task.folder)
        _started()
        info = session.load(session.path, task.name)
        functions = pair_names(task.name)
        cls = session.pair_class(functions, info, task.spec) if functions else session.layer_class(task.name, info)
        report = verify_layer(cls, task.spec, name=target, current=session.current)
        return {"ok": report.ok, "findings": [f.to_json() for f in report.findings]}
    except LoadFailed as exc:
        if exc.kind == "no-class":
            return failed("invalid", f"{task.path}: no class {task.name!r} (classes: {exc.message or 'none'})")
        if exc.kind == "no-function":
            return failed("invalid", f"{task.path}: no function {exc.message!r}")
        return failed(exc.kind, f"{task.path}: {exc.message}" if exc.kind == "exception" else exc.message)
    except OutOfMemory as exc:
        return failed("memory", _out_of_memory(task, f"{exc.phase} raised {exc.name}{exc.where}"))
    except Stopped as exc:
        return failed("exception", f"the check stopped: {exc.description}{exc.where}")
    except Invalid as exc:
        return failed("invalid", f"{task.path}: {remote.one_line(str(exc))}")
    except ChildGone:
        return failed("crash", death(session.exitcode() if session else None, "the submission's process"))
    finally:
        if session is not None:
            sandbox.finish(session)


def grade_steps(task: Task) -> dict:
    """Check a derivation file with :func:`~symbackprop.verify.verify` (here: the file is read by
    the safe parser, no code of the submission runs): wrong claims and wrong steps become
    findings (``numeric`` and ``conditional`` steps hold, and are not)."""
    _started()
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


def death(exitcode: int | None, who: str = "the grading process") -> str:
    """Why a process that did not report died, from its exit code (a signal as a negative
    number; a sandbox reports signal N as 128 + N)."""
    if exitcode is not None and 128 < exitcode <= 128 + 64 and who != "the grading process":
        exitcode = 128 - exitcode
    if exitcode is None or exitcode == 255:
        return f"{who} died before reporting (exit status unknown)"
    if exitcode < 0:
        name = _signal_name(-exitcode)
        why = {"SIGSEGV": " (a segmentation fault: a crash in native code, e.g. through ctypes)",
               "SIGKILL": " (by itself or another process, or the kernel's out-of-memory killer)",
               "SIGABRT": " (the interpreter or a native library aborted)",
               "SIGBUS": " (a bus error in native code)"}.get(name, "")
        return f"{who} was killed by {name}{why} before reporting"
    return f"{who} exited with status {exitcode} before reporting (os._exit, or a hard exit)"


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _out_of_memory(task: Task, detail: str) -> str:
    return f"ran out of memory (limit {task.memory / (1 << 20):g} MiB of address space): {detail}"


def _describe(exc: BaseException) -> str:
    text = _one_line(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:2000]
