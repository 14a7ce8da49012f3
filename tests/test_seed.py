"""Every worked number of the seed (chapter 5 notes), reproduced from the declarations.

The expected numbers are the seed's own printed outputs, typed in here by hand.
"""
import numpy as np
import pytest

import symbackprop


def run(name, values, dout=1.0):
    spec = symbackprop.load(name)
    layer = spec.compile()()
    out = layer.forward(*[values[n] for n in spec.input_names])
    grads = layer.backward(dout)
    return out, dict(zip(spec.input_names, grads))


def test_5_1_1_apples():
    # seed 5.4.1: print(price) -> 220.00000000000003; print(dapple, dapple_num, dtax) -> 2.2 110.00000000000001 200
    price, grad = run("apple", {"apple": 100, "apple_num": 2, "tax": 1.1})
    assert price == pytest.approx(220, rel=1e-12)
    assert grad["apple"] == pytest.approx(2.2, rel=1e-12)
    assert grad["apple_num"] == pytest.approx(110, rel=1e-12)
    assert grad["tax"] == pytest.approx(200, rel=1e-12)


def test_5_3_3_apples_and_oranges():
    # seed 5.4.2: 715.0000000000001; 2.2 110.00000000000001 3.3000000000000003 165.0 ... 650
    values = {"apple": 100, "apple_num": 2, "orange": 150, "orange_num": 3, "tax": 1.1}
    price, grad = run("apple_orange", values)
    assert price == pytest.approx(715, rel=1e-12)
    want = {"apple": 2.2, "apple_num": 110, "orange": 3.3, "orange_num": 165, "tax": 650}
    for name, value in want.items():
        assert grad[name] == pytest.approx(value, rel=1e-12), name


def test_apples_and_oranges_keep_the_seeds_two_input_nodes():
    spec = symbackprop.load("apple_orange")
    assert [n.name for n, _ in spec.graph] == ["apple_price", "orange_price", "all_price", "price"]
    assert all(len(expr.args) == 2 for _, expr in spec.graph)


def test_5_2_chain_rule_dz_dx_is_2_x_plus_y():
    spec = symbackprop.load("chain_rule")
    layer = spec.compile()()
    rng = np.random.default_rng(5)
    x, y = rng.normal(size=4), rng.normal(size=4)
    layer.forward(x, y)
    dx, dy = layer.backward(np.ones(4))
    np.testing.assert_allclose(dx, 2 * (x + y), rtol=1e-14)
    np.testing.assert_allclose(dy, 2 * (x + y), rtol=1e-14)


def test_5_3_add_and_multiply_nodes():
    add = symbackprop.load("add").compile()()
    add.forward(3.0, 4.0)
    assert add.backward(1.3) == (1.3, 1.3)
    mul = symbackprop.load("multiply").compile()()
    mul.forward(3.0, 4.0)
    assert mul.backward(1.5) == pytest.approx((6.0, 4.5))


def test_5_5_1_relu_masks_nonpositive_inputs():
    relu = symbackprop.load("relu").compile()()
    x = np.array([[1.0, -0.5], [-2.0, 3.0]])  # the book's example array
    out = relu.forward(x)
    np.testing.assert_array_equal(out, [[1.0, 0.0], [0.0, 3.0]])
    dout = np.array([[5.0, 6.0], [7.0, 8.0]])
    np.testing.assert_array_equal(relu.backward(dout), [[5.0, 0.0], [0.0, 8.0]])
    np.testing.assert_array_equal(dout, [[5.0, 6.0], [7.0, 8.0]])  # unlike the book's, dout is untouched


def test_5_5_1_relu_gradient_at_zero_is_zero_as_in_the_book():
    relu = symbackprop.load("relu").compile()()
    relu.forward(np.array([0.0]))
    assert relu.backward(np.array([1.0]))[0] == 0.0


def test_5_5_2_sigmoid_backward_is_dout_y_1_minus_y():
    sig = symbackprop.load("sigmoid").compile()()
    x = np.linspace(-5, 5, 11)
    y = sig.forward(x)
    np.testing.assert_allclose(y, 1 / (1 + np.exp(-x)), rtol=1e-15)
    dout = np.linspace(0.3, 1.7, 11)
    np.testing.assert_allclose(sig.backward(dout), dout * (1.0 - y) * y, rtol=1e-15)


def test_5_5_2_the_seeds_sigmoid_derivation_chain_checks():
    report = symbackprop.load("sigmoid").check(max_examples=5)
    (chain,) = report.chains
    assert chain["ok"] and chain["first_wrong_step"] is None
    assert [c["status"] for c in report.claims] == ["proved", "proved"]
