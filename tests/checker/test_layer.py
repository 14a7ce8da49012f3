"""Hand-written layer classes: planted bugs are caught with the right kind, correct classes
never flagged; the seed's own classes; array layers and networks; the verify-layer command.

Oracles: SymPy's derivative evaluated with mpmath at the reported points, classes built
from SymPy's own derivative with ``lambdify``, the seed's classes verbatim, and for arrays
gradients typed by hand (``x.T @ dout``, ``(softmax(x) - t) / N``) at the reported values.
"""
import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import sympy
from hypothesis import given, settings
from hypothesis import strategies as st

import symbackprop
from symbackprop.spec import catalog
from symbackprop.cli import main
from symbackprop.errors import SymbackpropError
from symbackprop.checker import load_class, verify_layer
from symbackprop.reports import KINDS
from symbackprop import layer

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
SEED = str(FIXTURES.parents[1] / "examples" / "book_layers.py")
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
    assert report.ok == all(kind == "kink-only" for kind, _ in expected)  # (its time: benchmarks/verify.py)


@pytest.mark.parametrize("name", sorted(planted.CORRECT))
def test_correct_hand_written_classes_are_never_flagged(name):
    report = verify_layer(getattr(planted, name), planted.CORRECT[name])
    assert report.findings == [], report.text()


ELEMENTWISE = [n for n in catalog.bundled_names() if not getattr(symbackprop.load(n), "is_array", False)]


@pytest.mark.parametrize("name", ELEMENTWISE)
def test_generated_classes_have_right_math_shapes_and_caches(name):
    spec = symbackprop.load(name)
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


class ClipInclusive:
    """clip(x, -1, 1) with gradient 1 at x = +-1 (PyTorch's and DeZero's hardtanh convention)."""

    lo, hi = -1.0, 1.0

    def forward(self, x):
        self.x = x
        return np.clip(x, self.lo, self.hi)

    def backward(self, dout):
        return dout * ((self.x >= self.lo) & (self.x <= self.hi))


class ClipExclusive(ClipInclusive):
    def backward(self, dout):
        return dout * ((self.x > self.lo) & (self.x < self.hi))


class ClipWrongInside(ClipInclusive):
    def backward(self, dout):
        return dout * 0.5 * ((self.x >= self.lo) & (self.x <= self.hi))   # a planted bug: half the slope


class HardSigmoid:
    """clip(0.2 x + 0.5, 0, 1): kinks at x = -2.5 and 2.5, gradient 0.2 at them (inclusive)."""

    def forward(self, x):
        self.x = x
        return np.clip(0.2 * x + 0.5, 0.0, 1.0)

    def backward(self, dout):
        return dout * 0.2 * ((self.x >= -2.5) & (self.x <= 2.5))


def kink_examples(*points):
    return [(np.array(points, dtype=float),)]


@pytest.mark.parametrize("cls", [ClipInclusive, ClipExclusive])
def test_either_one_sided_value_at_a_kink_away_from_zero_is_informational(cls):
    # the one-sided points were once computed at 15 digits: beyond |x| = 1e-5 both "sides" were the kink
    spec = symbackprop.layer(sympy.Max(-1, sympy.Min(1, sympy.Symbol("x", real=True))), name="Clip")
    report = verify_layer(cls, spec, examples=kink_examples(-1.0, 1.0, 0.3, -3.0))
    assert report.ok, report.text()
    assert all(f.kind == "kink-only" for f in report.findings)


def test_the_hard_sigmoids_kinks_at_two_and_a_half_are_conventions_not_errors():
    x = sympy.Symbol("x", real=True)
    spec = symbackprop.layer(sympy.Max(0, sympy.Min(1, x / 5 + sympy.Rational(1, 2))), name="HardSigmoid")
    report = verify_layer(HardSigmoid, spec, examples=kink_examples(-2.5, 2.5, 0.0, 7.0))
    assert report.ok, report.text()


def test_a_wrong_slope_beside_the_kinks_is_still_wrong_math():
    spec = symbackprop.layer(sympy.Max(-1, sympy.Min(1, sympy.Symbol("x", real=True))), name="Clip")
    report = verify_layer(ClipWrongInside, spec, examples=kink_examples(-1.0, 1.0, 0.3))
    assert not report.ok and "wrong-math" in {f.kind for f in report.findings}


class Neuron:
    """relu(w*x + b) the plain way: the mask of the float64 pre-activation."""

    def forward(self, w, x, b):
        self.w, self.x = w, x
        self.mask = w * x + b > 0
        return np.where(self.mask, w * x + b, 0.0)

    def backward(self, dout):
        d = np.where(self.mask, dout, 0.0)
        return d * self.x, d * self.w, d


class NeuronDoubleBias(Neuron):
    def backward(self, dout):
        dw, dx, db = super().backward(dout)
        return dw, dx, 2 * db                    # a planted bug: db doubled


_w, _x, _b = sympy.symbols("w x b", real=True)
NEURON = sympy.Max(_w * _x + _b, 0)
ROUNDED_ONTO_THE_KINK = [(np.array([1000.0]), np.array([0.001]), np.array([-1.0]))]


def test_an_input_that_float64_rounds_onto_a_kink_is_not_the_layers_error():
    # 1000 * 0.001 - 1 is 2.1e-17 exactly (0.001 is not a binary fraction) and 0.0 in float64
    exact = sympy.Float(1000) * sympy.Float(0.001, 40) - 1
    assert exact != 0 and 1000 * 0.001 - 1 == 0.0
    spec = symbackprop.layer(NEURON, inputs=[_w, _x, _b], name="Neuron")
    report = verify_layer(Neuron, spec, examples=ROUNDED_ONTO_THE_KINK)
    assert report.ok and report.findings == [], report.text()
    report = verify_layer(NeuronDoubleBias, spec, examples=ROUNDED_ONTO_THE_KINK)
    assert kinds(report) == {("wrong-math", "b")}


def test_the_generated_neuron_passes_its_own_check_at_the_rounded_kink():
    spec = symbackprop.layer(NEURON, inputs=[_w, _x, _b], name="Neuron")
    report = verify_layer(symbackprop.compile(spec), spec, examples=ROUNDED_ONTO_THE_KINK)
    assert report.findings == [], report.text()


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


# -- array layers and networks ----------------------------------------------------------------------
ARRAYS = [n for n in catalog.bundled_names() if symbackprop.load(n).is_array]


def _softmax(x):
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _values(counterexample) -> dict:
    return {k: np.array(v) for k, v in counterexample["values"].items()}


def test_the_books_affine_is_clean():
    report = verify_layer(load_class(f"{SEED}:Affine"), "affine")
    assert report.findings == [] and report.notes == [] and report.ok


def test_the_books_softmax_with_loss_gets_exactly_a_precision_finding_with_its_size():
    report = verify_layer(load_class(f"{SEED}:SoftmaxWithLoss"), "softmax_with_loss")
    (finding,) = report.findings
    assert (finding.kind, finding.input) == ("precision", None) and not report.ok
    at = finding.counterexample
    v = _values(at)
    x, t = v["x"], v["t"]
    shifted = x - x.max(axis=1, keepdims=True)
    log_y = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))  # by hand, exact in float64
    books = -np.sum(np.log(np.exp(log_y)[np.arange(len(x)), t.argmax(axis=1)] + 1e-7)) / len(x)
    assert at["expected"] == pytest.approx(-np.sum(t * log_y) / len(x), rel=1e-12)
    assert at["got"] == pytest.approx(books, rel=1e-12)
    assert finding.max_rel_error == pytest.approx(abs(books - at["expected"]) / max(abs(books), abs(at["expected"])))
    assert 1e-8 < at["ordinary_error"] < 1e-5 and "1e-7" in finding.message
    # its backward(dout=1) ignores dout: the book's convention for the last layer, a note
    assert len(report.notes) == 1 and "ignores dout" in report.notes[0]


def test_the_books_two_layer_net_gets_exactly_a_precision_finding_on_its_loss():
    report = verify_layer(load_class(f"{SEED}:TwoLayerNet"), "two_layer_net")
    assert kinds(report) == {("precision", None)}, report.text()
    (finding,) = report.findings
    assert finding.message.startswith("loss(x, t) is less accurate") and finding.counterexample["ordinary_error"] < 1e-5


@pytest.mark.parametrize("name", ARRAYS)
def test_generated_array_classes_are_never_flagged(name):
    spec = symbackprop.load(name)
    report = verify_layer(spec.compile(), spec)
    assert report.findings == [] and report.notes == [], report.text()


def test_a_missing_batch_mean_is_located_and_a_batch_of_one_would_hide_it():
    (finding,) = verify_layer(planted.SoftmaxWithLossNoBatchMean, "softmax_with_loss").findings
    assert finding.kind == "wrong-math"
    at = finding.counterexample
    v, k = _values(at), tuple(at["index"])
    n = len(v["x"])
    right = (_softmax(v["x"]) - v["t"]) / n  # the gradient of the mean cross-entropy, by hand
    assert n == at["sizes"]["N"] > 1
    assert at["expected"] == pytest.approx(right[k], rel=1e-9) and at["got"] == pytest.approx(n * right[k], rel=1e-9)
    layer_ = planted.SoftmaxWithLossNoBatchMean()
    layer_.forward(v["x"][:1], v["t"][:1])
    np.testing.assert_allclose(layer_.backward(1.0), _softmax(v["x"][:1]) - v["t"][:1], rtol=1e-12)


def test_a_transposed_dw_is_a_shape_finding_and_wrong_where_the_matrix_is_square():
    report = verify_layer(planted.AffineDwTransposed, "affine")
    shape, = [f for f in report.findings if f.kind == "shape"]
    assert "dW has shape (5, 3), not (D, M) = (3, 5)" in shape.message and "transpose" in shape.message
    wrong, = [f for f in report.findings if f.kind == "wrong-math"]
    at, v = wrong.counterexample, _values(wrong.counterexample)
    k = tuple(at["index"])
    assert at["sizes"]["D"] == at["sizes"]["M"]
    dout = np.array(at["dout"])
    assert at["expected"] == pytest.approx((v["x"].T @ dout)[k], rel=1e-12)
    assert at["got"] == pytest.approx((dout.T @ v["x"])[k], rel=1e-12)


@pytest.mark.parametrize("name, shape", [("AffineDbNotSummed", (4, 5)), ("AffineDbKeepdims", (1, 5))])
def test_a_bias_gradient_of_another_shape_is_found_though_broadcasting_hides_it(name, shape):
    (finding,) = verify_layer(getattr(planted, name), "affine").findings
    assert finding.kind == "shape" and finding.input == "b"
    assert f"db has shape {shape}, not (M,) = (5,)" in finding.message
    assert "broadcasting would hide" in finding.message
    assert (np.zeros(5) - 0.1 * np.ones(shape)).shape == shape  # b - lr * db: no error, a new shape


def test_a_float32_affine_is_precision_with_float32_sized_errors():
    report = verify_layer(planted.AffineFloat32, "affine")
    for finding in report.findings:
        assert finding.kind == "precision" and "float32" in finding.message
        assert 1e-8 < finding.counterexample["ordinary_error"] < 1e-6


def test_copied_parameters_are_reported_as_such_not_as_a_formula_bug():
    (finding,) = verify_layer(planted.AffineCopiesParams, "affine").findings
    assert finding.kind == "side-effect" and "copies its parameters" in finding.message
    assert finding.counterexample == {"copied": ["W", "b"]}
    W, b, x = np.ones((2, 2)), np.zeros(2), np.ones((1, 2))
    layer_ = planted.AffineCopiesParams(W, b)
    W -= 1.0  # the optimizer's in-place update
    assert layer_.forward(x).tolist() == [[2.0, 2.0]]  # still the old W: x @ W with W = 1


def test_a_network_that_copies_its_parameters_is_reported_and_its_values_left_alone():
    (finding,) = verify_layer(planted.TwoLayerNetCopiesParams, "two_layer_net").findings
    assert finding.kind == "side-effect" and "copies its parameters" in finding.message
    assert "values not checked" in finding.message


def test_a_loss_ignoring_dout_is_wrong_math_unless_backward_defaults_to_dout_1():
    report = verify_layer(planted.SoftmaxWithLossIgnoresDout, "softmax_with_loss")
    assert kinds(report) == {("wrong-math", "x")} and "ignores dout" in report.findings[0].message

    class BooksConvention(planted.SoftmaxWithLossIgnoresDout):
        def backward(self, dout=1):
            return super().backward(dout)

    report = verify_layer(BooksConvention, "softmax_with_loss")
    assert report.ok and report.findings == [] and "ignores dout" in report.notes[0]


def test_a_pass_through_wrapper_keeps_the_books_dout_1_convention():
    books = load_class(f"{SEED}:SoftmaxWithLoss")

    class Wrapped(books):  # as a grader wraps classes to watch them
        def backward(self, *args, **kwargs):
            return super().backward(*args, **kwargs)

    report = verify_layer(Wrapped, "softmax_with_loss")
    assert kinds(report) == {("precision", None)} and "ignores dout" in report.notes[0]


def test_given_batches_reach_bugs_the_random_values_miss():
    class WrongForBigBatches(planted.HandSoftmaxWithLoss):
        def backward(self, dout=1):
            dx = super().backward(dout)
            return 2 * dx if len(dx) >= 8 else dx

    assert verify_layer(WrongForBigBatches, "softmax_with_loss").ok
    rng = np.random.default_rng(5)
    x, t = rng.standard_normal((8, 3)), np.eye(3)[rng.integers(0, 3, 8)]
    report = verify_layer(WrongForBigBatches, "softmax_with_loss", examples=[(x, t)])
    assert kinds(report) == {("wrong-math", "x")}
    assert report.findings[0].counterexample["sample"] == "a given example"


@pytest.mark.parametrize("example, message", [
    ((np.zeros((2, 3)),), "forward takes x, t"),
    ((np.zeros((2, 3)), np.zeros((3, 3))), "does not fit"),
    ((np.zeros(3), np.zeros(3)), "has shape"),
    ({"z": np.zeros((2, 3))}, "not an array of"),
])
def test_examples_that_do_not_fit_the_declaration_are_bad_input(example, message):
    with pytest.raises(SymbackpropError, match=message):
        verify_layer(planted.HandSoftmaxWithLoss, "softmax_with_loss", examples=[example])


@settings(max_examples=10)
@given(target=st.sampled_from(["x", "W", "b"]), factor=st.sampled_from([-1.0, 0.5, 0.999, 1.01, 2.0]))
def test_a_scaled_affine_gradient_is_wrong_math_on_that_gradient_only(target, factor):
    class Scaled(planted.HandAffine):
        def backward(self, dout):
            dx = super().backward(dout)
            self.dW = factor * self.dW if target == "W" else self.dW
            self.db = factor * self.db if target == "b" else self.db
            return factor * dx if target == "x" else dx

    assert kinds(verify_layer(Scaled, "affine")) == {("wrong-math", target)}


def test_a_network_without_the_books_interface_is_an_exception_finding():
    class NoGradient(planted.TwoLayerNetByParams):
        gradient = None

    (finding,) = verify_layer(NoGradient, "two_layer_net").findings
    assert finding.kind == "exception" and "no method gradient()" in finding.message


def test_a_network_built_from_sizes_with_misshapen_params_is_a_shape_finding():
    class Transposed(planted.HandTwoLayerNet):
        def __init__(self, input_size, hidden_size, output_size):
            super().__init__(hidden_size, input_size, output_size)

    (finding,) = verify_layer(Transposed, "two_layer_net").findings
    assert finding.kind == "shape" and "params['W1'] has shape (5, 3)" in finding.message


def test_verify_layer_json_for_array_layers(capsys):
    assert main(["verify-layer", f"{SEED}:Affine", "--against", "affine", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["ok"] is True and data["findings"] == [] and data["notes"] == []
    assert main(["verify-layer", f"{SEED}:SoftmaxWithLoss", "--against", "softmax_with_loss", "--json"]) == 1
    data = json.loads(capsys.readouterr().out)
    (finding,) = data["findings"]
    assert finding["kind"] == "precision" and set(finding["counterexample"]) >= {"index", "got", "expected", "sizes"}
    assert "ignores dout" in data["notes"][0]
    assert main(["verify-layer", f"{SEED}:TwoLayerNet", "--against", "two_layer_net"]) == 1
    assert "precision: loss(x, t)" in capsys.readouterr().out


class ExpInFloat32Inside:
    """exp computed in float32 and returned as float64: overflows past 88.7."""

    def forward(self, x):
        self.out = np.exp(x.astype(np.float32)).astype(float)
        return self.out

    def backward(self, dout):
        return dout * self.out


class SoftplusNaive:
    def forward(self, x):
        self.x = x
        return np.log(1 + np.exp(x))

    def backward(self, dout):
        return dout / (1 + np.exp(-self.x))


def test_the_edge_values_reach_float32_and_float64_overflow_of_exp():
    report = verify_layer(ExpInFloat32Inside, "exp")
    assert "precision" in {f.kind for f in report.findings}
    overflow = [f for f in report.findings if "overflow" in f.message]
    assert overflow and 88.7 < abs(overflow[0].counterexample["inputs"]["x"]) < 710, report.text()
    with np.errstate(over="ignore"):
        assert math.isfinite(math.exp(89.0)) and not np.isfinite(np.exp(np.float32(89.0)))
    report = verify_layer(SoftplusNaive, "softplus")
    assert any(f.kind == "precision" and f.input is None and "overflow" in f.message for f in report.findings), \
        report.text()
