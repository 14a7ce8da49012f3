"""Starting a submission's process, in a bubblewrap sandbox where there is one.

With ``bwrap`` (Debian package ``bubblewrap``) the child (:mod:`symbackprop.grading.child`) runs

* in namespaces of its own: no network (an empty network namespace), its own PID namespace
  (no signal reaches the grader, the command or the other submissions; SIGSTOP included),
  a new session, and it dies with the grader (``--die-with-parent``);
* on a read-only view of ``/`` in which ``/tmp``, ``/run``, the home folder, the folders of
  the batch's submissions, the reference declarations, the installed package (its bundled
  declarations with it) and the cache folder are empty (a tmpfs over each), the Python
  installation being bound back where it was hidden; its own file appears read-only at
  ``/tmp/submission/NAME.py`` (with the rest of its folder when the folder is its own: no
  other submission and nothing hidden in it) and a private :data:`SCRATCH_BYTES` tmpfs, ``/tmp/scratch``,
  is the only place it can write;
* with no way to make user namespaces of its own (bwrap's ``--disable-userns`` where bwrap
  itself makes one; a seccomp filter from libseccomp, through ``pyseccomp``, in every case:
  ``unshare`` and ``clone`` with ``CLONE_NEWUSER`` fail with EPERM, and ``clone3``, whose
  flags a filter cannot read, with ENOSYS, so that the C library falls back to ``clone``);
* as a user of its own, under the memory, CPU, file-size and process limits (``RLIMIT_AS``,
  ``RLIMIT_CPU``, ``RLIMIT_FSIZE``, ``RLIMIT_NPROC``: :data:`EXTRA_PROCESSES` processes
  besides its own, so that memory grown in child processes stays below
  ``(1 + EXTRA_PROCESSES)`` times the limit).  As root, bwrap sets up the mounts and the
  child drops to the user id ``1000000 + pid of the grader`` (unique while it runs, so its
  process count is its own); otherwise a user namespace maps the caller's own user.

The child is process 1 of its namespace (a small init of :mod:`~symbackprop.grading.child`
reaps and forwards the worker's exit status), so that ``kill(ppid)`` and ``kill(-1)`` reach
nothing outside.  Where bwrap is missing or cannot start (no user namespaces in a
container), :func:`probe` says why and the batch grades with isolation ``"none"``: the child
still is a process of its own that computes no verdict, but it shares the file system, the
network and the user of the grader.
"""
from __future__ import annotations

import contextlib
import errno
import functools
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from ..files import cache_dir
from ..spec.catalog import bundled_dir
from . import child
from .remote import LoadFailed, Session

BWRAP, NONE = "bwrap", "none"
#: Processes the submission may start besides its own.
EXTRA_PROCESSES = 3
#: Size of the scratch folder, and of any one file written (RLIMIT_FSIZE).
SCRATCH_BYTES = 64 << 20
FILE_BYTES = 16 << 20
#: Seconds of CPU time past the wall-clock limit before the kernel stops the child.
CPU_GRACE = 5
#: Where the sandbox shows the child program, the submission and the scratch folder.
CHILD_AT, SUBMISSION_DIR, SCRATCH = "/tmp/symbackprop/child.py", "/tmp/submission", "/tmp/scratch"
#: The child's environment: no variable of the grader's (secrets, cache paths) is passed on.
THREADS = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
UID_BASE = 1_000_000


#: Flags of ``clone`` and ``unshare`` (``<sched.h>``).
CLONE_NEWUSER = 0x10000000


@functools.cache
def userns_filter() -> bytes | None:
    """The seccomp program (BPF) that stops new user namespaces; None without libseccomp."""
    try:
        import pyseccomp as seccomp  # noqa: PLC0415 - needs libseccomp.so, Linux only
    except (ImportError, OSError):
        return None
    rule = seccomp.SyscallFilter(seccomp.ALLOW)
    newuser = seccomp.Arg(0, seccomp.MASKED_EQ, CLONE_NEWUSER, CLONE_NEWUSER)
    rule.add_rule(seccomp.ERRNO(errno.EPERM), "unshare", newuser)
    rule.add_rule(seccomp.ERRNO(errno.EPERM), "clone", newuser)
    rule.add_rule(seccomp.ERRNO(errno.ENOSYS), "clone3")
    with tempfile.TemporaryFile() as out:
        rule.export_bpf(out)
        out.seek(0)
        return out.read()


def probe() -> tuple[str, str]:
    """``("bwrap", "")`` if a sandbox starts here, else ``("none", why)``; ``("bwrap", why)``
    when it starts without the seccomp filter (:func:`userns_filter`)."""
    if shutil.which("bwrap") is None:
        return NONE, "bubblewrap (bwrap) is not installed"
    try:
        run = subprocess.run(["bwrap", *_namespaces(), "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc",
                              "true"], capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.SubprocessError) as exc:
        return NONE, f"bwrap cannot start: {exc}"
    if run.returncode != 0:
        return NONE, "bwrap cannot start: " + (" ".join(run.stderr.split()) or f"exit status {run.returncode}")
    if userns_filter() is None:
        return BWRAP, "libseccomp is missing (pip install pyseccomp; Debian package libseccomp2)"
    return BWRAP, ""


def start(path: str, isolation: str, *, memory: int, timeout: float, hide: Iterable[str] = (),
          folder: str | None = None) -> Session:
    """The submission's process for ``path``, ready for requests (see :class:`~.remote.Session`);
    ``folder``, the submission's own, is shown read-only around it (its helper modules).

    Raises
    ------
    LoadFailed
        The file cannot be read, or the sandbox did not start.
    """
    try:
        source = Path(path).read_bytes()
    except OSError as exc:
        raise LoadFailed("invalid", f"{path}: cannot read: {exc.strerror}") from None
    name = Path(path).name
    limits = ["--memory", str(memory), "--cpu", str(int(timeout) + 1 + CPU_GRACE), "--file-size", str(FILE_BYTES)]
    fds: list[int] = []
    requests, replies, setup, alive = os.pipe(), os.pipe(), os.pipe(), os.pipe()
    output = os.dup(2)
    fds += [output, alive[0]]
    scratch = None
    try:
        if isolation == BWRAP:
            files = [_memfd(Path(child.__file__).read_bytes()), _memfd(source)]
            fds += files
            bpf = userns_filter()
            seccomp = [] if bpf is None else ["--seccomp", str(_memfd(bpf))]
            fds += [int(seccomp[1])] if seccomp else []
            uid = UID_BASE + os.getpid() if os.geteuid() == 0 else None
            argv = ["bwrap", *_namespaces(), "--as-pid-1", "--die-with-parent", "--new-session", *seccomp,
                    *_mounts(hide, files, name, folder), sys.executable, "-I", "-B", CHILD_AT, "--init",
                    "--alive-fd", str(alive[0]), "--processes", str(2 + EXTRA_PROCESSES), *([] if uid is None else ["--uid", str(uid)])]
            at, cwd, home = f"{SUBMISSION_DIR}/{name}", "/", SCRATCH
        else:
            scratch = tempfile.mkdtemp(prefix="symbackprop-scratch-")
            argv = [sys.executable, "-I", "-B", child.__file__, "--processes", str(1 + EXTRA_PROCESSES)]
            at, cwd, home = str(Path(path).resolve()), scratch, scratch
        env = {"PATH": "/usr/bin:/bin", "HOME": home, "TMPDIR": home, "LANG": "C.UTF-8", **THREADS}
        process = subprocess.Popen([*argv, "--output-fd", str(output), *limits], stdin=requests[0],
                                   stdout=replies[1], stderr=setup[1], pass_fds=fds, env=env, cwd=cwd,
                                   close_fds=True)
    except OSError as exc:
        for fd in (*requests, *replies, *setup, alive[1]):
            os.close(fd)
        raise LoadFailed("crash", f"the submission's process did not start: {exc}") from None
    finally:
        for fd in fds:
            os.close(fd)
    for fd in (requests[0], replies[1], setup[1]):
        os.close(fd)
    try:
        session = Session(process, requests[1], replies[0], setup[0], name)
    except BaseException:
        process.kill()
        process.wait()
        for fd in (requests[1], replies[0], alive[1]):
            os.close(fd)
        if scratch:
            shutil.rmtree(scratch, ignore_errors=True)
        raise
    session.path, session.scratch, session.alive = at, scratch, alive[1]
    return session


def finish(session: Session) -> None:
    """End the child and remove what it left (the scratch folder without a sandbox)."""
    session.close()
    os.close(session.alive)  # the sandbox's init ends with it, should bwrap itself be gone already
    if session.scratch:
        shutil.rmtree(session.scratch, ignore_errors=True)


def _namespaces() -> list[str]:
    if os.geteuid() == 0:  # bwrap runs privileged: no user namespace (the child drops to a user of its own)
        return ["--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts", "--unshare-cgroup-try",
                "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
    return ["--unshare-all", "--unshare-user", "--disable-userns"]


def _memfd(data: bytes) -> int:
    fd = os.memfd_create("symbackprop", 0)
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


def hidden_paths(hide: Iterable[str]) -> list[Path]:
    """What the sandbox empties: temporary and runtime folders, the home folder, the given
    paths (submission folders, reference declarations), the cache folder."""
    paths = [Path("/tmp"), Path("/run"), Path.home(), cache_dir(), *map(Path, hide)]
    return _outermost(p for p in map(_real, paths) if p is not None)


def package_paths() -> list[Path]:
    """Every copy of the package (and its bundled declarations) on the import path."""
    here = Path(__file__).resolve().parents[1]
    found = [here, here.parent / "derivations"]
    with contextlib.suppress(Exception):
        found.append(bundled_dir())
    for entry in sys.path:
        found += [Path(entry or ".") / "symbackprop", Path(entry or ".") / "derivations"]
    return _outermost(p for p in map(_real, found) if p is not None and p.is_dir())


def needed_paths() -> list[Path]:
    """What Python and numpy need to run."""
    paths = [sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix,
             os.path.dirname(os.path.realpath(sys.executable)), os.path.dirname(os.path.dirname(np.__file__))]
    return _outermost(p for p in map(_real, paths) if p is not None)


def _mounts(hide: Iterable[str], files: list[int], name: str, folder: str | None = None) -> list[str]:
    out = ["--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc"]
    hidden = hidden_paths(hide)
    for h in hidden:
        out += ["--tmpfs", str(h)]
    made: set[Path] = set()
    for n in needed_paths():
        over = next((h for h in hidden if _under(n, h)), None)
        if over is None:
            continue
        for parent in reversed(n.parents):
            if _under(parent, over) and parent != over and parent not in made:
                made.add(parent)
                out += ["--perms", "0755", "--dir", str(parent)]
        out += ["--ro-bind", str(n), str(n)]
    for p in package_paths():
        if not any(_under(p, h) for h in hidden) or any(_under(p, n) for n in needed_paths()):
            out += ["--tmpfs", str(p)]
    if folder is not None:
        out += ["--ro-bind", folder, SUBMISSION_DIR]
    out += ["--perms", "0444", "--ro-bind-data", str(files[0]), CHILD_AT,
            "--perms", "0444", "--ro-bind-data", str(files[1]), f"{SUBMISSION_DIR}/{name}",
            "--perms", "0777", "--size", str(SCRATCH_BYTES), "--tmpfs", SCRATCH,
            "--remount-ro", "/tmp", "--remount-ro", "/dev", "--chdir", SCRATCH]
    return out


def _real(path) -> Path | None:
    try:
        real = Path(os.path.realpath(path))
    except (OSError, ValueError):
        return None
    return real if real.exists() and real != Path("/") else None


def _under(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def _outermost(paths: Iterable[Path]) -> list[Path]:
    """The paths without those inside another, sorted."""
    unique = sorted(set(paths), key=lambda p: (len(p.parts), str(p)))
    out: list[Path] = []
    for p in unique:
        if not any(_under(p, q) for q in out):
            out.append(p)
    return out
