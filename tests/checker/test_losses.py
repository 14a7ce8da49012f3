"""The losses of the usual courses, declared once (bundled: hinge_loss, bce_with_logits,
huber) and checked against hand-written classes in the style the courses publish.

Oracles: the declaration's own derivative (mpmath) inside ``verify_layer``; the classes are
written from the courses' formulas, not from generated code; each planted bug must be found
with its kind.
"""
import numpy as np
import pytest

import symbackprop
from symbackprop.checker import verify_layer


class SvmLoss:
    """The vectorized multiclass SVM loss of the course assignments (margin 1), t one-hot."""

    def forward(self, x, t):
        n = x.shape[0]
        labels = t.argmax(axis=1)
        correct = x[np.arange(n), labels][:, None]
        margins = np.maximum(0.0, x - correct + 1.0)
        margins[np.arange(n), labels] = 0.0
        self.margins, self.labels, self.n = margins, labels, n
        return margins.sum() / n

    def backward(self, dout=1.0):
        binary = (self.margins > 0).astype(float)
        binary[np.arange(self.n), self.labels] = -binary.sum(axis=1)
        return dout * binary / self.n


class SvmLossNoMean(SvmLoss):
    def backward(self, dout=1.0):
        return super().backward(dout) * self.n          # forgot / N


class BceWithLogits:
    """PyTorch's stable formula: max(x, 0) - x*t + log(1 + exp(-|x|))."""

    def forward(self, x, t):
        self.x, self.t, self.n = x, t, x.shape[0]
        return np.sum(np.maximum(x, 0) - x * t + np.log1p(np.exp(-np.abs(x)))) / self.n

    def backward(self, dout=1.0):
        return dout * (1 / (1 + np.exp(-self.x)) - self.t) / self.n


class BceNaive(BceWithLogits):
    def forward(self, x, t):
        self.x, self.t, self.n = x, t, x.shape[0]
        with np.errstate(over="ignore"):
            return np.sum(np.log(1 + np.exp(x)) - x * t) / self.n   # exp(1000) is inf


class Huber:
    def forward(self, y, t):
        self.d, self.n = y - t, y.shape[0]
        a = np.abs(self.d)
        return np.sum(np.where(a <= 1, 0.5 * self.d**2, a - 0.5)) / self.n

    def backward(self, dout=1.0):
        return dout * np.clip(self.d, -1, 1) / self.n


class HuberLinearEverywhere(Huber):
    def backward(self, dout=1.0):
        return dout * self.d / self.n                   # the quadratic branch's slope beyond |d| = 1


@pytest.mark.parametrize("cls, name", [(SvmLoss, "hinge_loss"), (BceWithLogits, "bce_with_logits"), (Huber, "huber")])
def test_the_courses_formulas_agree_with_the_declarations(cls, name):
    report = verify_layer(cls, name)
    assert report.ok, report.text()


@pytest.mark.parametrize("cls, name, kind", [(SvmLossNoMean, "hinge_loss", "wrong-math"),
                                             (BceNaive, "bce_with_logits", "precision"),
                                             (HuberLinearEverywhere, "huber", "wrong-math")])
def test_each_planted_bug_is_found_with_its_kind(cls, name, kind):
    report = verify_layer(cls, name)
    assert not report.ok and kind in {f.kind for f in report.findings}, report.text()


@pytest.mark.parametrize("name", ["hinge_loss", "bce_with_logits", "huber"])
def test_the_losses_are_bundled_and_their_generated_classes_check(name):
    assert symbackprop.check(symbackprop.load(name), max_examples=6).ok


class IndexedSoftmaxLoss:
    """The course assignments' form: the target's probability by index, shifted by the row max."""

    def forward(self, x, t):
        self.t, self.n = t, x.shape[0]
        labels = t.argmax(axis=1)
        e = np.exp(x - x.max(axis=1, keepdims=True))
        self.y = e / e.sum(axis=1, keepdims=True)
        with np.errstate(divide="ignore"):
            return -np.sum(np.log(self.y[np.arange(self.n), labels])) / self.n

    def backward(self, dout=1.0):
        return dout * (self.y - self.t) / self.n


def test_a_loss_that_underflows_when_the_target_is_far_below_the_maximum_is_found():
    # exp(s_t - max) is 0 in float64 once s_t is about 745 below the maximum: the loss is inf,
    # the declared one finite (about 800 here); uniform large values rarely make such rows
    report = verify_layer(IndexedSoftmaxLoss, "softmax_with_loss")
    (finding,) = report.findings
    assert finding.kind == "precision" and "800 below the row's maximum" in finding.message
    assert finding.counterexample["expected"] == pytest.approx(800, rel=0.01)
