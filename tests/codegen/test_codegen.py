"""Generated code: importable, numpy only, deterministic, stable in the tails, safe names."""
import ast
import importlib.util
import subprocess
import sys
import warnings

import numpy as np
import pytest
import sympy

import symbackprop
from symbackprop.spec import catalog
from symbackprop.codegen import class_name
from symbackprop.errors import GenerationError, SpecError

NAMES = catalog.bundled_names()
ELEMENTWISE = [n for n in NAMES if not symbackprop.load(n).is_array]


@pytest.fixture(scope="module")
def sources():
    return {name: symbackprop.load(name).generate() for name in NAMES}


@pytest.mark.parametrize("name", NAMES)
def test_generated_module_imports_numpy_only(sources, name):
    tree = ast.parse(sources[name])
    imports = [n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))]
    assert [alias.name for n in imports for alias in n.names] == ["numpy"]


def test_saved_source_imports_without_sympy(tmp_path, sources):
    path = tmp_path / "my_layers.py"
    path.write_text(sources["sigmoid"])
    code = (f"import sys; sys.path.insert(0, {str(tmp_path)!r}); import my_layers, numpy as np; "
            "s = my_layers.Sigmoid(); y = s.forward(np.array([0.0])); print(y[0], s.backward(np.array([1.0]))[0]); "
            "print('sympy' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["0.5", "0.25", "False"]


@pytest.mark.parametrize("name", NAMES)
def test_same_declaration_same_bytes(sources, name):
    assert symbackprop.load(name).generate() == sources[name]


@pytest.mark.parametrize("name", [n for n in ELEMENTWISE if not symbackprop.load(n).values])
def test_no_warning_and_finite_results_in_the_tails(name):
    spec = symbackprop.load(name)
    cls = spec.compile()
    xs = [np.array([1e3, 700.0, 30.0, 1e-3, 0.5]) if s.is_positive else
          np.array([-1e3, -700.0, -30.0, 0.0, 30.0, 700.0, 1e3]) for s in spec.inputs]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        layer = cls()
        y = layer.forward(*xs)
        grads = layer.backward(np.ones_like(y))
    representable = np.isfinite(y)  # exp(1000) itself overflows float64; nothing else may
    assert representable.sum() >= len(y) - 1
    for g in (grads if isinstance(grads, tuple) else (grads,)):
        assert np.all(np.isfinite(g[representable]))


@pytest.mark.parametrize("name", ["softmax", "softmax_with_loss", "log_softmax"])
def test_softmax_layers_need_no_overflow_guard_and_stay_finite_at_huge_logits(name):
    """exp only ever sees log_softmax (at most 0) or a shifted row: no warning even at 1e4;
    oracle: softmax rows sum to 1 and the loss is the hand-computed -log of the label's share."""
    spec = symbackprop.load(name)
    x = np.array([[1e4, -1e4, 0.0], [-5e3, 5e3, 5e3]])
    t = np.eye(3)[[0, 2]]
    args = [x, t][:len(spec.inputs) + len(spec.constants)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        layer = spec.compile()()
        out = layer.forward(*args)
        grads = layer.backward(np.ones_like(out) if np.ndim(out) else 1.0)
    assert np.all(np.isfinite(out)) and np.all(np.isfinite(grads))
    if name == "softmax":
        np.testing.assert_allclose(out.sum(axis=1), 1.0, rtol=1e-15)
    if name == "softmax_with_loss":
        assert out == pytest.approx(-(0.0 + np.log(0.5)) / 2, rel=1e-12)  # row 2: two equal maxima


def test_sigmoid_is_exact_in_the_tails():
    sig = symbackprop.load("sigmoid").compile()()
    y = sig.forward(np.array([-1000.0, -40.0, 40.0, 1000.0]))
    np.testing.assert_allclose(y, [0.0, 4.248354255291589e-18, 1.0, 1.0], rtol=1e-15)


def test_softplus_prints_the_stable_forms():
    src = symbackprop.load("softplus").generate()
    assert "np.logaddexp(0, x)" in src and "np.expm1(-self.y)" in src


def test_backward_leaves_dout_untouched(sources):
    for name in ELEMENTWISE:
        spec = symbackprop.load(name)
        layer = spec.compile()()
        xs = [np.linspace(0.1, 2, 6) for _ in spec.inputs]
        layer.forward(*xs)
        dout = np.linspace(-1, 1, 6)
        kept = dout.copy()
        layer.backward(dout)
        np.testing.assert_array_equal(dout, kept, err_msg=name)


def test_backward_operand_order_reuses_temporaries():
    """numpy reuses a temporary in place when it is the left operand: compound factor first."""
    src = symbackprop.load("sigmoid").generate()
    assert "dx = (1 - self.y)*dout*self.y" in src


def test_unsafe_names_never_reach_source():
    with pytest.raises((SpecError, GenerationError)):
        symbackprop.layer(sympy.Symbol("__class__") + 1, name="Bad").generate()
    with pytest.raises((SpecError, GenerationError)):
        symbackprop.layer(sympy.Symbol("lambda") + 1, name="Bad").generate()


def test_class_names_are_identifiers():
    assert class_name("Apples and oranges") == "ApplesAndOranges"
    assert class_name("2-layer net") == "Layer2LayerNet"


def test_generated_file_is_importable_from_the_command_line(tmp_path):
    from symbackprop.cli import main

    out = tmp_path / "my_layers.py"
    assert main(["generate", "sigmoid", "-o", str(out)]) == 0
    spec = importlib.util.spec_from_file_location("my_layers", out)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    layer = module.Sigmoid()
    assert layer.forward(0.0) == 0.5


@pytest.mark.parametrize("forward", ["exp(-x**2)", "exp(-x**2/2)*x", "1/(1 + x**2)", "tanh(x)**2"])
def test_a_backward_written_from_the_output_runs_and_is_right(forward):
    # exp(-x**2) once generated `dx = -2*x*y*dout` without caching y (NameError: y);
    # oracle: central differences of the forward, evaluated by SymPy's own lambdify
    x = sympy.Symbol("x", real=True)
    expr = sympy.sympify(forward, locals={"x": x})
    f = sympy.lambdify(x, expr, "numpy")
    layer = symbackprop.layer(expr).compile()()
    xs = np.linspace(-3.0, 3.0, 13)
    y = layer.forward(xs.copy())
    dout = np.linspace(0.5, 1.5, 13)
    dx = layer.backward(dout.copy())
    h = 1e-6
    assert np.allclose(y, f(xs), rtol=1e-14, atol=1e-15)
    assert np.allclose(dx, dout * (f(xs + h) - f(xs - h)) / (2 * h), rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("backend", ["torch", "jax"])
def test_a_framework_backend_without_its_framework_says_how_to_install_it(backend, monkeypatch):
    monkeypatch.setitem(sys.modules, backend, None)  # as if not installed: import fails
    hint = rf"the {backend} backend needs {backend}: pip install 'symbackprop\[{backend}\]'"
    with pytest.raises(GenerationError, match=hint):
        symbackprop.compile(symbackprop.load("sigmoid"), backend=backend)


def test_the_torch_op_backend_without_torch_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # as if not installed: import fails
    hint = r"the torch-op backend needs torch: pip install 'symbackprop\[torch\]'"
    with pytest.raises(GenerationError, match=hint):
        symbackprop.compile(symbackprop.load("sigmoid"), backend="torch-op")
