"""Thin adapters: published hand-written layer code in the book's layer style
(``forward(*inputs) -> out``, ``backward(dout) -> dx or tuple``; parameters' gradients
stored as ``self.d<name>``), each a few lines and no math of its own.

The code judged is imported from its published packages, installed from PyPI by pip
(``tests/external/requirements.txt``); none of it is copied here.  Sources:

======================  =======  ============  ===============================================
package                 version  license       module (repository)
======================  =======  ============  ===============================================
dezero                  0.0.13   MIT           dezero/core.py, dezero/functions.py
                                               (oreilly-japan/deep-learning-from-scratch-3)
micrograd               0.1.0    MIT           micrograd/engine.py, micrograd/nn.py (karpathy/micrograd)
mygrad                  2.5.0    MIT           mygrad/nnet/activations/, mygrad/nnet/losses/,
                                               mygrad/math/ (ops.py of each)
                                               (rsokl/MyGrad)
thinc                   9.1.1    MIT           thinc/backends/ops.py (class Ops), thinc/loss.py
                                               (explosion/thinc)
autograd                1.9.1    MIT           autograd/numpy/numpy_vjps.py, autograd/scipy/special.py
                                               (HIPS/autograd)
scikit-learn            1.9.1    BSD-3-Clause  sklearn/neural_network/_base.py
                                               (scikit-learn/scikit-learn)
======================  =======  ============  ===============================================
"""
from __future__ import annotations

import contextlib

import autograd.numpy as anp
import autograd.scipy.special as asp
import mygrad as mg
import mygrad.nnet.activations as mga
import mygrad.nnet.losses as mgl
import numpy as np
from autograd import make_vjp
from micrograd.engine import Value
from micrograd.nn import Neuron
from sklearn.neural_network._base import ACTIVATIONS, DERIVATIVES
from thinc.backends.ops import Ops
from thinc.loss import CosineDistance, L2Distance


@contextlib.contextmanager
def _numpy_int_alias():
    """dezero 0.0.13 reads ``np.int`` (removed in numpy 1.24) once, at import."""
    had = "int" in np.__dict__
    np.int = int
    try:
        yield
    finally:
        if not had:
            del np.int


with _numpy_int_alias():
    import dezero  # noqa: F401  (sets up Variable's operators)
    import dezero.core as dzc
    import dezero.functions as dzf
    from dezero.core import Variable


def _named(cls: type, name: str) -> type:
    cls.__name__ = cls.__qualname__ = name
    return cls


def _data(grads):
    """DeZero's gradients (Variables) as arrays."""
    return tuple(g.data for g in grads) if isinstance(grads, tuple) else grads.data


# -- DeZero: Function classes (forward on arrays, backward on Variables) -----------------------
def dezero(make, name: str) -> type:
    """``make()`` builds a fresh DeZero Function; its ``backward`` gets ``Variable(dout)``."""
    class Layer:
        def forward(self, *xs):
            self.f = make()
            self.out = self.f(*map(np.asarray, xs))  # kept: the Function holds its output weakly
            return self.out.data

        def backward(self, dout=1.0):
            return _data(self.f.backward(Variable(np.asarray(dout))))
    return _named(Layer, name)


def dezero_loss_labels(make, name: str) -> type:
    """A DeZero loss taking integer labels: the one-hot targets given as their labels (its
    ``backward`` returns the scores' gradient alone)."""
    base = dezero(make, name)

    class Layer(base):
        def forward(self, x, t):
            return super().forward(x, t.argmax(axis=1))

    return _named(Layer, name)


def dezero_affine(name: str) -> type:
    """``dezero.functions.Linear`` as the book's ``Affine(W, b)``."""
    class Layer:
        def __init__(self, W, b):
            self.W, self.b = W, b

        def forward(self, x):
            self.f = dzf.Linear()
            self.out = self.f(x, self.W, self.b)
            return self.out.data

        def backward(self, dout):
            dx, self.dW, self.db = _data(self.f.backward(Variable(dout)))
            return dx
    return _named(Layer, name)


def dezero_batch_norm(name: str) -> type:
    """``dezero.functions.BatchNorm`` (training mode, its eps 2e-5) as ``BatchNorm(gamma, beta)``."""
    class Layer:
        def __init__(self, gamma, beta):
            self.gamma, self.beta = gamma, beta
            self.f = None

        def forward(self, x):
            if self.f is None:
                self.f = dzf.BatchNorm(np.zeros(x.shape[1]), np.zeros(x.shape[1]), 0.9, 2e-5)
            self.out = self.f(x, self.gamma, self.beta)
            return self.out.data

        def backward(self, dout):
            dx, self.dgamma, self.dbeta = _data(self.f.backward(Variable(dout)))
            return dx
    return _named(Layer, name)


def dezero_composite(fn, name: str, *, labels: bool = False) -> type:
    """A DeZero function composed of Functions: ``Variable.backward`` from ``dout``."""
    class Layer:
        def forward(self, x, t):
            self.x = Variable(x)
            self.out = fn(self.x, t.argmax(axis=1) if labels else t)
            return self.out.data

        def backward(self, dout=1.0):
            self.x.grad, self.out.grad = None, Variable(np.asarray(dout))
            self.out.backward()
            return self.x.grad.data
    return _named(Layer, name)


DEZERO = {
    "Sin": dezero(dzf.Sin, "DezeroSin"), "Cos": dezero(dzf.Cos, "DezeroCos"),
    "Tanh": dezero(dzf.Tanh, "DezeroTanh"), "Exp": dezero(dzf.Exp, "DezeroExp"),
    "Log": dezero(dzf.Log, "DezeroLog"), "Sigmoid": dezero(dzf.Sigmoid, "DezeroSigmoid"),
    "ReLU": dezero(dzf.ReLU, "DezeroReLU"),
    "LeakyReLU": dezero(lambda: dzf.LeakyReLU(0.01), "DezeroLeakyReLU"),
    "Clip": dezero(lambda: dzf.Clip(-1.0, 1.0), "DezeroClip"),
    "Softmax": dezero(dzf.Softmax, "DezeroSoftmax"), "LogSoftmax": dezero(dzf.LogSoftmax, "DezeroLogSoftmax"),
    "Pow": dezero(lambda: dzc.Pow(3), "DezeroPow"),
    "Add": dezero(dzc.Add, "DezeroAdd"), "Mul": dezero(dzc.Mul, "DezeroMul"),
    "Sub": dezero(dzc.Sub, "DezeroSub"), "Div": dezero(dzc.Div, "DezeroDiv"),
    "Neg": dezero(dzc.Neg, "DezeroNeg"),
    "MatMul": dezero(dzf.MatMul, "DezeroMatMul"),
    "Sum": dezero(lambda: dzf.Sum(0, False), "DezeroSum"),
    "Max": dezero(lambda: dzf.Max(axis=1), "DezeroMax"),
    "Transpose": dezero(dzf.Transpose, "DezeroTranspose"),
    "MeanSquaredError": dezero(dzf.MeanSquaredError, "DezeroMeanSquaredError"),
    "SoftmaxCrossEntropy": dezero_loss_labels(dzf.SoftmaxCrossEntropy, "DezeroSoftmaxCrossEntropy"),
    "Linear": dezero_affine("DezeroLinear"),
    "BatchNorm": dezero_batch_norm("DezeroBatchNorm"),
    "softmax_cross_entropy_simple": dezero_composite(dzf.softmax_cross_entropy_simple,
                                                     "DezeroSoftmaxCrossEntropySimple", labels=True),
    "sigmoid_cross_entropy": dezero_composite(dzf.sigmoid_cross_entropy, "DezeroSigmoidCrossEntropy"),
    "binary_cross_entropy": dezero_composite(dzf.binary_cross_entropy, "DezeroBinaryCrossEntropy"),
}


# -- micrograd: scalar Values, one per element ---------------------------------------------------
def micrograd(op, name: str) -> type:
    """``op(*Values) -> Value`` elementwise; its ``backward()`` seeds 1, so dout multiplies."""
    class Layer:
        def forward(self, *xs):
            self.xs = [np.asarray(x, dtype=float) for x in xs]
            return np.vectorize(lambda *v: op(*(Value(float(a)) for a in v)).data, otypes=[float])(*self.xs)

        def backward(self, dout):
            n = len(self.xs)

            def grads(*v):
                values = [Value(float(a)) for a in v]
                op(*values).backward()
                return tuple(float(x.grad) for x in values) if n > 1 else float(values[0].grad)
            out = np.vectorize(grads, otypes=[float] * n)(*self.xs)
            return tuple(dout * g for g in out) if n > 1 else dout * out
    return _named(Layer, name)


def _neuron(w: Value, x: Value, b: Value) -> Value:
    """micrograd's ReLU ``Neuron(1)`` with the given weight and bias."""
    n = Neuron(1)
    n.w, n.b = [w], b
    return n([x])


MICROGRAD = {
    "add": micrograd(lambda a, b: a + b, "MicrogradAdd"),
    "mul": micrograd(lambda a, b: a * b, "MicrogradMul"),
    "sub": micrograd(lambda a, b: a - b, "MicrogradSub"),
    "truediv": micrograd(lambda a, b: a / b, "MicrogradDiv"),
    "neg": micrograd(lambda a: -a, "MicrogradNeg"),
    "pow3": micrograd(lambda a: a ** 3, "MicrogradCube"),
    "relu": micrograd(lambda a: a.relu(), "MicrogradRelu"),
    "neuron": micrograd(_neuron, "MicrogradNeuron"),
}


# -- MyGrad: Tensor functions whose backward(grad) clears the graph ----------------------------
def mygrad(fn, name: str, *, inputs: int = 1, labels: bool = False) -> type:
    """``fn(*Tensors, *constants) -> Tensor``; ``backward`` runs it again on fresh Tensors
    (MyGrad back-propagates a graph once) and seeds its ``backward`` with ``dout``."""
    class Layer:
        def forward(self, *args):
            self.xs = args[:inputs]
            self.constants = [t.argmax(axis=1) if labels else t for t in args[inputs:]]
            return fn(*self.xs, *self.constants).data

        def backward(self, dout=1.0):
            xs = [mg.Tensor(x) for x in self.xs]
            fn(*xs, *self.constants).backward(dout)
            return tuple(x.grad for x in xs) if inputs > 1 else xs[0].grad
    return _named(Layer, name)


MYGRAD = {
    "elu": mygrad(lambda x: mga.elu(x, 1.0), "MygradElu"),
    "selu": mygrad(mga.selu, "MygradSelu"),
    "sigmoid": mygrad(mga.sigmoid, "MygradSigmoid"),
    "relu": mygrad(mga.relu, "MygradRelu"),
    "leaky_relu": mygrad(lambda x: mga.leaky_relu(x, 0.01), "MygradLeakyRelu"),
    "soft_sign": mygrad(mga.soft_sign, "MygradSoftSign"),
    "hard_tanh": mygrad(mga.hard_tanh, "MygradHardTanh"),
    "softmax": mygrad(lambda x: mga.softmax(x, axis=1), "MygradSoftmax"),
    "logsoftmax": mygrad(lambda x: mga.logsoftmax(x, axis=1), "MygradLogSoftmax"),
    "softmax_crossentropy": mygrad(mgl.softmax_crossentropy, "MygradSoftmaxCrossentropy", labels=True),
    "multiclass_hinge": mygrad(mgl.multiclass_hinge, "MygradMulticlassHinge", labels=True),
    "focal_loss": mygrad(mgl.focal_loss, "MygradFocalLoss", labels=True),
    "softmax_focal_loss": mygrad(lambda x, y: mgl.softmax_focal_loss(x, y, alpha=1, gamma=2),
                                 "MygradSoftmaxFocalLoss", labels=True),
    "negative_log_likelihood": mygrad(mgl.negative_log_likelihood, "MygradNegativeLogLikelihood", labels=True),
    "abs": mygrad(mg.abs, "MygradAbs"), "arctan": mygrad(mg.arctan, "MygradArctan"),
    "cbrt": mygrad(mg.cbrt, "MygradCbrt"), "log1p": mygrad(mg.log1p, "MygradLog1p"),
    "expm1": mygrad(mg.expm1, "MygradExpm1"), "reciprocal": mygrad(mg.reciprocal, "MygradReciprocal"),
    "sqrt": mygrad(mg.sqrt, "MygradSqrt"), "exp": mygrad(mg.exp, "MygradExp"),
    "log": mygrad(mg.log, "MygradLog"), "tanh": mygrad(mg.tanh, "MygradTanh"),
    "logaddexp": mygrad(lambda x: mg.logaddexp(x, 0.0), "MygradLogaddexp"),
    "maximum": mygrad(mg.maximum, "MygradMaximum", inputs=2),
}


# -- autograd: hand-written VJPs of numpy's functions, through make_vjp ---------------------------
def autograd(fn, name: str, *, inputs: int = 1) -> type:
    """``make_vjp(fn)`` gives the output and the VJP closure of the inputs' gradients."""
    argnum = tuple(range(inputs)) if inputs > 1 else 0

    class Layer:
        def forward(self, *xs):
            self.vjp, out = make_vjp(fn, argnum)(*xs)
            return out

        def backward(self, dout):
            return self.vjp(dout)
    return _named(Layer, name)


AUTOGRAD = {
    "tanh": autograd(anp.tanh, "AutogradTanh"), "sinh": autograd(anp.sinh, "AutogradSinh"),
    "arctan": autograd(anp.arctan, "AutogradArctan"), "arcsinh": autograd(anp.arcsinh, "AutogradArcsinh"),
    "exp": autograd(anp.exp, "AutogradExp"), "log": autograd(anp.log, "AutogradLog"),
    "expm1": autograd(anp.expm1, "AutogradExpm1"), "log1p": autograd(anp.log1p, "AutogradLog1p"),
    "sqrt": autograd(anp.sqrt, "AutogradSqrt"), "reciprocal": autograd(anp.reciprocal, "AutogradReciprocal"),
    "abs": autograd(anp.abs, "AutogradAbs"),
    "clip": autograd(lambda x: anp.clip(x, -1.0, 1.0), "AutogradClip"),
    "sinc": autograd(anp.sinc, "AutogradSinc"),
    "negative": autograd(anp.negative, "AutogradNegative"),
    "add": autograd(anp.add, "AutogradAdd", inputs=2), "subtract": autograd(anp.subtract, "AutogradSubtract", inputs=2),
    "multiply": autograd(anp.multiply, "AutogradMultiply", inputs=2),
    "true_divide": autograd(anp.true_divide, "AutogradTrueDivide", inputs=2),
    "maximum": autograd(anp.maximum, "AutogradMaximum", inputs=2),
    "logaddexp": autograd(anp.logaddexp, "AutogradLogaddexp", inputs=2),
    "expit": autograd(asp.expit, "AutogradExpit"), "erf": autograd(asp.erf, "AutogradErf"),
    "logsumexp": autograd(lambda x: asp.logsumexp(x, axis=1), "AutogradLogsumexp"),
    "max": autograd(lambda x: anp.max(x, axis=1), "AutogradMax"),
    "sum": autograd(lambda x: anp.sum(x, axis=0), "AutogradSum"),
    "dot": autograd(anp.dot, "AutogradDot", inputs=2),
    "transpose": autograd(anp.transpose, "AutogradTranspose"),
}


# -- thinc: Ops methods, forward f(X) and backprop_f(dY, ...) ------------------------------------
OPS = Ops()  # the pure-numpy base class (NumpyOps overrides a few methods in Cython)


def thinc(forward, backward, name: str) -> type:
    """``backward(dY, X, Y)`` calls thinc's ``backprop_*`` with what it takes."""
    class Layer:
        def forward(self, x):
            self.x = np.asarray(x)
            self.y = forward(self.x)
            return self.y

        def backward(self, dout):
            return backward(np.asarray(dout), self.x, self.y)
    return _named(Layer, name)


THINC = {
    "sigmoid": thinc(OPS.sigmoid, lambda d, x, y: OPS.backprop_sigmoid(d, y), "ThincSigmoid"),
    "relu": thinc(OPS.relu, lambda d, x, y: OPS.backprop_relu(d, y), "ThincRelu"),
    "hard_sigmoid": thinc(OPS.hard_sigmoid, lambda d, x, y: OPS.backprop_hard_sigmoid(d, x), "ThincHardSigmoid"),
    "hard_tanh": thinc(OPS.hard_tanh, lambda d, x, y: OPS.backprop_hard_tanh(d, x), "ThincHardTanh"),
    "relu_k": thinc(OPS.relu_k, lambda d, x, y: OPS.backprop_relu_k(d, x), "ThincReluK"),
    "swish": thinc(OPS.swish, lambda d, x, y: OPS.backprop_swish(d, x, y), "ThincSwish"),
    "hard_swish": thinc(OPS.hard_swish, lambda d, x, y: OPS.backprop_hard_swish(d, x), "ThincHardSwish"),
    "hard_swish_mobilenet": thinc(OPS.hard_swish_mobilenet,
                                  lambda d, x, y: OPS.backprop_hard_swish_mobilenet(d, x),
                                  "ThincHardSwishMobilenet"),
    "dish": thinc(OPS.dish, lambda d, x, y: OPS.backprop_dish(d, x), "ThincDish"),
    "gelu_approx": thinc(OPS.gelu_approx, lambda d, x, y: OPS.backprop_gelu_approx(d, x), "ThincGeluApprox"),
    "gelu": thinc(OPS.gelu, lambda d, x, y: OPS.backprop_gelu(d, x), "ThincGelu"),
    "mish": thinc(OPS.mish, lambda d, x, y: OPS.backprop_mish(d, x), "ThincMish"),
    "softmax": thinc(lambda x: OPS.softmax(x, axis=1), lambda d, x, y: OPS.backprop_softmax(y, d, axis=1),
                     "ThincSoftmax"),
}


def thinc_loss(loss, name: str) -> type:
    """A thinc ``Loss``: ``get_loss(guesses, truths)`` and ``get_grad`` (the loss's gradient: dout multiplies)."""
    class Layer:
        def forward(self, y, t):
            self.y, self.t = y, t
            return loss.get_loss(y, t)

        def backward(self, dout=1.0):
            return dout * loss.get_grad(self.y, self.t)
    return _named(Layer, name)


THINC_LOSSES = {
    "L2Distance": thinc_loss(L2Distance(), "ThincL2Distance"),
    "CosineDistance": thinc_loss(CosineDistance(), "ThincCosineDistance"),
}


# -- scikit-learn: in-place activations and derivatives of its MLP -------------------------------
def sklearn(name: str, label: str) -> type:
    """``ACTIVATIONS[name](Z)`` and ``DERIVATIVES[name](Z, delta)`` work in place: on copies here."""
    class Layer:
        def forward(self, x):
            self.z = np.array(x, dtype=float)
            ACTIVATIONS[name](self.z)
            return self.z

        def backward(self, dout):
            delta = np.array(dout, dtype=float)
            DERIVATIVES[name](self.z, delta)
            return delta
    return _named(Layer, label)


SKLEARN = {name: sklearn(name, f"Sklearn{name.capitalize()}") for name in ("identity", "logistic", "tanh", "relu")}


#: Every adapter by its name, also as an attribute of this module, so that the command line
#: can judge one: ``symbackprop verify-layer tests/external/adapters.py:DezeroSin --against ...``
TABLES = (DEZERO, MICROGRAD, MYGRAD, AUTOGRAD, THINC, THINC_LOSSES, SKLEARN)
ALL = {cls.__name__: cls for table in TABLES for cls in table.values()}
globals().update(ALL)
