"""Convolution and max pooling written as explicit loops, the way course assignments ask for
them first ("naive" forward and backward), as layer classes with the book's interface.

``symbackprop verify-layer examples/naive_layers.py:NaiveConvolution --against convolution``
checks them against the declarations; ``tests/checker/test_index_layers.py`` plants the classic
slips in them (a padding offset missing in backward, the stride ignored in backward).
"""
import numpy as np


class NaiveConvolution:
    """y[n, f, i, j] = b[f] + sum over c, k, l of W[f, c, k, l] * x[n, c, i*stride + k - pad, j*stride + l - pad]."""

    def __init__(self, W, b, stride=1, pad=0):
        self.W, self.b, self.stride, self.pad = W, b, stride, pad
        self.dW = self.db = None
        self.x = None

    def forward(self, x):
        N, C, H, W = x.shape
        F, _, HH, WW = self.W.shape
        s, p = self.stride, self.pad
        xp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
        out_h, out_w = (H + 2 * p - HH) // s + 1, (W + 2 * p - WW) // s + 1
        out = np.zeros((N, F, out_h, out_w), dtype=np.result_type(x, self.W))
        for n in range(N):
            for f in range(F):
                for i in range(out_h):
                    for j in range(out_w):
                        window = xp[n, :, i * s:i * s + HH, j * s:j * s + WW]
                        out[n, f, i, j] = np.sum(window * self.W[f]) + self.b[f]
        self.x = x
        return out

    def backward(self, dout):
        N, C, H, W = self.x.shape
        F, _, HH, WW = self.W.shape
        s, p = self.stride, self.pad
        xp = np.pad(self.x, ((0, 0), (0, 0), (p, p), (p, p)))
        dxp = np.zeros_like(xp, dtype=np.result_type(xp, dout))
        self.dW = np.zeros_like(self.W, dtype=np.result_type(self.W, dout))
        self.db = dout.sum(axis=(0, 2, 3))
        for n in range(N):
            for f in range(F):
                for i in range(dout.shape[2]):
                    for j in range(dout.shape[3]):
                        g = dout[n, f, i, j]
                        self.dW[f] += g * xp[n, :, i * s:i * s + HH, j * s:j * s + WW]
                        dxp[n, :, i * s:i * s + HH, j * s:j * s + WW] += g * self.W[f]
        return dxp[:, :, p:p + H, p:p + W]


class NaiveMaxPooling:
    """y[n, c, i, j] = max over k < pool_h, l < pool_w of x[n, c, i*stride + k - pad, j*stride + l - pad]."""

    def __init__(self, pool_h=2, pool_w=2, stride=2, pad=0):
        self.pool_h, self.pool_w, self.stride, self.pad = pool_h, pool_w, stride, pad
        self.x = None

    def forward(self, x):
        N, C, H, W = x.shape
        s, p = self.stride, self.pad
        xp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
        out_h, out_w = (H + 2 * p - self.pool_h) // s + 1, (W + 2 * p - self.pool_w) // s + 1
        out = np.zeros((N, C, out_h, out_w), dtype=x.dtype)
        for i in range(out_h):
            for j in range(out_w):
                out[:, :, i, j] = xp[:, :, i * s:i * s + self.pool_h, j * s:j * s + self.pool_w].max(axis=(2, 3))
        self.x = x
        return out

    def backward(self, dout):
        N, C, H, W = self.x.shape
        s, p = self.stride, self.pad
        xp = np.pad(self.x, ((0, 0), (0, 0), (p, p), (p, p)))
        dxp = np.zeros_like(xp, dtype=np.result_type(xp, dout))
        for n in range(N):
            for c in range(C):
                for i in range(dout.shape[2]):
                    for j in range(dout.shape[3]):
                        window = xp[n, c, i * s:i * s + self.pool_h, j * s:j * s + self.pool_w]
                        k, l = np.unravel_index(np.argmax(window), window.shape)  # the first maximum
                        dxp[n, c, i * s + k, j * s + l] += dout[n, c, i, j]
        return dxp[:, :, p:p + H, p:p + W]


# -- the course-assignment style: functions that return (out, cache), the hyperparameters as a dict
def conv_forward_naive(x, w, b, conv_param):
    """The convolution of NaiveConvolution; conv_param = {"stride": ..., "pad": ...}."""
    layer = NaiveConvolution(w, b, conv_param["stride"], conv_param["pad"])
    out = layer.forward(x)
    return out, layer


def conv_backward_naive(dout, cache):
    """(dx, dw, db) from the layer the forward kept."""
    dx = cache.backward(dout)
    return dx, cache.dW, cache.db


def max_pool_forward_naive(x, pool_param):
    """pool_param = {"pool_h": ..., "pool_w": ..., "stride": ..., "pad": ...}."""
    layer = NaiveMaxPooling(pool_param["pool_h"], pool_param["pool_w"], pool_param["stride"], pool_param["pad"])
    return layer.forward(x), layer


def max_pool_backward_naive(dout, cache):
    return cache.backward(dout)
