import numpy as np


class Sigmoid:
    def forward(self, x):
        out = np.zeros_like(x)
        i = 0
        while i < x.size:          # forgot i += 1
            out.flat[i] = 1 / (1 + np.exp(-x.flat[i]))
        self.out = out
        return out

    def backward(self, dout):
        return dout * (1.0 - self.out) * self.out
