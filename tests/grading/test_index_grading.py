"""Batch grading against an index-notation declaration: the submissions' processes get the
declaration (its index symbols pickle), build the class with its hyperparameters, and the verdicts
are the single-file ones."""
import json
import pickle
from pathlib import Path

import symbackprop
from symbackprop.cli import main

ROOT = Path(__file__).resolve().parents[2]


def test_index_notation_pickles():
    spec = symbackprop.load("convolution")
    derivation = spec.derive()
    assert pickle.loads(pickle.dumps(derivation.backward)) == derivation.backward
    assert pickle.loads(pickle.dumps(spec.graph)) == spec.graph


def test_a_batch_against_the_convolution(tmp_path, capsys):
    book = (ROOT / "examples" / "book_layers.py").read_text()
    naive = (ROOT / "examples" / "naive_layers.py").read_text().replace("class NaiveConvolution", "class Convolution")
    (tmp_path / "right").mkdir()
    (tmp_path / "right" / "layers.py").write_text("import numpy as np\n\n" + book[book.index("def im2col"):])
    (tmp_path / "unpadded").mkdir()  # the padding's offset forgotten when cropping dx
    (tmp_path / "unpadded" / "layers.py").write_text(
        naive.replace("return dxp[:, :, p:p + H, p:p + W]", "return dxp[:, :, :H, :W]", 1))
    code = main(["verify-layer", f"{tmp_path}/*/layers.py:Convolution", "--against", "convolution", "--jobs", "2",
                 "--timeout", "30", "--json"])
    assert code == 1
    results = {Path(r["path"]).parent.name: r for r in json.loads(capsys.readouterr().out)["results"]}
    assert results["right"]["ok"] and not results["right"]["findings"]
    assert [(f["kind"], f["input"]) for f in results["unpadded"]["findings"]] == [("wrong-math", "x")]


def test_a_batch_of_two_output_pairs_against_the_lstm_step(tmp_path, capsys):
    """Course-style pairs of two outputs (``(next_h, next_c, cache)``, ``backward(dnext_h, dnext_c,
    cache)``) graded in their own processes: the right pair is ok, the gate-order slip wrong-math."""
    source = (ROOT / "examples" / "course_layers.py").read_text()
    for name, forward in (("right", "lstm_step_forward"), ("gates_swapped", "lstm_step_forward_slip")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "lstm.py").write_text(
            source + f"\n\ndef student_forward(*args):\n    return {forward}(*args)\n")
    code = main(["verify-layer", f"{tmp_path}/*/lstm.py:student_forward,lstm_step_backward", "--against", "lstm_step",
                 "--jobs", "2", "--timeout", "30", "--json"])
    assert code == 1
    results = {Path(r["path"]).parent.name: r for r in json.loads(capsys.readouterr().out)["results"]}
    assert results["right"]["ok"] and not results["right"]["findings"]
    assert not results["gates_swapped"]["ok"]
    assert {f["kind"] for f in results["gates_swapped"]["findings"]} == {"wrong-math"}
