"""The checker on index-notation layers: ``check`` of the bundled convolution and pooling, and
``verify-layer`` of hand-written classes against them (the book's im2col classes, planted bugs)."""
import importlib.util
import json
from pathlib import Path

import pytest

import symbackprop
from symbackprop.checker import verify_layer
from symbackprop.cli import main
from tests.fixtures.declarations import bundled

ROOT = Path(__file__).resolve().parents[2]
INDEXED = ["convolution", "max_pooling", "avg_pooling", "temporal_affine", "attention", "embedding", "lstm_step"]


def _example(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "examples" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


book = _example("book_layers")


@pytest.mark.parametrize("name", INDEXED)
def test_check_passes(name):
    report = symbackprop.check(bundled(name), max_examples=10)
    assert report.ok, (report.problems, report.findings)
    assert report.backward_max_rel_error < 1e-8


def test_check_runs_the_index_notation_catalog_from_the_command_line(capsys):
    assert main(["check", *INDEXED, "--json"]) == 0
    results = json.loads(capsys.readouterr().out)["results"]
    assert [r["ok"] for r in results] == [True] * len(INDEXED)


def test_the_books_convolution_verifies():
    report = verify_layer(book.Convolution, "convolution")
    assert report.ok, [f.message for f in report.findings]


def test_the_books_pooling_breaks_with_padding():
    # its forward computes out_h = 1 + (H - pool_h)/stride without the padding im2col adds
    report = verify_layer(book.Pooling, "max_pooling")
    assert [f.kind for f in report.findings] == ["exception"]
    assert "reshape" in report.findings[0].message


class FlippedKernel(book.Convolution):
    """A true convolution (the kernel flipped) where the declaration is a cross-correlation."""

    def forward(self, x):
        self.W = self.W[:, :, ::-1, ::-1]
        try:
            return super().forward(x)
        finally:
            self.W = self.W[:, :, ::-1, ::-1]

    def backward(self, dout):
        dx = super().backward(dout)
        self.dW = self.dW[:, :, ::-1, ::-1]
        return dx


def _generated(name: str, replace: tuple[str, str]) -> type:
    """The generated class with one planted slip in its source."""
    source = bundled(name).generate()
    assert replace[0] in source
    namespace: dict = {}
    exec(compile(source.replace(replace[0], replace[1], 1), f"<planted {name}>", "exec"), namespace)
    return namespace[symbackprop.codegen.scaffold.class_name(bundled(name).name)]


def test_a_flipped_kernel_is_wrong_math():
    report = verify_layer(FlippedKernel, "convolution")
    kinds = {(f.kind, f.input) for f in report.findings}
    assert ("wrong-math", None) in kinds or ("wrong-math", "x") in kinds


def test_a_stride_ignored_in_backward_is_wrong_math_of_dx():
    planted = _generated("convolution", ("dx = _unwindows(", "dx = _unwindows_stride_one("))
    cls = type("StrideIgnored", (planted,), {})
    module_globals = planted.backward.__globals__

    def stride_one(cols, shape, axes, size, stride, pad):
        return module_globals["_unwindows"](cols, shape, axes, size, (1,) * len(stride), pad)

    module_globals["_unwindows_stride_one"] = stride_one
    report = verify_layer(cls, "convolution")
    assert {(f.kind, f.input) for f in report.findings} >= {("wrong-math", "x")}
    assert all(f.input == "x" for f in report.findings)


def test_a_missing_padding_offset_is_found():
    planted = _generated("convolution", ("dx = _unwindows(", "dx = _unwindows_no_pad("))
    module_globals = planted.backward.__globals__

    def no_pad(cols, shape, axes, size, stride, pad):  # the padding's offset forgotten in backward
        full = module_globals["_unwindows"](cols, tuple(n + 2 * p for n, p in zip(shape, (0, 0, *pad))), axes,
                                            size, stride, (0,) * len(pad))
        return full[tuple(slice(0, n) for n in shape)]

    module_globals["_unwindows_no_pad"] = no_pad
    report = verify_layer(planted, "convolution")
    assert ("wrong-math", "x") in {(f.kind, f.input) for f in report.findings}


def test_max_pooling_spread_evenly_is_wrong_math():
    # the average pooling's backward under max pooling's forward
    avg = bundled("avg_pooling").compile()
    mx = bundled("max_pooling").compile()

    class Spread(mx):
        def backward(self, dout):
            inner = avg(self.pool_h, self.pool_w, self.stride, self.pad)
            inner.forward(self.x)
            return inner.backward(dout)

    report = verify_layer(Spread, "max_pooling")
    assert ("wrong-math", "x") in {(f.kind, f.input) for f in report.findings}


def test_the_generated_classes_verify_ok():
    """(Their time, under the 2 s budget, is measured by benchmarks/verify.py, not asserted here.)"""
    for name in INDEXED:
        report = verify_layer(bundled(name).compile(), name)
        assert report.ok, (name, [f.to_json() for f in report.findings])


def test_derive_prints_statements(capsys):
    assert main(["derive", "convolution"]) == 0
    out = capsys.readouterr().out
    assert "  forward   y[n, f, i, j] = b[f] + sum(x[n, c, i*stride + k - pad, j*stride + l - pad]*W[f, c, k, l], " \
           "(c, k, l))" in out
    assert "  backward  dx[n, c, i*stride + k - pad, j*stride + l - pad] += sum(dout[n, f, i, j]*W[f, c, k, l], " \
           "(f,))" in out
    assert "  backward  db[f] = sum(dout[n, f, i, j], (n, i, j))" in out
    assert main(["derive", "max_pooling"]) == 0
    assert "first_max(x[n, c, i*stride + k - pad, j*stride + l - pad], dout[n, c, i, j], k=pool_h, l=pool_w)" \
        in capsys.readouterr().out


def test_a_bad_statement_exits_2_with_one_line(tmp_path, capsys):
    path = tmp_path / "bad.toml"
    path.write_text('name = "Bad"\ninputs = { x = ["N", "C", "H", "L"] }\nparams = { W = ["F", "D", "K", "K"] }\n'
                    '[graph]\ny = "y[n, f, i, j] = sum(x[n, c, i + k, j + l] * W[f, c, k, l], (c, k, l))"\n')
    assert main(["derive", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{path}: graph.y: index c ranges over" in err


def test_derive_json_spells_atoms_that_parse_back_and_gives_the_statements(capsys):
    from symbackprop.lang.parser import parse_expression

    assert main(["derive", "convolution", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["statements"]["dW"] == ("dW[f, c, k, l] = sum(dout[n, f, i, j]*x[n, c, i*stride + k - pad, "
                                        "j*stride + l - pad], (n, i, j))")
    spec = bundled("convolution")
    names = {s.name: s for s in (*spec.inputs, *spec.params, *spec.dims, *spec.hyper)}
    names["dout"] = symbackprop.derive(spec).dout
    back = parse_expression(data["backward"]["x"], symbols=names, allowed_names=set(names), arrays=True)
    assert back == symbackprop.derive(spec).backward["x"]


COMPOSED = """
name = "ConvReluPool"
inputs = { x = ["N", "C", "IH", "IW"] }
params = { W = ["FN", "C", "FH", "FW"], b = ["FN"] }
hyper = { stride = 1, pad = 0 }

[graph]
a = "a[n, f, i, j] = sum(x[n, c, i*stride + k - pad, j*stride + l - pad] * W[f, c, k, l], (c, k, l)) + b[f]"
z = "relu(a)"
y = "y[n, f, i, j] = max(z[n, f, 2*i + k, 2*j + l], k=2, l=2)"
"""


def test_statements_compose_with_elementwise_nodes():
    # the first block of the book's SimpleConvNet: conv - relu - pool, node by node
    from symbackprop.spec.toml import spec_from_toml

    spec = symbackprop.pipeline.as_layer(spec_from_toml(COMPOSED, source="conv_relu_pool.toml"))
    derivation = spec.derive()
    assert derivation.cache_names == ["x", "z", "mask"]
    report = spec.check(max_examples=6)
    assert report.ok, (report.problems, report.findings)


def test_a_tiling_declaration_is_checked_at_sizes_that_tile():
    from symbackprop.spec.toml import spec_from_toml

    text = ('name = "TiledPool"\ninputs = { x = ["N", "C", "IH", "IW"] }\nhyper = { stride = 2 }\ntile = true\n'
            '[graph]\ny = "y[n, c, i, j] = max(x[n, c, i*stride + k, j*stride + l], k=2, l=2)"\n')
    report = symbackprop.check(spec_from_toml(text, source="tiled.toml"), max_examples=6)
    assert report.ok, (report.problems, report.findings)


naive = _example("naive_layers")


@pytest.mark.parametrize("cls, name", [("NaiveConvolution", "convolution"), ("NaiveMaxPooling", "max_pooling")])
def test_correct_naive_loops_verify(cls, name):
    """(Run at small sizes; their time, under the 2 s budget, is measured by benchmarks/verify.py.)"""
    report = verify_layer(getattr(naive, cls), name)
    assert report.ok, [f.message for f in report.findings]


def _planted_naive(cls: str, old: str, new: str) -> type:
    source = (ROOT / "examples" / "naive_layers.py").read_text()
    assert old in source
    namespace: dict = {}  # the first occurrence: NaiveConvolution comes first in the file
    exec(compile(source.replace(old, new, 1), f"<planted {cls}>", "exec"), namespace)
    return namespace[cls]


@pytest.mark.parametrize("cls, name, old, new, kind, target", [
    # the padding's offset forgotten when cropping dx: seen at pad = 1 only
    ("NaiveConvolution", "convolution", "return dxp[:, :, p:p + H, p:p + W]", "return dxp[:, :, :H, :W]",
     "wrong-math", "x"),
    # the stride ignored in backward: windows written where stride 1 would put them
    ("NaiveConvolution", "convolution", "dxp[n, :, i * s:i * s + HH, j * s:j * s + WW] += g * self.W[f]",
     "dxp[n, :, i:i + HH, j:j + WW] += g * self.W[f]", "wrong-math", "x"),
    # dout overwritten once routed: the caller's array changes
    ("NaiveMaxPooling", "max_pooling", "dxp[n, c, i * s + k, j * s + l] += dout[n, c, i, j]",
     "dxp[n, c, i * s + k, j * s + l] += dout[n, c, i, j]; dout[n, c, i, j] = 0", "side-effect", None),
])
def test_planted_slips_in_naive_loops_are_found(cls, name, old, new, kind, target):
    report = verify_layer(_planted_naive(cls, old, new), name)
    assert (kind, target) in {(f.kind, f.input) for f in report.findings}, [f.message for f in report.findings]


def test_the_testing_helpers_draw_cases_that_fit():
    from hypothesis import given, settings

    from symbackprop.testing import assert_layer_matches, cases_for

    assert_layer_matches(book.Convolution, "convolution")

    @settings(max_examples=10)
    @given(case=cases_for("max_pooling"))
    def run(case):
        (x,), dout = case
        layer = bundled("max_pooling").compile()()
        assert layer.forward(x).shape == dout.shape
        assert layer.backward(dout).shape == x.shape

    run()


def test_course_style_function_pairs_get_the_hyperparameters_as_a_dict(capsys):
    target = str(ROOT / "examples" / "naive_layers.py")
    assert main(["verify-layer", f"{target}:conv_forward_naive,conv_backward_naive", "--against", "convolution"]) == 0
    assert main(["verify-layer", f"{target}:max_pool_forward_naive,max_pool_backward_naive",
                 "--against", "max_pooling"]) == 0
    assert capsys.readouterr().out.count(": OK") == 2


def test_the_course_embedding_pair_verifies_and_its_fancy_index_slip_is_wrong_math(capsys):
    target = str(ROOT / "examples" / "course_layers.py")
    assert main(["verify-layer", f"{target}:word_embedding_forward,word_embedding_backward",
                 "--against", "embedding", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["findings"] == []
    assert main(["verify-layer", f"{target}:word_embedding_forward,word_embedding_backward_slip",
                 "--against", "embedding", "--json"]) == 1
    findings = json.loads(capsys.readouterr().out)["findings"]
    assert {(f["kind"], f["input"]) for f in findings} == {("wrong-math", "W")}


def test_a_generated_embedding_with_the_fancy_index_slip_is_wrong_math():
    cls = _generated("embedding", ("np.add.at(out, (slice(None),) * axis + (where,), values)",
                                   "out[(slice(None),) * axis + (where,)] += values"))
    findings = verify_layer(cls, bundled("embedding")).findings
    assert findings and {(f.kind, f.input) for f in findings} == {("wrong-math", "W")}


def test_the_course_lstm_step_pair_verifies_and_a_gate_order_swapped_is_wrong_math(capsys):
    target = str(ROOT / "examples" / "course_layers.py")
    assert main(["verify-layer", f"{target}:lstm_step_forward,lstm_step_backward", "--against", "lstm_step",
                 "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["findings"] == []
    assert main(["verify-layer", f"{target}:lstm_step_forward_slip,lstm_step_backward", "--against", "lstm_step",
                 "--json"]) == 1
    findings = json.loads(capsys.readouterr().out)["findings"]
    assert {f["kind"] for f in findings} == {"wrong-math"}
    assert {f["input"] for f in findings} >= {None, "Wx", "Wh", "b", "x", "prev_h", "prev_c"}


def test_a_generated_lstm_step_with_its_gates_swapped_is_wrong_math():
    cls = _generated("lstm_step", ("next_h = (s[:, H*2:H*3])*np.tanh(next_c)",
                                   "next_h = np.tanh((a[:, H*3:H*4]))*np.tanh(next_c)"))  # g read as o
    findings = verify_layer(cls, bundled("lstm_step")).findings
    assert findings and all(f.kind == "wrong-math" for f in findings)


def test_a_pair_returning_one_output_of_two_is_a_finding():
    def forward(x, prev_h, prev_c, Wx, Wh, b):
        out = _example("course_layers").lstm_step_forward(x, prev_h, prev_c, Wx, Wh, b)
        return out[0], out[2]

    from symbackprop.checker.pairs import function_pair

    cls = function_pair(forward, _example("course_layers").lstm_step_backward, bundled("lstm_step"))
    findings = verify_layer(cls, bundled("lstm_step")).findings
    assert findings and "expected (next_h, next_c, cache)" in findings[0].message
