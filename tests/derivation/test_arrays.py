"""Array layers and networks: matrix-form backward passes against independent oracles
(hand-written numpy formulas from the book, numerical differentiation), shape errors,
and the two-layer network of the seed's 5.7."""
import gzip
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import sympy

import symbackprop
from symbackprop import ops as arrays
from symbackprop.spec import catalog
from symbackprop.ops import ArrayVar
from symbackprop.cli import main
from symbackprop.datasets import DataError, load_mnist, read_idx
from symbackprop.derivation.explicit import ExplicitCheckFailed
from symbackprop.lang.parser import parse_expression

ARRAYS = [n for n in catalog.bundled_names() if symbackprop.load(n).is_array]


def softmax(a):
    e = np.exp(a - a.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def derive_json(name, capsys):
    assert main(["derive", name, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def parsed(text, names):
    return parse_expression(text, symbols={n: ArrayVar(n, real=True) for n in names}, arrays=True)


def test_affine_backward_strings_parse_back_and_equal_the_books_formulas(capsys):
    data = derive_json("affine", capsys)
    rng = np.random.default_rng(0)
    for n, d, m in [(2, 3, 4), (5, 2, 3), (7, 6, 1)]:
        x, W, b, dout = rng.normal(size=(n, d)), rng.normal(size=(d, m)), rng.normal(size=m), rng.normal(size=(n, m))
        env = {ArrayVar(k, real=True): v for k, v in dict(x=x, W=W, b=b, dout=dout).items()}
        want = {"x": dout @ W.T, "W": x.T @ dout, "b": dout.sum(axis=0)}
        for name, formula in want.items():
            got = arrays.evaluate(parsed(data["backward"][name], "x W b dout".split()), env)
            np.testing.assert_allclose(np.asarray(got, dtype=float), formula, rtol=1e-12)
    assert data["cache"] == ["x"]


def test_softmax_with_loss_is_fused_to_y_minus_t_over_n_and_caches_only_the_difference(capsys):
    data = derive_json("softmax_with_loss", capsys)
    assert data["cache"] == ["e"]          # one N x K array: y - t, not y and t
    names = {n: ArrayVar(n, real=True) for n in ("y", "t", "e")}
    difference = parse_expression(data["cache_definitions"]["e"], symbols=names, arrays=True)
    expr = parse_expression(data["backward"]["x"], symbols=names, arrays=True)
    rng = np.random.default_rng(1)
    for n, k in [(2, 3), (4, 10)]:
        x = rng.normal(size=(n, k))
        t = np.eye(k)[rng.integers(0, k, n)]
        y, dout = softmax(x), 1.7
        env = {names["y"]: y, names["t"]: t, sympy.Symbol("dout", real=True): dout, sympy.Symbol("N", real=True): n}
        env[names["e"]] = np.asarray(arrays.evaluate(difference, env), dtype=float)
        np.testing.assert_allclose(np.asarray(arrays.evaluate(expr, env), dtype=float), dout * (y - t) / n,
                                   rtol=1e-12)


def _cached_elements(derivation, sizes: dict) -> int:
    """Floats the forward keeps per call, at the given sizes (parameters live on the layer)."""
    shapes = {**derivation.spec.shapes}
    total = 0
    for c in derivation.cache:
        shape = shapes.get(c.symbol) or arrays.shape_of(c.expr, shapes)
        total += int(np.prod([sizes[d.name] if not d.is_Integer else int(d) for d in shape]))
    return total


def test_a_value_is_not_given_back_through_one_branch_of_an_inverse():
    """``v = u*u`` solved for ``u`` is ``sqrt(v)``, which is ``|u|``: the derivation keeps ``u``
    instead (it failed its explicit check before), and not ``v`` beside it (memory first).  Oracle: SymPy's diff of the expanded layer
    (derive's explicit check), and central differences (check)."""
    from symbackprop.spec.toml import spec_from_toml

    spec = spec_from_toml('name = "Square"\ninputs = { x = ["N", "D"] }\nparams = { W = ["D", "H"] }\n'
                          '[graph]\nu = "tanh(x @ W)"\nv = "u * u"\n', source="square.toml")
    d = symbackprop.derive(spec)
    assert not any(c.expr.has(sympy.sqrt(sympy.Symbol("v", real=True))) for c in d.recompute)
    assert sorted(c.symbol.name for c in d.cache) == ["u", "x"]  # v = u**2 is computed again, not kept
    assert symbackprop.check(spec, max_examples=6).ok


@pytest.mark.parametrize("name", ["batch_norm", "layer_norm"])
def test_normalizations_keep_one_n_by_d_array(name):
    d = symbackprop.load(name).derive()
    n, D = 50, 7
    # xn (N x D) and std (D, or N x 1 for layer norm): the backward gives xc back as xn*std
    assert _cached_elements(d, {"N": n, "D": D}) <= n * D + max(n, D)
    x = np.random.default_rng(3).normal(size=(n, D))
    gamma, beta = np.linspace(0.5, 2.0, D), np.linspace(-1.0, 1.0, D)
    layer = symbackprop.compile(d)(gamma, beta)
    dout = np.random.default_rng(4).normal(size=(n, D))
    layer.forward(x)
    dx = layer.backward(dout)
    # oracle: the well-known closed forms (batch statistics over axis 0, or per row for layer norm)
    axis = 0 if name == "batch_norm" else 1
    eps = 1e-7 if name == "batch_norm" else 1e-5            # as the two declarations write them
    mu = x.mean(axis=axis, keepdims=True)
    var = x.var(axis=axis, keepdims=True)
    xn = (x - mu) / np.sqrt(var + eps)
    dxn = dout * gamma
    m = x.shape[axis]
    want = (m * dxn - dxn.sum(axis=axis, keepdims=True) - xn * (dxn * xn).sum(axis=axis, keepdims=True)) \
        / (m * np.sqrt(var + eps))
    np.testing.assert_allclose(dx, want, rtol=1e-9, atol=1e-12)


def test_a_two_input_squared_error_keeps_the_difference_once(tmp_path):
    path = tmp_path / "mse2.toml"
    path.write_text('name = "MSE2"\ninputs = { a = ["N", "K"], b = ["N", "K"] }\noutput = "loss"\n'
                    'forward = "sum((a - b)**2) / (2*N)"\n')
    d = symbackprop.load(str(path)).derive()
    assert _cached_elements(d, {"N": 4, "K": 3}) == 12      # 8 bytes an element, not 16
    rng = np.random.default_rng(5)
    a, b = rng.normal(size=(4, 3)), rng.normal(size=(4, 3))
    layer = symbackprop.compile(d)()
    layer.forward(a, b)
    da, db = layer.backward(1.5)
    np.testing.assert_allclose(da, 1.5 * (a - b) / 4, rtol=1e-14)
    np.testing.assert_allclose(db, -da, rtol=1e-14)


def test_softmax_backward_is_the_known_matrix_form(capsys):
    data = derive_json("softmax", capsys)
    rng = np.random.default_rng(2)
    x, dout = rng.normal(size=(3, 4)), rng.normal(size=(3, 4))
    y = softmax(x)
    env = {ArrayVar("y", real=True): y, ArrayVar("dout", real=True): dout}
    got = arrays.evaluate(parsed(data["backward"]["x"], ["y", "dout"]), env)
    np.testing.assert_allclose(np.asarray(got, dtype=float), y * (dout - (dout * y).sum(axis=1, keepdims=True)))


@pytest.mark.parametrize("name", ARRAYS)
def test_every_array_declaration_checks(name):
    report = symbackprop.load(name).check(max_examples=6)
    assert report.ok, report.problems


def test_generated_layer_matches_numerical_differentiation_per_element():
    """Oracle: the book's per-element central differences of sum(dout * forward)."""
    rng = np.random.default_rng(3)
    x, gamma, beta, dout = rng.normal(size=(4, 3)), rng.normal(size=3), rng.normal(size=3), rng.normal(size=(4, 3))
    BatchNorm = symbackprop.load("batch_norm").compile()
    layer = BatchNorm(gamma, beta)
    layer.forward(x)
    dx = layer.backward(dout)

    def objective(xv):
        return np.sum(dout * BatchNorm(gamma, beta).forward(xv))

    numeric = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        e = np.zeros_like(x)
        e[idx] = 1e-20
        numeric[idx] = np.imag(objective(x + 1j * e)) / 1e-20  # complex step: no cancellation
    np.testing.assert_allclose(dx, numeric, rtol=1e-8, atol=1e-12)
    assert np.allclose(layer.dgamma, np.sum(dout * (x - x.mean(0)) / np.sqrt(x.var(0) + 1e-7), axis=0))


def test_a_transposed_parameter_is_transposed_back_once(tmp_path, capsys):
    """``tanh(x @ W.T)``: ``dx = g @ W`` (never ``W.T.T``), ``dW = g.T @ x``; oracle: the
    complex-step derivative of ``sum(dout * tanh(x @ W.T))`` written here in numpy."""
    W_ = ArrayVar("W", real=True)
    assert arrays.Transposed(arrays.Transposed(W_)) == W_
    path = tmp_path / "transposed_tanh.toml"
    path.write_text('name = "TransposedTanh"\ninputs = { x = ["N", "D"] }\nparams = { W = ["M", "D"] }\n'
                    'forward = "tanh(x @ W.T)"\n')
    assert main(["derive", str(path)]) == 0
    spec = symbackprop.load_spec(path)
    printed = capsys.readouterr().out + spec.generate()
    assert "backward  dx = (dout*(1 - y**2)) @ W\n" in printed and ".T.T" not in printed
    rng = np.random.default_rng(6)
    x, W, dout = rng.normal(size=(5, 3)), rng.normal(size=(4, 3)), rng.normal(size=(5, 4))
    layer = spec.compile()(W)
    layer.forward(x)
    grads = {"x": layer.backward(dout), "W": layer.dW}
    objectives = {"x": lambda v: np.sum(dout * np.tanh(v @ W.T)), "W": lambda v: np.sum(dout * np.tanh(x @ v.T))}
    for name, value in (("x", x), ("W", W)):
        numeric = np.zeros_like(value)
        for idx in np.ndindex(value.shape):
            e = np.zeros_like(value)
            e[idx] = 1e-20
            numeric[idx] = np.imag(objectives[name](value + 1j * e)) / 1e-20
        np.testing.assert_allclose(grads[name], numeric, rtol=1e-10, atol=1e-12)
    assert spec.check(max_examples=4).ok


def test_two_layer_net_passes_the_books_gradient_check_at_its_levels():
    report = symbackprop.load("two_layer_net").check(max_examples=4)
    assert report.ok
    for name, figures in report.parameters.items():
        assert figures["central"] < 1e-9, name      # the book prints about 1e-13 to 1e-10
        assert figures["complex"] < 1e-15, name     # the exact derivative, to rounding


def test_network_interface_like_the_books_two_layer_net():
    Net = symbackprop.load("two_layer_net").compile()
    net = Net.initialized(D=5, H=4, K=3, seed=0)
    rng = np.random.default_rng(4)
    x, labels = rng.normal(size=(6, 5)), rng.integers(0, 3, 6)
    assert net.predict(x).shape == (6, 3)
    assert 0.0 <= net.accuracy(x, labels) <= 1.0
    onehot = np.eye(3)[labels]
    assert net.loss(x, labels) == pytest.approx(net.loss(x, onehot))  # integer labels accepted
    backprop = {k: v.copy() for k, v in net.gradient(x, onehot).items()}
    numeric = net.numerical_gradient(x, onehot)
    for name in net.params:
        np.testing.assert_allclose(backprop[name], numeric[name], rtol=1e-5, atol=1e-9)
    w = net.params["W1"]
    w -= 0.1 * backprop["W1"]  # in place: the network sees the update
    assert net.params["W1"] is w


@pytest.mark.parametrize("text, words", [
    ('inputs = { x = ["N", "D"] }\nparams = { W = ["M", "K"] }\nforward = "x @ W"', ["D", "M"]),
    ('inputs = { x = ["N", "D"] }\nparams = { b = ["M"] }\nforward = "x + b"', ["D", "M"]),
    ('inputs = { x = ["N", "D"] }\nforward = "sum(x, axis=2)"', ["axis 2"]),
    ('inputs = { x = ["N", "D"] }\nforward = "x @ x"', ["D", "N"]),
])
def test_shape_errors_name_the_dimensions_before_any_derivation(tmp_path, capsys, text, words):
    path = tmp_path / "bad.toml"
    path.write_text('name = "Bad"\n' + text + "\n")
    assert main(["derive", str(path)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "forward" in err
    for word in words:
        assert word in err


def test_the_explicit_check_catches_a_wrong_rule(monkeypatch):
    """Plant a bug in the matrix-product rule: the expansion at explicit shapes refuses it."""
    def wrong(e, g, shapes):
        a, b = e.args
        return [(a, 2 * arrays.Matmul(g, arrays.Transposed(b))), (b, arrays.Matmul(arrays.Transposed(a), g))]

    monkeypatch.setattr(arrays.Matmul, "pullback", wrong)
    with pytest.raises(ExplicitCheckFailed):
        symbackprop.load_spec(catalog.resolve("affine")).derive()


def write_idx(path: Path, array: np.ndarray, code: int, compress: bool) -> None:
    header = bytes([0, 0, code, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    raw = header + array.astype(array.dtype.newbyteorder(">")).tobytes()
    path.write_bytes(gzip.compress(raw) if compress else raw)


@pytest.mark.parametrize("compress", [False, True])
def test_idx_reader_on_tiny_mnist_files(tmp_path, compress):
    rng = np.random.default_rng(5)
    images = rng.integers(0, 256, size=(4, 28, 28), dtype=np.uint8)
    labels = np.array([3, 1, 4, 1], dtype=np.uint8)
    suffix = ".gz" if compress else ""
    for split, n in (("train", 4), ("t10k", 2)):
        write_idx(tmp_path / f"{split}-images-idx3-ubyte{suffix}", images[:n], 0x08, compress)
        write_idx(tmp_path / f"{split}-labels-idx1-ubyte{suffix}", labels[:n], 0x08, compress)
    x_train, t_train, x_test, t_test = load_mnist(tmp_path)
    assert x_train.shape == (4, 784) and x_test.shape == (2, 784)
    np.testing.assert_allclose(x_train[1], images[1].ravel() / 255.0)
    assert t_train.tolist() == [3, 1, 4, 1] and t_test.tolist() == [3, 1]
    floats = np.linspace(-1, 1, 6).reshape(2, 3)
    write_idx(tmp_path / "f.idx", floats, 0x0E, compress)
    np.testing.assert_array_equal(read_idx(tmp_path / "f.idx"), floats)


def test_idx_reader_refuses_broken_files(tmp_path):
    (tmp_path / "bad").write_bytes(b"\x00\x00\x08\x01\x00\x00\x00\x05abc")  # 5 promised, 3 given
    with pytest.raises(DataError, match="expected 5 bytes"):
        read_idx(tmp_path / "bad")
    (tmp_path / "text").write_text("hello")
    with pytest.raises(DataError, match="magic"):
        read_idx(tmp_path / "text")
    with pytest.raises(DataError, match="no train-images"):
        load_mnist(tmp_path)


def test_training_example_reaches_the_target_accuracy(tmp_path):
    """The book's 5.7.4 loop on scikit-learn's digits: test accuracy at least 0.96."""
    script = Path(__file__).resolve().parents[2] / "examples" / "train_two_layer_net.py"
    png = tmp_path / "curves.png"
    result = subprocess.run([sys.executable, str(script), "--png", str(png)], capture_output=True, text=True,
                            timeout=300, check=True)
    final = [line for line in result.stdout.splitlines() if line.startswith("final test accuracy")]
    assert float(final[0].split()[3]) >= 0.96
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("backend", ["numpy", "fused"])
def test_the_transpose_of_a_product_keeps_its_parentheses(tmp_path, backend):
    """``tanh((x @ W).T)`` is ``tanh(W.T @ x.T)``, not ``tanh(x @ W.T)``; oracle: numpy by hand
    and the checker's numerical derivatives."""
    path = tmp_path / "transposed_product.toml"
    path.write_text('name = "TransposedProduct"\ninputs = { x = ["N", "D"] }\nparams = { W = ["D", "M"] }\n'
                    'forward = "tanh((x @ W).T)"\n')
    spec = symbackprop.load_spec(path)
    rng = np.random.default_rng(8)
    x, W = rng.normal(size=(5, 3)), rng.normal(size=(3, 4))
    layer = spec.compile(backend)(W)
    np.testing.assert_allclose(layer.forward(x), np.tanh((x @ W).T), rtol=1e-13)
    assert spec.check(max_examples=4).ok


@pytest.mark.parametrize("backend", ["numpy", "fused"])
def test_a_networks_gradient_skips_the_input_gradient_and_changes_nothing_else(backend):
    """``gradient()`` runs ``backward(1.0, inputs=False)``: no ``dx`` (a third of the products),
    the same parameter gradients; oracle: ``backward`` with ``dx``, and central differences."""
    net = symbackprop.load("two_layer_net").compile(backend).initialized(D=6, H=5, K=4, seed=1)
    rng = np.random.default_rng(9)
    x, t = rng.normal(size=(7, 6)), np.eye(4)[rng.integers(0, 4, 7)]
    grads = {k: v.copy() for k, v in net.gradient(x, t).items()}
    net.forward(x, t)
    dx = net.backward(1.0)
    assert dx.shape == x.shape
    for k, v in net.grads.items():
        np.testing.assert_array_equal(grads[k], v)
    net.forward(x, t)
    assert net.backward(1.0, inputs=False) is None
    numeric = net.numerical_gradient(x, t)
    for k in grads:
        np.testing.assert_allclose(grads[k], numeric[k], rtol=1e-5, atol=1e-8)


def test_a_size_written_as_text_is_the_same_size():
    from symbackprop.spec.toml import spec_from_toml

    text = 'name = "Bias"\ninputs = {{ x = ["N", "D"] }}\nparams = {{ b = [{one}, "D"] }}\n[graph]\ny = "x + b"\n'
    as_number, as_text = (spec_from_toml(text.format(one=one)) for one in ("1", '"1"'))
    assert [list(map(str, s)) for s in as_number.shapes.values()] == \
        [list(map(str, s)) for s in as_text.shapes.values()]
    assert symbackprop.check(as_text, max_examples=4).ok
    with pytest.raises(symbackprop.errors.SymbackpropError, match="expected a shape"):
        spec_from_toml(text.format(one='"0"'))


@pytest.mark.parametrize("body", ['forward = "sum(x + b)"', '[graph]\ns = "x + b"\nloss = "sum(s)"'])
def test_a_sum_over_a_broadcast_bias_counts_every_row(tmp_path, body):
    # sum(x + b) with b of shape (D,) is sum(x) + N*sum(b): db = N*dout (never dout)
    path = tmp_path / "sum_bias.toml"
    path.write_text(f'name = "SumBias"\ninputs = {{ x = ["N", "D"], b = ["D"] }}\noutput = "loss"\n{body}\n')
    layer = symbackprop.compile(symbackprop.load(str(path)))()
    rng = np.random.default_rng(6)
    x, b = rng.normal(size=(5, 3)), rng.normal(size=3)
    assert layer.forward(x, b) == pytest.approx(float(np.sum(x + b)), rel=1e-14)
    dx, db = layer.backward(2.0)
    np.testing.assert_array_equal(dx, np.full((5, 3), 2.0))
    np.testing.assert_array_equal(db, np.full(3, 10.0))


def test_a_sum_of_a_constant_minus_an_array_keeps_the_constant_per_element(tmp_path):
    path = tmp_path / "sum_one_minus.toml"
    path.write_text('name = "SumOneMinus"\ninputs = { x = ["N", "D"] }\noutput = "loss"\nforward = "sum(1 - x)"\n')
    layer = symbackprop.compile(symbackprop.load(str(path)))()
    x = np.random.default_rng(7).normal(size=(4, 3))
    assert layer.forward(x) == pytest.approx(12.0 - float(np.sum(x)), rel=1e-14)
    np.testing.assert_array_equal(layer.backward(1.5), np.full((4, 3), -1.5))


def test_a_scalar_gradient_spreads_before_a_reduction_takes_it_apart(tmp_path):
    # loss = sum(1 - r), r = sum(x, axis=1): dr is -dout for each of N rows, then every column
    path = tmp_path / "rows.toml"
    path.write_text('name = "Rows"\ninputs = { x = ["N", "K"] }\noutput = "loss"\n[graph]\n'
                    'r = "sum(x, axis=1)"\nloss = "sum(1 - r)"\n')
    layer = symbackprop.compile(symbackprop.load(str(path)))()
    x = np.random.default_rng(8).normal(size=(4, 3))
    assert layer.forward(x) == pytest.approx(4.0 - float(np.sum(x)), rel=1e-14)
    np.testing.assert_array_equal(layer.backward(0.5), np.full((4, 3), -0.5))


SCALAR_SUMMED = {
    "sum(x @ V)": ('params = { V = ["L", "M"] }', 'b = "x @ V"\ny = "sum(b)"'),
    "sum of a strided window": ('params = { w = ["K"] }\nhyper = { s = 2 }',
                                'a = "a[n, o] = sum(x[n, o*s + k] * w[k], (k,))"\ny = "sum(a)"'),
    "a window and @ reading one input": (
        'params = { w = ["K"], V = ["L", "M"] }\nhyper = { s = 2 }',
        'a = "a[n, o] = sum(x[n, o*s + k] * w[k], (k,))"\nb = "x @ V"\ny = "sum(a) + sum(b)"'),
}


@pytest.mark.parametrize("case", list(SCALAR_SUMMED))
def test_a_node_whose_whole_sum_is_the_output_gets_its_gradient_spread(case, tmp_path):
    """The scalar gradient of ``sum(b)`` reaches ``@`` (``db @ V.T``) and an index-notation
    node (``da[n, o]``) spread to the node's shape first (``derive`` refused these with
    "@ needs two 2-D operands, got () @ (M, L)", and ``check`` of the window raised in
    einsum); the generated gradients against numerical differentiation."""
    params, graph = SCALAR_SUMMED[case]
    path = tmp_path / "summed.toml"
    path.write_text(f'name = "Summed"\ninputs = {{ x = ["N", "L"] }}\n{params}\n\n[graph]\n{graph}\n')
    report = symbackprop.load_spec(path).check(max_examples=6)
    assert report.ok, report
