"""The pytest helper and the hypothesis strategies for a declaration's inputs."""
import importlib.util
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings

import symbackprop
from symbackprop.testing import assert_layer_matches, cases_for, inputs_for

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def _import(name: str, folder: Path = FIXTURES):
    spec = importlib.util.spec_from_file_location(name, folder / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


seed = _import("book_layers", FIXTURES.parents[1] / "examples")
planted = _import("planted_layers")


def test_a_matching_class_passes_and_returns_its_report():
    report = assert_layer_matches(seed.Sigmoid, "sigmoid")
    assert report.ok and report.findings == []


def test_a_mismatch_raises_with_every_finding_listed():
    with pytest.raises(AssertionError) as caught:
        assert_layer_matches(seed.Relu, "relu")
    text = str(caught.value)
    assert "side-effect" in text and "writes into dout" in text
    with pytest.raises(AssertionError, match="(?s)wrong-math x.*counterexample"):
        assert_layer_matches(planted.SigmoidSquared, "sigmoid")


def test_informational_findings_do_not_fail():
    report = assert_layer_matches(planted.ReluOneAtZero, "relu")
    assert [f.kind for f in report.findings] == ["kink-only"]


def test_options_reach_the_checker():
    assert_layer_matches(seed.Relu, "relu", ignore=["side-effect"])
    assert_layer_matches(lambda: seed.Sigmoid(), symbackprop.load("sigmoid"), seed=3)


@settings(max_examples=20, deadline=None)
@given(xs=inputs_for("multiply"))
def test_inputs_for_draws_one_float64_array_per_input_of_one_shape(xs):
    assert len(xs) == 2
    assert xs[0].shape == xs[1].shape and all(x.dtype == np.float64 for x in xs)
    assert all(np.all(np.isfinite(x)) for x in xs)


@settings(max_examples=20, deadline=None)
@given(xs=inputs_for("log", shape=(3, 2)))
def test_inputs_keep_to_the_declared_domain(xs):
    (x,) = xs
    assert x.shape == (3, 2) and np.all(x > 0)


@settings(max_examples=5, deadline=None)
@given(xs=inputs_for("sigmoid"))
def test_drawn_inputs_as_examples_of_a_correct_class(xs):
    assert_layer_matches(seed.Sigmoid, "sigmoid", examples=[xs])


@settings(max_examples=15, deadline=None)
@given(case=cases_for("add"))
def test_cases_pair_inputs_with_an_upstream_gradient_of_their_shape(case):
    xs, dout = case
    layer = seed.AddLayer()
    layer.forward(*xs)
    dx, dy = layer.backward(dout)
    assert dout.shape == xs[0].shape
    np.testing.assert_array_equal(dx, dout)  # the oracle: d(x + y)/dx = 1
    np.testing.assert_array_equal(dy, dout)


# -- array layers ------------------------------------------------------------------------------
def test_the_books_affine_passes_and_its_softmax_with_loss_fails_on_its_precision():
    assert assert_layer_matches(seed.Affine, "affine").findings == []
    with pytest.raises(AssertionError, match="(?s)precision: the loss.*1e-7.*counterexample"):
        assert_layer_matches(seed.SoftmaxWithLoss, "softmax_with_loss")
    report = assert_layer_matches(seed.SoftmaxWithLoss, "softmax_with_loss", ignore=["precision"])
    assert report.ok and "ignores dout" in report.notes[0]  # notes never fail


@settings(max_examples=20, deadline=None)
@given(xt=inputs_for("softmax_with_loss"))
def test_array_inputs_are_what_forward_takes_with_one_hot_targets(xt):
    x, t = xt
    assert x.dtype == np.float64 and x.shape == t.shape and x.ndim == 2
    assert np.all(np.abs(x) <= 3) and set(np.unique(t)) <= {0.0, 1.0}
    np.testing.assert_array_equal(t.sum(axis=1), np.ones(len(t)))


@settings(max_examples=10, deadline=None)
@given(case=cases_for("affine", sizes={"N": 1}))
def test_array_cases_pair_inputs_with_a_dout_of_the_outputs_shape(case):
    (x,), dout = case
    assert x.shape[0] == 1 == dout.shape[0]
    W, b = np.ones((x.shape[1], dout.shape[1])), np.zeros(dout.shape[1])
    layer = seed.Affine(W, b)
    layer.forward(x)
    dx = layer.backward(dout)
    np.testing.assert_allclose(dx, np.repeat(dout.sum(axis=1, keepdims=True), x.shape[1], axis=1))  # dout @ ones.T
    np.testing.assert_allclose(layer.db, dout[0])  # a batch of one: the sum over the batch is the row


@settings(max_examples=10, deadline=None)
@given(case=cases_for("mse"))
def test_a_loss_gets_a_scalar_dout(case):
    (y, t), dout = case
    assert isinstance(dout, float) and y.shape == t.shape


@settings(max_examples=4, deadline=None)
@given(xs=inputs_for("affine"))
def test_drawn_batches_as_examples_of_the_books_affine(xs):
    assert_layer_matches(seed.Affine, "affine", examples=[xs])


@settings(max_examples=12, deadline=None)
@given(xt=inputs_for("softmax_with_loss", sizes={"N": 8}))
def test_drawn_batches_as_examples_of_the_books_loss_the_readme_way(xt):
    # drawn values include zeros and subnormals (5e-324): the reference's complex step must cope
    assert xt[0].shape[0] == 8
    assert_layer_matches(seed.SoftmaxWithLoss, "softmax_with_loss", examples=[xt], ignore=["precision"])
