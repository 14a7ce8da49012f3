"""The numerical check: it passes right classes and catches wrong ones."""
import numpy as np
import pytest
import sympy

import symbackprop
from symbackprop.spec import catalog
from symbackprop.checker.elementwise import gradient_check, kinks
from symbackprop.numerics.differences import directional_derivative, elementwise_derivative, numerical_gradient, relative_error

x = sympy.Symbol("x", real=True)


@pytest.mark.parametrize("name", catalog.bundled_names())
def test_every_bundled_declaration_checks(name):
    report = symbackprop.load(name).check(max_examples=10)
    assert report.ok, report.problems
    assert report.backward_max_rel_error < 1e-6


def test_complex_step_is_used_where_the_forward_is_analytic():
    report = symbackprop.load("sigmoid").check(max_examples=10)
    assert report.method == "complex"
    assert report.backward_max_rel_error < 1e-9


def test_central_differences_at_kinks():
    assert symbackprop.load("relu").check(max_examples=10).method == "central"


class WrongSigmoid:
    """dout * y**2 * (1 - y): a plausible slip."""

    def forward(self, x):
        self.y = 1 / (1 + np.exp(-x))
        return self.y

    def backward(self, dout):
        return dout * self.y**2 * (1 - self.y)


def test_a_wrong_backward_is_caught_with_its_location():
    spec = symbackprop.load("sigmoid")
    error, method, where = gradient_check(spec, WrongSigmoid, max_examples=10)
    assert error > 0.1
    assert where["input"] == "x" and set(where) >= {"index", "backward", "numerical"}


class ReluKinkAtZeroConvention:
    def forward(self, x):
        self.mask = x > 0
        return np.maximum(x, 0)

    def backward(self, dout):
        return dout * self.mask


def test_kinks_are_avoided_not_misreported():
    spec = symbackprop.load("relu")
    assert kinks(spec) != []
    error, _, _ = gradient_check(spec, ReluKinkAtZeroConvention, max_examples=30)
    assert error < 1e-6


def test_a_wrong_claim_and_a_wrong_chain_step_fail_the_check(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text('''
name = "Sigmoid"
inputs = ["x"]
forward = "1 / (1 + exp(-x))"
[claims]
backward.x = "dout * y * (1 + y)"
[[chains]]
of = "backward.x"
steps = ["dout * y**2 * exp(-x)", "dout * y**2 * exp(x)", "dout * y * (1 - y)"]
''')
    report = symbackprop.load_spec(path).check(max_examples=5)
    assert not report.ok
    assert report.claims[0]["status"] == "wrong"
    assert report.claims[0]["counterexample"]["left"] != report.claims[0]["counterexample"]["right"]
    assert report.chains[0]["first_wrong_step"] == 1


def test_wrong_expected_numbers_fail(tmp_path):
    text = (catalog.resolve("apple").read_text()).replace("price = 220", "price = 221")
    path = tmp_path / "apple.toml"
    path.write_text(text)
    report = symbackprop.load_spec(path).check(max_examples=3)
    assert not report.ok and any("expect price" in p for p in report.problems)


def test_numeric_oracles_agree_with_known_derivatives():
    xs = np.linspace(-3, 3, 7)
    d, noise = elementwise_derivative(np.tanh, [xs], 0, "central")
    np.testing.assert_allclose(d, 1 - np.tanh(xs) ** 2, rtol=1e-8)
    assert np.all(noise < 1e-8)
    d, _ = elementwise_derivative(np.sin, [xs], 0, "complex")
    np.testing.assert_allclose(d, np.cos(xs), rtol=1e-15)
    v = np.random.default_rng(0).normal(size=7)
    np.testing.assert_allclose(directional_derivative(np.exp, [xs], 0, v, "complex"), np.exp(xs) * v, rtol=1e-14)
    w = np.array([1.0, 2.0])
    np.testing.assert_allclose(numerical_gradient(lambda: float(np.sum(w**3)), w), [3.0, 12.0], rtol=1e-6)


def test_relative_error_discounts_oracle_noise_and_tiny_values():
    assert relative_error(np.array([1.0]), np.array([1.0 + 1e-9]))[0] == pytest.approx(1e-9, rel=1e-3)
    assert relative_error(np.array([1.0]), np.array([1.0 + 1e-9]), noise=1e-8)[0] == 0
    assert relative_error(np.array([0.0]), np.array([1e-18]), floor=1e-6)[0] < 1e-11
