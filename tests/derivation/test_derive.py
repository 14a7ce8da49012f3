"""Derivation: every backward equals SymPy's own diff at random points, and the chosen
forms are the cheap ones a careful person writes."""
import zlib

import numpy as np
import pytest
import sympy

import symbackprop
from symbackprop.spec import catalog
from symbackprop.derivation import operations_of
from symbackprop.derivation.cost import arithmetic_cost
from symbackprop.derivation.search import invert
from symbackprop.spec.model import DOUT

NAMES = catalog.bundled_names()
ELEMENTWISE = [n for n in NAMES if not symbackprop.load(n).is_array]
x, y = sympy.symbols("x y", real=True)


@pytest.fixture(scope="module")
def derivations():
    return {name: symbackprop.load(name).derive() for name in NAMES}


@pytest.mark.parametrize("name", ELEMENTWISE)
def test_backward_equals_sympy_diff_at_random_points(derivations, name):
    """Oracle: dout * diff(forward, x), evaluated independently with numpy at random points."""
    d = derivations[name]
    spec = d.spec
    defs = d.definitions
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    for s in spec.inputs:
        got = d.backward[s.name].xreplace(defs).xreplace(defs)
        want = DOUT * sympy.diff(spec.forward, s)
        f_got = sympy.lambdify([*spec.inputs, DOUT], got, "numpy")
        f_want = sympy.lambdify([*spec.inputs, DOUT], want, "numpy")
        for _ in range(20):
            point = [rng.uniform(0.05, 5) if t.is_positive else rng.uniform(-5, 5) for t in spec.inputs]
            dout = rng.uniform(-2, 2)
            assert float(f_got(*point, dout)) == pytest.approx(float(f_want(*point, dout)), rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("name", ELEMENTWISE)
def test_every_primitive_gradient_equals_sympy_diff_at_random_points(derivations, name):
    """Oracle: for every value v of the one-operation graph, dL/dv = dout * d forward / d v,
    with v made a free variable (SymPy's diff of the forward written in v), at random points;
    and every input's gradient is the sum of the arrows into it."""
    g = operations_of(derivations[name])
    spec = g.spec
    rng = np.random.default_rng(zlib.crc32(name.encode()) + 1)
    points = [{t: sympy.Float(rng.uniform(0.05, 5) if t.is_positive else rng.uniform(-5, 5)) for t in spec.inputs}
              for _ in range(5)]
    for v, grad in g.gradients.items():
        node = g.producer(v)
        free = sympy.Dummy("v", real=True)
        # the forward with v's own value cut loose: everything downstream of v, in v and the inputs
        downstream = {} if node is not None else {v: free}
        for n in g.nodes:
            if n.symbol == v:
                downstream[v] = free
            elif n is not node:
                downstream[n.symbol] = n.expr.xreplace(downstream)
        want = DOUT * sympy.diff(downstream.get(spec.output, sympy.S.Zero), free)
        for point in points:
            at = {**point, DOUT: sympy.Float(0.7)}
            value = g.definitions.get(v, point.get(v)).xreplace(point)
            expected = complex(want.xreplace({free: value}).xreplace(at).evalf(30))
            got = complex(grad.xreplace(g.definitions).xreplace(at).evalf(30))
            assert got == pytest.approx(expected, rel=1e-9, abs=1e-12), (name, v, point)
    for s in spec.inputs:
        into = [a.expr for a in g.arrows if a.target == s]
        assert sympy.simplify(sympy.Add(*into) - g.gradients[s]) == 0


def test_every_bundled_declaration_is_derived(derivations):
    assert len(derivations) >= 16


def _same(a, b):
    return sympy.simplify(sympy.expand(a - b)) == 0


def test_sigmoid_backward_uses_only_dout_and_the_cached_output(derivations):
    d = derivations["sigmoid"]
    yy = d.spec.output
    assert d.backward["x"].free_symbols == {DOUT, yy}
    assert _same(d.backward["x"], DOUT * yy * (1 - yy))
    assert d.cache_names == ["y"]


@pytest.mark.parametrize("name, form, cache", [
    ("tanh", lambda y: 1 - y**2, ["y"]),
    ("exp", lambda y: y, ["y"]),
    ("sqrt", lambda y: 1 / (2 * y), ["y"]),
    ("reciprocal", lambda y: -y**2, ["y"]),
    ("softplus", lambda y: 1 - sympy.exp(-y), ["y"]),
])
def test_derivatives_written_in_the_cached_output(derivations, name, form, cache):
    d = derivations[name]
    yy = d.spec.output
    assert d.local["x"].free_symbols == {yy}
    assert _same(d.local["x"], form(yy))
    assert d.cache_names == cache


def test_log_keeps_dout_over_x_as_cheaper_than_exp_of_minus_y(derivations):
    d = derivations["log"]
    xx = d.spec.inputs[0]
    assert _same(d.backward["x"], DOUT / xx)
    assert d.cache_names == ["x"]


def test_relu_caches_a_boolean_mask_only(derivations):
    d = derivations["relu"]
    assert [c.mask for c in d.cache] == [True]
    layer = symbackprop.compile(d)()
    layer.forward(np.array([-1.0, 2.0]))
    assert layer.mask.dtype == np.bool_


def test_multiply_caches_the_other_input_and_add_caches_nothing(derivations):
    mul = derivations["multiply"]
    xx, yy = mul.spec.inputs
    assert mul.backward == {"x": DOUT * yy, "y": DOUT * xx}
    assert sorted(mul.cache_names) == ["x", "y"]
    assert derivations["add"].cache_names == []
    assert derivations["add"].backward == {"x": DOUT, "y": DOUT}


def test_chain_rule_caches_the_intermediate_not_both_inputs(derivations):
    d = derivations["chain_rule"]
    assert d.cache_names == ["t"]  # 8 bytes per element instead of 16


def test_a_new_function_needs_no_new_code():
    """No table of derivatives: asinh's derivative comes out of the mechanism."""
    spec = symbackprop.layer(sympy.asinh(x), name="Asinh")
    d = spec.derive()
    assert _same(d.local["x"].xreplace(d.definitions), 1 / sympy.sqrt(1 + x**2))
    assert spec.check(max_examples=5).ok


def test_invert_peels_function_atoms():
    sol = invert(1 / (1 + sympy.exp(-x)), x, y)
    assert sympy.simplify((1 / (1 + sympy.exp(-sol))) - y) == 0
    assert invert(x + sympy.sin(x), x, y) is None  # x occurs twice


def test_cost_model_weights_transcendental_functions():
    assert arithmetic_cost(sympy.exp(-y)) > arithmetic_cost(1 / x)
    assert arithmetic_cost(y * (1 - y)) < arithmetic_cost(sympy.exp(-x) / (1 + sympy.exp(-x))**2)


def test_python_api_accepts_plain_sympy_symbols():
    xs = sympy.Symbol("x")  # no assumptions: taken as real
    spec = symbackprop.layer(1 / (1 + sympy.exp(-xs)), name="Sigmoid")
    assert str(spec.derive().backward["x"]) == "dout*y*(1 - y)"


def test_python_api_refuses_strings():
    with pytest.raises(symbackprop.SpecError):
        symbackprop.layer("1/(1 + exp(-x))")


def test_derivation_is_deterministic():
    a = symbackprop.load("swish").generate()
    b = symbackprop.load("swish").generate()
    assert a == b


def _values_at(expr, x_values, **others):
    """``expr`` (of x and the output y) at the given x, with y from the declared forward."""
    return [float(expr.subs({**others, **dict(v)})) for v in x_values]


def test_elu_caches_its_output_only_and_tests_the_branch_on_it(derivations):
    # ELU's forward is exp(x) - 1 on x <= 0, so exp(x) there is y + 1, and x > 0 exactly when y > 0
    d = derivations["elu"]
    assert d.cache_names == ["y"] and not d.backward["x"].has(sympy.exp)
    layer = symbackprop.compile(d)()
    xs = np.array([-30.0, -2.0, -1e-300, 0.0, 1e-300, 0.5, 3.0])
    layer.forward(xs)
    oracle = np.array([float(sympy.diff(sympy.Piecewise((x, x > 0), (sympy.exp(x) - 1, True)), x).subs(x, v))
                       for v in xs])
    # y + 1 in the far tail is within 1e-16 absolute (the search's accuracy rule, as sigmoid's y*(1 - y))
    assert np.allclose(layer.backward(np.ones_like(xs)), oracle, rtol=1e-14, atol=1e-16)


def test_clip_keeps_one_mask_not_two():
    d = symbackprop.layer(sympy.Min(1, sympy.Max(-1, x)), name="Clip").derive()
    assert [c.mask for c in d.cache] == [True]
    layer = symbackprop.compile(d)()
    xs = np.array([-2.0, -1.0, -0.5, 0.0, 0.99, 1.0, 7.0])
    layer.forward(xs)
    # the book's convention at the kinks: 0 there, 1 strictly inside
    assert layer.backward(np.full(xs.shape, 3.0)).tolist() == [0.0, 0.0, 3.0, 3.0, 3.0, 0.0, 0.0]


def test_a_form_undefined_where_an_input_is_zero_is_not_chosen(tmp_path):
    # 1/sqrt(var + eps) must not become xn/xc: a batch of one centres x - mu to exactly 0
    path = tmp_path / "norm.toml"
    path.write_text('name = "Norm"\ninputs = { x = ["N", "D"] }\n[graph]\nmu = "mean(x, axis=0)"\n'
                    'xc = "x - mu"\nvar = "mean(xc**2, axis=0)"\nout = "xc / sqrt(var + 1e-8)"\n')
    d = symbackprop.load(str(path)).derive()
    layer = symbackprop.compile(d)()
    layer.forward(np.array([[1.0, -2.0, 3.0]]))
    assert np.all(np.isfinite(layer.backward(np.array([[0.5, 1.0, -1.0]]))))
