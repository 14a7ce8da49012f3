import ctypes

import numpy as np


class Sigmoid:
    def forward(self, x):
        self.out = 1 / (1 + np.exp(-x))
        ctypes.string_at(0)        # reads address 0: the interpreter crashes
        return self.out

    def backward(self, dout):
        return dout * (1.0 - self.out) * self.out
