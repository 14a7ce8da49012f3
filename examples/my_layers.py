"""Slips a person makes in the book's classes: the README's examples of what
``symbackprop verify-layer`` finds (each class differs from ``book_layers.py`` in one place)."""
from book_layers import Affine, Relu, Sigmoid, SoftmaxWithLoss


class SigmoidSlip(Sigmoid):
    def backward(self, dout):
        return dout * self.out**2 * (1.0 - self.out)     # y squared: a slip


class Relu0(Relu):
    def forward(self, x):
        self.mask = (x < 0)      # keeps the gradient 1 at x = 0
        out = x.copy()
        out[self.mask] = 0
        return out

    def backward(self, dout):
        dx = dout.copy()
        dx[self.mask] = 0
        return dx


class SoftmaxWithLossNoMean(SoftmaxWithLoss):
    def backward(self, dout=1):
        return self.y - self.t          # forgot / batch_size


class AffineCopy(Affine):
    def __init__(self, W, b):
        super().__init__(W.copy(), b.copy())
