"""Index notation (symbackprop/indexed.py and its parser): statements read into atoms, shapes
inferred with one-line errors before any derivation, the atoms' definitions against naive
loops, and derivations expanded at small explicit sizes against SymPy's diff."""
import itertools
import re
from pathlib import Path

import numpy as np
import pytest
import sympy

import symbackprop
from symbackprop import indexed, ops
from symbackprop.derivation.explicit import ExplicitCheckFailed, verify_explicit
from symbackprop.errors import SpecError
from symbackprop.spec.toml import spec_from_toml
from tests.fixtures.declarations import bundled

CONV = """
name = "Convolution"
inputs = {{ x = ["N", "C", "IH", "IW"] }}
params = {{ W = ["FN", "C", "FH", "FW"], b = ["FN"] }}
hyper = {{ stride = {stride}, pad = {pad} }}
[graph]
y = "y[n, f, i, j] = sum(x[n, c, i*stride + k - pad, j*stride + l - pad] * W[f, c, k, l], (c, k, l)) + b[f]"
"""

POOL = """
name = "Pooling"
inputs = {{ x = ["N", "C", "IH", "IW"] }}
hyper = {{ pool_h = {ph}, pool_w = {pw}, stride = {stride}, pad = {pad} }}
[graph]
y = "y[n, c, i, j] = {kind}(x[n, c, i*stride + k - pad, j*stride + l - pad], k=pool_h, l=pool_w)"
"""


def declaration(body: str, graph: str, hyper: str = "", extra: str = "") -> str:
    return f'name = "T"\n{body}\n{hyper}\n{extra}\n[graph]\ny = "{graph}"\n'


X = 'inputs = { x = ["N", "C", "IH", "IW"] }\nparams = { W = ["FN", "C", "FH", "FW"] }'


# -- shapes and errors, before any derivation ----------------------------------------------------
def test_output_shape_is_the_window_count():
    spec = bundled("convolution")
    _, _, oh, ow = spec.shapes[spec.output]
    IH, FH, pad, stride = (next(s for s in oh.free_symbols if s.name == n) for n in ("IH", "FH", "pad", "stride"))
    assert sympy.simplify(oh - (sympy.floor((IH + 2 * pad - FH) / stride) + 1)) == 0
    sizes = {s: v for s, v in zip((IH, FH, pad, stride), (28, 5, 0, 1))}
    assert int(oh.xreplace({k: sympy.Integer(v) for k, v in sizes.items()})) == 24


@pytest.mark.parametrize("graph, hyper, message", [
    ("y[n, f, i, j] = sum(x[n, c, i, j] * W[f, n, k, l], (c, k, l))", "", "index n ranges over C in W"),
    ("y[n, f, i, j] = sum(x[n, c, i*stride + k, j + l] * W[f, c, k, l], (c, k, l))", "hyper = { stride = 0 }",
     "not positive"),
    ("y[n, f, i] = sum(x[n, c, i + k, j] * W[f, c, k, l], (c, k, l))", "", "index j is neither on the left"),
    ("y[n, f, i, j] = sum(x[n, c, i + k, j + l] * W[f, c, k, l], (k, l))", "", "index c is neither"),
    ("y[n, f, i, j] = sum(x[n, c, i*i, j] * W[f, c, k, l], (c, k, l))", "", "not affine"),
    ("y[n, f, i, j] = sum(x[n, c, i, j, k] * W[f, c, k, j], (c, k))", "", "x has 4 axes, indexed with 5"),
    ("y[n, n, i, j] = x[n, n, i, j]", "", "appears twice on the left"),
    ("y[n, c, i, j] = x[n, c, i, j] + z[n]", "", "'z' is not a declared array"),
    ("y[n, c, i, j] = x[n, c, 2*i + 3*k, j]", "", "at most a window"),
    ("y[n, c, i, j] = sum(x[n, c, i, j], (n,))", "", "on the left side and reduced"),
    ("y[n, c, i, j] = x[n, c, IH - 1 - i, j]", "", "strides and offsets are integers or hyperparameters, not IH"),
    ("y[n, c, i, j] = x[n, c, 2 - i, j]", "", "a stride must be positive"),
    ("x[n, c, i, j] = x[n, c, i, j]", "", "the left side must be y"),
    ("y[n, c, i, j] = x[n, c, i:j, j]", "", "slices are not allowed"),
])
def test_bad_statements_are_one_line_errors_naming_the_field(graph, hyper, message):
    with pytest.raises(SpecError, match=message) as exc:
        spec_from_toml(declaration(X, graph, hyper), source="t.toml")
    text = str(exc.value)
    assert "\n" not in text and text.startswith("t.toml: graph.y: ")


def test_a_window_that_does_not_fit_is_refused_at_known_sizes():
    body = 'inputs = { x = ["N", "C", 4, 4] }\nparams = { W = ["FN", "C", 5, 5] }'
    graph = "y[n, f, i, j] = sum(x[n, c, i + k, j + l] * W[f, c, k, l], (c, k, l))"
    with pytest.raises(SpecError, match="the window does not fit"):
        spec_from_toml(declaration(body, graph), source="t.toml")


def test_a_stride_that_does_not_divide_is_refused_when_the_declaration_tiles():
    body = 'inputs = { x = ["N", "C", 7, 7] }'
    graph = "y[n, c, i, j] = max(x[n, c, i*stride + k, j*stride + l], k=2, l=2)"
    spec_from_toml(declaration(body, graph, "hyper = { stride = 2 }"), source="t.toml")  # floor: fine
    with pytest.raises(SpecError, match=r"the stride stride = 2 does not divide 7 - 2 = 5 \(tile = true"):
        spec_from_toml(declaration(body, graph, "hyper = { stride = 2 }", "tile = true"), source="t.toml")


def test_tiling_constrains_the_sizes_the_checkers_draw():
    body = 'inputs = { x = ["N", "C", "IH", "IW"] }'
    graph = "y[n, c, i, j] = max(x[n, c, i*stride + k, j*stride + l], k=2, l=2)"
    spec = spec_from_toml(declaration(body, graph, "hyper = { stride = 2 }", "tile = true"), source="t.toml")
    IH = next(d for d in spec.dims if d.name == "IH")
    sizes = spec.fitted_sizes({d: 5 for d in spec.dims})
    assert sizes[IH] == 6 and indexed.fits(spec.constraints, sizes)


def test_an_unknown_range_asks_for_a_keyword():
    body = 'inputs = { x = ["N", "C", "IH", "IW"] }'
    with pytest.raises(SpecError, match=r"cannot infer the range of index k .*give it as a keyword: sum\(\.\.\., k=K\)"):
        spec_from_toml(declaration(body, "y[n, c, i, j] = max(x[n, c, i + k, j + l], (k, l))"), source="t.toml")


@pytest.mark.parametrize("key, value, message", [
    ("hyper", "{ stride = -1 }", "hyper.stride: expected a nonnegative integer"),
    ("hyper", '{ x = 1 }', "hyper.x: cannot name a hyperparameter"),
    ("tile", '"yes"', "tile: expected a boolean"),
])
def test_bad_hyperparameters_are_one_line_errors(key, value, message):
    text = declaration('inputs = { x = ["N", "C", "IH", "IW"] }', "y[n, c, i, j] = x[n, c, i, j]", f"{key} = {value}")
    with pytest.raises(SpecError, match=message):
        spec_from_toml(text, source="t.toml")


def test_hyper_needs_array_inputs():
    with pytest.raises(SpecError, match="hyper: needs array inputs"):
        spec_from_toml('name = "T"\ninputs = ["x"]\nforward = "x"\nhyper = { s = 1 }\n', source="t.toml")


# -- the atoms' definitions against naive loops ---------------------------------------------------------
def naive_conv(x, W, b, stride, pad):
    n_, c_, h, w = x.shape
    f_, _, kh, kw = W.shape
    oh, ow = (h + 2 * pad - kh) // stride + 1, (w + 2 * pad - kw) // stride + 1
    y = np.zeros((n_, f_, oh, ow))
    for n, f, i, j in itertools.product(range(n_), range(f_), range(oh), range(ow)):
        total = b[f]
        for c, k, l in itertools.product(range(c_), range(kh), range(kw)):
            r, s = i * stride + k - pad, j * stride + l - pad
            if 0 <= r < h and 0 <= s < w:
                total += x[n, c, r, s] * W[f, c, k, l]
        y[n, f, i, j] = total
    return y


def naive_max_pool(x, ph, pw, stride, pad):
    n_, c_, h, w = x.shape
    oh, ow = (h + 2 * pad - ph) // stride + 1, (w + 2 * pad - pw) // stride + 1
    y = np.zeros((n_, c_, oh, ow))
    for n, c, i, j in itertools.product(range(n_), range(c_), range(oh), range(ow)):
        cells = [x[n, c, r, s] if 0 <= r < h and 0 <= s < w else 0.0
                 for r, s in ((i * stride + k - pad, j * stride + l - pad) for k in range(ph) for l in range(pw))]
        y[n, c, i, j] = max(cells)
    return y


def _declared(spec, values, sizes):
    from symbackprop.checker.arrays import ArrayProblem

    problem = ArrayProblem(spec, sizes, 0)
    problem.values.update(values)
    return problem.declared(problem.values)


@pytest.mark.parametrize("stride, pad", [(1, 0), (2, 1), (3, 2)])
def test_the_declared_convolution_is_the_naive_loop(stride, pad):
    spec = bundled("convolution")
    rng = np.random.default_rng(stride)
    x, W, b = rng.standard_normal((2, 3, 7, 6)), rng.standard_normal((4, 3, 3, 2)), rng.standard_normal(4)
    dims = {d.name: d for d in spec.dims}
    hyper = {h.name: h for h in spec.hyper}
    sizes = {dims["N"]: 2, dims["C"]: 3, dims["IH"]: 7, dims["IW"]: 6, dims["FN"]: 4, dims["FH"]: 3, dims["FW"]: 2,
             hyper["stride"]: stride, hyper["pad"]: pad}
    x_, W_, b_ = spec.inputs[0], *spec.params
    got = _declared(spec, {x_: x, W_: W, b_: b}, sizes)
    np.testing.assert_allclose(got, naive_conv(x, W, b, stride, pad), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("ph, pw, stride, pad", [(2, 2, 2, 0), (3, 2, 1, 1), (3, 3, 2, 1)])
def test_the_declared_max_pooling_is_the_naive_loop(ph, pw, stride, pad):
    spec = bundled("max_pooling")
    x = np.random.default_rng(ph).standard_normal((2, 3, 7, 6))
    dims = {d.name: d for d in spec.dims}
    hyper = {h.name: h for h in spec.hyper}
    sizes = {dims["N"]: 2, dims["C"]: 3, dims["IH"]: 7, dims["IW"]: 6, hyper["pool_h"]: ph, hyper["pool_w"]: pw,
             hyper["stride"]: stride, hyper["pad"]: pad}
    got = _declared(spec, {spec.inputs[0]: x}, sizes)
    np.testing.assert_array_equal(got, naive_max_pool(x, ph, pw, stride, pad))


# -- derivations against SymPy's diff at explicit sizes ----------------------------------------------
@pytest.mark.parametrize("stride, pad", [(1, 0), (2, 1), (1, 2)])
def test_convolution_derivation_matches_diff_at_explicit_sizes(stride, pad):
    spec = spec_from_toml(CONV.format(stride=stride, pad=pad), source="conv.toml")
    derivation = symbackprop.derive(spec)  # verify_explicit runs inside, at these hyperparameters
    verify_explicit(derivation, seed=3)
    assert derivation.cache_names == ["x"]


@pytest.mark.parametrize("kind", ["max", "mean"])
@pytest.mark.parametrize("ph, pw, stride, pad", [(2, 2, 2, 0), (2, 3, 1, 1)])
def test_pooling_derivations_match_diff_at_explicit_sizes(kind, ph, pw, stride, pad):
    spec = spec_from_toml(POOL.format(kind=kind, ph=ph, pw=pw, stride=stride, pad=pad), source="pool.toml")
    verify_explicit(symbackprop.derive(spec), seed=4)


def test_the_explicit_check_catches_a_wrong_pullback(monkeypatch):
    real = indexed.IndexSum.pullback

    k, FH = indexed.Index("k"), sympy.Symbol("FH", positive=True, integer=True)

    def flipped(self, g, shapes):  # the kernel read flipped in every pullback: the classic convolution slip
        out = []
        for a, e in real(self, g, shapes):
            maps = e.args[-4].xreplace({k: FH - 1 - k})
            out.append((a, e.func(*e.args[:-4], maps, *e.args[-3:])))
        return out

    monkeypatch.setattr(indexed.IndexSum, "pullback", flipped)
    spec = spec_from_toml(CONV.format(stride=1, pad=0), source="conv.toml")
    with pytest.raises(ExplicitCheckFailed, match="differs from diff at explicit shapes"):
        symbackprop.derive(spec)


def test_the_symbolic_max_routes_to_the_first_maximum():
    a, b = sympy.symbols("a b", real=True)
    x = ops.ArrayVar("x", real=True)
    i, k = indexed.Index("i"), indexed.Index("k")
    atom = indexed.IndexMaxGrad(x, ops.ArrayVar("g", real=True), sympy.Tuple(i * 2 + k), sympy.Tuple(i),
                                sympy.Tuple(sympy.Tuple(i, 1), sympy.Tuple(k, 2)), sympy.Tuple(2))
    out = atom.apply_sized([np.array([a, b], dtype=object), np.array([1], dtype=object)], ops.SYMBOLIC, {})
    assert out[0].subs({a: 1, b: 1}) == 1 and out[1].subs({a: 1, b: 1}) == 0  # a tie: the first
    assert out[0].subs({a: 0, b: 1}) == 0 and out[1].subs({a: 0, b: 1}) == 1


def test_records_read_index_atoms_back():
    from symbackprop.derivation.record import from_record, to_record

    for name in ("convolution", "max_pooling", "avg_pooling"):
        derivation = symbackprop.derive(bundled(name))
        record = to_record(derivation)
        assert record is not None and from_record(record, derivation.spec) == derivation


def test_the_graph_draws_every_operand_of_an_index_atom():
    from symbackprop.derivation import operations_of

    nodes = operations_of(symbackprop.derive(bundled("convolution"))).nodes
    conv = next(n for n in nodes if n.op == "sum over c, k, l")
    assert {a.name for a in conv.args} == {"x", "W"}
    assert any(n.op == "read" for n in nodes)  # b[f], broadcast to the output


# -- a size only parameters have: the pooled size of SimpleConvNet's 4-D affine weight ----------
NET_BLOCK = """
name = "ConvPoolAffine"
inputs = { x = ["N", "C", "IH", "IW"] }
params = { W = ["FN", "C", "FH", "FW"], V = ["FN", "PH", "PW", "H"] }
hyper = { stride = 1, pad = 0 }
[graph]
a = "a[n, f, i, j] = sum(x[n, c, i*stride + k - pad, j*stride + l - pad] * W[f, c, k, l], (c, k, l))"
p = "p[n, f, i, j] = max(a[n, f, 2*i + k, 2*j + l], k=2, l=2)"
y = "y[n, h] = sum(p[n, f, i, j] * V[f, i, j, h], (f, i, j))"
"""


def test_a_parameter_only_size_becomes_the_window_count_it_meets():
    spec = spec_from_toml(NET_BLOCK, "block.toml")
    V = next(s for s in spec.params if s.name == "V")
    H, IH, FH, stride, pad = (next(d for d in (*spec.dims, *spec.hyper) if d.name == n)
                              for n in ("H", "IH", "FH", "stride", "pad"))
    pooled = spec.shapes[V][1]
    assert "PH" not in {d.name for d in spec.dims} and spec.shapes[V][3] == H
    for ih, fh, s, p in itertools.product((5, 8, 9, 28), (2, 3, 5), (1, 2), (0, 1)):
        conv = (ih + 2 * p - fh) // s + 1
        if conv >= 2:  # the book's sizes: ((IH + 2*pad - FH)//stride + 1)//2 pooled positions
            assert int(pooled.xreplace({IH: ih, FH: fh, stride: s, pad: p})) == conv // 2
    assert ops.size_text(pooled) == "((-FH + IH + 2*pad)//stride - 1)//2 + 1"


def test_a_network_block_with_an_inferred_size_derives_and_checks():
    spec = spec_from_toml(NET_BLOCK, "block.toml")
    verify_explicit(symbackprop.derive(spec), seed=5)  # derive ran it too, at another point
    assert symbackprop.check(spec, max_examples=4).ok


def test_shared_high_precision_functions_agree_and_forget_old_values():
    """``mp_functions`` computes a shared subexpression once per list of values; a new list is
    new values.  Oracle: each expression compiled on its own (``mp_function``)."""
    import mpmath
    from symbackprop.numerics.evaluate import mp_function, mp_functions

    a, b = sympy.symbols("a b", real=True)
    shared = sympy.exp(a) * sympy.Max(a, b, evaluate=False)
    exprs = [shared + b, shared ** 2, sympy.log(1 + shared ** 2)]
    together = mp_functions(exprs, [a, b])
    with mpmath.workdps(30):
        for point in ([mpmath.mpf("0.3"), mpmath.mpf("-1.2")], [mpmath.mpf("-0.7"), mpmath.mpf("2.5")]):
            for e, f in zip(exprs, together):
                assert f(point) == mp_function(e, [a, b])(list(point))


# -- gathers through integer constants: the embedding -------------------------------------------------
TABLE = 'params = { W = ["V", "D"] }\nconstants = { x = ["N", "T"] }'


@pytest.mark.parametrize("body, graph, message", [
    ('params = { W = ["V", "D"] }\nconstants = { x = ["N", "T"] }', "y[n, t, d] = W[x[n, t], d]",
     r"a position read from x needs x an integer constant with its range .*range\(V\)"),
    (TABLE + '\nsymbols = { x = "range(D)" }', "y[n, t, d] = W[x[n, t], d]",
     r"x takes values in range\(D\) but indexes an axis of size V"),
    (TABLE + '\nsymbols = { x = "range(V)" }', "y[n, d] = sum(W[x[n, t], d], (t,))",
     "a gather inside a reduction is not supported yet"),
    (TABLE + '\nsymbols = { x = "range(V)" }', "y[n, t] = W[x[n, t], x[n, t]]", "one position per read"),
    (TABLE + '\nsymbols = { x = "range(V)" }', "y[n, t, d] = W[x[n, t], d + 1]", "other positions of a gather"),
    (TABLE + '\nsymbols = { x = "range(V)" }', "y[n, d] = W[x[n, n], d]", "distinct plain indices"),
    (TABLE + '\nsymbols = { x = "range(V)" }', "y[n, t, d] = W[x[n, t, d], d]", "x has 2 axes, indexed with 3"),
])
def test_bad_gathers_are_one_line_errors_naming_the_field(body, graph, message):
    with pytest.raises(SpecError, match=message) as exc:
        spec_from_toml(declaration(body, graph), source="t.toml")
    assert "\n" not in str(exc.value) and str(exc.value).startswith("t.toml: graph.y: ")


@pytest.mark.parametrize("body, field, message", [
    ('inputs = { x = ["N", "T"] }\nparams = { W = ["V", "D"] }\nsymbols = { x = "range(V)" }', "symbols.x",
     "range(V) is for integer constants"),
    (TABLE + '\nsymbols = { x = "range(-1)" }', "symbols.x", "unknown assumption"),
    ('constants = { x = ["N", "T"] }', "inputs", "missing"),
])
def test_bad_integer_declarations_are_one_line_errors(body, field, message):
    with pytest.raises(SpecError) as exc:
        spec_from_toml(declaration(body, "y[n, t] = x[n, t]"), source="t.toml")
    assert str(exc.value).startswith(f"t.toml: {field}: ") and message in str(exc.value)


def test_the_declared_embedding_is_the_naive_loop():
    spec = bundled("embedding")
    rng = np.random.default_rng(0)
    W, x = rng.standard_normal((4, 3)), rng.integers(0, 4, (5, 2))
    sizes = {next(d for d in spec.dims if d.name == n): v for n, v in (("V", 4), ("D", 3), ("N", 5), ("T", 2))}
    got = _declared(spec, {spec.params[0]: W, spec.constants[0]: x}, sizes)
    want = np.array([[[W[x[n, t], d] for d in range(3)] for t in range(2)] for n in range(5)])
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("graph, extra", [
    ("y[n, t, d] = W[x[n, t], d]", ""),
    ("y[d, t, n] = W[x[n, t], d]", ""),  # written transposed
    ("y[n, t, d, e] = W[x[n, t], d] * s[e]", ', s = ["E"]'),  # and broadcast against a plain read
])
def test_gather_derivations_match_diff_at_explicit_sizes(graph, extra):
    text = declaration(TABLE.replace('["V", "D"] }', f'["V", "D"]{extra} }}') + '\nsymbols = { x = "range(V)" }',
                       graph)
    derivation = symbackprop.derive(spec_from_toml(text, source="gather.toml"))  # verify_explicit runs inside
    for seed in range(3):  # N*T = 6 > V = 3 at the explicit sizes: indices repeat
        verify_explicit(derivation, seed=seed)
    assert derivation.spec.integers and "dx" not in derivation.backward


def test_the_explicit_check_catches_a_scatter_that_drops_repeated_indices(monkeypatch):
    real = indexed.IndexTake.apply_sized

    def assigned(self, values, kind, sizes):  # out[x] = g: the fancy-index assignment, one write per row
        out = real(self, values, kind, sizes)
        if not self.is_gather:
            x = np.asarray(values[1]).ravel()
            first = np.unique(x, return_index=True)[1]
            keep = np.zeros_like(out)
            g = np.asarray(values[0]).reshape(len(x), -1)
            keep[x[first]] = g[first]
            return keep
        return out

    monkeypatch.setattr(indexed.IndexTake, "apply_sized", assigned)
    with pytest.raises(ExplicitCheckFailed, match="dW differs from diff at explicit shapes"):
        symbackprop.derive(spec_from_toml(declaration(TABLE + '\nsymbols = { x = "range(V)" }',
                                                      "y[n, t, d] = W[x[n, t], d]"), source="e.toml"))


def test_embedding_records_read_back():
    from symbackprop.derivation.record import from_record, to_record

    derivation = symbackprop.derive(bundled("embedding"))
    record = to_record(derivation)
    assert record is not None and from_record(record, derivation.spec) == derivation
    assert "index_take(dout, x, at=((n, t, d), (n, t)), out=(x, d)" in str(record)


def test_the_graph_draws_the_gather_and_its_scatter():
    from symbackprop.derivation import operations_of

    nodes = operations_of(symbackprop.derive(bundled("embedding"))).nodes
    gather = next(n for n in nodes if n.op == "gather through x")
    assert {a.name for a in gather.args} == {"W", "x"}


# -- blocks of an axis: an LSTM's gates ------------------------------------------------------------------
GATES = 'inputs = { a = ["N", "4*H"], c = ["N", "H"] }'


@pytest.mark.parametrize("body, graph, message", [
    (GATES, "y[n, h] = a[n, 4*H + h] * c[n, h]", r"a\[n, h \+ 4\*H\]: the block 4\*H:5\*H does not fit"),
    (GATES, "y[n, h] = a[n, H + h]", "cannot infer the range of index h"),
    (GATES, "y[n, h] = a[n, h] * c[n, h]", "index h ranges over 4\\*H in a\\[n, h\\] but over H in c\\[n, h\\]"),
])
def test_bad_blocks_are_one_line_errors_naming_the_field(body, graph, message):
    with pytest.raises(SpecError, match=message) as exc:
        spec_from_toml(declaration(body, graph), source="t.toml")
    assert "\n" not in str(exc.value) and str(exc.value).startswith("t.toml: graph.y: ")


def test_a_dimension_only_in_a_multiple_is_refused():
    with pytest.raises(SpecError, match=r"^t.toml: inputs.a: dimension H appears only in a multiple"):
        spec_from_toml(declaration('inputs = { a = ["N", "4*H"] }', "y[n, g] = a[n, g]"), source="t.toml")


def test_blocks_read_the_gates_of_the_declared_axis():
    spec = spec_from_toml(declaration(GATES, "y[n, h] = a[n, h] * a[n, 3*H + h] + c[n, h]"), source="t.toml")
    rng = np.random.default_rng(0)
    a, c = rng.standard_normal((2, 12)), rng.standard_normal((2, 3))
    sizes = {next(d for d in spec.dims if d.name == n): v for n, v in (("N", 2), ("H", 3))}
    got = _declared(spec, {spec.inputs[0]: a, spec.inputs[1]: c}, sizes)
    np.testing.assert_allclose(got, a[:, :3] * a[:, 9:] + c)


def test_the_lstm_step_derivation_matches_diff_at_explicit_sizes():
    """Both outputs at once: the objective is sum(dnext_h*next_h) + sum(dnext_c*next_c)."""
    derivation = symbackprop.derive(bundled("lstm_step"))
    for seed in range(3):
        verify_explicit(derivation, seed=seed)
    assert sorted(derivation.backward) == ["Wh", "Wx", "b", "prev_c", "prev_h", "x"]
    assert [s.name for s in derivation.spec.outputs] == ["next_h", "next_c"]


@pytest.mark.parametrize("outputs, message", [
    ('["next_h"]', "expected two or more names of graph values"),
    ('["next_h", "zz"]', "expected two or more names of graph values"),
    ('["next_h", "a"]', "outputs of different shapes are not supported yet"),
])
def test_bad_outputs_are_one_line_errors(outputs, message):
    declared = (Path(__file__).resolve().parents[1] / "derivations" / "lstm_step.toml").read_text()
    declared = re.sub(r"^outputs = .*$", f"outputs = {outputs}", declared, flags=re.M)
    with pytest.raises(SpecError, match=message) as exc:
        spec_from_toml(declared, source="t.toml")
    assert str(exc.value).startswith("t.toml: outputs: ") and "\n" not in str(exc.value)
