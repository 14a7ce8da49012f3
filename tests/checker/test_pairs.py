"""verify-layer on the course style: two functions, ``forward -> (out, cache)`` and
``backward(dout, cache) -> gradients``; the same kinds as for classes, locally and graded in
the sandbox. Oracle: the declaration (the checker's references), and the bug each function
was written with."""
import json
from pathlib import Path

import pytest

from symbackprop.checker import load_class, verify_layer
from symbackprop.checker.pairs import pair_names
from symbackprop.cli import main
from symbackprop.errors import SymbackpropError
from symbackprop.spec import catalog

PAIRS = Path(__file__).resolve().parents[1] / "fixtures" / "pairs.py"
CASES = [  # (forward, backward, declaration, failing kinds)
    ("affine_forward", "affine_backward", "affine", []),
    ("affine_forward", "affine_backward_db_first_row", "affine", ["wrong-math"]),
    ("affine_forward", "affine_backward_writes_dout", "affine", ["side-effect"]),
    ("affine_forward", "affine_backward_two_values", "affine", ["exception"]),
    ("affine_forward_global", "affine_backward_global", "affine", ["stale-cache"]),
    ("relu_forward", "relu_backward", "relu", []),
    ("sigmoid_forward", "sigmoid_backward_slip", "sigmoid", ["wrong-math"]),
]


@pytest.mark.parametrize("forward, backward, against, kinds", CASES)
def test_each_pair_gets_the_kind_of_its_bug(forward, backward, against, kinds):
    spec = catalog.load(against)
    report = verify_layer(load_class(f"{PAIRS}:{forward},{backward}", spec), spec)
    found = {f.kind for f in report.findings if f.kind not in ("kink-only",)}
    assert report.ok == (not kinds)
    assert set(kinds) <= found, [f.to_json() for f in report.findings]


def test_a_wrong_count_of_gradients_is_named():
    spec = catalog.load("affine")
    report = verify_layer(load_class(f"{PAIRS}:affine_forward,affine_backward_two_values", spec), spec)
    assert any("returned 2 values, expected (dx, dW, db)" in f.message for f in report.findings)


@pytest.mark.parametrize("target, message", [
    ("affine_forward,nothere", "no function 'nothere'"),
    ("affine_forward,", "expected FORWARD,BACKWARD"),
    ("a,b,c", "expected FORWARD,BACKWARD"),
])
def test_bad_pairs_are_one_line_errors(target, message):
    with pytest.raises(SymbackpropError, match=message):
        load_class(f"{PAIRS}:{target}", catalog.load("affine"))


def test_pair_names():
    assert pair_names("f, g") == ("f", "g") and pair_names("Sigmoid") is None


@pytest.mark.needs("bwrap")
def test_graded_in_the_sandbox_a_pair_gets_the_same_verdicts(tmp_path):
    for forward, backward, against, kinds in CASES:
        if against != "affine":
            continue
        folder = tmp_path / backward
        folder.mkdir()
        (folder / "student.py").write_text(PAIRS.read_text())
    out = tmp_path / "out.json"
    main(["verify-layer", f"{tmp_path}/*/student.py:affine_forward,affine_backward", "--against", "affine",
          "--jobs", "2", "--json", "-o", str(out)])
    (record,) = {r["path"]: r for r in json.loads(out.read_text())["results"]
                 if "/affine_backward/" in r["path"]}.values()
    assert record["ok"] and record["isolation"] == "bwrap"
    for forward, backward, against, kinds in CASES[1:4]:
        out = tmp_path / f"{backward}.json"
        main(["verify-layer", f"{tmp_path}/{backward}/student.py:{forward},{backward}", "--against", against,
              "--jobs", "1", "--json", "-o", str(out)])
        (record,) = json.loads(out.read_text())["results"]
        assert not record["ok"] and set(kinds) <= {f["kind"] for f in record["findings"]}, record["findings"]
