"""Layer classes in a test suite of your own (the README's "In your test suite").

``pip install symbackprop`` registers a pytest plugin: the marker names the declaration,
the fixture ``layer_check`` checks a class against it.  Run: ``pytest examples/test_my_layers.py``.
"""
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings

from symbackprop.testing import assert_layer_matches, inputs_for

sys.path.insert(0, str(Path(__file__).parent))  # book_layers.py and my_layers.py lie beside this file
import book_layers  # noqa: E402
import my_layers  # noqa: E402


@pytest.mark.symbackprop("sigmoid")
def test_sigmoid(layer_check):
    layer_check(book_layers.Sigmoid)


@pytest.mark.symbackprop("affine")
def test_affine(layer_check):
    layer_check(book_layers.Affine)          # built the book's way: Affine(W, b), random W and b


@pytest.mark.symbackprop("softmax_with_loss", ignore=["precision"])   # options of every layer_check here
def test_softmax_with_loss(layer_check):      # the book's log(y + 1e-7) is far off at scores near 1000
    report = layer_check(book_layers.SoftmaxWithLoss)
    assert report.ok                          # the report, for asserts of your own


@pytest.mark.symbackprop("sigmoid")
def test_the_slip_is_caught(layer_check):
    with pytest.raises(AssertionError, match="wrong-math"):
        layer_check(my_layers.SigmoidSlip)   # dout*y**2*(1 - y): y squared


@settings(max_examples=20, derandomize=True, database=None)
@given(inputs_for("sigmoid"))                 # float64 arrays of drawn shapes, in the input's domain
def test_sigmoid_on_drawn_inputs(xs):
    assert_layer_matches(book_layers.Sigmoid, "sigmoid", examples=[xs])
