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
