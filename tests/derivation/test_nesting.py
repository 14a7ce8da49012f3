"""Deep nests derived node by node: the split, the backward against SymPy's diff of the
whole nest, what the forward keeps, and the work the backward does."""
import sympy
import numpy as np
import pytest
from hypothesis import assume, given, settings, strategies as st

import symbackprop
from symbackprop.derivation.nesting import depth, split_graph
from symbackprop.spec.model import DOUT
from symbackprop.spec.toml import spec_from_toml

x, y = sympy.symbols("x y", real=True)
FUNCTIONS = ("tanh", "sigmoid", "softplus", "sin", "arctan", "exp", "cos")
SIGMOID = lambda u: 1 / (1 + sympy.exp(-u))  # noqa: E731 - the parser writes sigmoid out
SOFTPLUS = lambda u: sympy.log(1 + sympy.exp(u))  # noqa: E731


def nest(names):
    text = "x"
    for name in names:
        text = f"{name}({text})"
    return text


def nested_spec(names):
    return spec_from_toml(f'name = "Nest"\ninputs = ["x"]\nforward = "{nest(names)}"\n')


def test_written_out_activations_count_as_one_function():
    assert depth(SIGMOID(x)) == 1
    assert depth(SOFTPLUS(x)) == 1
    assert depth(x * sympy.tanh(SOFTPLUS(x))) == 2  # mish stays one node
    assert depth(sympy.sin(SOFTPLUS(SIGMOID(sympy.tanh(x))))) == 4


def test_a_shallow_node_is_not_split():
    mish = x * sympy.tanh(SOFTPLUS(x))
    graph, hidden, split = split_graph([(y, mish)], {"x", "y"})
    assert graph == [(y, mish)] and not hidden and not split


def test_a_deep_nest_becomes_one_node_per_function():
    expr = sympy.sin(SOFTPLUS(SIGMOID(sympy.tanh(sympy.exp(x)))))
    graph, hidden, split = split_graph([(y, expr)], {"x", "y", "u1"})
    u = sympy.symbols("u2:6", real=True)  # u1 is taken
    assert graph == [(u[0], sympy.exp(x)), (u[1], sympy.tanh(u[0])), (u[2], SIGMOID(u[1])),
                     (u[3], SOFTPLUS(u[2])), (y, sympy.sin(u[3]))]
    assert hidden == set(u[:4]) and split == {y}
    # the pieces put back together are the declared expression
    whole = graph[-1][1]
    for symbol, piece in reversed(graph[:-1]):
        whole = whole.xreplace({symbol: piece})
    assert whole == expr


def test_an_affine_wrapper_stays_with_its_function():
    """``exp(-tanh(x))``: the node is ``tanh(x)``, not ``-tanh(x)``."""
    expr = sympy.exp(-2 * sympy.tanh(x) + 1)
    graph, _, _ = split_graph([(y, sympy.sin(sympy.cos(expr)) + expr)], {"x", "y"})
    assert (sympy.Symbol("u1", real=True), sympy.tanh(x)) in graph


@settings(max_examples=25, deadline=None, derandomize=True)
@given(names=st.lists(st.sampled_from(FUNCTIONS), min_size=4, max_size=9),
       point=st.floats(-3, 3), dout=st.floats(-2, 2))
def test_backward_of_a_deep_nest_equals_sympy_diff_of_the_whole(names, point, dout):
    """Oracle: ``dout * diff(forward, x)`` of the nest as one expression, in mpmath."""
    spec = nested_spec(names)
    d = symbackprop.derive(spec)
    got = d.backward["x"].xreplace(d.definitions)
    want = DOUT * sympy.diff(spec.forward, x)
    env = {x: sympy.Float(point, 30), DOUT: sympy.Float(dout, 30)}
    g, w = complex(got.evalf(30, subs=env)), complex(want.evalf(30, subs=env))
    assume(np.isfinite(w))  # exp of exp of exp can overflow the derivative itself
    assert g == pytest.approx(w, rel=1e-12, abs=1e-14)


@pytest.mark.parametrize("n", [8, 16, 32])
def test_a_deep_nest_keeps_its_input_alone_and_backward_does_at_most_3x_the_forward_work(n):
    names = [FUNCTIONS[k % 4] for k in range(n)]
    spec = nested_spec(names)
    d = symbackprop.derive(spec)
    assert d.cache_names == ["x"]  # as the whole nest needs; not one array per function
    forward = _operations([e for _, e in spec.graph])
    backward = _operations([c.expr for c in d.recompute] + [e for _, e in d.steps])
    assert backward <= 3 * forward


def test_sigmoid_inside_a_deep_nest_still_gets_y_times_1_minus_y():
    d = symbackprop.derive(nested_spec(["tanh", "sigmoid", "sin", "cos", "exp"]))
    (sigmoid_node,) = [n for n in d.nodes if n.expr == SIGMOID(n.args[0])]
    (arg,) = sigmoid_node.args
    u = sigmoid_node.symbol
    assert sigmoid_node.local[arg] in (u * (1 - u), (1 - u) * u)


def test_the_generated_class_of_a_deep_nest_passes_its_check():
    """The check compares with numerical differences of the declaration (mpmath)."""
    report = symbackprop.check(nested_spec([FUNCTIONS[k % 4] for k in range(12)]))
    assert report.ok, report.problems
    assert np.isfinite(report.backward_max_rel_error) and not report.failing


def test_derive_prints_the_recomputed_values_node_by_node(capsys):
    from symbackprop.cli import main

    assert main(["derive", "--expr", nest(["tanh", "sigmoid", "softplus", "sin", "cos"])]) == 0
    out = capsys.readouterr().out
    assert "  cache     x\n" in out
    assert "where     u1 = tanh(x)  (recomputed in backward)" in out
    assert "where     u2 = 1/(1 + exp(-u1))  (recomputed in backward)" in out


def _operations(exprs):
    replacements, reduced = sympy.cse(exprs, order="none")
    return sum(sympy.count_ops(e) for _, e in replacements) + sum(sympy.count_ops(e) for e in reduced)
