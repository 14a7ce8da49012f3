"""One tolerance model for every check: gradients that come from cancellation.

Batch normalization of two rows with a course's ``eps = 1e-8``: each row's normalized value
is almost exactly +-1 whatever the inputs, so ``dx`` is almost 0, the small difference of terms
of size ``dout * gamma / std``.  Float64 computes it only to about ``1e-16`` of those terms;
the checks must allow that and no more.

Oracles: the exact directional derivative of the same layer written with scalar symbols,
differentiated by SymPy and evaluated with mpmath at 40 digits at the float64 inputs; a
course's hand-written batch normalization (the well-known simplified ``dx`` formula).
"""
import mpmath
import numpy as np
import pytest
import sympy

from symbackprop.checker import verify_layer
from symbackprop.checker.arrays import ArrayProblem
from symbackprop.checker.base import RTOL, directional_error
from symbackprop.cli import main
from symbackprop.spec.toml import load_spec
import symbackprop

EPS = 1e-8
DECLARATION = f"""
name = "CourseBatchNorm"
inputs = {{ x = ["N", "D"] }}
params = {{ gamma = ["D"], beta = ["D"] }}

[graph]
mu = "mean(x, axis=0)"
xc = "x - mu"
var = "mean(xc**2, axis=0)"
xn = "xc / sqrt(var + {EPS})"
out = "gamma * xn + beta"
"""


class CourseBatchNorm:
    """Training-mode batch normalization as course assignments write it."""

    def __init__(self, gamma, beta, eps=EPS):
        self.gamma, self.beta, self.eps = gamma, beta, eps

    def forward(self, x):
        mu = x.mean(axis=0)
        self.istd = 1.0 / np.sqrt(x.var(axis=0) + self.eps)
        self.xn = (x - mu) * self.istd
        return self.gamma * self.xn + self.beta

    def backward(self, dout):
        n = dout.shape[0]
        self.dbeta = dout.sum(axis=0)
        self.dgamma = (dout * self.xn).sum(axis=0)
        dxn = dout * self.gamma
        return self.istd / n * (n * dxn - dxn.sum(axis=0) - self.xn * (dxn * self.xn).sum(axis=0))


class CourseBatchNormNoProjection(CourseBatchNorm):
    def backward(self, dout):
        n = dout.shape[0]
        self.dbeta, self.dgamma = dout.sum(axis=0), (dout * self.xn).sum(axis=0)
        dxn = dout * self.gamma
        return self.istd / n * (n * dxn - dxn.sum(axis=0))        # a planted bug: the xn term dropped


@pytest.fixture
def spec(tmp_path):
    path = tmp_path / "course_batch_norm.toml"
    path.write_text(DECLARATION)
    return load_spec(path)


def two_rows(seed: int) -> dict:
    rng = np.random.default_rng(seed)
    return {"x": rng.standard_normal((2, 3)), "gamma": rng.standard_normal(3), "beta": rng.standard_normal(3)}


def exact_directional(values: dict, dout: np.ndarray, v: np.ndarray) -> mpmath.mpf:
    """<dout, d f/dx . v> of one column pair at a time, by SymPy and mpmath at 40 digits."""
    a, b, g, eps = sympy.symbols("a b g eps", real=True)
    mu = (a + b) / 2
    var = ((a - mu) ** 2 + (b - mu) ** 2) / 2
    ya, yb = (g * (r - mu) / sympy.sqrt(var + eps) for r in (a, b))
    total = mpmath.mpf(0)
    with mpmath.workdps(40):
        for j in range(values["x"].shape[1]):
            at = {a: sympy.Float(values["x"][0, j], 40), b: sympy.Float(values["x"][1, j], 40),
                  g: sympy.Float(values["gamma"][j], 40), eps: sympy.Float(EPS, 40)}
            for y, dy in ((ya, dout[0, j]), (yb, dout[1, j])):
                for r, vr in ((a, v[0, j]), (b, v[1, j])):
                    total += mpmath.mpf(str(sympy.diff(y, r).evalf(40, subs=at))) * dy * vr
    return total


@pytest.mark.parametrize("seed", range(6))
def test_the_stated_uncertainty_covers_float64s_true_error_from_cancellation(spec, seed):
    derivation = symbackprop.derive(spec)
    problem = ArrayProblem(derivation, {d: 2 if d.name == "N" else 3 for d in spec.dims}, seed)
    problem.values.update({s: two_rows(seed)[s.name] for s in (*spec.inputs, *spec.params)})
    x = spec.inputs[0]
    v = problem.rng.standard_normal((2, 3))
    want, noise = problem.directional(x, v, "complex")
    exact = exact_directional({s.name: a for s, a in problem.values.items()}, problem.dout, v)
    layer = CourseBatchNorm(problem.values[spec.params[0]], problem.values[spec.params[1]])
    layer.forward(problem.values[x])
    got = float(np.sum(layer.backward(problem.dout) * v))
    terms = float(np.linalg.norm(problem.dout * problem.values[spec.params[0]] * layer.istd) * np.linalg.norm(v))
    # a correct float64 computation (the reference's and the course class's) is within the model's
    # allowance of the exact value, however much of it cancels ...
    for value in (want, got):
        assert directional_error(value, float(exact), noise, layer.backward(problem.dout), v) <= RTOL
    # ... and the allowance for rounding is rounding, not a blanket: a few hundred epsilons of the terms
    assert noise <= 1e-13 * terms


def test_without_the_rounding_allowance_two_rows_would_be_a_false_alarm(spec):
    # the model's noise term is needed: the plain relative error of a correct class exceeds RTOL
    worst = 0.0
    for seed in range(40):
        problem = ArrayProblem(symbackprop.derive(spec), {d: 2 if d.name == "N" else 3 for d in spec.dims}, seed)
        x, (gamma, beta) = spec.inputs[0], spec.params
        layer = CourseBatchNorm(problem.values[gamma], problem.values[beta])
        layer.forward(problem.values[x])
        g = layer.backward(problem.dout)
        v = problem.rng.standard_normal(g.shape)
        want, noise = problem.directional(x, v, "complex")
        got = float(np.sum(g * v))
        worst = max(worst, directional_error(got, want, 0.0, g, v))
        assert directional_error(got, want, noise, g, v) <= RTOL
    assert worst > RTOL


def test_a_course_batch_norm_with_a_tiny_eps_passes_at_two_rows(spec):
    examples = [two_rows(seed) for seed in range(20)]
    report = verify_layer(CourseBatchNorm, spec, examples=examples)
    assert report.ok and not report.findings, report.text()


def test_the_dropped_projection_is_still_wrong_math(spec):
    report = verify_layer(CourseBatchNormNoProjection, spec, examples=[two_rows(0)])
    assert not report.ok and ("wrong-math", "x") in {(f.kind, f.input) for f in report.findings}


@pytest.mark.parametrize("declaration", ["batch_norm", "course"])
def test_check_with_200_examples_passes_batch_norm(declaration, spec, tmp_path, capsys):
    target = "batch_norm" if declaration == "batch_norm" else str(tmp_path / "course_batch_norm.toml")
    assert main(["check", target, "--examples", "200"]) == 0, capsys.readouterr().out
