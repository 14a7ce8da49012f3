"""Hand-written layer classes: planted bugs are caught with the right kind, correct classes
never flagged; the seed's own classes; the verify-layer command.

Oracles: SymPy's derivative evaluated with mpmath at the reported points, classes built
from SymPy's own derivative with ``lambdify``, and the seed's classes verbatim.
"""
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import sympy
from hypothesis import given, settings
from hypothesis import strategies as st

from symbackprop import catalog
from symbackprop.cli import main
from symbackprop.errors import SpecError, SymbackpropError
from symbackprop.layercheck import KINDS, load_class, verify_layer
from symbackprop.spec import layer, spec_from_toml

FIXTURES = Path(__file__).resolve().parent / "fixtures"
SEED = str(FIXTURES / "seed_layers.py")
PLANTED = str(FIXTURES / "planted_layers.py")


def _import(path: str):
    spec = importlib.util.spec_from_file_location("planted_layers", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


planted = _import(PLANTED)


def kinds(report) -> set:
    return {(f.kind, f.input) for f in report.findings}


# -- the seed's classes -----------------------------------------------------------------------
def test_the_seeds_sigmoid_is_clean():
    report = verify_layer(load_class(f"{SEED}:Sigmoid"), "sigmoid")
    assert report.findings == [] and report.ok


def test_the_seeds_relu_has_exactly_one_side_effect_finding():
    report = verify_layer(load_class(f"{SEED}:Relu"), "relu")
    assert [f.kind for f in report.findings] == ["side-effect"]
    assert "writes into dout" in report.findings[0].message and not report.ok


@pytest.mark.parametrize("cls, spec", [("MulLayer", "multiply"), ("AddLayer", "add")])
def test_the_seeds_multiply_and_add_layers_are_clean(cls, spec):
    assert verify_layer(load_class(f"{SEED}:{cls}"), spec).findings == []


# -- planted bugs ------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(planted.EXPECTED))
def test_each_planted_bug_gets_exactly_its_kind(name):
    spec, expected = planted.EXPECTED[name]
    report = verify_layer(getattr(planted, name), spec)
    assert kinds(report) == expected, report.text()
    assert report.ok == all(kind == "kink-only" for kind, _ in expected)
    assert report.seconds < 2


@pytest.mark.parametrize("name", sorted(planted.CORRECT))
def test_correct_hand_written_classes_are_never_flagged(name):
    report = verify_layer(getattr(planted, name), planted.CORRECT[name])
    assert report.findings == [], report.text()


ELEMENTWISE = [n for n in catalog.bundled_names() if not getattr(catalog.load(n), "is_array", False)]


@pytest.mark.parametrize("name", ELEMENTWISE)
def test_generated_classes_have_right_math_shapes_and_caches(name):
    spec = catalog.load(name)
    report = verify_layer(spec.compile(), spec)
    # side effects are left out: the generated Add returns dout itself (reported to codegen)
    assert {f.kind for f in report.findings} <= {"side-effect"}, report.text()


def test_a_wrong_gradients_counterexample_is_confirmed_by_sympy():
    report = verify_layer(planted.SigmoidSquared, "sigmoid")
    (finding,) = report.findings
    at = finding.counterexample
    x = sympy.Symbol("x")
    exact = sympy.diff(1 / (1 + sympy.exp(-x)), x).subs(x, sympy.Float(at["inputs"]["x"], 30)) * at["dout"]
    assert at["expected"] == pytest.approx(float(exact), rel=1e-12)
    layer_ = planted.SigmoidSquared()
    layer_.forward(np.array([at["inputs"]["x"]]))
    assert at["got"] == pytest.approx(float(layer_.backward(np.array([at["dout"]]))[0]), rel=1e-12)
    assert finding.max_rel_error > 0.1


def test_precision_findings_report_the_size():
    (finding,) = [f for f in verify_layer(planted.SigmoidReturnsFloat32, "sigmoid").findings]
    assert 1e-9 < finding.max_rel_error < 1e-6 and "float32" in finding.message
    (finding,) = verify_layer(planted.LogFudge, "log").findings
    assert "relative error up to" in finding.message and finding.max_rel_error > 1e-3


# -- kinks and saturation ------------------------------------------------------------------------
def test_another_subgradient_at_the_relu_corner_is_informational():
    report = verify_layer(planted.ReluOneAtZero, "relu")
    (finding,) = report.findings
    assert finding.kind == "kink-only" and report.ok
    assert finding.counterexample["inputs"] == {"x": 0.0} and "convention" in finding.message


def test_float64_saturation_of_the_seeds_sigmoid_is_not_flagged():
    cls = load_class(f"{SEED}:Sigmoid")
    xs = np.concatenate([np.linspace(30, 40, 41), -np.linspace(30, 40, 41)])
    report = verify_layer(cls, "sigmoid", examples=[(xs,)])
    assert report.findings == []
    # there the class really returns exactly 0 where the exact gradient is tiny, not 0
    s = cls()
    s.forward(np.array([37.5]))
    assert s.backward(np.array([1.0]))[0] == 0.0


def test_given_examples_reach_bugs_the_random_inputs_miss():
    class SigmoidWrongNear7(planted._Sigmoid):
        def backward(self, dout):
            x = np.log(self.out / (1 - self.out))
            return np.where(np.abs(x - 7) < 0.01, 0.5, 1.0) * super().backward(dout)

    assert verify_layer(SigmoidWrongNear7, "sigmoid").ok
    report = verify_layer(SigmoidWrongNear7, "sigmoid", examples=[(np.array([6.995, 7.0, 7.005]),)])
    assert kinds(report) == {("wrong-math", "x")}


# -- property: classes built from SymPy's own derivative ------------------------------------------
X = sympy.Symbol("x", real=True)
PIECES = [sympy.tanh(X), sympy.exp(-X**2), X**3 / 10, sympy.atan(X), 1 / (1 + sympy.exp(-X)), sympy.sin(X),
          sympy.log(1 + X**2)]


def lambdified_class(expr, derivative):
    f, g = sympy.lambdify(X, expr, "numpy"), sympy.lambdify(X, derivative, "numpy")

    class Lambdified:
        def forward(self, x):
            self.x = x.copy()
            return f(x) + 0 * x

        def backward(self, dout):
            return dout * (g(self.x) + 0 * self.x)

    return Lambdified


@settings(max_examples=8, deadline=None)
@given(a=st.sampled_from(PIECES), b=st.sampled_from(PIECES), c=st.integers(1, 3))
def test_classes_from_sympys_derivative_pass_and_a_slip_is_wrong_math(a, b, c):
    expr = a * c + b.subs(X, X / 2)
    spec = layer(expr, name="Random")
    right = verify_layer(lambdified_class(expr, sympy.diff(expr, X)), spec)
    assert not {f.kind for f in right.findings} & {"wrong-math", "shape", "side-effect", "stale-cache", "exception"}
    slip = verify_layer(lambdified_class(expr, sympy.diff(expr, X) * sympy.Rational(101, 100)), spec)
    assert ("wrong-math", "x") in kinds(slip)


# -- options and bad input ------------------------------------------------------------------------
def test_ignore_leaves_kinds_out_and_refuses_unknown_kinds():
    assert verify_layer(load_class(f"{SEED}:Relu"), "relu", ignore=["side-effect"]).findings == []
    with pytest.raises(SymbackpropError, match="unknown kind"):
        verify_layer(planted.Tanh, "tanh", ignore=["nonsense"])
    assert set(KINDS) >= {"wrong-math", "shape", "precision", "side-effect", "stale-cache", "kink-only", "exception"}


AFFINE = """
name = "Affine"
inputs = { x = ["N", "D"] }
params = { W = ["D", "M"], b = ["M"] }
forward = "x @ W + b"
"""


def test_array_declarations_are_refused_for_now():
    with pytest.raises(SpecError, match="elementwise"):
        verify_layer(planted.Tanh, spec_from_toml(AFFINE))


@pytest.mark.parametrize("target, message", [
    ("nowhere.py:Sigmoid", "no such Python file"),
    (f"{SEED}:Missing", "no class 'Missing'"),
    (f"{SEED}", "expected FILE.py:CLASS"),
    (f"{SEED}:not-a-name", "not a class name"),
])
def test_bad_targets_are_one_line_errors(target, message):
    with pytest.raises(SymbackpropError, match=message):
        load_class(target)


def test_a_file_that_fails_to_import_is_bad_input(tmp_path):
    broken = tmp_path / "broken.py"
    broken.write_text("import numpy as np\nraise SystemExit('no')\n")
    with pytest.raises(SymbackpropError, match="cannot import: SystemExit"):
        load_class(f"{broken}:Anything")


# -- the command line ------------------------------------------------------------------------------
def test_verify_layer_json_and_exit_codes(capsys):
    assert main(["verify-layer", f"{SEED}:Sigmoid", "--against", "sigmoid", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["ok"] is True and data["findings"] == []
    assert main(["verify-layer", f"{SEED}:Relu", "--against", "relu", "--json"]) == 1
    data = json.loads(capsys.readouterr().out)
    (finding,) = data["findings"]
    assert set(finding) >= {"kind", "input", "message", "max_rel_error", "counterexample"}
    assert finding["kind"] == "side-effect"


def test_verify_layer_against_a_one_off_expression(capsys):
    assert main(["verify-layer", f"{PLANTED}:Tanh", "--expr", "tanh(x)"]) == 0
    assert "OK" in capsys.readouterr().out


@pytest.mark.parametrize("args", [
    ["verify-layer", f"{SEED}:Sigmoid"],
    ["verify-layer", f"{SEED}:Sigmoid", "--against", "no_such_layer"],
    ["verify-layer", "missing.py:Sigmoid", "--against", "sigmoid"],
])
def test_verify_layer_bad_input_exits_2_with_one_line_and_writes_nothing(tmp_path, args):
    result = subprocess.run([sys.executable, "-m", "symbackprop", *args], capture_output=True, text=True,
                            cwd=tmp_path, timeout=120)
    assert result.returncode == 2 and result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    assert list(tmp_path.iterdir()) == []
