"""Float32 in, float32 out, in both backends; the checker's float32 tolerance catches a float64
result and a wrong formula, and passes float32 rounding."""

import numpy as np
import pytest

import symbackprop
from symbackprop.spec import catalog
from symbackprop.checker.base import dtype_tolerance
from symbackprop.checker.elementwise import dtype_check
from tests.fixtures.declarations import bundled
from symbackprop.checker.arrays import ArrayProblem
from symbackprop.checker.arrays import dtype_check as array_dtype_check

NAMES = catalog.bundled_names()


spec = bundled  # one spec per declaration for the whole session: the fused kernels compile once


def _results(name, backend, dtype, labels=False):
    """Every value a layer hands out (output, returned and stored gradients) for ``dtype`` input."""
    s = spec(name)
    derivation = s.derive()
    cls = symbackprop.compile(derivation, backend)
    if not s.is_array:
        xs = [np.linspace(0.5, 2.0, 12, dtype=dtype).reshape(3, 4) for _ in s.inputs]
        layer = cls()
        grads = layer.backward(np.ones((3, 4), dtype)) if layer.forward(*xs) is not None else None
        return [layer.forward(*xs), *(grads if isinstance(grads, tuple) else (grads,))]
    problem = ArrayProblem(derivation, {d: 3 + i for i, d in enumerate(s.dims)}, 0)
    values = problem.cast(problem.values, dtype)  # an embedding's indices stay integers
    if labels:  # integer class labels where one-hot rows are declared
        values.update({t: np.argmax(problem.values[t], axis=-1) for kind, t, _ in s.assumptions if kind == "onehot"})
    layer = cls(*[values[p] for p in s.params])
    out = layer.forward(*[values[v] for v in (*s.inputs, *s.constants)])
    dout = problem.dout.astype(dtype) if isinstance(problem.dout, np.ndarray) else 1.0
    grads = layer.backward(*dout) if s.outputs else layer.backward(dout)  # one upstream gradient per output
    out = list(out) if s.outputs else [out]
    stored = [layer.grads[p.name] if s.predict is not None else getattr(layer, f"d{p.name}") for p in s.params]
    returned = grads if isinstance(grads, tuple) else () if grads is None else (grads,)  # None: no inputs
    return [*out, *returned, *stored]


@pytest.mark.parametrize("name", NAMES)
def test_float32_in_float32_out(name, backend="numpy"):  # the fused backend: tests/codegen/test_fused.py
    assert {np.asarray(v).dtype for v in _results(name, backend, np.float32)} == {np.dtype(np.float32)}
    assert {np.asarray(v).dtype for v in _results(name, backend, np.float64)} == {np.dtype(np.float64)}


@pytest.mark.parametrize("backend", ["numpy", "fused"])
@pytest.mark.parametrize("name", ["softmax_with_loss", "two_layer_net"])
def test_integer_labels_keep_the_dtype(name, backend):
    assert {np.asarray(v).dtype for v in _results(name, backend, np.float32, labels=True)} == {np.dtype(np.float32)}


def test_the_generated_numpy_code_says_how_it_keeps_the_dtype():
    assert "np.where(self.mask, dout, dout/100)" in spec("leaky_relu").generate()
    assert "dtype=np.result_type(x, 1.0)" in spec("softmax_with_loss").generate()


def test_tolerances_fit_the_dtype():
    assert dtype_tolerance(np.float32) == pytest.approx(1000 * 2.0 ** -23)
    assert dtype_tolerance(np.float64) == pytest.approx(1000 * 2.0 ** -52)


class Float64Sigmoid:
    """Right in float64, but hands back float64 for float32 input."""

    def forward(self, x):
        self.y = 1 / (1 + np.exp(-np.asarray(x, dtype=np.float64)))
        return self.y

    def backward(self, dout=1.0):
        return dout * self.y * (1 - self.y)


class SloppySigmoid:
    """Keeps the dtype, but its float32 backward has a relative error of 1e-3 (a constant
    rounded to three digits): float32 rounding alone is a thousand times smaller."""

    def forward(self, x):
        self.y = 1 / (1 + np.exp(-x))
        return self.y

    def backward(self, dout=1.0):
        factor = 1.001 if self.y.dtype == np.float32 else 1.0
        return dout * self.y * (1 - self.y) * factor


def test_the_float32_check_finds_a_float64_result_and_an_inaccurate_one_and_passes_the_generated_class():
    sigmoid = spec("sigmoid")
    assert any("float32 in, float64 out" in p for p in dtype_check(sigmoid, Float64Sigmoid))
    assert any("dx in float32 differs from float64" in p for p in dtype_check(sigmoid, SloppySigmoid))
    assert dtype_check(sigmoid, sigmoid.compile()) == []


def test_the_array_float32_check_passes_the_generated_classes():
    for name in ("softmax_with_loss", "layer_norm", "affine"):
        assert array_dtype_check(spec(name).derive(), spec(name).compile()) == []


UNREACHED = 'name = "Unreached"\ninputs = { x = ["N", "D"] }\nparams = { W = ["D", "M"], c = ["M"] }\nforward = "x @ W"\n'


@pytest.mark.parametrize("backend", ["numpy", "fused", "array-api", "torch", "torch-op", "jax"])
def test_a_parameter_no_output_reaches_gets_zeros_of_the_floating_dtype(backend, tmp_path):
    """``c`` reaches no output: its gradient is zeros of the upstream gradient's dtype
    (it was ``broadcast_to(0, ...)``, int64 in numpy and no tensor at all in torch), and
    ``check`` passes every backend on it (float32 and float64, against numerical differences)."""
    from symbackprop.codegen.adapters import FRAMEWORK_OF
    from tests.fixtures.frameworks import require

    if backend in FRAMEWORK_OF:
        require(FRAMEWORK_OF[backend])
    path = tmp_path / "unreached.toml"
    path.write_text(UNREACHED)
    s = symbackprop.load_spec(path)
    report = s.check(backend=backend)
    assert report.ok, report.problems
    if backend in ("numpy", "fused"):
        layer = symbackprop.compile(s, backend)(np.ones((3, 2), np.float32), np.ones(2, np.float32))
        layer.forward(np.ones((4, 3), np.float32))
        layer.backward(np.ones((4, 2), np.float32))
        assert layer.dc.dtype == np.float32 and not layer.dc.any() and layer.dc.shape == (2,)
