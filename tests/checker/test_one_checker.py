"""One checker for every layer class: ``check`` of generated code runs every probe of
``verify-layer``, and the reference comes from the declaration, never from generated code.

Oracles: the planted bugs themselves (a buffer reused across calls, a VJP made wrong by a
known factor) and the book's hand-written Affine, whose gradients are ``dout @ W.T``,
``x.T @ dout`` and ``sum(dout, axis=0)``.
"""
import importlib.util
from pathlib import Path

import numpy as np
import pytest

import symbackprop
from symbackprop import ops
from symbackprop.checker import check_generated, verify_layer
from symbackprop.derivation import arrays as derive_arrays
from symbackprop.reports import CheckReport
from symbackprop.spec import catalog

SEED = Path(__file__).resolve().parents[2] / "examples" / "book_layers.py"


def _seed_affine():
    spec = importlib.util.spec_from_file_location("seed_layers_one_checker", SEED)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.Affine


def _kinds(findings) -> set:
    return {f["kind"] if isinstance(f, dict) else f.kind for f in findings}


def buffered(cls: type) -> type:
    """``cls`` whose forward returns one array it keeps and overwrites on every call."""

    class Buffered(cls):
        _buffer = None

        def forward(self, *args):
            y = np.asarray(super().forward(*args))
            if self._buffer is None or self._buffer.shape != y.shape:
                self._buffer = np.empty(y.shape)
            self._buffer[...] = y
            return self._buffer

    return Buffered


# -- stale caches: an output overwritten by the next call -----------------------------------------
@pytest.mark.parametrize("name", ["sigmoid", "multiply", "affine"])
def test_check_of_a_generated_class_returning_a_reused_buffer_is_stale_cache(name):
    spec = symbackprop.load(name)
    derivation = symbackprop.derive(spec)
    clean = check_generated(derivation, symbackprop.compile(spec), max_examples=4)
    assert clean.ok and clean.findings == []
    report = check_generated(derivation, buffered(symbackprop.compile(spec)), max_examples=4)
    assert not report.ok and "stale-cache" in _kinds(report.findings)
    assert any("overwrites on the next call" in f["message"] for f in report.findings)


class SigmoidReusingItsOutput:
    """A correct sigmoid whose forward writes every result into one array it keeps."""

    def __init__(self):
        self.out = None

    def forward(self, x):
        if self.out is None or self.out.shape != x.shape:
            self.out = np.empty(x.shape)
        self.out[...] = 1 / (1 + np.exp(-x))
        return self.out

    def backward(self, dout):
        return dout * self.out * (1 - self.out)


class SigmoidReusingItsGradient(SigmoidReusingItsOutput):
    """Output right and fresh; the gradient written into one kept array."""

    def forward(self, x):
        self.out = 1 / (1 + np.exp(-x))
        return self.out

    def backward(self, dout):
        if getattr(self, "dx", None) is None or self.dx.shape != dout.shape:
            self.dx = np.empty(dout.shape)
        np.multiply(dout, self.out * (1 - self.out), out=self.dx)
        return self.dx


@pytest.mark.parametrize("cls", [SigmoidReusingItsOutput, SigmoidReusingItsGradient])
def test_verify_layer_of_a_hand_written_class_reusing_a_buffer_is_stale_cache(cls):
    report = verify_layer(cls, "sigmoid")
    assert [f.kind for f in report.findings] == ["stale-cache"] and not report.ok


def test_check_json_keeps_its_fields_and_adds_findings():
    spec = symbackprop.load("sigmoid")
    report = check_generated(symbackprop.derive(spec), buffered(symbackprop.compile(spec)), max_examples=3)
    record = report.to_json()
    assert {"ok", "name", "backward_max_rel_error", "method", "claims", "chains", "seconds"} <= set(record)
    assert record["findings"][0].keys() == {"kind", "input", "message", "max_rel_error", "counterexample"}
    assert CheckReport.from_json(record) == report
    with pytest.raises(ValueError):
        CheckReport.from_json({k: v for k, v in record.items() if k != "findings"})  # a record of before


# -- the reference does not share a code-generation bug --------------------------------------------
def _doubled_weight_pullback(self, g, shapes):
    a, b = self.args
    return [(a, ops.Matmul(g, ops.Transposed(b))), (b, 2 * ops.Matmul(ops.Transposed(a), g))]


def test_a_planted_wrong_vjp_is_caught_by_check_and_a_correct_affine_stays_clean(monkeypatch):
    """dW = 2 x.T @ dout: the explicit-shape verification of the derivation is switched off,
    so that only the checker stands between the bug and the generated class."""
    monkeypatch.setattr(ops.Matmul, "pullback", _doubled_weight_pullback)
    monkeypatch.setattr(derive_arrays, "verify_explicit", lambda derivation: None)
    spec = catalog.load("affine")
    derivation = symbackprop.derive(spec)
    assert "2" in str(derivation.backward["W"])  # the bug reached what code generation reads
    report = check_generated(derivation, symbackprop.compile(derivation), max_examples=4)
    assert not report.ok
    assert any("differs from" in p for p in report.problems)
    assert ("wrong-math", "W") in {(f["kind"], f["input"]) for f in report.findings}
    book = verify_layer(_seed_affine(), spec)
    assert book.ok and book.findings == []


# -- the hook for layers in another process --------------------------------------------------------
class _Remote:
    """A layer 'in another process': the checker only ever sees copies of what it returns,
    and reads their contents now through ``current``."""

    def __init__(self, cls):
        self.cls, self.live = cls, {}

    def proxy(self):
        remote, live = self, self.live

        class Proxy:
            def __init__(self):
                self.inner = remote.cls()

            def forward(self, x):
                return self.ship(self.inner.forward(x))

            def backward(self, dout):
                return self.ship(self.inner.backward(dout))

            @staticmethod
            def ship(value):
                shipped = np.array(value)  # what a pipe would carry: a copy
                live[id(shipped)] = (shipped, value)
                return shipped

        return Proxy

    def current(self, obj):
        found = self.live.get(id(obj))
        return np.array(found[1]) if found is not None and found[0] is obj else obj


def test_current_lets_a_proxy_of_a_remote_layer_show_its_reused_buffer():
    remote = _Remote(SigmoidReusingItsOutput)
    assert verify_layer(remote.proxy(), "sigmoid").ok  # copies hide the reuse
    report = verify_layer(remote.proxy(), "sigmoid", current=remote.current)
    assert [f.kind for f in report.findings] == ["stale-cache"]
    honest = _Remote(symbackprop.compile(symbackprop.load("sigmoid")))
    assert verify_layer(honest.proxy(), "sigmoid", current=honest.current).ok


def test_current_is_called_and_identity_by_default():
    seen = []
    report = verify_layer(symbackprop.compile(symbackprop.load("sigmoid")), "sigmoid",
                          current=lambda obj: seen.append(obj) or obj)
    assert report.ok and seen and all(isinstance(o, np.ndarray) for o in seen)


@pytest.mark.parametrize("name", ["sigmoid", "affine"])
def test_a_generated_class_that_raises_is_a_failed_verdict_not_a_crash(name):
    """A backend whose generated backward raises (as the jax backend's zero gradient did,
    a TypeError inside jax) gets a report naming the exception, ``ok`` false, and
    ``check`` goes on to the next declaration instead of ending in a traceback."""
    spec = symbackprop.load(name)
    derivation = spec.derive()
    generated = spec.compile()

    class Raising(generated):
        def backward(self, *args, **kwargs):
            raise TypeError("unsupported operand type(s) for *: 'NoneType' and 'int'\nmore lines")

    report = check_generated(derivation, Raising, max_examples=3)
    assert not report.ok
    assert report.problems == ["running the generated class raised TypeError: unsupported operand type(s) for *: "
                               "'NoneType' and 'int'"]
    assert isinstance(report, CheckReport) and report.to_json()["ok"] is False
