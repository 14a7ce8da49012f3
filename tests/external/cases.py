"""The cases of the external-style suite: each adapter, the declaration it is judged
against, and the verdict expected from reading the code and the math (never from the
tool's output): ``()`` for OK, else the kinds of finding a real defect must give.

The book's classes are those of ``examples/book_layers.py`` (its chapter 5, transcribed
there), loaded as the command line loads a class; every other source is in ``adapters.py``.

Cases where the tool disagrees with that reading today are not here: they are in
``KNOWN_WRONG.md`` beside this file, with the command that shows them.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from symbackprop.checker import load_class

from . import adapters as a

HERE = Path(__file__).resolve().parent
DECLARATIONS = HERE / "declarations"
BOOK = HERE.parents[1] / "examples" / "book_layers.py"


def local(name: str) -> str:
    """A declaration of ``tests/external/declarations/``."""
    return str(DECLARATIONS / f"{name}.toml")


@dataclass(frozen=True)
class Case:
    source: str  # package and the function or class judged
    layer: type  # the adapter
    against: str  # a bundled declaration or a path
    expected: tuple[str, ...] = ()  # failing kinds, sorted; () is OK
    why: str = ""  # the reading behind a finding
    #: ``valid(values) -> bool``: whether a counterexample's arrays lie in the declared domain
    valid: Callable[[dict], bool] | None = None
    name: str = ""  # the case's id, when the class's own name is not unique

    @property
    def id(self) -> str:
        return self.name or self.layer.__name__


def book(name: str) -> type:
    """A class of the book, as ``examples/book_layers.py`` transcribes it (the CLI's loader)."""
    return load_class(f"{BOOK}:{name}")


SHARES_DOUT = ("backward returns gy itself: harmless in DeZero, whose autograd never writes into a gradient, "
               "a side effect under the layer contract")

DEZERO = [
    Case("dezero.functions.Sin", a.DEZERO["Sin"], local("sin")),
    Case("dezero.functions.Cos", a.DEZERO["Cos"], local("cos")),
    Case("dezero.functions.Tanh", a.DEZERO["Tanh"], "tanh"),
    Case("dezero.functions.Exp", a.DEZERO["Exp"], "exp"),
    Case("dezero.functions.Log", a.DEZERO["Log"], "log"),
    Case("dezero.functions.Sigmoid", a.DEZERO["Sigmoid"], "sigmoid"),
    Case("dezero.functions.ReLU", a.DEZERO["ReLU"], "relu"),
    Case("dezero.functions.LeakyReLU(0.01)", a.DEZERO["LeakyReLU"], "leaky_relu"),
    Case("dezero.functions.Clip(-1, 1)", a.DEZERO["Clip"], local("clip_unit")),
    Case("dezero.functions.Softmax", a.DEZERO["Softmax"], "softmax"),
    Case("dezero.functions.LogSoftmax", a.DEZERO["LogSoftmax"], "log_softmax"),
    Case("dezero.core.Pow(3)", a.DEZERO["Pow"], local("cube")),
    Case("dezero.core.Add", a.DEZERO["Add"], "add", ("side-effect",), SHARES_DOUT),
    Case("dezero.core.Mul", a.DEZERO["Mul"], "multiply"),
    Case("dezero.core.Sub", a.DEZERO["Sub"], local("sub"), ("side-effect",), SHARES_DOUT),
    Case("dezero.core.Div", a.DEZERO["Div"], local("div")),
    Case("dezero.core.Neg", a.DEZERO["Neg"], local("neg")),
    Case("dezero.functions.MatMul", a.DEZERO["MatMul"], local("matmul")),
    Case("dezero.functions.Sum(axis=0)", a.DEZERO["Sum"], local("sum_axis0"), ("side-effect",),
         "backward is reshape + broadcast_to of gy: a read-only view of dout"),
    Case("dezero.functions.Transpose", a.DEZERO["Transpose"], local("transpose"), ("side-effect",),
         "backward is gy.transpose(): a view of dout"),
    Case("dezero.functions.Linear", a.DEZERO["Linear"], "affine"),
    Case("dezero.functions.BatchNorm", a.DEZERO["BatchNorm"], local("batch_norm_2e-5")),
    Case("dezero.functions.MeanSquaredError", a.DEZERO["MeanSquaredError"], local("mse_pair")),
    Case("dezero.functions.SoftmaxCrossEntropy", a.DEZERO["SoftmaxCrossEntropy"], "softmax_with_loss"),
    Case("dezero.functions.softmax_cross_entropy_simple", a.DEZERO["softmax_cross_entropy_simple"],
         "softmax_with_loss", ("precision",),
         "clip(p, 1e-15, 1.0) before log: the loss stops at -log(1e-15) = 34.5 and the target's gradient "
         "is cut where p < 1e-15"),
    Case("dezero.functions.sigmoid_cross_entropy", a.DEZERO["sigmoid_cross_entropy"], "bce_with_logits",
         ("precision",),
         "log(1 - sigmoid(x)) is log(0) = -inf once sigmoid(x) rounds to 1 (x > 37); clip(p, 1e-15) caps "
         "-log(p) at 34.5 for x < -34.5: inf, nan or capped losses where the declared one is finite"),
]

MICROGRAD = [
    Case("micrograd.engine.Value.__add__", a.MICROGRAD["add"], "add"),
    Case("micrograd.engine.Value.__mul__", a.MICROGRAD["mul"], "multiply"),
    Case("micrograd.engine.Value.__sub__", a.MICROGRAD["sub"], local("sub")),
    Case("micrograd.engine.Value.__truediv__", a.MICROGRAD["truediv"], local("div")),
    Case("micrograd.engine.Value.__neg__", a.MICROGRAD["neg"], local("neg")),
    Case("micrograd.engine.Value.__pow__(3)", a.MICROGRAD["pow3"], local("cube")),
    Case("micrograd.engine.Value.relu", a.MICROGRAD["relu"], "relu"),
]

MYGRAD = [
    Case("mygrad.nnet.activations.elu(alpha=1)", a.MYGRAD["elu"], "elu"),
    Case("mygrad.nnet.activations.selu", a.MYGRAD["selu"], local("selu")),
    Case("mygrad.nnet.activations.sigmoid", a.MYGRAD["sigmoid"], "sigmoid"),
    Case("mygrad.nnet.activations.relu", a.MYGRAD["relu"], "relu"),
    Case("mygrad.nnet.activations.leaky_relu(slope=0.01)", a.MYGRAD["leaky_relu"], "leaky_relu", ("wrong-math",),
         "maximum(x, 0) + slope * minimum(x, 0): MyGrad's maximum and minimum send a tie's gradient to the "
         "second argument, so at x = 0 neither term passes any: dx = 0, outside [0.01, 1]"),
    Case("mygrad.nnet.activations.soft_sign", a.MYGRAD["soft_sign"], "softsign"),
    Case("mygrad.nnet.activations.hard_tanh", a.MYGRAD["hard_tanh"], local("clip_unit")),
    Case("mygrad.nnet.activations.softmax", a.MYGRAD["softmax"], "softmax"),
    Case("mygrad.nnet.activations.logsoftmax", a.MYGRAD["logsoftmax"], "log_softmax"),
    Case("mygrad.nnet.losses.softmax_crossentropy", a.MYGRAD["softmax_crossentropy"], "softmax_with_loss"),
    Case("mygrad.nnet.losses.multiclass_hinge", a.MYGRAD["multiclass_hinge"], "hinge_loss"),
    Case("mygrad.nnet.losses.negative_log_likelihood", a.MYGRAD["negative_log_likelihood"],
         local("nll_log_probs")),
    Case("mygrad.nnet.losses.softmax_focal_loss(gamma=2)", a.MYGRAD["softmax_focal_loss"], local("softmax_focal"),
         ("precision",),
         "focal_loss(softmax(x)) takes log of the probability: once softmax rounds p_t to 0 (a score 745 "
         "below the row's maximum) the loss is inf and the gradient nan, where the declared ones are finite"),
    Case("mygrad.abs", a.MYGRAD["abs"], local("abs")),
    Case("mygrad.arctan", a.MYGRAD["arctan"], local("arctan")),
    Case("mygrad.cbrt", a.MYGRAD["cbrt"], local("cbrt")),
    Case("mygrad.log1p", a.MYGRAD["log1p"], local("log1p")),
    Case("mygrad.expm1", a.MYGRAD["expm1"], local("expm1")),
    Case("mygrad.reciprocal", a.MYGRAD["reciprocal"], "reciprocal"),
    Case("mygrad.sqrt", a.MYGRAD["sqrt"], "sqrt"),
    Case("mygrad.exp", a.MYGRAD["exp"], "exp"),
    Case("mygrad.log", a.MYGRAD["log"], "log"),
    Case("mygrad.tanh", a.MYGRAD["tanh"], "tanh"),
    Case("mygrad.logaddexp(x, 0)", a.MYGRAD["logaddexp"], "softplus"),
]

AUTOGRAD = [
    Case("autograd numpy.tanh", a.AUTOGRAD["tanh"], "tanh"),
    Case("autograd numpy.sinh", a.AUTOGRAD["sinh"], local("sinh")),
    Case("autograd numpy.arctan", a.AUTOGRAD["arctan"], local("arctan")),
    Case("autograd numpy.arcsinh", a.AUTOGRAD["arcsinh"], local("arcsinh")),
    Case("autograd numpy.exp", a.AUTOGRAD["exp"], "exp"),
    Case("autograd numpy.log", a.AUTOGRAD["log"], "log"),
    Case("autograd numpy.expm1", a.AUTOGRAD["expm1"], local("expm1")),
    Case("autograd numpy.log1p", a.AUTOGRAD["log1p"], local("log1p")),
    Case("autograd numpy.sqrt", a.AUTOGRAD["sqrt"], "sqrt"),
    Case("autograd numpy.reciprocal", a.AUTOGRAD["reciprocal"], "reciprocal"),
    Case("autograd numpy.abs", a.AUTOGRAD["abs"], local("abs")),
    Case("autograd numpy.clip(x, -1, 1)", a.AUTOGRAD["clip"], local("clip_unit")),
    Case("autograd numpy.negative", a.AUTOGRAD["negative"], local("neg")),
    Case("autograd numpy.add", a.AUTOGRAD["add"], "add"),
    Case("autograd numpy.subtract", a.AUTOGRAD["subtract"], local("sub")),
    Case("autograd numpy.multiply", a.AUTOGRAD["multiply"], "multiply"),
    Case("autograd numpy.true_divide", a.AUTOGRAD["true_divide"], local("div")),
    Case("autograd numpy.maximum", a.AUTOGRAD["maximum"], local("maximum")),
    Case("autograd numpy.logaddexp", a.AUTOGRAD["logaddexp"], local("logaddexp")),
    Case("autograd scipy.special.expit", a.AUTOGRAD["expit"], "sigmoid"),
    Case("autograd scipy.special.erf", a.AUTOGRAD["erf"], local("erf")),
    Case("autograd scipy.special.logsumexp(axis=1)", a.AUTOGRAD["logsumexp"], local("logsumexp_rows")),
    Case("autograd numpy.max(axis=1)", a.AUTOGRAD["max"], local("max_rows")),
    Case("autograd numpy.sum(axis=0)", a.AUTOGRAD["sum"], local("sum_axis0")),
    Case("autograd numpy.dot", a.AUTOGRAD["dot"], local("matmul")),
    Case("autograd numpy.transpose", a.AUTOGRAD["transpose"], local("transpose"), ("side-effect",),
         "the VJP is numpy.transpose(g): a view of dout"),
    Case("autograd numpy.sinc", a.AUTOGRAD["sinc"], local("sinc"), ("precision",),
         "(cos(pi x) pi x - sin(pi x)) / (pi x**2) cancels for small |x|: at x = 1e-8 the numerator is "
         "about -(pi x)**3 / 3 = -1e-23 from terms of 3e-8, an absolute error of about 1e-8 in dx"),
]

THINC = [
    Case("thinc Ops.sigmoid / backprop_sigmoid", a.THINC["sigmoid"], "sigmoid", ("precision",),
         "x is clipped to [-20, 20] first: sigmoid(-100) gives sigmoid(-20) = 2.1e-9 (exact 3.7e-44), and so "
         "does its gradient: 7 orders above float64's rounding of the typical size"),
    Case("thinc Ops.relu / backprop_relu", a.THINC["relu"], "relu"),
    Case("thinc Ops.hard_sigmoid / backprop_hard_sigmoid", a.THINC["hard_sigmoid"], local("hard_sigmoid")),
    Case("thinc Ops.hard_tanh / backprop_hard_tanh", a.THINC["hard_tanh"], local("clip_unit")),
    Case("thinc Ops.relu_k / backprop_relu_k", a.THINC["relu_k"], local("relu6")),
    Case("thinc Ops.hard_swish / backprop_hard_swish", a.THINC["hard_swish"], local("hard_swish")),
    Case("thinc Ops.hard_swish_mobilenet / backprop_hard_swish_mobilenet", a.THINC["hard_swish_mobilenet"],
         local("hard_swish_mobilenet")),
    Case("thinc Ops.dish / backprop_dish", a.THINC["dish"], local("dish")),
    Case("thinc Ops.mish / backprop_mish", a.THINC["mish"], "mish"),
    Case("thinc Ops.softmax / backprop_softmax", a.THINC["softmax"], "softmax"),
    Case("thinc Ops.swish / backprop_swish", a.THINC["swish"], "swish", ("precision",),
         "sigmoid clips x to [-20, 20]: x * sigmoid(-20) = -2.1e-9 * |x|, so swish and its gradient are off "
         "by 2e-6 at x = -1000 (exact: about 0), an error that grows with |x|"),
    Case("thinc Ops.gelu_approx / backprop_gelu_approx", a.THINC["gelu_approx"], "gelu", ("precision",),
         "the backward's constants are rounded to 6 digits (0.797885 for sqrt(2/pi) = 0.7978845608) and "
         "it sums into alloc_f, a float32 array: relative errors of 1e-7 to 1e-6"),
    Case("thinc Ops.gelu / backprop_gelu", a.THINC["gelu"], local("gelu_erf"), ("precision",),
         "Ops.erf is the Abramowitz-Stegun 7.1.26 approximation (error up to 1.5e-7): forward and backward "
         "are off by about 1e-7 of their size"),
]

COSINE_1E8 = ("guesses and truths get + 1e-8 before the norms and the dot product (\"avoid 0 vectors\"): "
              "relative errors of about 1e-8 / |y|, above float64's rounding")

THINC_LOSSES = [
    Case("thinc.loss.L2Distance", a.THINC_LOSSES["L2Distance"], "mse", ("wrong-math",),
         "get_grad is (y - t) / N, the gradient of 0.5 * sum((y - t)**2) / N, but get_loss is "
         "sum(((y - t) / N)**2) = sum((y - t)**2) / N**2: the loss it reports is not the one it differentiates"),
    Case("thinc.loss.CosineDistance", a.THINC_LOSSES["CosineDistance"], local("cosine_distance_mean"),
         ("precision",), COSINE_1E8),
]

SKLEARN = [
    Case("sklearn.neural_network._base identity", a.SKLEARN["identity"], local("identity")),
    Case("sklearn.neural_network._base logistic", a.SKLEARN["logistic"], "sigmoid"),
    Case("sklearn.neural_network._base tanh", a.SKLEARN["tanh"], "tanh"),
    Case("sklearn.neural_network._base relu", a.SKLEARN["relu"], "relu"),
]

BOOK_CASES = [
    Case("book MulLayer (5.4.1)", book("MulLayer"), "multiply", name="BookMulLayer"),
    Case("book AddLayer (5.4.2)", book("AddLayer"), "add", name="BookAddLayer"),
    Case("book Relu (5.5.1)", book("Relu"), "relu", ("side-effect",),
         "backward sets dout[mask] = 0 and returns dout: it writes into the caller's array", name="BookRelu"),
    Case("book Sigmoid (5.5.2)", book("Sigmoid"), "sigmoid", name="BookSigmoid"),
    Case("book Affine (5.6.2)", book("Affine"), "affine", name="BookAffine"),
    Case("book SoftmaxWithLoss (5.6.3)", book("SoftmaxWithLoss"), "softmax_with_loss", ("precision",),
         "cross_entropy_error takes log(y + 1e-7): the loss stops at 16.1 once softmax saturates",
         name="BookSoftmaxWithLoss"),
    Case("book TwoLayerNet (5.7.2)", book("TwoLayerNet"), "two_layer_net", ("precision",),
         "its loss is SoftmaxWithLoss's, with the same 1e-7", name="BookTwoLayerNet"),
]



def _probabilities(values: dict) -> bool:
    return bool(np.all((np.asarray(values["p"]) > 0) & (np.asarray(values["p"]) < 1)))


def _positive(values: dict) -> bool:
    return bool(np.all(np.asarray(values["p"]) > 0))


#: Where verify-layer disagrees with the reading today (KNOWN_WRONG.md): judged by the tally
#: only, never by the test suite.
#: Cases the tool once judged wrong (KNOWN_WRONG.md's fixed sections), now in the test table.
FIXED = [
    Case("thinc.loss.CosineDistance (the loss written sum(1 - cos) / N)", a.THINC_LOSSES["CosineDistance"],
         local("cosine_distance"), ("precision",), COSINE_1E8, name="ThincCosineDistanceSumForm"),
    Case("micrograd.nn.Neuron(1)", a.MICROGRAD["neuron"], local("neuron")),
    Case("mygrad.nnet.losses.focal_loss(gamma=0)", a.MYGRAD["focal_loss"], local("nll_per_sample"),
         valid=_positive),
]

KNOWN_WRONG = [
    Case("dezero.functions.Max(axis=1)", a.DEZERO["Max"], local("max_rows"), ("wrong-math",),
         "backward gives gy to every entry equal to the maximum: at a tie of two the gradients sum to 2, "
         "no subgradient of max (the row's maximum grows at rate 1 when both tied entries do)"),
    Case("mygrad.maximum", a.MYGRAD["maximum"], local("maximum"), ("wrong-math",),
         "at a tie x = y both gradients are 0: (0, 0) is no subgradient of max (those are (s, 1 - s), "
         "0 <= s <= 1); along x = y = u, max grows as u and the gradient says 0 (hence leaky_relu's 0 at 0)"),
    Case("dezero.functions.binary_cross_entropy", a.DEZERO["binary_cross_entropy"], local("bce_probabilities"),
         ("wrong-math",),
         "clip(p, 1e-15, 0.999): for p in (0.999, 1) the loss is that of 0.999 and the gradient 0",
         valid=_probabilities),
]

CASES = BOOK_CASES + DEZERO + MICROGRAD + MYGRAD + AUTOGRAD + THINC + THINC_LOSSES + SKLEARN + FIXED
