"""Generated numpy for index notation (convolution, pooling) against PyTorch's autograd in
float64 at random small shapes, strides and paddings; vectorized (no loop over batch or
pixels); other backends refuse in one line."""
import re
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import symbackprop
from symbackprop.cli import main
from symbackprop.errors import GenerationError
from tests.fixtures.declarations import bundled
from tests.fixtures.frameworks import require

INDEXED = ["convolution", "max_pooling", "avg_pooling"]


@st.composite
def conv_cases(draw):
    stride, pad = draw(st.integers(1, 3)), draw(st.integers(0, 2))
    fh, fw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    h = draw(st.integers(max(1, fh - 2 * pad), 9))
    w = draw(st.integers(max(1, fw - 2 * pad), 9))
    return dict(n=draw(st.integers(1, 3)), c=draw(st.integers(1, 3)), f=draw(st.integers(1, 4)), h=h, w=w,
                fh=fh, fw=fw, stride=stride, pad=pad, seed=draw(st.integers(0, 2**16)))


@st.composite
def pool_cases(draw, pad_max):
    ph, pw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    pad = draw(st.integers(0, min(pad_max, ph // 2, pw // 2)))  # torch: padding at most half the window
    h = draw(st.integers(max(1, ph - 2 * pad), 9))
    w = draw(st.integers(max(1, pw - 2 * pad), 9))
    return dict(n=draw(st.integers(1, 3)), c=draw(st.integers(1, 3)), h=h, w=w, ph=ph, pw=pw,
                stride=draw(st.integers(1, 3)), pad=pad, seed=draw(st.integers(0, 2**16)))


def _torch_grads(torch, fn, arrays, g):
    tensors = [torch.tensor(a, dtype=torch.float64, requires_grad=True) for a in arrays]
    out = fn(*tensors)
    out.backward(torch.tensor(g))
    return out.detach().numpy(), [t.grad.numpy() for t in tensors]


@settings(max_examples=40)
@given(case=conv_cases())
def test_convolution_matches_torch_conv2d(case):
    torch = require("torch")
    F = torch.nn.functional
    rng = np.random.default_rng(case["seed"])
    x = rng.standard_normal((case["n"], case["c"], case["h"], case["w"]))
    W = rng.standard_normal((case["f"], case["c"], case["fh"], case["fw"]))
    b = rng.standard_normal(case["f"])
    layer = bundled("convolution").compile()(W.copy(), b.copy(), stride=case["stride"], pad=case["pad"])
    y = layer.forward(x.copy())
    g = rng.standard_normal(y.shape)
    dx = layer.backward(g.copy())
    want, (wdx, wdW, wdb) = _torch_grads(
        torch, lambda x_, W_, b_: F.conv2d(x_, W_, b_, stride=case["stride"], padding=case["pad"]), (x, W, b), g)
    np.testing.assert_allclose(y, want, rtol=1e-12, atol=1e-12)
    for got, ref in ((dx, wdx), (layer.dW, wdW), (layer.db, wdb)):
        np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-12)


@settings(max_examples=40)
@given(case=pool_cases(pad_max=2))
def test_max_pooling_matches_torch_max_pool2d_of_the_zero_padded_input(case):
    # reads outside x are zero in the declaration (as the book's im2col pads): torch pads max
    # pooling with -inf, so the input is zero-padded first and max_pool2d runs without padding
    torch = require("torch")
    F = torch.nn.functional
    rng = np.random.default_rng(case["seed"])
    x = rng.standard_normal((case["n"], case["c"], case["h"], case["w"]))
    p, s = case["pad"], case["stride"]
    layer = bundled("max_pooling").compile()(pool_h=case["ph"], pool_w=case["pw"], stride=s, pad=p)
    y = layer.forward(x.copy())
    g = rng.standard_normal(y.shape)
    dx = layer.backward(g.copy())
    want, (wdx,) = _torch_grads(torch, lambda x_: F.max_pool2d(F.pad(x_, (p, p, p, p)), (case["ph"], case["pw"]),
                                                              stride=s), (x,), g)
    np.testing.assert_allclose(y, want, rtol=0, atol=0)
    np.testing.assert_allclose(dx, wdx, rtol=1e-12, atol=1e-12)


@settings(max_examples=40)
@given(case=pool_cases(pad_max=1))
def test_avg_pooling_matches_torch_avg_pool2d(case):
    torch = require("torch")
    F = torch.nn.functional
    rng = np.random.default_rng(case["seed"])
    x = rng.standard_normal((case["n"], case["c"], case["h"], case["w"]))
    p, s = case["pad"], case["stride"]
    layer = bundled("avg_pooling").compile()(pool_h=case["ph"], pool_w=case["pw"], stride=s, pad=p)
    y = layer.forward(x.copy())
    g = rng.standard_normal(y.shape)
    dx = layer.backward(g.copy())
    want, (wdx,) = _torch_grads(torch, lambda x_: F.avg_pool2d(x_, (case["ph"], case["pw"]), stride=s, padding=p,
                                                              count_include_pad=True), (x,), g)
    np.testing.assert_allclose(y, want, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dx, wdx, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", INDEXED)
def test_float32_in_float32_out(name):
    spec = bundled(name)
    rng = np.random.default_rng(0)
    params = [rng.standard_normal(s).astype(np.float32) for s in ((3, 2, 2, 2), (3,))][:len(spec.params)]
    layer = spec.compile()(*params)
    y = layer.forward(rng.standard_normal((2, 2, 6, 6)).astype(np.float32))
    dx = layer.backward(np.ones_like(y))
    assert {y.dtype, dx.dtype, *(getattr(layer, f"d{p.name}").dtype for p in spec.params)} == {np.dtype(np.float32)}


@pytest.mark.parametrize("name", INDEXED)
def test_generated_code_is_vectorized(name):
    source = bundled(name).generate()
    body = source[source.index("\nclass "):]
    assert not re.search(r"^\s*for |\bwhile\b", body, re.M)  # the class: no loop at all
    loops = re.findall(r"^\s*for .*:$", source, re.M)  # the helpers: over window offsets, or the axes
    assert loops and all("np.ndindex(*size)" in line or "in zip(axes" in line for line in loops)
    assert "sliding_window_view" in source or name == "avg_pooling" and "_windows" in source
    compile(source, "<generated>", "exec")


def test_the_convolution_reads_like_the_declaration():
    source = bundled("convolution").generate()
    assert 'np.einsum("ncijkl,fckl->nfij", _windows(x, (2, 3), (FH, FW), (self.stride, self.stride), ' \
           '(self.pad, self.pad)), self.W, optimize=True)' in source
    assert "def __init__(self, W, b, stride=1, pad=0):" in source
    assert "dx[n, c, i*stride + k - pad, j*stride + l - pad] += sum(dout[n, f, i, j]*W[f, c, k, l], (f,))" in source


@pytest.mark.parametrize("backend", ["fused", "torch", "torch-op", "jax"])
def test_other_backends_refuse_with_one_line(backend, capsys):
    with pytest.raises(GenerationError, match=f"the {backend} backend does not generate index notation"):
        symbackprop.generate(bundled("convolution"), backend=backend)
    assert main(["generate", "max_pooling", "--backend", backend]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "does not generate index notation" in err


def test_a_tiling_declaration_refuses_sizes_that_leave_inputs_unread():
    from symbackprop.spec.toml import spec_from_toml

    text = ('name = "TiledPool"\ninputs = { x = ["N", "C", "IH", "IW"] }\nhyper = { stride = 2 }\ntile = true\n'
            '[graph]\ny = "y[n, c, i, j] = max(x[n, c, i*stride + k, j*stride + l], k=2, l=2)"\n')
    cls = symbackprop.compile(spec_from_toml(text, source="tiled.toml"))
    assert cls().forward(np.zeros((1, 1, 6, 8))).shape == (1, 1, 3, 4)
    with pytest.raises(ValueError, match="the stride 2 does not divide 5"):
        cls().forward(np.zeros((1, 1, 7, 8)))


# -- gathers: the embedding ------------------------------------------------------------------------
def _gather_layer(graph: str, table: str) -> type:
    """A gather of W (shape ``table``) through the integer constant x (N, T), from a declaration."""
    from symbackprop.spec.toml import spec_from_toml

    text = (f'name = "Gather"\nparams = {{ W = {table} }}\nconstants = {{ x = ["N", "T"] }}\n'
            f'symbols = {{ x = "range(V)" }}\n[graph]\ny = "{graph}"\n')
    return symbackprop.compile(spec_from_toml(text, source="gather.toml"))


@st.composite
def embedding_cases(draw):
    return dict(n=draw(st.integers(1, 4)), t=draw(st.integers(1, 5)), v=draw(st.integers(1, 4)),
                d=draw(st.integers(1, 4)), seed=draw(st.integers(0, 2**16)))


@settings(max_examples=30, deadline=None)
@given(case=embedding_cases())
@pytest.mark.parametrize("later_axis", [False, True])
def test_gathers_match_torch_embedding(later_axis, case):
    """``W[x[n, t], d]``, and the same table stored transposed, read along its later axis into a
    transposed output (``y[d, n, t] = W[d, x[n, t]]``)."""
    torch = require("torch")
    rng = np.random.default_rng(case["seed"])
    n, t, v, d = case["n"], case["t"], case["v"], case["d"]
    W = rng.standard_normal((v, d))
    x = rng.integers(0, v, (n, t))  # with N*T > V, indices repeat: their rows' gradients add up
    if later_axis:
        layer = _gather_layer("y[d, n, t] = W[d, x[n, t]]", '["D", "V"]')(W.T.copy())
    else:
        layer = _gather_layer("y[n, t, d] = W[x[n, t], d]", '["V", "D"]')(W.copy())
    y = layer.forward(x.copy())
    g = rng.standard_normal(y.shape)
    assert layer.backward(g.copy()) is None  # no gradient for integers (the book's Embedding)
    ntd = (lambda a: np.moveaxis(a, 0, 2)) if later_axis else (lambda a: a)
    tensor = torch.tensor(W, requires_grad=True)
    want = torch.nn.functional.embedding(torch.tensor(x), tensor)
    want.backward(torch.tensor(ntd(g)))
    np.testing.assert_array_equal(ntd(y), want.detach().numpy())
    np.testing.assert_allclose(layer.dW.T if later_axis else layer.dW, tensor.grad.numpy(), rtol=1e-12, atol=1e-12)


def test_the_embedding_reads_like_the_declaration_float32_in_float32_out():
    source = bundled("embedding").generate()
    assert "y = self.W[x]" in source and "self.dW = _add_at((self.V, self.D), 0, self.x, dout)" in source
    assert "np.add.at(out, (slice(None),) * axis + (where,), values)" in source
    body = source[source.index("\nclass "):]
    assert not re.search(r"^\s*for |\bwhile\b", source, re.M) and "dW[x[n, t], d] += dout[n, t, d]" in body
    W = np.random.default_rng(0).standard_normal((5, 3)).astype(np.float32)
    layer = bundled("embedding").compile()(W)
    y = layer.forward(np.array([[0, 4, 0], [4, 4, 1]]))
    layer.backward(np.ones_like(y))
    assert y.dtype == layer.dW.dtype == np.float32
    assert layer.dW[:, 0].tolist() == [2, 1, 0, 0, 3]  # rows read twice and three times add up


# -- blocks and two outputs: an LSTM step ---------------------------------------------------------------
def _torch_order(w):
    """The course's gate blocks i, f, o, g (last axis) in torch's order i, f, g, o."""
    i, f, o, g = np.split(w, 4, axis=-1)
    return np.concatenate([i, f, g, o], axis=-1)


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 4), d=st.integers(1, 4), h=st.integers(1, 4), seed=st.integers(0, 2**16))
def test_the_lstm_step_matches_torch_lstm_cell(n, d, h, seed):
    """Both outputs and every gradient, from both upstream gradients, against torch.lstm_cell
    (torch's gate order i, f, g, o; its two biases, b_hh zero here)."""
    torch = require("torch")
    rng = np.random.default_rng(seed)
    x, prev_h, prev_c = rng.standard_normal((n, d)), rng.standard_normal((n, h)), rng.standard_normal((n, h))
    Wx, Wh, b = rng.standard_normal((d, 4 * h)), rng.standard_normal((h, 4 * h)), rng.standard_normal(4 * h)
    layer = bundled("lstm_step").compile()(Wx.copy(), Wh.copy(), b.copy())
    next_h, next_c = layer.forward(x.copy(), prev_h.copy(), prev_c.copy())
    dnext_h, dnext_c = rng.standard_normal(next_h.shape), rng.standard_normal(next_c.shape)
    grads = layer.backward(dnext_h.copy(), dnext_c.copy())

    arrays = [x, prev_h, prev_c, _torch_order(Wx).T, _torch_order(Wh).T, _torch_order(b)]
    t = [torch.tensor(a, requires_grad=True) for a in arrays]
    want_h, want_c = torch.lstm_cell(t[0], (t[1], t[2]), t[3], t[4], t[5], torch.zeros(4 * h, dtype=torch.float64))
    torch.autograd.backward([want_h, want_c], [torch.tensor(dnext_h), torch.tensor(dnext_c)])
    np.testing.assert_allclose(next_h, want_h.detach().numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(next_c, want_c.detach().numpy(), rtol=1e-12, atol=1e-12)
    got = [*grads, _torch_order(layer.dWx).T, _torch_order(layer.dWh).T, _torch_order(layer.db)]
    for name, mine, tensor in zip(["dx", "dprev_h", "dprev_c", "dWx", "dWh", "db"], got, t):
        np.testing.assert_allclose(mine, tensor.grad.numpy(), rtol=1e-9, atol=1e-11, err_msg=name)


def test_the_lstm_step_reads_like_the_course():
    source = bundled("lstm_step").generate()
    assert "next_c = prev_c*(s[:, H:H*2]) + (s[:, :H])*(t[:, H*3:H*4])" in source and "np.log" not in source
    assert "return next_h, next_c" in source and "def backward(self, dnext_h, dnext_c):" in source
    assert "return dx, dprev_h, dprev_c" in source and "def __init__(self, Wx, Wh, b):" in source
    assert "_unblock(" in source and not re.search(r"^\s*for |\bwhile\b", source[source.index("\nclass "):], re.M)
