"""The jax backend: every bundled declaration it supports, checked with jax's own checker
(check_grads, reverse mode, orders 1 and 2), against jax.grad of the same forward composed from
jax operations, under jit, by the project's checks, and for its residuals (exactly the cache)."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import symbackprop
from symbackprop.errors import GenerationError
from symbackprop.pipeline import check as check_spec
from tests.fixtures.declarations import bundled
from tests.fixtures.frameworks import SUPPORTED, kept_bytes, require
from tests.fixtures.frameworks import problem as _problem

jax = require("jax")
import jax.test_util  # noqa: E402  (after the skip)

jax.config.update("jax_enable_x64", True)  # the tests compare float64 values; never set by the library


def _function(name):
    return symbackprop.compile(bundled(name), backend="jax")


def _args(name, seed):
    """(function of the differentiable arguments, those arguments, dout) at random values."""
    params, xs, constants, dout = _problem(name, seed)
    f = _function(name)
    return (lambda *a: f(*a, *constants)), [*xs, *params], dout


@pytest.mark.parametrize("name", SUPPORTED)
def test_check_grads_reverse_mode(name):
    f, args, _ = _args(name, seed=1)
    jax.test_util.check_grads(f, args, order=1, modes=["rev"])


@pytest.mark.parametrize("name", SUPPORTED)
def test_check_grads_reverse_mode_order_2(name):
    """The backward rule is jax operations on residuals the forward rule computed with jax
    operations: jax differentiates both, so the second derivative needs nothing more.  The
    differences step is 1e-6 rather than 1e-4: near 0 the reciprocal's third derivative
    (6/x**4) makes a 1e-4 step's truncation error exceed check_grads' 1e-5 tolerance."""
    f, args, _ = _args(name, seed=2)
    jax.test_util.check_grads(f, args, order=2, modes=["rev"], eps=1e-6)


@pytest.mark.parametrize("name", SUPPORTED)
def test_second_derivatives_agree_with_jax_of_the_composed_forward(name):
    """The vjp of the pullback (a Hessian-vector product for a loss) against the same
    computed by jax from the composed forward."""
    params, xs, constants, dout = _problem(name, seed=3)
    f = _function(name)
    composed = lambda *a: f.fwd(*a, *constants)[0]  # noqa: E731 - the forward rule, as plain jax operations
    wrt = [*xs, *params]

    def second(g):
        pullback_sum = lambda *a: sum(jax.numpy.sum(c * c) for c in jax.vjp(g, *a)[1](dout))  # noqa: E731
        return jax.grad(pullback_sum, argnums=tuple(range(len(wrt))))(*wrt)

    for got, want in zip(second(lambda *a: f(*a, *constants)), second(composed)):
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("name", SUPPORTED)
@settings(max_examples=3)
@given(seed=st.integers(0, 2**16))
def test_cotangents_agree_with_jax_grad_of_the_composed_forward_under_jit(name, seed):
    params, xs, constants, dout = _problem(name, seed)
    f = _function(name)
    composed = lambda *a: f.fwd(*a, *constants)[0]  # noqa: E731 - the forward rule, as plain jax operations
    wrt = [*xs, *params]
    got = jax.jit(lambda *a: jax.vjp(lambda *b: f(*b, *constants), *a)[1](dout))(*wrt)
    want = jax.vjp(composed, *wrt)[1](dout)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", SUPPORTED)
def test_residuals_are_exactly_the_cache(name):
    """The forward rule's residuals: the cache as the numpy backend's class keeps it, then the
    parameters the backward reads, then the sizes (Python ints)."""
    params, xs, constants, _ = _problem(name, seed=4)
    residuals = _function(name).fwd(*xs, *params, *constants)[1]
    arrays = residuals[:len(residuals) - len(bundled(name).derive().dims_used)]
    assert [np.asarray(r).nbytes for r in arrays] == kept_bytes(name, seed=4)


def test_sigmoid_keeps_y_relu_a_mask_add_nothing():
    x = np.linspace(-3, 3, 12).reshape(3, 4)
    y, (kept,) = _function("sigmoid").fwd(x)
    np.testing.assert_array_equal(kept, y)
    (mask,) = _function("relu").fwd(x)[1]
    assert mask.dtype == bool
    assert _function("add").fwd(x, x)[1] == ()


@pytest.mark.parametrize("name", ["sigmoid", "softmax_with_loss", "layer_norm"])
def test_float32_in_float32_out(name):
    params, xs, constants, dout = _problem(name, seed=5, dtype=np.float32)
    f = _function(name)
    out, pullback = jax.vjp(lambda *a: f(*a, *constants), *xs, *params)
    assert out.dtype == np.float32
    assert all(g.dtype == np.float32 for g in pullback(dout))


@pytest.mark.parametrize("name", SUPPORTED)
def test_the_projects_checks_pass_on_the_jax_function(name):
    report = check_spec(bundled(name), max_examples=5, backend="jax")
    assert report.ok, (report.problems, report.findings)


def test_refused_with_one_line():
    with pytest.raises(GenerationError, match="does not generate networks"):
        symbackprop.generate(bundled("two_layer_net"), backend="jax")


def test_generated_source_imports_jax_and_math_only():
    for name in SUPPORTED:
        source = symbackprop.generate(bundled(name), backend="jax")
        imports = [line for line in source.splitlines() if line.startswith(("import ", "from "))]
        assert imports == ["import math", "import jax", "import jax.numpy as jnp"]


def test_every_function_of_the_table_runs_in_jax():
    """Each function's layer as the jax function against SymPy's own derivative at the same points."""
    import sympy

    from tests.lang.test_function_table import FUNCTIONS, declaration, inputs_at, sympy_values

    for name in FUNCTIONS:
        spec, expr, points = declaration(name)
        f = symbackprop.compile(spec, backend="jax")
        xs = inputs_at(spec, points)
        dout = np.array([0.7, -1.3, 2.1])
        out, pullback = jax.vjp(f, *xs)
        np.testing.assert_allclose(out, sympy_values(expr, spec, xs), rtol=1e-12, atol=1e-300, err_msg=name)
        for got, s in zip(pullback(dout), spec.inputs):
            want = dout * sympy_values(sympy.diff(expr, s), spec, xs)
            np.testing.assert_allclose(np.broadcast_to(got, want.shape), want, rtol=1e-9, atol=1e-12, err_msg=name)


def test_softplus_keeps_x_and_its_gradient_keeps_its_digits_in_the_tails():
    """The jax function keeps x (the same bytes as y; its backward one logistic, as torch's
    softplus_backward reads x) and prints 1 - 1/(1 + exp(x)) as jax.nn.sigmoid(x), so the
    gradient keeps its relative accuracy where x is very negative (the difference would be
    0 there); against mpmath's logistic."""
    import jax
    import mpmath

    source = symbackprop.generate(bundled("softplus"), backend="jax")
    assert "return y, (x,)" in source and "jax.nn.sigmoid(x)" in source
    x = np.array([-700.0, -50.0, -5.0, 0.0, 3.0, 40.0, 700.0])
    with jax.enable_x64(True):
        got = np.asarray(jax.grad(lambda v: _function("softplus")(v).sum())(x))
    want = np.array([float(1 / (1 + mpmath.exp(-mpmath.mpf(v)))) for v in x])
    np.testing.assert_allclose(got, want, rtol=1e-14, atol=0)
