"""Grading many untrusted submissions: every planted submission gets the verdict it was
planted with, one hostile submission never stops or sways the batch, the JSON is
byte-identical between runs apart from ``seconds``, and Ctrl-C leaves no output.

Oracles: the verdict each submission was written to earn (a correct sigmoid, a slipped
derivative, an endless loop, ...), and the operating system's own view of processes.
"""
import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from symbackprop.cli import main
from symbackprop.grading.batch import OUTPUT_BYTES, expand, parse_memory
from symbackprop.checker import load_class, verify_layer

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
_spec = importlib.util.spec_from_file_location("submissions", FIXTURES / "submissions.py")
submissions = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(submissions)
sigmoid = submissions.sigmoid  # the source of a Sigmoid submission (shared with benchmarks/grading.py)
#: A process name no other process has: a sandboxed submission cannot write a file the test
#: could read, so the processes it starts name themselves (prctl PR_SET_NAME) to be found.
TOKEN = f"sbp{os.getpid() % 100000}"
NAME_ME = "import ctypes\nctypes.CDLL(None).prctl(15, {name!r}.encode())\n"


#: name: (source, the kinds of failing findings it must get, a fragment of the message)
LAYERS = {
    "correct": (sigmoid(), [], ""),
    "wrong_math": (sigmoid(grad="dout * self.out"), ["wrong-math"], "dx differs"),
    "endless_loop": (sigmoid(forward="while True: pass"), ["timeout"], "within 4 s"),
    "memory_bomb": (sigmoid(forward="hog = [bytearray(10**7) for _ in range(10**5)]"), ["memory"], "MemoryError"),
    "numpy_bomb": (sigmoid(backward="np.ones(1 << 40)"), ["memory"], "MemoryError"),
    "os_exit": (sigmoid(before="import os\n", after="os._exit(3)\n"), ["crash"], "status 3"),
    "sigkill": (sigmoid(before="import os, signal\n", forward="os.kill(os.getpid(), signal.SIGKILL)"),
                ["crash"], "SIGKILL"),
    "segfault": (sigmoid(before="import ctypes\n", backward="ctypes.string_at(0)"), ["crash"], "SIGSEGV"),
    "exit_on_import": (sigmoid(before="import sys\n", after="sys.exit(4)\n"), ["exception"], "SystemExit: 4"),
    "exit_in_backward": (sigmoid(before="import sys\n", backward="sys.exit(5)"), ["exception"], "sys.exit(5)"),
    "huge_print": (sigmoid(forward='print("x" * 1_000_000)', after='print("y" * 10_000_000)\n'), [], ""),
    "import_error": ("import no_such_module_anywhere\n", ["exception"], "ModuleNotFoundError"),
    "syntax_error": ("class Sigmoid(:\n", ["exception"], "SyntaxError"),
    "no_class": ("class Tanh:\n    pass\n", ["invalid"], "no class 'Sigmoid'"),
    "kills_its_parent": (sigmoid(before="import os, signal\n", after="os.kill(os.getppid(), signal.SIGKILL)\n"),
                         [], ""),
    "forks_a_spinner": (sigmoid(before="import os\n", after=(
        "if os.fork() == 0:\n"
        f"    import ctypes; ctypes.CDLL(None).prctl(15, b'{TOKEN}s')\n"
        "    print('spinning', flush=True)\n"
        "    while True: pass\n")), [], ""),
}


def plant(folder: Path, sources: dict) -> None:
    for name, (source, *_) in sources.items():
        (folder / name).mkdir()
        (folder / name / "layers.py").write_text(source)


def named(name: str) -> list[int]:
    """The live processes called ``name`` (zombies nobody reaps yet excepted)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and (entry / "comm").read_text().strip() == name and \
                    (entry / "stat").read_text().rsplit(")", 1)[1].split()[0] not in "ZX":
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def without_seconds(text: str) -> str:
    return re.sub(r'"seconds": [0-9.e-]+', '"seconds": 0', text)


@pytest.fixture(scope="module")
def layer_batch(tmp_path_factory):
    """The planted layers graded once, through the command line (2 jobs, 4 s, 512 MiB): 4 s, so that
    the memory bomb fills its 512 MiB in time on a loaded 2-core machine."""
    folder = tmp_path_factory.mktemp("submissions")
    plant(folder, LAYERS)
    out = folder.parent / f"{folder.name}.json"
    start = time.monotonic()
    code = main(["verify-layer", f"{folder}/*/layers.py:Sigmoid", "--against", "sigmoid", "--jobs", "2",
                 "--timeout", "4", "--memory", "512M", "--json", "-o", str(out)])
    return folder, code, json.loads(out.read_text()), time.monotonic() - start


def test_every_planted_submission_gets_its_verdict(layer_batch):
    _, code, document, _ = layer_batch
    records = {Path(r["path"]).parent.name: r for r in document["results"]}
    assert set(records) == set(LAYERS)
    for name, (_, kinds, fragment) in LAYERS.items():
        record = records[name]
        failing = [f["kind"] for f in record["findings"] if f["kind"] != "kink-only"]
        assert failing == kinds, (name, record["findings"])
        assert record["ok"] == (not kinds), name
        assert all(fragment in f["message"] for f in record["findings"]), (name, record["findings"])
    assert code == 1


def test_records_come_in_path_order_with_a_summary(layer_batch):
    _, _, document, _ = layer_batch
    assert not list(layer_batch[0].parent.glob("*.records.jsonl"))  # written, then removed with the output
    paths = [r["path"] for r in document["results"]]
    assert paths == sorted(paths)
    assert set(document["results"][0]) == {"path", "class", "ok", "findings", "seconds", "output", "isolation"}
    summary = document["summary"]
    assert summary["passed"] == sum(not kinds for _, kinds, _ in LAYERS.values())
    assert summary["failed"] == len(LAYERS) - summary["passed"]
    assert summary["kinds"] == {"wrong-math": 1, "exception": 4, "invalid": 1, "timeout": 1, "memory": 2, "crash": 3}


def test_timeouts_are_kept_and_the_batch_is_parallel(layer_batch):
    _, _, document, seconds = layer_batch
    loop = next(r for r in document["results"] if "endless_loop" in r["path"])
    assert 4.0 <= loop["seconds"] < 8.0
    assert seconds < 30  # a hang would never end; the sum of the parts is well below this


def test_a_flood_of_output_is_capped(layer_batch):
    _, _, document, _ = layer_batch
    printer = next(r for r in document["results"] if "huge_print" in r["path"])
    assert printer["output"].startswith("yyyy")
    assert printer["output"].endswith(f"[... output truncated at {OUTPUT_BYTES} bytes]")
    assert len(printer["output"]) < OUTPUT_BYTES + 100


def test_what_a_submission_forks_is_killed_with_it(layer_batch):
    _, _, document, _ = layer_batch
    spinner = next(r for r in document["results"] if "forks_a_spinner" in r["path"])
    assert "spinning" in spinner["output"]  # it did fork and run
    deadline = time.monotonic() + 10
    while named(f"{TOKEN}s") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert named(f"{TOKEN}s") == []


def test_the_batch_json_is_byte_identical_apart_from_seconds(tmp_path):
    plant(tmp_path, {k: LAYERS[k] for k in ("correct", "wrong_math", "os_exit", "segfault", "exit_in_backward",
                                            "numpy_bomb", "huge_print", "syntax_error")})
    outputs = []
    for seed, jobs in (("0", "1"), ("12345", "2")):  # another hash seed, another finishing order
        env = {**os.environ, "PYTHONHASHSEED": seed}
        run = subprocess.run([sys.executable, "-m", "symbackprop", "verify-layer", "*/layers.py:Sigmoid",
                              "--against", "sigmoid", "--jobs", jobs, "--json"], cwd=tmp_path, env=env,
                             capture_output=True, text=True, timeout=120, check=False)
        assert run.returncode == 1, run.stderr
        outputs.append(without_seconds(run.stdout))
    assert outputs[0] == outputs[1]
    assert "graded 8 submissions" in run.stderr and "crashed" in run.stderr


# -- derivation files ---------------------------------------------------------------------------
def derivation(*steps: str, name: str = "d") -> str:
    return f'name = "{name}"\n[symbols]\nx = "real"\n[[chains]]\nof = "dy/dx"\nsteps = {json.dumps(list(steps))}\n'


SLOW = [f"exp(tanh(x))*(sin(x + {k})**2 + cos(x + {k})**2)**{k + 5}*(cosh(x)**2 - sinh(x)**2)**{k + 3}"
        for k in range(60)]  # every step true and slow to prove: about 0.2 s each

DERIVATIONS = {
    "correct": (derivation("diff(1/(1 + exp(-x)), x)", "exp(-x)/(1 + exp(-x))**2"), [], ""),
    "slip": (derivation("diff(1/(1 + exp(-x)), x)", "exp(-x)/(1 + exp(-x))"), ["wrong-step"], "step 1"),
    "injection": (derivation("__import__('os').system('touch PWNED')", "x"), ["invalid"], "not allowed"),
    "power_tower": (derivation("9**9**9", "x"), ["invalid"], "exponent too large"),
    "deep": (derivation("(" * 500 + "x" + ")" * 500, "x"), ["invalid"], "nested"),
    "long": (derivation("+".join(["x"] * 20000), "x"), ["invalid"], "too long"),
    "not_toml": ("name = \n", ["invalid"], "not valid TOML"),
    "slow": (derivation(*SLOW), ["timeout"], "within 2 s"),
}


def test_derivation_files_get_their_verdicts_and_run_no_code(tmp_path, capsys):
    for name, (text, *_) in DERIVATIONS.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "derivation.toml").write_text(text)
    before = os.getcwd()
    os.chdir(tmp_path)
    try:
        code = main(["verify-steps", "*/derivation.toml", "--timeout", "2", "--json"])
    finally:
        os.chdir(before)
    out, err = capsys.readouterr()
    records = {Path(r["path"]).parent.name: r for r in json.loads(out)["results"]}
    for name, (_, kinds, fragment) in DERIVATIONS.items():
        assert [f["kind"] for f in records[name]["findings"]] == kinds, (name, records[name])
        assert all(fragment in f["message"] for f in records[name]["findings"]), name
    assert code == 1 and not any(tmp_path.rglob("PWNED"))
    assert "wrong-step" in err and "timed out" in err


# -- the command line ------------------------------------------------------------------------------
def test_a_single_path_keeps_todays_output(tmp_path, capsys):
    plant(tmp_path, {"correct": LAYERS["correct"]})
    target = f"{tmp_path}/correct/layers.py:Sigmoid"
    assert main(["verify-layer", target, "--against", "sigmoid"]) == 0
    out = capsys.readouterr().out
    expected = verify_layer(load_class(target), "sigmoid", name=target).text()
    assert re.sub(r"\(\d+\.\d+ s\)", "", out.strip()) == re.sub(r"\(\d+\.\d+ s\)", "", expected)
    assert main(["verify-layer", target, "--against", "sigmoid", "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert {**record, "seconds": 0} == {**verify_layer(load_class(target), "sigmoid", name=target).to_json(),
                                        "seconds": 0}


@pytest.mark.parametrize("args, message", [
    (["verify-layer", "nowhere/*/layers.py:Sigmoid", "--against", "sigmoid"], "no file matches"),
    (["verify-layer", "nowhere/*/layers.py", "--against", "sigmoid"], "expected FILE.py:CLASS"),
    (["verify-layer", "a.py:Sigmoid", "b.py:Sigmoid", "--against", "sigmoid"], "no such file"),
    (["verify-steps", "nowhere/*.toml"], "no file matches"),
    (["verify-steps", "x.toml", "--memory", "10M"], "at least 256M"),
    (["verify-steps", "x.toml", "--timeout", "0"], "positive number"),
    (["verify-steps", "x.toml", "--jobs", "-1"], "positive number"),
])
def test_bad_batch_input_exits_2_with_one_line(args, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(args) == 2
    out, err = capsys.readouterr()
    assert out == "" and len(err.strip().splitlines()) == 1 and message in err


def test_an_existing_output_file_is_refused_before_any_grading(tmp_path, capsys):
    plant(tmp_path, {"loop": LAYERS["endless_loop"]})
    out = tmp_path / "report.json"
    out.write_text("keep me")
    start = time.monotonic()
    assert main(["verify-layer", f"{tmp_path}/*/layers.py:Sigmoid", "--against", "sigmoid", "-o", str(out)]) == 2
    assert out.read_text() == "keep me" and time.monotonic() - start < 2
    assert "--force" in capsys.readouterr().err


def test_memory_sizes():
    assert parse_memory("1G") == parse_memory("1GiB") == parse_memory("1024") == 1 << 30
    assert parse_memory("512M") == 512 << 20 and parse_memory("1.5g") == 3 << 29


def test_patterns_expand_sorted_and_once(tmp_path):
    for name in ("b", "a", "c"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "layers.py").write_text("")
    found = expand([f"{tmp_path}/*/layers.py:Sigmoid", f"{tmp_path}/a/layers.py:Sigmoid"], with_class=True)
    assert found == [(f"{tmp_path}/{n}/layers.py", "Sigmoid") for n in "abc"]


# -- Ctrl-C ----------------------------------------------------------------------------------------------
def test_ctrl_c_stops_the_workers_prints_what_finished_and_writes_nothing(tmp_path):
    def sleeper(letter: str) -> tuple:
        return (NAME_ME.format(name=f"{TOKEN}{letter}") + "import time\ntime.sleep(600)\n",)

    plant(tmp_path, {"a_fast": LAYERS["correct"], "b_sleeps": sleeper("b"), "c_sleeps": sleeper("c"),
                     "d_sleeps": sleeper("d")})
    out = tmp_path / "grades.json"
    batch = subprocess.Popen([sys.executable, "-m", "symbackprop", "verify-layer", "*/layers.py:Sigmoid",
                              "--against", "sigmoid", "--jobs", "2", "--timeout", "300", "--json", "-o", str(out)],
                             cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen = set()  # c starts only once a_fast has finished (2 jobs)
    deadline = time.monotonic() + 60
    while "c" not in seen and time.monotonic() < deadline:
        seen |= {letter for letter in "bcd" if named(f"{TOKEN}{letter}")}
        time.sleep(0.05)
    assert "c" in seen, "the batch never reached the third submission"
    batch.send_signal(signal.SIGINT)
    stdout, stderr = batch.communicate(timeout=60)
    assert batch.returncode == 130
    assert stdout == "" and not out.exists() and list(tmp_path.glob(".grades.json*")) == []
    assert "interrupted: 1 of 4 submissions graded" in stderr and "a_fast/layers.py:Sigmoid  ok" in stderr
    kept = [json.loads(line) for line in (tmp_path / "grades.json.records.jsonl").read_text().splitlines()]
    assert [(Path(r["path"]).parent.name, r["ok"], r["index"]) for r in kept] == [("a_fast", True, 0)]
    deadline = time.monotonic() + 10
    while any(named(f"{TOKEN}{letter}") for letter in "bcd") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(named(f"{TOKEN}{letter}") for letter in "bcd")
    assert "d" not in seen


def _without_seconds(document: dict) -> dict:
    return {**document, "seconds": None, "results": [{**r, "seconds": None} for r in document["results"]]}


def test_resume_keeps_the_records_of_a_run_cut_short_and_grades_only_the_rest(tmp_path, capsys):
    plant(tmp_path, {k: LAYERS[k] for k in ("correct", "wrong_math")} | {"zz_correct": LAYERS["correct"]})
    pattern = f"{tmp_path}/*/layers.py:Sigmoid"
    whole = tmp_path / "whole.json"
    assert main(["verify-layer", pattern, "--against", "sigmoid", "--json", "-o", str(whole)]) == 1
    reference = json.loads(whole.read_text())
    # a crash after the first record (its seconds marked, to tell it was not graded again),
    # with the next line cut short mid-write
    cut = tmp_path / "cut.json"
    first = {"index": 0, **reference["results"][0], "seconds": 99.0}
    Path(f"{cut}.records.jsonl").write_text(json.dumps(first) + "\n" + json.dumps(first)[:40])
    capsys.readouterr()
    assert main(["verify-layer", pattern, "--against", "sigmoid", "--json", "-o", str(cut), "--resume"]) == 1
    assert "1 record kept" in capsys.readouterr().err
    resumed = json.loads(cut.read_text())
    assert resumed["results"][0]["seconds"] == 99.0                  # kept, not graded again
    assert _without_seconds(resumed) == _without_seconds(reference)  # as one run would have written it
    assert not Path(f"{cut}.records.jsonl").exists()


def test_resume_refuses_the_records_of_another_batch(tmp_path, capsys):
    plant(tmp_path, {"correct": LAYERS["correct"]})
    out = tmp_path / "out.json"
    alien = {"index": 0, "path": "elsewhere/layers.py", "class": "Sigmoid", "ok": True, "findings": [],
             "seconds": 0.1, "output": "", "isolation": "bwrap"}
    Path(f"{out}.records.jsonl").write_text(json.dumps(alien) + "\n")
    code = main(["verify-layer", f"{tmp_path}/*/layers.py:Sigmoid", "--against", "sigmoid", "-o", str(out), "--resume"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "a record of another batch" in err and not out.exists()
