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
import socket
from pathlib import Path

import pytest

import symbackprop
from symbackprop.cli import main
from symbackprop.spec import catalog

# Never unsandboxed: one of these kills every process it may signal (kill(-1, SIGKILL)).
pytestmark = pytest.mark.needs("bwrap")

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
_spec = importlib.util.spec_from_file_location("submissions", FIXTURES / "submissions.py")
submissions = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(submissions)
PACKAGE = Path(symbackprop.__file__).resolve().parent
REFERENCE = catalog.resolve("sigmoid")
SECRET_LINE = "honest submission: do not copy"


def cheats(folder: Path, port: int) -> dict[str, str]:
    return submissions.cheats(folder, port, PACKAGE, REFERENCE)


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


def test_without_libseccomp_the_batch_says_once_that_user_namespaces_are_open(monkeypatch):
    from symbackprop.grading import sandbox

    monkeypatch.setattr(sandbox, "userns_filter", lambda: None)
    isolation, why = sandbox.probe()
    assert isolation == "bwrap" and "libseccomp is missing" in why


def test_the_filter_refuses_new_user_namespaces_and_keeps_threads_and_fork():
    """Oracle: the kernel's own answer to ``unshare(CLONE_NEWUSER)`` in a bwrap sandbox with
    and without the filter (as a user of its own, as the grader runs a submission)."""
    import os
    import subprocess
    import sys

    from symbackprop.grading import sandbox

    probe = ("import ctypes, os, threading; r = ctypes.CDLL(None, use_errno=True).unshare(0x10000000); "
             "t = threading.Thread(target=lambda: None); t.start(); t.join(); pid = os.fork(); "
             "os._exit(0) if pid == 0 else os.waitpid(pid, 0); print('unshare', r)")
    results = {}
    for name, bpf in (("open", None), ("filtered", sandbox.userns_filter())):
        fd = os.memfd_create("bpf", 0)
        os.write(fd, bpf or b"")
        os.lseek(fd, 0, os.SEEK_SET)
        extra = ["--seccomp", str(fd)] if bpf else []
        user = ["setpriv", "--reuid=1000077", "--regid=1000077", "--clear-groups"] if os.geteuid() == 0 else []
        run = subprocess.run(["bwrap", *sandbox._namespaces(), "--ro-bind", "/", "/", "--dev", "/dev", "--proc",
                              "/proc", *extra, *user, sys.executable, "-I", "-c", probe],
                             pass_fds=[fd], capture_output=True, text=True, timeout=60)
        os.close(fd)
        results[name] = (run.returncode, run.stdout.strip())
    assert results["filtered"] == (0, "unshare -1")
    if os.geteuid() == 0:  # bwrap makes no user namespace here: only the filter stops one
        assert results["open"] == (0, "unshare 0")


HELPER = "def slope(y):\n    return y * (1.0 - y)\n"
USES_HELPER = submissions.sigmoid(before="from mymath import slope\n", grad="dout * slope(self.out)")


def test_a_submission_in_a_folder_of_its_own_imports_its_helper_modules(tmp_path):
    """Its own folder is shown with it; a folder shared with another submission is not."""
    for student in ("alice", "bob"):
        (tmp_path / "own" / student).mkdir(parents=True)
        (tmp_path / "own" / student / "layers.py").write_text(USES_HELPER)
        (tmp_path / "own" / student / "mymath.py").write_text(HELPER)
    (tmp_path / "shared").mkdir()
    for student in ("carol", "dave"):
        (tmp_path / "shared" / f"{student}.py").write_text(USES_HELPER)
    (tmp_path / "shared" / "mymath.py").write_text(HELPER)
    records = {}
    for pattern in ("own/*/layers.py", "shared/*.py"):
        out = tmp_path / f"{pattern.split('/')[0]}.json"
        main(["verify-layer", f"{tmp_path}/{pattern}:Sigmoid", "--against", "sigmoid", "--jobs", "2",
              "--json", "-o", str(out)])
        records.update({Path(r["path"]).stem if "shared" in r["path"] else Path(r["path"]).parent.name: r
                        for r in json.loads(out.read_text())["results"]})
    assert records["alice"]["ok"] and records["bob"]["ok"]
    for student in ("carol", "dave"):  # the folder holds another submission: the file alone
        assert not records[student]["ok"]
        assert "mymath" in json.dumps(records[student]["findings"])
