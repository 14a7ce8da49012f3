"""The book's SimpleConvNet (its chapter 7) declared once as a network in index notation: the
book's gradient check per parameter, the generated network against the book's im2col layers
(``examples/book_layers.py``) and torch's autograd, the pooled size it infers, and the training
example on scikit-learn's digits and on (tiny) MNIST files."""
import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

from symbackprop.datasets import load_digits
from symbackprop.spec.toml import spec_from_toml
from symbackprop.errors import SpecError
from tests.derivation.test_arrays import write_idx
from tests.fixtures.declarations import bundled
from tests.fixtures.frameworks import require

ROOT = Path(__file__).resolve().parents[2]
PARAMS = ["W1", "b1", "W2", "b2", "W3", "b3"]


def _example(name):
    sys.path.insert(0, str(ROOT / "examples"))  # the training examples import training.py beside them
    try:
        spec = importlib.util.spec_from_file_location(name, ROOT / "examples" / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(ROOT / "examples"))
    return module


book = _example("book_layers")
example = _example("train_simple_conv_net")


def network(side=8, size=3, pad=1, std=0.3, seed=0, channels=2, filters=3, hidden=5, classes=4):
    Net = bundled("simple_conv_net").compile()
    return Net.initialized(C=channels, IH=side, IW=side, FN=filters, FH=size, FW=size, H=hidden, K=classes,
                           weight_init_std=std, seed=seed, pad=pad)


def batch(net, side, n=5, seed=1):
    rng = np.random.default_rng(seed)
    channels, classes = net.params["W1"].shape[1], net.params["W3"].shape[1]
    return rng.normal(size=(n, channels, side, side)), np.eye(classes)[rng.integers(0, classes, n)]


def test_simple_conv_net_passes_the_books_gradient_check_at_its_levels():
    report = bundled("simple_conv_net").check(max_examples=4)
    assert report.ok, report.problems
    assert list(report.parameters) == PARAMS
    for name, figures in report.parameters.items():
        assert figures["central"] <= 1e-9, name    # the two-layer network's level
        assert figures["complex"] < 1e-15, name    # the exact derivative, to rounding


@pytest.mark.parametrize("side, size, pad", [(6, 3, 0), (5, 2, 1)])
def test_backprop_against_the_networks_own_central_differences(side, size, pad):
    """The book's 5.7.3 at small sizes: mean |backprop - numerical| per parameter, float64
    central differences (h = 1e-4).  Weights of std 0.1: with the book's 0.01 on normal inputs
    the pre-activations are about 1e-2, and a step of 1e-4 crosses a ReLU kink or swaps a
    window's maximum for an element or two, an error of the differences (about 1e-6), not
    of backprop (the checker's figures above are at 0.01, its inputs drawn away from kinks)."""
    net = network(side, size, pad, std=0.1, seed=2)
    x, t = batch(net, side, seed=3)
    backprop = {k: v.copy() for k, v in net.gradient(x, t).items()}
    numeric = net.numerical_gradient(x, t)
    for name in PARAMS:
        assert np.mean(np.abs(backprop[name] - numeric[name])) <= 1e-9, name


@pytest.mark.parametrize("side, size, pad", [(8, 5, 0), (8, 3, 1), (9, 3, 0), (7, 2, 2)])
def test_the_network_is_the_books_layers_in_a_row(side, size, pad):
    """Oracle: the book's im2col Convolution, Relu, Pooling(2, 2, 2), Affine on the flattened
    maps, Relu, Affine and SoftmaxWithLoss, forward and backward by hand (odd sizes floor)."""
    net = network(side, size, pad)
    x, t = batch(net, side)
    W1, b1, W2, b2, W3, b3 = (net.params[k] for k in PARAMS)
    layers = [book.Convolution(W1, b1, 1, pad), book.Relu(), book.Pooling(2, 2, 2)]
    dense = [book.Affine(W2.reshape(-1, W2.shape[-1]), b2), book.Relu(), book.Affine(W3, b3)]
    maps = x
    for layer in layers:
        maps = layer.forward(maps)
    scores = maps.reshape(len(x), -1)
    for layer in dense:
        scores = layer.forward(scores)
    last = book.SoftmaxWithLoss()
    last.forward(scores, t)  # its loss adds 1e-7 inside the log: the loss without it, from its softmax
    np.testing.assert_allclose(net.predict(x), scores, rtol=1e-12, atol=1e-14)
    assert net.loss(x, t) == pytest.approx(-np.sum(t * np.log(book.softmax(scores))) / len(x), rel=1e-12)
    grads = net.gradient(x, t)
    d = last.backward(1.0)
    for layer in reversed(dense):
        d = layer.backward(d)
    d = d.reshape(maps.shape)
    for layer in reversed(layers):
        d = layer.backward(d)
    want = {"W1": layers[0].dW, "b1": layers[0].db, "W2": dense[0].dW.reshape(W2.shape), "b2": dense[0].db,
            "W3": dense[2].dW, "b3": dense[2].db}
    for name in PARAMS:
        np.testing.assert_allclose(grads[name], want[name], rtol=1e-10, atol=1e-14, err_msg=name)
    net.forward(x, t)
    np.testing.assert_allclose(net.backward(1.0), d, rtol=1e-10, atol=1e-14)


def test_the_network_against_torch_autograd():
    torch = require("torch")  # skipped without torch, except in CI, where its absence fails
    F = torch.nn.functional
    net = network(8, 3, 1)
    x, t = batch(net, 8)
    tensors = {k: torch.tensor(v, requires_grad=True) for k, v in net.params.items()}
    xt = torch.tensor(x)
    maps = F.max_pool2d(F.relu(F.conv2d(xt, tensors["W1"], tensors["b1"], padding=1)), 2, 2)
    hidden = F.relu(maps.flatten(1) @ tensors["W2"].reshape(-1, net.params["W2"].shape[-1]) + tensors["b2"])
    loss = F.cross_entropy(hidden @ tensors["W3"] + tensors["b3"], torch.tensor(t))
    loss.backward()
    assert net.loss(x, t) == pytest.approx(loss.item(), rel=1e-12)
    grads = net.gradient(x, t)
    for name in PARAMS:
        np.testing.assert_allclose(grads[name], tensors[name].grad.numpy(), rtol=1e-10, atol=1e-14, err_msg=name)


@pytest.mark.parametrize("side, size, pad, pooled", [(28, 5, 0, 12), (8, 5, 0, 2), (8, 3, 1, 4), (9, 4, 0, 3)])
def test_the_pooled_size_is_inferred_from_the_input(side, size, pad, pooled):
    """W2 = (FN, PH, PW, H): PH and PW are the pooled maps' sizes, ((IH + 2*pad - FH)//1 - 1)//2 + 1;
    the book's 1x28x28 MNIST and the 1x8x8 digits."""
    net = network(side, size, pad, channels=1, filters=30, hidden=100, classes=10)
    assert net.params["W2"].shape == (30, pooled, pooled, 100)
    assert net.predict(np.zeros((2, 1, side, side))).shape == (2, 10)
    assert {"PH", "PW"}.isdisjoint(str(d) for d in bundled("simple_conv_net").dims)  # sizes of no one's


def test_a_plain_size_mismatch_is_still_an_error():
    """Only a window count defines a size no input has: ``D`` against ``C`` stays a mistake."""
    text = ('name = "Bad"\ninputs = { x = ["N", "C", "IH", "IW"] }\nparams = { W = ["FN", "D", "FH", "FW"] }\n'
            '[graph]\ny = "y[n, f, i, j] = sum(x[n, c, i + k, j + l] * W[f, c, k, l], (c, k, l))"\n')
    with pytest.raises(SpecError, match="index c ranges over"):
        spec_from_toml(text, "bad.toml")


def test_the_training_example_learns_the_digits():
    """A few epochs of a small network: the loss falls by half, test accuracy far above chance."""
    data = example.images(load_digits(seed=0))
    assert data[0].shape[1:] == (1, 8, 8)
    net = example.network(data, filters=8, size=3, pad=1, hidden=32, seed=0)
    history = example.fit(net, data, 3, 100, example.Adam(0.01), seed=0)
    assert len(history["loss"]) == 3 * (len(data[0]) // 100) and len(history["test_acc"]) == 3
    assert np.mean(history["loss"][-5:]) < 0.5 * np.mean(history["loss"][:5])
    assert history["test_acc"][-1] >= 0.6  # chance is 0.1


def test_the_training_example_reads_mnist_files_and_saves_the_curves(tmp_path, capsys):
    """``--mnist DIR``: 28x28 images, the book's 5x5 filters (pooled 12x12); the PNG is written."""
    rng = np.random.default_rng(6)
    for split, n in (("train", 20), ("t10k", 10)):
        write_idx(tmp_path / f"{split}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28), dtype=np.uint8),
                  0x08, compress=False)
        write_idx(tmp_path / f"{split}-labels-idx1-ubyte", np.arange(n, dtype=np.uint8) % 10, 0x08, compress=False)
    png = tmp_path / "curves.png"
    args = ["--mnist", str(tmp_path), "--epochs", "1", "--filters", "2", "--hidden", "4", "--batch", "10",
            "--plot", str(png)]
    assert example.main(args) == 0
    out = capsys.readouterr().out
    assert "MNIST: 20 training and 10 test images of 784 pixels" in out
    assert "final test accuracy" in out and "CPU" in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert example.main(["--mnist", str(tmp_path / "missing")]) == 2
