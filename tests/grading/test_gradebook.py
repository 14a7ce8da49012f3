"""Gradebook output and scale-out: Gradescope's results.json, --shard K/N and merge.

Oracles: the verdict each planted submission was written to earn; Gradescope's
documented results.json schema (field names and types, below); the unsharded run's own
JSON, which the merged shards must reproduce byte for byte apart from ``seconds``.
"""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, strategies as st

from symbackprop.cli import main
from symbackprop.grading.gradescope import VISIBILITIES
from symbackprop.grading.shards import select

from .test_grading import LAYERS, plant, without_seconds

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "gradescope"
#: https://gradescope-autograders.readthedocs.io/en/latest/specs/ : the fields we write, and their types.
RESULTS_SCHEMA = {"score": float, "execution_time": float, "output": str, "stdout_visibility": str, "tests": list}
TEST_SCHEMA = {"name": str, "score": float, "max_score": float, "status": str, "output": str, "visibility": str}
PICKED = ("correct", "wrong_math", "exit_on_import", "no_class", "import_error")


def assert_results_schema(doc: dict) -> None:
    assert set(doc) == set(RESULTS_SCHEMA)
    for key, kind in RESULTS_SCHEMA.items():
        assert isinstance(doc[key], kind), key
    assert doc["stdout_visibility"] in VISIBILITIES
    for test in doc["tests"]:
        assert set(test) == set(TEST_SCHEMA)
        for key, kind in TEST_SCHEMA.items():
            assert isinstance(test[key], kind), key
        assert test["status"] in ("passed", "failed") and test["visibility"] in VISIBILITIES
        assert 0 <= test["score"] <= test["max_score"]
    assert doc["score"] == sum(t["score"] for t in doc["tests"])


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    folder = tmp_path_factory.mktemp("gradebook")
    plant(folder, {name: LAYERS[name] for name in PICKED})
    return folder


def grade_json(folder: Path, out: Path, *extra: str) -> int:
    return main(["verify-layer", f"{folder}/*/layers.py:Sigmoid", "--against", "sigmoid", "--jobs", "2",
                 "--timeout", "5", "--json", "-o", str(out), "--force", *extra])


def test_merged_shards_are_the_unsharded_run(planted, tmp_path, capsys):
    whole = tmp_path / "whole.json"
    assert grade_json(planted, whole) == 1
    shards = [tmp_path / f"shard{k}.json" for k in (1, 2, 3)]
    for k, path in enumerate(shards, 1):
        grade_json(planted, path, "--shard", f"{k}/3")
        assert json.loads(path.read_text())["shard"] == {"index": k, "count": 3, "of": len(PICKED)}
    merged = tmp_path / "merged.json"
    assert main(["merge", *map(str, reversed(shards)), "-o", str(merged)]) == 1  # a wrong layer: not ok
    assert without_seconds(merged.read_text()) == without_seconds(whole.read_text())


@pytest.mark.parametrize("which, message", [
    ((1, 2), "shard 3 of 3 is missing"),
    ((1, 1, 2, 3), "given twice"),
])
def test_an_incomplete_set_of_shards_is_refused(planted, tmp_path, capsys, which, message):
    for k in set(which):
        grade_json(planted, tmp_path / f"s{k}.json", "--shard", f"{k}/3")
    capsys.readouterr()
    assert main(["merge", *(str(tmp_path / f"s{k}.json") for k in which)]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_only_shards_are_merged(planted, tmp_path, capsys):
    whole = tmp_path / "whole.json"
    grade_json(planted, whole)
    (tmp_path / "junk.json").write_text("{not json")
    for path, message in ((whole, "not a shard"), (tmp_path / "junk.json", "not a JSON file")):
        assert main(["merge", str(path)]) == 2
        assert message in capsys.readouterr().err


def test_a_shard_needs_json(planted, capsys):
    assert main(["verify-layer", f"{planted}/*/layers.py:Sigmoid", "--against", "sigmoid", "--shard", "1/2"]) == 2
    assert "--shard needs --json" in capsys.readouterr().err


@given(st.lists(st.integers(), max_size=30), st.integers(1, 8))
def test_shards_partition_the_batch_in_order(items, count):
    parts = [select(items, k, count) for k in range(1, count + 1)]
    assert sorted(range(len(items)), key=lambda i: (i % count, i)) == [
        i for k in range(count) for i in range(k, len(items), count)]
    assert sum(map(len, parts)) == len(items)
    assert max(map(len, parts)) - min(map(len, parts)) <= 1
    for part in parts:
        positions = [items.index(x) for x in part] if len(set(items)) == len(items) else None
        assert positions is None or positions == sorted(positions)


@pytest.mark.parametrize("name, failed", [
    ("correct", set()),
    ("wrong_math", {"wrong-math"}),
    ("exit_on_import", "all"),  # did not run: every test fails
])
def test_gradescope_results_follow_the_schema_and_the_verdict(planted, tmp_path, name, failed):
    out = tmp_path / "results.json"
    code = main(["verify-layer", f"{planted}/{name}/layers.py:Sigmoid", "--against", "sigmoid", "--timeout", "5",
                 "--format", "gradescope", "--visibility", "after_published", "--visibility",
                 "wrong-math=after_due_date", "-o", str(out)])
    assert code == (0 if not failed else 1)
    doc = json.loads(out.read_text())
    assert_results_schema(doc)
    got = {t["name"] for t in doc["tests"] if t["status"] == "failed"}
    assert got == ({t["name"] for t in doc["tests"]} if failed == "all" else failed)
    visibility = {t["name"]: t["visibility"] for t in doc["tests"]}
    assert visibility["wrong-math"] == "after_due_date" and visibility["shape"] == "after_published"
    if name == "wrong_math":
        (test,) = [t for t in doc["tests"] if t["name"] == "wrong-math"]
        assert "dx differs" in test["output"]


def test_gradescope_grades_one_submission(planted, capsys):
    assert main(["verify-layer", f"{planted}/*/layers.py:Sigmoid", "--against", "sigmoid",
                 "--format", "gradescope"]) == 2
    assert "one submission per results.json" in capsys.readouterr().err
    assert main(["verify-layer", f"{planted}/correct/layers.py:Sigmoid", "--against", "sigmoid",
                 "--format", "gradescope", "--visibility", "sometimes"]) == 2
    assert "expected one of" in capsys.readouterr().err


def test_the_documented_run_autograder_writes_results(planted, tmp_path):
    root = tmp_path / "autograder"
    (root / "submission").mkdir(parents=True)
    shutil.copy(planted / "wrong_math" / "layers.py", root / "submission" / "layers.py")
    shutil.copytree(EXAMPLES, root / "source")
    run = subprocess.run(["bash", str(root / "source" / "run_autograder")], capture_output=True, text=True,
                         env={**os.environ, "AUTOGRADER_ROOT": str(root),
                              "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}, timeout=120)
    assert run.returncode == 0, run.stderr
    doc = json.loads((root / "results" / "results.json").read_text())
    assert_results_schema(doc)
    assert {t["name"] for t in doc["tests"] if t["status"] == "failed"} == {"wrong-math"}
