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
