"""Generated numpy layers against PyTorch's own implementations (float64, CPU): the value
and every gradient, by autograd through the built-in, at random shapes and values.

Oracle: ``F.batch_norm`` (training mode), ``F.layer_norm``, ``torch.rnn_tanh_cell``,
``F.cross_entropy`` with probability targets, ``F.linear``, ``F.scaled_dot_product_attention``, ``F.embedding`` (its gradient a scatter-add over
repeated indices) — none of them reads the
declaration or the derivation."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import symbackprop
from tests.fixtures.declarations import bundled
from tests.fixtures.frameworks import problem, require

torch = require("torch")
F = torch.nn.functional


def _spatial_batch_norm(x, gamma, beta):
    return F.batch_norm(x, None, None, gamma.reshape(-1), beta.reshape(-1), training=True, eps=1e-5)


def _batch_norm(x, gamma, beta):
    return F.batch_norm(x, None, None, gamma, beta, training=True, eps=1e-7)


def _layer_norm(x, gamma, beta):
    return F.layer_norm(x, x.shape[-1:], gamma, beta, eps=1e-5)


def _rnn_step(x, h, wx, wh, b):
    return torch.rnn_tanh_cell(x, h, wx.T, wh.T, b, torch.zeros_like(b))


def _temporal_softmax_loss(x, t, mask):
    n, steps, v = x.shape
    per_step = F.cross_entropy(x.reshape(n * steps, v), t.reshape(n * steps, v), reduction="none")
    return (per_step * mask.reshape(-1)).sum() / n


def _affine(x, w, b):
    return F.linear(x, w.T, b)


def _dropout(x, mask):
    # torch's F.dropout draws its own mask; with the caller's mask it is this product
    return x * mask / (1 - 0.5)


def _attention(q, k, v):
    return F.scaled_dot_product_attention(q, k, v)


def _embedding(w, x):
    return F.embedding(x, w)


#: declaration: (the built-in, as a function of the inputs, then the parameters, then the constants)
BUILTINS = {
    "spatial_batch_norm": _spatial_batch_norm,
    "batch_norm": _batch_norm,
    "layer_norm": _layer_norm,
    "rnn_step": _rnn_step,
    "temporal_softmax_loss": _temporal_softmax_loss,
    "affine": _affine,
    "temporal_affine": _affine,
    "attention": _attention,
    "dropout": _dropout,
    "embedding": _embedding,
}


@pytest.mark.parametrize("name", sorted(BUILTINS))
@settings(max_examples=8, deadline=None, derandomize=True)
@given(seed=st.integers(0, 2**16))
def test_value_and_gradients_equal_the_builtins(name, seed):
    params, xs, constants, dout = problem(name, seed)
    spec = bundled(name)
    layer = symbackprop.compile(spec)(*[p.copy() for p in params])
    out = layer.forward(*[x.copy() for x in xs], *[c.copy() for c in constants])
    grads = layer.backward(np.array(dout, copy=True))
    grads = list(grads) if isinstance(grads, tuple) else [] if grads is None else [grads]  # None: no inputs
    grads += [getattr(layer, f"d{p.name}") for p in spec.params]

    tensors = [torch.tensor(a, requires_grad=True) for a in (*xs, *params)]
    want = BUILTINS[name](*tensors, *[torch.tensor(c) for c in constants])
    want.backward(torch.tensor(dout))
    np.testing.assert_allclose(out, want.detach().numpy(), rtol=1e-10, atol=1e-12)
    for got, tensor, symbol in zip(grads, tensors, (*spec.inputs, *spec.params)):
        np.testing.assert_allclose(np.reshape(got, tensor.shape), tensor.grad.numpy(), rtol=1e-8, atol=1e-10,
                                   err_msg=f"d{symbol.name}")
