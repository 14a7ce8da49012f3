"""Layers in the style of course assignments: ``*_forward(...) -> (out, cache)`` and
``*_backward(dout, cache) -> gradients``, checked with
``symbackprop verify-layer examples/course_layers.py:affine_forward,affine_backward --against affine``."""
import numpy as np


def affine_forward(x, w, b):
    """out = x @ w + b; the cache is what backward needs."""
    out = x @ w + b
    return out, (x, w)


def affine_backward(dout, cache):
    """dx = dout @ w.T, dw = x.T @ dout, db = the sum of dout over the batch."""
    x, w = cache
    return dout @ w.T, x.T @ dout, np.sum(dout, axis=0)


def affine_backward_slip(dout, cache):
    """The slip: db is the mean over the batch, not the sum."""
    x, w = cache
    return dout @ w.T, x.T @ dout, np.mean(dout, axis=0)


def word_embedding_forward(x, W):
    """out[n, t] = W[x[n, t]]: a row of W for every integer index of x (N, T)."""
    out = W[x]
    return out, (x, W.shape)


def word_embedding_backward(dout, cache):
    """dW: each row x[n, t] gets dout[n, t] added, once per time it was read (np.add.at)."""
    x, shape = cache
    dW = np.zeros(shape)
    np.add.at(dW, x, dout)
    return dW


def word_embedding_backward_slip(dout, cache):
    """The classic slip: a fancy-index assignment keeps only the last of repeated indices."""
    x, shape = cache
    dW = np.zeros(shape)
    dW[x] += dout
    return dW


def _sigmoid(a):
    return 1 / (1 + np.exp(-a))


def lstm_step_forward(x, prev_h, prev_c, Wx, Wh, b):
    """One LSTM step: gates a = x @ Wx + prev_h @ Wh + b in blocks i, f, o, g of width H."""
    H = prev_h.shape[1]
    a = x @ Wx + prev_h @ Wh + b
    i, f, o, g = _sigmoid(a[:, :H]), _sigmoid(a[:, H:2 * H]), _sigmoid(a[:, 2 * H:3 * H]), np.tanh(a[:, 3 * H:])
    next_c = f * prev_c + i * g
    next_h = o * np.tanh(next_c)
    return next_h, next_c, (x, prev_h, prev_c, Wx, Wh, i, f, o, g, next_c)


def lstm_step_backward(dnext_h, dnext_c, cache):
    """The gradients of an LSTM step: dx, dprev_h, dprev_c, dWx, dWh, db."""
    x, prev_h, prev_c, Wx, Wh, i, f, o, g, next_c = cache
    tanh_c = np.tanh(next_c)
    dc = dnext_c + dnext_h * o * (1 - tanh_c**2)  # next_c also reaches the loss through next_h
    di, df, do, dg = dc * g, dc * prev_c, dnext_h * tanh_c, dc * i
    da = np.concatenate([di * i * (1 - i), df * f * (1 - f), do * o * (1 - o), dg * (1 - g**2)], axis=1)
    return da @ Wx.T, da @ Wh.T, dc * f, x.T @ da, prev_h.T @ da, da.sum(axis=0)


def lstm_step_forward_slip(x, prev_h, prev_c, Wx, Wh, b):
    """The slip: the gates read in torch's order i, f, g, o instead of the course's i, f, o, g."""
    H = prev_h.shape[1]
    a = x @ Wx + prev_h @ Wh + b
    i, f, g, o = _sigmoid(a[:, :H]), _sigmoid(a[:, H:2 * H]), np.tanh(a[:, 2 * H:3 * H]), _sigmoid(a[:, 3 * H:])
    next_c = f * prev_c + i * g
    next_h = o * np.tanh(next_c)
    return next_h, next_c, (x, prev_h, prev_c, Wx, Wh, i, f, o, g, next_c)
