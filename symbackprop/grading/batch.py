"""Grading many submissions: each in a process of its own, in parallel, in bounded time and memory.

:func:`grade` runs :class:`~symbackprop.grading.worker.Task` s, at most ``jobs`` at a time, each in
a new process (:func:`symbackprop.grading.worker.child_main`) under a wall-clock limit enforced
here (the process group is killed: ``timeout``) and a memory limit enforced by the
kernel (``RLIMIT_AS``: ``memory``).  A process that dies before reporting (``os._exit``,
a signal, a segfault) gives a ``crash`` finding for its submission only; the next
submission gets a new process.  The submission's stdout and stderr are drained as they
come and only the first :data:`OUTPUT_BYTES` are kept.  Results come back in the order
of the tasks (sorted by path by :func:`expand`), never in the order they finished.
Ctrl-C (SIGINT, or SIGTERM) stops the running processes and returns what finished.

Processes come from a ``multiprocessing`` forkserver that has imported numpy, SymPy and
the checkers once: a new process costs a fork (about 10 ms; grading a correct sigmoid,
about 0.07 to 0.1 s in all) where ``spawn`` or ``subprocess`` pay a new interpreter and
those imports again (0.5 and 0.6 s before any work, measured on this project's 2-core
machine).  ``fork`` from the command itself is avoided: the forkserver is a
single-threaded process started clean (BLAS thread pools disabled in it), and every
submission starts from that same state, never from another submission's.
"""
from __future__ import annotations

import contextlib
import glob
import os
import signal
import sys
import time
import types
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from multiprocessing import connection, get_context
from pathlib import Path

from ..checker.pairs import pair_names
from ..errors import SymbackpropError
from ..lang.parser import is_identifier
from ..reports import failing_kinds
from . import sandbox
from .worker import STARTED, Task, child_main, death, finding

#: Default wall-clock limit per submission, in seconds.
DEFAULT_TIMEOUT = 10.0
#: Default address-space limit per submission (the grader's own ~160 MB included).
DEFAULT_MEMORY = 1 << 30
#: Smallest memory limit accepted: below it the grader itself cannot run.
MIN_MEMORY = 256 << 20
#: Bytes of a submission's output kept in its record (the rest is read and dropped).
OUTPUT_BYTES = 4096
#: Largest outcome a grading process may send (a larger one is treated as a crash).
RESULT_BYTES = 16 << 20
#: Seconds a submission's process (a sandbox, Python, numpy) may take to start, besides its limit.
STARTUP = 10.0
#: Seconds between looks at the clock (deadlines, Ctrl-C, the progress bar).
TICK = 0.1
#: Bytes read from one pipe in one go, and reads per pipe per tick (a submission that
#: prints without end cannot keep the loop from the others).
CHUNK, READS_PER_TICK = 1 << 16, 64
#: Modules the forkserver imports once, so that every process starts with them: the
#: grader's; the pipeline (the class of a task's declaration); and what SymPy imports on
#: first use (``Add.flatten`` imports ``sympy.tensor.tensor``), which every grading process
#: would otherwise import again as it unpickles its task and checks it (0.15 s of CPU each).
PRELOAD = ["symbackprop.grading.worker", "symbackprop.checker", "symbackprop.verify",
           "symbackprop.derivation", "symbackprop.spec.catalog", "symbackprop.pipeline",
           "sympy.tensor.tensor", "sympy.sets.setexpr", "sympy.assumptions.wrapper", "sympy.sets.handlers.functions"]
#: Numeric libraries must not start thread pools in the forkserver (it forks).
THREAD_ENV = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


@dataclass
class Result:
    """The verdict on one submission."""

    path: str
    ok: bool
    findings: list[dict]
    seconds: float
    output: str = ""
    name: str | None = None
    isolation: str = sandbox.NONE

    @property
    def kinds(self) -> list[str]:
        """The kinds of its failing findings, each once, in order of appearance."""
        return failing_kinds(self.findings)

    def to_json(self) -> dict:
        """One record: ``path`` (and ``class``), ``ok``, ``findings``, ``seconds``, ``output``,
        ``isolation`` (``"bwrap"``: the submission ran in a sandbox; ``"none"``: without)."""
        record = {"path": self.path}
        if self.name is not None:
            record["class"] = self.name
        return {**record, "ok": self.ok, "findings": self.findings, "seconds": self.seconds,
                "output": self.output, "isolation": self.isolation}


@dataclass
class Batch:
    """Every verdict of a run, in task order; ``pending`` lists what an interrupt left ungraded."""

    results: list[Result]
    seconds: float
    jobs: int
    interrupted: bool = False
    pending: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.interrupted and all(r.ok for r in self.results)


# -- what to grade ---------------------------------------------------------------------------
def expand(patterns: Sequence[str], *, with_class: bool) -> list[tuple[str, str | None]]:
    """The submissions that patterns name, sorted by path (then class), each once.

    Parameters
    ----------
    patterns : sequence of str
        Paths, or glob patterns (``submissions/*/layers.py``; ``**`` recurses); with
        ``with_class``, each followed by ``:CLASS``.
    with_class : bool
        Whether each pattern ends in ``:CLASS``.

    Returns
    -------
    list of (path, class or None)

    Raises
    ------
    SymbackpropError
        A malformed pattern, a pattern that matches no file, or a path that does not exist.
    """
    found: set[tuple[str, str | None]] = set()
    for pattern in patterns:
        file_part, name = _split(pattern) if with_class else (pattern, None)
        for path in _matches(file_part, pattern):
            found.add((path, name))
    return sorted(found, key=lambda item: (item[0], item[1] or ""))


def is_pattern(text: str) -> bool:
    """Whether a path (or the FILE part of ``FILE:CLASS``) has glob characters."""
    return any(c in text for c in "*?[")


def _split(pattern: str) -> tuple[str, str]:
    file_part, sep, name = pattern.rpartition(":")
    if not sep or not file_part or not name:
        raise SymbackpropError(f"{pattern}: expected FILE.py:CLASS")
    if pair_names(name) is None and not is_identifier(name):
        raise SymbackpropError(f"{pattern}: {name!r} is not a class name")
    return file_part, name


def _matches(file_part: str, pattern: str) -> list[str]:
    if not is_pattern(file_part):
        if not Path(file_part).is_file():
            raise SymbackpropError(f"{file_part}: no such file")
        return [file_part]
    paths = [p for p in glob.glob(file_part, recursive=True) if Path(p).is_file()]
    if not paths:
        raise SymbackpropError(f"{pattern}: no file matches")
    return paths


def parse_memory(text: str) -> int:
    """``--memory``: bytes from ``1G``, ``512M``, ``1.5GiB`` or a number of MiB.

    Raises
    ------
    ValueError
        Not a size, or below :data:`MIN_MEMORY`.
    """
    units = {"": 1 << 20, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    body = text.strip().upper().removesuffix("IB").removesuffix("B")
    unit = body[-1:] if body[-1:] in "KMGT" else ""
    number = body[: len(body) - len(unit)]
    try:
        value = int(float(number) * units[unit])
    except (ValueError, OverflowError):
        raise ValueError(f"expected a size such as 1G or 512M, got {text!r}") from None
    if value < MIN_MEMORY:
        raise ValueError(f"at least {MIN_MEMORY >> 20}M: the grader itself needs about 160M, got {text!r}")
    return value


def default_jobs() -> int:
    """The number of cores this process may use."""
    with contextlib.suppress(AttributeError, OSError):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


# -- running a batch -------------------------------------------------------------------------
def grade(tasks: Sequence[Task], *, jobs: int | None = None,
          on_progress: Callable[[list[Result], int], None] | None = None,
          on_result: Callable[[int, Result], None] | None = None, isolation: str | None = None) -> Batch:
    """Grade every task, at most ``jobs`` at a time, each in a new process.

    Parameters
    ----------
    tasks : sequence of Task
        In the order the results should come in.
    jobs : int, optional
        Processes at a time (default: the number of cores).
    on_progress : callable, optional
        Called with the results so far (in finishing order) and the number running,
        after every finished submission and every :data:`TICK` seconds.
    on_result : callable, optional
        Called with the task's index and its result as each submission finishes (to append
        it to a records file that survives a crash of the command).
    isolation : str, optional
        ``"bwrap"`` or ``"none"``; by default ``"bwrap"`` where a sandbox starts (else the
        batch says once on stderr why not, and grades with ``"none"``).

    Returns
    -------
    Batch
        ``interrupted`` when SIGINT or SIGTERM arrived; then ``results`` holds what
        finished and ``pending`` the paths of the rest, and no grading process is left.
    """
    jobs = max(1, jobs or default_jobs())
    start = time.monotonic()
    done: dict[int, Result] = {}
    tasks = isolated(tasks, isolation)
    with _interruptible() as interrupted:
        _run(tasks, jobs, done, interrupted, on_progress or (lambda results, running: None),
             on_result or (lambda index, result: None))
    ordered = [done[i] for i in sorted(done)]
    pending = [t.path for i, t in enumerate(tasks) if i not in done]
    return Batch(ordered, round(time.monotonic() - start, 3), jobs, bool(interrupted), pending)


def isolated(tasks: Sequence[Task], isolation: str | None) -> list[Task]:
    """The tasks with their isolation level and the paths their sandboxes hide: every
    submission's folder and the reference declarations (added to what a task hides already:
    a task sent to a cluster keeps its whole batch's)."""
    if isolation is None:
        isolation, why = sandbox.probe()
        if why and any(t.kind == "layer" for t in tasks):
            print(f"symbackprop: {why}: " + ("submissions run without a sandbox (isolation: none)"
                                             if isolation == sandbox.NONE else
                                             "submissions may make user namespaces in the sandbox"), file=sys.stderr)
    hide = {str(Path(t.path).resolve().parent) for t in tasks}
    hide |= {str(Path(t.spec.source).resolve().parent) for t in tasks
             if getattr(t.spec, "source", None) and Path(t.spec.source).is_file()}
    files = [Path(t.path).resolve() for t in tasks]
    return [replace(t, isolation=isolation, hide=tuple(sorted(hide | set(t.hide))),
                    folder=own_folder(f, [g for g in files if g != f], hide - {str(f.parent)}))
            for t, f in zip(tasks, files)]


def own_folder(file: Path, others: Sequence[Path], hidden: Iterable[str]) -> str | None:
    """``file``'s folder if it is the submission's own: no other submission and nothing the
    sandbox hides (reference declarations, the package, the cache, the home folder) lies in it."""
    folder = file.parent
    protected = [*others, *map(Path, hidden), *sandbox.package_paths(), *sandbox.hidden_paths(())]
    return None if any(p == folder or folder in p.parents for p in protected) else str(folder)


def _run(tasks: Sequence[Task], jobs: int, done: dict[int, Result], interrupted: list,
         on_progress: Callable[[list[Result], int], None], on_result: Callable[[int, Result], None]) -> None:
    context = _context()
    queue = deque(enumerate(tasks))
    running: list[_Running] = []
    finished: list[Result] = []
    alive, alive_w = context.Pipe(duplex=False)  # the processes end when this command does
    try:
        while (queue or running) and not interrupted:
            while queue and len(running) < jobs and not interrupted:
                index, task = queue.popleft()
                running.append(_Running(index, task, context, alive))
            ready = set(connection.wait([fd for r in running for fd in r.fds()], TICK))
            for r in list(running):
                if r.step(ready):
                    running.remove(r)
                    done[r.index] = r.result
                    finished.append(r.result)
                    on_result(r.index, r.result)
                    on_progress(finished, len(running))
            on_progress(finished, len(running))
    finally:
        for r in running:
            r.abandon()
        alive.close()
        alive_w.close()


@contextlib.contextmanager
def _interruptible() -> Iterator[list]:
    """SIGINT and SIGTERM set a flag (a list, true once set) instead of raising, so that
    no process is ever started and then forgotten; the handlers are restored after."""
    flag: list = []
    handlers = {}
    with contextlib.suppress(ValueError):  # not the main thread: no handlers, no interrupt
        for sig in (signal.SIGINT, signal.SIGTERM):
            handlers[sig] = signal.signal(sig, lambda signum, frame: flag.append(signum))
    try:
        yield flag
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)


def _context():
    context = get_context("forkserver")
    context.set_forkserver_preload(PRELOAD)
    return context


@contextlib.contextmanager
def _clean_start() -> Iterator[None]:
    """While a process starts (and with it, if needed, the forkserver): BLAS and OpenMP
    start no thread pools, and ``__main__`` is hidden, so that neither the forkserver nor
    a grading process re-runs the calling script (which then needs no ``if __name__ ==
    "__main__"`` guard); the command's environment and ``__main__`` are restored after."""
    saved = {k: os.environ.get(k) for k in THREAD_ENV}
    os.environ.update(THREAD_ENV)
    main = sys.modules.get("__main__")
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        yield
    finally:
        if main is not None:
            sys.modules["__main__"] = main
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


class _Running:
    """One submission being graded: its process, its two pipes, its deadline."""

    def __init__(self, index: int, task: Task, context, alive):
        self.index, self.task = index, task
        self.process, self.result_pipe, self.output_pipe = _start(task, context, alive)
        self.started = time.monotonic()  # a forkserver (re)start is not the submission's time
        self.deadline = self.started + task.timeout + STARTUP  # until its process is up (see STARTED)
        self.exit_fd = _pidfd(self.process.pid)
        self.outcome = bytearray()
        self.head = bytearray()
        self.truncated = False
        self.open = {self.result_pipe.fileno(): self.outcome, self.output_pipe.fileno(): self.head}
        for fd in self.open:
            os.set_blocking(fd, False)
        self.result: Result | None = None

    def fds(self) -> list[int]:
        return [self.exit_fd if self.exit_fd is not None else self.process.sentinel, *self.open]

    def step(self, ready: set) -> bool:
        """Read what is ready; True once the submission is over (``self.result`` set)."""
        for fd in list(self.open):
            if fd in ready:
                self.read(fd, READS_PER_TICK)
        exit_fd = self.fds()[0]
        if exit_fd in ready or _readable(exit_fd):
            self.finish(timed_out=False)
            return True
        if time.monotonic() >= self.deadline:
            self.finish(timed_out=True)
            return True
        return False

    def read(self, fd: int, reads: int) -> None:
        """Up to ``reads`` chunks from a pipe; the output beyond :data:`OUTPUT_BYTES` is dropped."""
        buffer = self.open[fd]
        for _ in range(reads):
            try:
                chunk = os.read(fd, CHUNK)
            except BlockingIOError:
                return
            if not chunk:
                del self.open[fd]
                return
            if buffer is self.outcome and not buffer and chunk.startswith(STARTED):
                self.started = time.monotonic()  # the sandbox is up: the submission's own time starts
                self.deadline = self.started + self.task.timeout
                chunk = chunk[len(STARTED):]
            room = (OUTPUT_BYTES if buffer is self.head else RESULT_BYTES) - len(buffer)
            buffer += chunk[:max(room, 0)]
            self.truncated |= buffer is self.head and len(chunk) > room

    def finish(self, timed_out: bool) -> None:
        """Stop the process group, collect what it wrote, and judge."""
        seconds = round(time.monotonic() - self.started, 3)
        self.kill()
        for fd in list(self.open):  # every writer is gone: what they wrote is in the pipes
            self.read(fd, RESULT_BYTES // CHUNK + 1)
        outcome = None if timed_out else _parse(self.outcome)
        if outcome is None:
            outcome = _verdict_without_outcome(self.task, timed_out, self.exitcode())
        self.result = Result(self.task.path, outcome["ok"], outcome["findings"], seconds, self.output(),
                             self.task.name, self.task.isolation)
        self.close()

    def output(self) -> str:
        text = self.head.decode("utf-8", errors="replace")
        return text + f"\n[... output truncated at {OUTPUT_BYTES} bytes]" if self.truncated else text

    def exitcode(self) -> int | None:
        self.process.join(5)
        return self.process.exitcode

    def kill(self) -> None:
        """SIGKILL to the process group (the submission's own children too) and the process."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError, PermissionError, ValueError):
            self.process.kill()

    def abandon(self) -> None:
        """Interrupted: kill, wait for it, release everything."""
        self.kill()
        self.process.join(5)
        self.close()

    def close(self) -> None:
        for conn in (self.result_pipe, self.output_pipe):
            conn.close()
        if self.exit_fd is not None:
            os.close(self.exit_fd)
            self.exit_fd = None
        with contextlib.suppress(ValueError):
            self.process.close()
        self.open = {}


def _start(task: Task, context, alive, attempts: int = 5) -> tuple:
    """A new grading process and the read ends of its result and output pipes.

    The forkserver may die while it starts one (a submission killed it: it is the parent of
    every grading process); then it is started again, a few times at most.
    """
    for attempt in range(attempts):
        result_r, result_w = context.Pipe(duplex=False)
        output_r, output_w = context.Pipe(duplex=False)
        process = context.Process(target=child_main, args=(task, result_w, output_w, alive), daemon=True,
                                  name=f"grade {task.path}")
        try:
            with _clean_start():
                process.start()
            return process, result_r, output_r
        except (EOFError, OSError):
            result_r.close()
            output_r.close()
            if attempt == attempts - 1:
                raise
            time.sleep(0.05 * (attempt + 1))
        finally:
            result_w.close()
            output_w.close()
    raise AssertionError("unreachable")


def _pidfd(pid: int) -> int | None:
    """A descriptor readable when the process exits, even if the forkserver (its parent)
    is killed; None where unavailable (then the forkserver's sentinel is used)."""
    with contextlib.suppress(AttributeError, OSError):
        return os.pidfd_open(pid)
    return None


def _readable(fd: int) -> bool:
    return bool(connection.wait([fd], 0))


def _parse(data: bytearray) -> dict | None:
    """The child's outcome, or None when it is missing, cut short or malformed."""
    import json

    try:
        outcome = json.loads(bytes(data))
    except (ValueError, RecursionError):
        return None
    if not isinstance(outcome, dict) or not isinstance(outcome.get("ok"), bool) \
            or not isinstance(outcome.get("findings"), list) \
            or not all(isinstance(f, dict) and isinstance(f.get("kind"), str) for f in outcome["findings"]):
        return None
    return outcome


def _verdict_without_outcome(task: Task, timed_out: bool, exitcode: int | None) -> dict:
    if timed_out:
        return {"ok": False, "findings": [finding("timeout", f"did not finish within {task.timeout:g} s "
                                                             "(stopped: an endless loop, or too slow)")]}
    if exitcode is not None and exitcode == -signal.SIGXCPU:
        return {"ok": False, "findings": [finding("timeout", "used more CPU time than allowed (SIGXCPU)")]}
    return {"ok": False, "findings": [finding("crash", death(exitcode))]}
