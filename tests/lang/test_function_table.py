"""Every row of the function table goes through every stage: parse, derive, generate
(both backends), run, typeset, draw.

Oracles: SymPy's own evaluation (``evalf``, 30 digits) of the SymPy function the row
names, and SymPy's ``diff`` of it, at points inside the function's natural domain.
"""
import math
import warnings

import numpy as np
import pytest
import sympy

import symbackprop
from symbackprop import explain
from symbackprop.lang.functions import BY_NAME, NODES, SUGAR
from symbackprop.lang.parser import parse_expression

X, Y = sympy.symbols("x y", real=True)
#: One declaration per function (every spelling of a row is checked by tests/lang/test_parser.py),
#: with points inside its natural domain.
CALLS = {
    "arccosh": ("arccosh(x)", [1.2, 1.9, 3.5]),
    "arctan2": ("arctan2(x, y)", [0.3, -0.7, 1.4]),
    "hypot": ("hypot(x, y)", [0.3, -0.7, 1.4]),
    "polygamma": ("polygamma(1, x)", [0.3, 0.45, 0.8]),
    "clip": ("clip(x, -0.5, 0.5)", [0.3, -0.7, 0.45]),
    "where": ("where(x > 0.5, x**2, 3*x)", [0.3, 0.7, 0.45]),
    "maximum": ("maximum(x, y)", [0.3, 0.7, 0.45]),
    "minimum": ("minimum(x, y)", [0.3, 0.7, 0.45]),
}
DEFAULT_POINTS = [0.3, 0.45, 0.8]  # inside every other function's domain: (0, 1)
FUNCTIONS = sorted({row.name for row in (*NODES, *SUGAR)})


def declaration(name: str):
    text, points = CALLS.get(name, (f"{name}(x)", DEFAULT_POINTS))
    expr = parse_expression(text)
    spec = symbackprop.layer(expr, name=f"Row {name}", output="out")
    return spec, expr, points


def inputs_at(spec, points):
    """Each input its own rotation of the points (so that x and y differ)."""
    return [np.array(points[i:] + points[:i]) for i in range(len(spec.inputs))]


def sympy_values(expr, spec, xs):
    return np.array([float(expr.subs(dict(zip(spec.inputs, map(sympy.Float, vals)))).evalf(30))
                     for vals in zip(*xs)])


@pytest.mark.parametrize("name", FUNCTIONS)
def test_every_function_derives_generates_runs_and_typesets(name):
    spec, expr, points = declaration(name)
    derivation = symbackprop.derive(spec)
    xs = inputs_at(spec, points)
    dout = np.array([0.7, -1.3, 2.1])
    want_forward = sympy_values(expr, spec, xs)
    want_grads = [dout * sympy_values(sympy.diff(expr, s), spec, xs) for s in spec.inputs]
    for backend in ("numpy", "fused"):
        source = symbackprop.generate(derivation, backend=backend)
        row = BY_NAME.get(name)
        if backend == "fused" and row is not None and row.sympy is not None and row.numba is None:
            assert "# fused backend: no numba kernel" in source  # said in the code, numpy's class instead
        layer = symbackprop.compile(derivation, backend=backend)()
        np.testing.assert_allclose(layer.forward(*[x.copy() for x in xs]), want_forward, rtol=1e-12, atol=1e-300)
        grads = layer.backward(dout.copy())
        grads = grads if isinstance(grads, tuple) else (grads,)
        for got, want in zip(grads, want_grads):
            np.testing.assert_allclose(np.broadcast_to(got, want.shape), want, rtol=1e-9, atol=1e-12)
    tex = explain.latex(derivation)
    assert tex.startswith(r"\begin{align*}") and "nan" not in tex
    assert explain.graph(spec).dot.startswith("digraph")


def test_the_table_spells_what_numpy_and_math_have():
    """A row's numpy and numba spellings name real functions (scipy.special for the rest)."""
    from scipy import special

    for row in NODES:
        if row.numpy is not None:
            module, _, attr = row.numpy.rpartition(".")
            assert hasattr(special if module == "special" else np, attr), row.name
        if row.numba is not None and row.numba.startswith("math."):
            assert hasattr(math, row.numba[5:]), row.name


@pytest.mark.parametrize("name", FUNCTIONS)
def test_every_function_checks_ok_on_its_natural_domain_with_finite_figures(name):
    """No assumption declared: the check draws inside the domain the forward needs."""
    spec, _, _ = declaration(name)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        report = symbackprop.check(spec, max_examples=6)
    assert report.ok, report.problems
    assert np.isfinite(report.backward_max_rel_error) and np.isfinite(report.tails_max_error)
    # the probes' overflowing and undefined inputs are on purpose: nothing reaches the user's terminal
    assert not [w for w in seen if issubclass(w.category, RuntimeWarning)], [str(w.message) for w in seen]


def test_a_backward_that_is_nan_somewhere_fails_naming_the_input():
    from symbackprop.checker import check_generated

    spec = symbackprop.layer(parse_expression("sqrt(x)"), name="Sqrt")
    derivation = symbackprop.derive(spec)

    class NanAboveThree:
        def forward(self, x):
            self.x = x
            return np.sqrt(x)

        def backward(self, dout=1.0):
            return np.where(self.x > 3, np.nan, dout * 0.5 / np.sqrt(self.x))

    report = check_generated(derivation, NanAboveThree, max_examples=10)
    assert not report.ok
    assert any("undefined (nan or inf) at x = " in p for p in report.problems)
    value = float(next(p for p in report.problems if "undefined" in p).split("x = ")[1].split(":")[0])
    assert value > 3  # the input named is one where the planted nan is
