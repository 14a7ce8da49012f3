"""The array-API backend: every bundled declaration it supports, its class run on
``array_api_strict`` arrays (the standard and nothing more), on torch tensors and on jax
arrays, agrees with the numpy backend's class to rounding (forward, input and parameter
gradients), keeps float32 float32, passes the project's checks, and refuses by name what
the standard cannot express.  Every bundled declaration is covered, the network included."""
import re

import numpy as np
import pytest

import symbackprop
from symbackprop.errors import GenerationError
from symbackprop.pipeline import check as check_spec
from tests.fixtures.declarations import bundled
from symbackprop.spec import catalog
from tests.fixtures.frameworks import INDEX_NOTATION, require
from tests.fixtures.frameworks import problem as _problem

#: Every bundled declaration but index notation (refused, tested below): the network too.
SUPPORTED = [n for n in catalog.bundled_names() if n not in INDEX_NOTATION]

xps = require("array_api_strict")
require("array_api_compat")


def _numpy_run(name, seed, dtype=np.float64):
    """The numpy backend's class on the declaration's random arrays: the reference."""
    params, xs, constants, dout = _problem(name, seed, dtype)
    layer = symbackprop.compile(bundled(name))(*params)
    out = layer.forward(*xs, *constants)
    grads = layer.backward(dout)
    return (params, xs, constants, dout), out, _gradients(layer, name, grads, np.asarray)


def _gradients(layer, name, grads, to_numpy):
    grads = grads if isinstance(grads, tuple) else (grads,)
    params = [layer.grads[p.name] if hasattr(layer, "grads") else getattr(layer, f"d{p.name}")
              for p in bundled(name).params]  # a network keeps them in grads, a layer in d<name>
    return [to_numpy(g) for g in (*grads, *params)]


def _run(name, problem, convert, to_numpy):
    params, xs, constants, dout = problem
    layer = symbackprop.compile(bundled(name), backend="array-api")(*map(convert, params))
    out = layer.forward(*map(convert, xs), *map(convert, constants))
    grads = layer.backward(convert(dout))
    return to_numpy(out), _gradients(layer, name, grads, to_numpy)


def _agree(name, convert, to_numpy, seed, rtol=1e-12):
    problem, want_out, want_grads = _numpy_run(name, seed)
    out, grads = _run(name, problem, convert, to_numpy)
    np.testing.assert_allclose(out, want_out, rtol=rtol, atol=1e-14)
    assert len(grads) == len(want_grads)
    for got, want in zip(grads, want_grads):
        np.testing.assert_allclose(got, want, rtol=rtol, atol=1e-14)


@pytest.mark.parametrize("name", SUPPORTED)
@pytest.mark.parametrize("seed", [1, 2])
def test_on_strict_arrays_the_class_agrees_with_the_numpy_class(name, seed):
    _agree(name, xps.asarray, np.asarray, seed)


@pytest.mark.parametrize("name", SUPPORTED)
def test_on_torch_tensors_the_class_agrees_with_the_numpy_class(name):
    torch = require("torch")
    _agree(name, torch.asarray, lambda t: t.numpy(), seed=3, rtol=1e-11)  # torch's own exp, log: a few ulps


@pytest.mark.parametrize("name", SUPPORTED)
def test_on_jax_arrays_the_class_agrees_with_the_numpy_class(name):
    jax = require("jax")
    with jax.enable_x64(True):
        _agree(name, jax.numpy.asarray, np.asarray, seed=4, rtol=1e-11)


@pytest.mark.parametrize("name", SUPPORTED)
def test_float32_strict_arrays_give_float32_results_close_to_numpys(name):
    problem, want_out, want_grads = _numpy_run(name, seed=5, dtype=np.float32)
    params, xs, constants, dout = problem
    layer = symbackprop.compile(bundled(name), backend="array-api")(*map(xps.asarray, params))
    out = layer.forward(*map(xps.asarray, xs), *map(xps.asarray, constants))
    grads = _gradients(layer, name, layer.backward(xps.asarray(dout)), lambda a: a)
    assert out.dtype == xps.float32 and all(g.dtype == xps.float32 for g in grads)
    np.testing.assert_allclose(np.asarray(out), want_out, rtol=1e-5, atol=1e-6)
    for got, want in zip(grads, want_grads):
        np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", SUPPORTED)
def test_the_projects_checks_pass_on_the_array_api_class(name):
    report = check_spec(bundled(name), max_examples=5, backend="array-api")
    assert report.ok, (report.problems, report.findings)


def test_integer_labels_on_strict_arrays_give_the_loss_of_their_one_hot_rows():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 3))
    labels = np.array([0, 2, 1, 2])
    cls = symbackprop.compile(bundled("softmax_with_loss"), backend="array-api")
    by_labels = cls().forward(xps.asarray(x), xps.asarray(labels))
    by_rows = cls().forward(xps.asarray(x), xps.asarray(np.eye(3)[labels]))
    want = symbackprop.compile(bundled("softmax_with_loss"))().forward(x, labels)
    np.testing.assert_allclose(float(by_labels), want, rtol=1e-14)
    np.testing.assert_allclose(float(by_rows), want, rtol=1e-14)


def test_a_mask_is_made_the_gradients_dtype_before_it_multiplies():
    """The standard promotes no boolean array with a float one: ``g*mask`` is not array-API code."""
    source = symbackprop.generate(bundled("relu"), backend="array-api")
    assert "dx = xp_masked(xp, dout, self.mask)" in source
    masked = symbackprop.compile(bundled("relu"), backend="array-api").forward.__globals__["xp_masked"]
    mask = xps.asarray([True, False, True])
    for g, dtype in ((xps.asarray([1.5, 2.0, -3.0], dtype=xps.float32), xps.float32), (2.5, xps.float64)):
        got = masked(xps, g, mask)
        assert got.dtype == dtype  # the gradient's, as numpy's g*mask (a Python number: float64)
        np.testing.assert_array_equal(np.asarray(got), np.asarray(g) * np.asarray([1, 0, 1]))


@pytest.mark.parametrize("library", ["array_api_strict", "torch"])
def test_the_networks_methods_on_strict_arrays_and_torch_tensors(library):
    """accuracy as the numpy network's; gradient against numerical_gradient (central
    differences written into the parameters: an element of a torch tensor is a view)."""
    lib = require(library)
    params, xs, constants, _ = _problem("two_layer_net", seed=6)
    ref = symbackprop.compile(bundled("two_layer_net"))(*[p.copy() for p in params])
    net = symbackprop.compile(bundled("two_layer_net"), backend="array-api")(*[lib.asarray(p.copy()) for p in params])
    x, t = lib.asarray(xs[0]), lib.asarray(constants[0])
    assert net.accuracy(x, t) == ref.accuracy(xs[0], constants[0])
    numerical, backprop, want = net.numerical_gradient(x, t), net.gradient(x, t), ref.gradient(xs[0], constants[0])
    for key, value in want.items():
        np.testing.assert_allclose(np.asarray(backprop[key]), value, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(np.asarray(numerical[key]), value, rtol=1e-6, atol=1e-8)
    for before, after in zip(params, net.params.values()):
        np.testing.assert_array_equal(np.asarray(after), before)  # numerical_gradient put every element back


def test_generated_source_imports_array_api_compat_and_numpy_only():
    for name in SUPPORTED:
        source = symbackprop.generate(bundled(name), backend="array-api")
        imports = [line for line in source.splitlines() if line.startswith(("import ", "from "))]
        assert imports == ["import array_api_compat", "import numpy as np"], name
        # numpy: overflow warnings off, the namespace of numbers alone; a network's numpy initialization, indices
        used = set(re.findall(r"\bnp\.[\w.]+", source))
        assert used <= {"np.errstate", "np.asarray", "np.random.default_rng", "np.zeros", "np.ndindex"}, (name, used)
        assert "np.asarray(0.0)" in source and source.count("np.asarray") == 1, name


def test_every_function_of_the_table_runs_on_strict_arrays_or_is_refused_by_name():
    """Each function's layer on strict arrays against SymPy's own derivative at the same
    points; a function the standard lacks is refused with its name in one line."""
    import sympy

    from tests.lang.test_function_table import FUNCTIONS, declaration, inputs_at, sympy_values

    refused = []
    for name in FUNCTIONS:
        spec, expr, points = declaration(name)
        try:
            cls = symbackprop.compile(spec, backend="array-api")
        except GenerationError as exc:
            assert "the array API standard has no function '" in str(exc) and "\n" not in str(exc), (name, exc)
            refused.append(name)
            continue
        xs = inputs_at(spec, points)
        dout = np.array([0.7, -1.3, 2.1])
        layer = cls()
        out = layer.forward(*map(xps.asarray, xs))
        np.testing.assert_allclose(np.asarray(out), sympy_values(expr, spec, xs), rtol=1e-12, atol=1e-300)
        grads = layer.backward(xps.asarray(dout))
        grads = grads if isinstance(grads, tuple) else (grads,)
        for got, s in zip(grads, spec.inputs):
            want = dout * sympy_values(sympy.diff(expr, s), spec, xs)
            np.testing.assert_allclose(np.asarray(got), want, rtol=1e-9, atol=1e-12)
    assert set(refused) <= {"cbrt", "erf", "erfc", "erfinv", "gamma", "lgamma", "digamma", "polygamma",
                            "heaviside", "exp2"}, refused


def test_the_command_line_generates_and_checks_the_array_api_class(capsys):
    from symbackprop.cli import main

    assert main(["generate", "sigmoid", "--backend", "array-api"]) == 0
    assert "xp = xp_namespace(x)" in capsys.readouterr().out
    assert main(["check", "relu", "softmax_with_loss", "--backend", "array-api", "--examples", "3"]) == 0
    assert "2 of 2 declarations checked OK" in capsys.readouterr().out


@pytest.mark.parametrize("name", INDEX_NOTATION)
def test_index_notation_is_refused_with_one_line(name):
    from symbackprop.errors import GenerationError

    with pytest.raises(GenerationError, match="does not generate index notation"):
        symbackprop.generate(bundled(name), backend="array-api")
