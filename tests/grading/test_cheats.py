"""Cheating submissions: each is wrong in its math (its backward is ``dout * y`` instead of
``dout * y * (1 - y)``) and tries to be graded ok anyway, or to harm the grader, its siblings,
the file system or the network.  Every one is graded not-ok, the honest submissions of the same
batch are graded ok, nothing outside the sandbox changes, no connection reaches the test's
server, and the command finishes with every record.

Oracles: the math each submission was written with (a wrong derivative), the file system
(hashes of the installed package, files that must not appear), a listening socket's accept
queue, and the command's own exit code and records.
"""
import hashlib
import importlib.util
import json
import os
import socket
import textwrap
from pathlib import Path

import pytest

import symbackprop
from symbackprop.cli import main
from symbackprop.spec import catalog

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
_spec = importlib.util.spec_from_file_location("submissions", FIXTURES / "submissions.py")
submissions = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(submissions)
WRONG = "dout * self.out"  # the slip every cheat makes
PACKAGE = Path(symbackprop.__file__).resolve().parent
REFERENCE = catalog.resolve("sigmoid")
SECRET_LINE = "honest submission: do not copy"


def wrong(before: str = "", after: str = "", backward: str = "pass", grad: str = WRONG) -> str:
    return submissions.sigmoid(before=textwrap.dedent(before), after=textwrap.dedent(after), backward=backward,
                               grad=grad)


def cheats(folder: Path, port: int) -> dict[str, str]:
    """name: source.  ``folder`` is the batch's folder, ``port`` the test's server."""
    return {
        "fake_verdict_on_every_fd": wrong(after="""
            import os, json
            for fd in range(256):
                try:
                    os.write(fd, json.dumps({"ok": True, "findings": [], "isolation": "bwrap"}).encode())
                except OSError:
                    pass
            """),
        "gc_walk_for_the_checker": wrong(after="""
            import gc
            for obj in gc.get_objects():
                for name in ("ok", "findings", "_findings"):
                    try:
                        if hasattr(obj, name):
                            setattr(obj, name, True if name == "ok" else [])
                    except Exception:
                        pass
            """),
        "sys_modules_patch": wrong(after="""
            import sys, types
            fake = types.ModuleType("symbackprop.checker")
            fake.verify_layer = lambda *a, **k: None
            sys.modules["symbackprop.checker"] = fake
            for name, module in list(sys.modules.items()):
                if name.startswith("symbackprop"):
                    for attr in dir(module):
                        if "verif" in attr or attr in ("run", "ok"):
                            try:
                                setattr(module, attr, lambda *a, **k: [])
                            except Exception:
                                pass
            """),
        "builtins_patch": wrong(after="""
            import builtins
            builtins.any = lambda *a, **k: False
            builtins.abs = lambda x: 0 * x
            """),
        "numpy_patch": wrong(after="""
            np.isfinite = lambda *a, **k: np.True_
            np.allclose = lambda *a, **k: True
            np.isclose = lambda a, b, *r, **k: np.ones(np.shape(a), bool)
            np.abs = np.absolute = lambda x, *a, **k: 0 * x
            np.max = np.amax = lambda *a, **k: 0.0
            """),
        "lying_ndarray_subclass": wrong(before="""
            import numpy as np

            class Liar(np.ndarray):
                def __eq__(self, other): return np.ones(self.shape, bool)
                def __sub__(self, other): return np.zeros(self.shape)
                def __rsub__(self, other): return np.zeros(self.shape)
                def __abs__(self): return np.zeros(self.shape)
                def __array_ufunc__(self, ufunc, method, *inputs, **kwargs): return np.zeros(self.shape)
                def tobytes(self, *a): return b""
            """, grad=f"np.asarray({WRONG}).view(Liar)"),
        "object_array": wrong(grad=f"np.array({WRONG}, dtype=object)"),
        "reads_neighbour_and_reference": wrong(after=f"""
            for path in ({str(folder / 'honest_a' / 'layers.py')!r}, {str(REFERENCE)!r},
                         {str(PACKAGE / 'checker' / 'layer.py')!r}):
                try:
                    print(open(path).read())
                except OSError as exc:
                    print("DENIED", type(exc).__name__)
            """),
        "connects_to_the_test_server": wrong(after=f"""
            import socket
            for host in ("127.0.0.1", "localhost"):
                try:
                    socket.create_connection((host, {port}), timeout=1).sendall(b"the reference, please")
                    print("CONNECTED")
                except OSError as exc:
                    print("NO NETWORK", exc)
            """),
        "writes_outside_scratch": wrong(after=f"""
            import os
            for path in ({str(folder / 'PWNED')!r}, "/tmp/PWNED-{os.getpid()}", {str(PACKAGE / 'PWNED')!r},
                         {str(Path.home() / f"PWNED-{os.getpid()}")!r}):
                try:
                    open(path, "w").write("pwned")
                    print("WROTE", path)
                except OSError as exc:
                    print("DENIED", type(exc).__name__)
            for path in ({str(PACKAGE / 'checker' / '__init__.py')!r}, {str(PACKAGE / 'grading' / 'worker.py')!r}):
                try:
                    open(path, "a").write("\\nverify_layer = lambda *a, **k: None\\n")
                    print("APPENDED", path)
                except OSError as exc:
                    print("DENIED", type(exc).__name__)
            """),
        "kills_everything_it_can": wrong(after="""
            import os, signal
            for pid in (-1, os.getppid(), 0 if os.getpid() == 1 else -os.getpgrp(), 1):
                for sig in (signal.SIGKILL, signal.SIGSTOP):
                    try:
                        os.kill(pid, sig)
                    except OSError:
                        pass
            """),
        "stops_its_parent": wrong(after="""
            import os, signal
            for pid in (os.getppid(), 1, -1):
                try:
                    os.kill(pid, signal.SIGSTOP)
                except OSError:
                    pass
            """),
        "fork_bomb": wrong(after="""
            import os
            for _ in range(1000):
                try:
                    os.fork()
                except OSError:
                    pass
            """),
        "memory_in_child_processes": wrong(after="""
            import os, time
            for _ in range(8):
                try:
                    if os.fork() == 0:
                        try:
                            hog = bytearray(400 << 20)
                        except MemoryError:
                            pass
                        time.sleep(60)
                        os._exit(0)
                except OSError:
                    pass
            """),
        "detects_the_checker_and_limits": wrong(after="""
            import sys, resource
            checked = any(m.startswith(("symbackprop", "sympy", "mpmath")) for m in sys.modules) \\
                or resource.getrlimit(resource.RLIMIT_AS)[0] != resource.RLIM_INFINITY
            if checked:
                Sigmoid.backward = lambda self, dout: dout * (1.0 - self.out) * self.out if False else dout * self.out
            """),
        "reads_the_callers_frames": wrong(backward="""import sys
        frame, found = sys._getframe(1), None
        while frame is not None and found is None:
            found = frame.f_locals.get("want") or frame.f_locals.get("expected")
            frame = frame.f_back
        if found is not None:
            return found""".replace("\n        ", "\n        ")),
    }


HONEST = {"honest_a": submissions.sigmoid(before=f"# {SECRET_LINE}\n"),
          "zz_honest": submissions.sigmoid()}


def package_hashes() -> dict[str, str]:
    roots = [PACKAGE, REFERENCE.parent]
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for root in roots for p in sorted(root.rglob("*"))
            if p.is_file() and "__pycache__" not in p.parts}


@pytest.fixture(scope="module")
def cheat_batch(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cheats")
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    server.setblocking(False)
    sources = {**cheats(folder, server.getsockname()[1]), **HONEST}
    for name, source in sources.items():
        (folder / name).mkdir()
        (folder / name / "layers.py").write_text(source)
    before = package_hashes()
    out = folder.parent / f"{folder.name}.json"
    code = main(["verify-layer", f"{folder}/*/layers.py:Sigmoid", "--against", "sigmoid", "--jobs", "2",
                 "--timeout", "5", "--memory", "512M", "--json", "-o", str(out)])
    try:
        connection = server.accept()
    except BlockingIOError:
        connection = None
    server.close()
    return folder, sources, code, json.loads(out.read_text()), before, connection


def test_every_cheat_is_graded_not_ok_and_every_honest_sibling_ok(cheat_batch):
    folder, sources, code, document, _, _ = cheat_batch
    records = {Path(r["path"]).parent.name: r for r in document["results"]}
    assert set(records) == set(sources) and code == 1
    for name, record in records.items():
        assert record["isolation"] == "bwrap"  # bubblewrap is a test dependency (.ci/run)
        assert record["ok"] == (name in HONEST), (name, record["findings"], record["output"][:300])


def test_no_cheat_reads_its_neighbour_or_the_reference(cheat_batch):
    _, _, _, document, _, _ = cheat_batch
    reader = next(r for r in document["results"] if "reads_neighbour" in r["path"])
    assert reader["output"].count("DENIED") == 3, reader["output"]
    everything = json.dumps(document)
    assert SECRET_LINE not in everything and "[forward]" not in everything and "def verify_layer" not in everything


def test_nothing_outside_the_sandbox_changes(cheat_batch):
    folder, _, _, document, before, _ = cheat_batch
    assert package_hashes() == before
    assert not (folder / "PWNED").exists() and not (PACKAGE / "PWNED").exists()
    writer = next(r for r in document["results"] if "writes_outside" in r["path"])
    assert "WROTE" not in writer["output"] and "APPENDED" not in writer["output"]
    assert writer["output"].count("DENIED") == 6


def test_no_cheat_reaches_the_network(cheat_batch):
    _, _, _, document, _, connection = cheat_batch
    assert connection is None
    client = next(r for r in document["results"] if "connects" in r["path"])
    assert "CONNECTED" not in client["output"] and client["output"].count("NO NETWORK") == 2


def test_fake_verdicts_are_only_output(cheat_batch):
    _, _, _, document, _, _ = cheat_batch
    faker = next(r for r in document["results"] if "fake_verdict" in r["path"])
    assert faker["findings"] and faker["findings"][0]["kind"] in ("wrong-math", "invalid")
