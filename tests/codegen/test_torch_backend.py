"""The torch backend: every bundled declaration it supports, checked with torch's own tools
(gradcheck, gradgradcheck), against torch autograd of the same forward composed from torch
operations, by the project's checks, and for what its forward saves (exactly the cache)."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import symbackprop
from symbackprop.errors import GenerationError
from symbackprop.pipeline import check as check_spec
from symbackprop.spec import catalog
from tests.fixtures.declarations import bundled
from tests.fixtures.frameworks import REFUSED, SUPPORTED, kept_bytes, require, saved_bytes
from tests.fixtures.frameworks import problem as _problem

torch = require("torch")


def _module(name):
    return symbackprop.compile(bundled(name), backend="torch")


def _tensors(arrays, grad):
    return [torch.tensor(a, requires_grad=grad and a.dtype.kind == "f") for a in arrays]


def _op_inputs(name, seed):
    """The op's function and its arguments (inputs, parameters, constants) as float64 tensors."""
    params, xs, constants, dout = _problem(name, seed)
    args = [*_tensors(xs, True), *_tensors(params, True), *_tensors(constants, False)]
    return _module(name).function, args, torch.tensor(dout)


class _Ctx:
    """A stand-in for autograd's context: the generated forward run as plain torch operations."""

    def save_for_backward(self, *tensors):
        self.saved = tensors


def _composed(function, args):
    """The same forward composed from torch operations, differentiated by autograd itself."""
    return function.forward(_Ctx(), *args)


def _intermediate(name):
    """Whether the op caches an intermediate (recomputed for a double backward, see codegen/torch.py)."""
    return "def intermediates(" in symbackprop.generate(bundled(name), backend="torch")


@pytest.mark.parametrize("name", SUPPORTED)
def test_gradcheck_fast_and_slow(name):
    function, args, _ = _op_inputs(name, seed=1)
    for fast in (False, True):
        assert torch.autograd.gradcheck(function.apply, args, fast_mode=fast)


@pytest.mark.parametrize("name", SUPPORTED)
def test_gradgradcheck_fast_and_slow(name):
    """Every op is differentiable twice, those whose cache holds an intermediate included."""
    function, args, _ = _op_inputs(name, seed=2)
    for fast in (False, True):
        assert torch.autograd.gradgradcheck(function.apply, args, fast_mode=fast)


def second_derivatives(apply, args, dout, seed):
    """The derivatives of <grad, v> for a random v, with respect to every differentiable
    argument and dout: one row of the Hessian-vector products a double backward gives."""
    dout = dout.clone().requires_grad_(True)
    wrt = [a for a in args if a.requires_grad]
    grads = torch.autograd.grad(apply(*args), wrt, dout, create_graph=True)
    rng = np.random.default_rng(seed)
    vs = [torch.tensor(rng.standard_normal(tuple(g.shape))) for g in grads]
    total = sum((g * v).sum() for g, v in zip(grads, vs))
    return torch.autograd.grad(total, [*wrt, dout], allow_unused=True)


@pytest.mark.parametrize("name", SUPPORTED)
@pytest.mark.parametrize("seed", [8, 9])
def test_second_derivatives_agree_with_autograd_of_the_composed_forward(name, seed):
    function, args, dout = _op_inputs(name, seed)
    got = second_derivatives(function.apply, args, dout, seed)
    want = second_derivatives(lambda *a: _composed(function, a), args, dout, seed)
    for g, w, a in zip(got, want, [*(a for a in args if a.requires_grad), dout]):
        g = torch.zeros_like(a) if g is None else g  # unused: zero (a linear layer's second derivative)
        w = torch.zeros_like(a) if w is None else w
        torch.testing.assert_close(g, w, rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("name", [n for n in SUPPORTED if _intermediate(n)])
def test_the_common_backward_reads_the_saved_intermediates_and_saves_nothing_more(name, monkeypatch):
    """Without create_graph the intermediates are not recomputed (no cost), and the forward
    saves exactly the cache still (the arguments are held by weak reference only)."""
    function, args, dout = _op_inputs(name, seed=3)

    def refuse(*_):
        raise AssertionError("recomputed without create_graph")

    monkeypatch.setattr(function, "intermediates", staticmethod(refuse))
    torch.autograd.grad(function.apply(*args), [a for a in args if a.requires_grad], dout)
    assert saved_bytes(lambda: function.apply(*args)) == kept_bytes(name, seed=3)


@pytest.mark.parametrize("name", [n for n in SUPPORTED if _intermediate(n)])
def test_the_module_runs_under_inference_mode_and_no_grad(name):
    """Inference tensors have no version counter: the arguments held for a double backward
    must not ask for one."""
    params, xs, constants, _ = _problem(name, seed=10)
    module = _module(name)(*[torch.tensor(p) for p in params])
    want = module(*_tensors(xs, False), *_tensors(constants, False)).detach()
    for mode in (torch.inference_mode, torch.no_grad):
        with mode():
            got = module(*_tensors(xs, False), *_tensors(constants, False))
        torch.testing.assert_close(got, want, rtol=0, atol=0)


@pytest.mark.parametrize("name", ["batch_norm", "softmax_with_loss"])
def test_a_double_backward_after_the_argument_is_freed_or_changed_says_which(name):
    """Not a silently wrong second derivative: the argument the intermediates come from is named."""
    function, args, dout = _op_inputs(name, seed=3)
    x = args[0].detach().clone().requires_grad_(True)
    h = x * 1.0  # an intermediate of the caller's, freed once the op's forward has run
    out = function.apply(h, *args[1:])
    del h
    with pytest.raises(RuntimeError, match="from the argument 'x', which was freed or modified in place"):
        torch.autograd.grad(out, x, dout, create_graph=True)
    h = x * 1.0
    out = function.apply(h, *args[1:])
    with torch.no_grad():
        h.add_(1.0)
    with pytest.raises(RuntimeError, match="from the argument 'x', which was freed or modified in place"):
        torch.autograd.grad(out, x, dout, create_graph=True)


def test_layer_norm_keeps_its_input_so_a_freed_argument_still_has_its_double_backward():
    """LayerNorm's op keeps x itself (the torch kernels read it; codegen/torch_layer_norm.py):
    a caller's intermediate freed after the forward is kept alive by autograd, and the
    second derivative is the one with it alive; changed in place, torch's own check refuses."""
    function, args, dout = _op_inputs("layer_norm", seed=3)
    x = args[0].detach().clone().requires_grad_(True)
    want = torch.autograd.grad(function.apply(x * 1.0, *args[1:]), x, dout, create_graph=True)[0]
    h = x * 1.0
    out = function.apply(h, *args[1:])
    del h
    got = torch.autograd.grad(out, x, dout, create_graph=True)[0]
    torch.testing.assert_close(got, want, rtol=0, atol=0)
    assert torch.autograd.grad((got**2).sum(), x)[0].abs().sum() > 0  # a second derivative there is (a row of dx sums to 0)
    h = x * 1.0
    out = function.apply(h, *args[1:])
    with torch.no_grad():
        h.add_(1.0)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        torch.autograd.grad(out, x, dout, create_graph=True)


@pytest.mark.parametrize("name", SUPPORTED)
@settings(max_examples=5)
@given(seed=st.integers(0, 2**16))
def test_gradients_agree_with_autograd_of_the_composed_forward(name, seed):
    function, args, dout = _op_inputs(name, seed)
    wrt = [a for a in args if a.requires_grad]
    got = torch.autograd.grad(function.apply(*args), wrt, dout)
    want = torch.autograd.grad(_composed(function, args), wrt, dout)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", SUPPORTED)
def test_forward_and_backward_write_into_no_argument_and_no_kept_tensor(name):
    """The in-place operations of the generated code (``(1 + x - t*x).mul_(dout)``) touch
    only temporaries: the arguments, dout, the output and what was saved keep their values."""
    function, args, dout = _op_inputs(name, seed=7)
    before = [a.detach().clone() for a in (*args, dout)]
    out = function.apply(*args)
    kept = out.detach().clone()
    torch.autograd.grad(out, [a for a in args if a.requires_grad], dout)
    for was, now in zip(before, (*args, dout)):
        torch.testing.assert_close(now.detach(), was, rtol=0, atol=0)
    torch.testing.assert_close(out.detach(), kept, rtol=0, atol=0)


def test_sigmoid_saves_one_tensor_the_size_of_y():
    x = torch.randn(50, 20, dtype=torch.float64, requires_grad=True)
    saved = []
    sizes = saved_bytes(lambda: saved.append(_module("sigmoid").function.apply(x)))
    assert sizes == [saved[0].numel() * 8]


def test_relu_saves_a_boolean_mask_and_add_nothing():
    x, y = (torch.randn(50, 20, dtype=torch.float64, requires_grad=True) for _ in range(2))
    assert saved_bytes(lambda: _module("relu").function.apply(x)) == [50 * 20]
    assert saved_bytes(lambda: _module("add").function.apply(x, y)) == []


@pytest.mark.parametrize("name", SUPPORTED)
def test_saved_tensors_are_exactly_the_cache(name):
    """Bytes saved by the op: the cache as the numpy backend's class keeps it, plus the
    parameters its backward reads (held by the caller anyway)."""
    function, args, _ = _op_inputs(name, seed=4)
    assert saved_bytes(lambda: function.apply(*args)) == kept_bytes(name, seed=4)


@pytest.mark.parametrize("name", SUPPORTED)
def test_float32_in_float32_out(name):
    params, xs, constants, dout = _problem(name, seed=5, dtype=np.float32)
    module = _module(name)(*[torch.tensor(p) for p in params])
    inputs = _tensors(xs, True)
    out = module(*inputs, *_tensors(constants, False))
    out.backward(torch.tensor(dout))
    assert out.dtype == torch.float32
    assert all(t.grad.dtype == torch.float32 for t in (*inputs, *module.parameters()))


@pytest.mark.parametrize("name", SUPPORTED)
def test_nothing_assumes_the_cpu(name):
    """On the meta device (shapes and dtypes only), constants follow the input's device."""
    params, xs, constants, dout = _problem(name, seed=6)
    meta = [torch.tensor(a).to("meta") for a in (*xs, *params)]
    for t in meta:
        t.requires_grad_(True)
    out = _module(name).function.apply(*meta, *(torch.tensor(c).to("meta") for c in constants))
    grads = torch.autograd.grad(out, meta, torch.tensor(dout).to("meta"))
    assert out.device.type == "meta" and all(g.device.type == "meta" for g in grads)


@pytest.mark.parametrize("name", SUPPORTED)
def test_the_projects_checks_pass_on_the_torch_op(name):
    report = check_spec(bundled(name), max_examples=5, backend="torch")
    assert report.ok, (report.problems, report.findings)


def test_integer_labels_give_the_loss_of_their_one_hot_rows():
    x = torch.randn(4, 3, dtype=torch.float64)
    labels = torch.tensor([0, 2, 1, 2])
    function = _module("softmax_with_loss").function
    want = torch.nn.functional.cross_entropy(x, labels)
    torch.testing.assert_close(function.apply(x, labels), want)


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_refused_with_one_line(name):
    with pytest.raises(GenerationError, match=f"does not generate {REFUSED[name]}") as exc:
        symbackprop.generate(bundled(name), backend="torch")
    assert "\n" not in str(exc.value)


def test_generated_source_imports_torch_math_and_weakref_only():
    for name in SUPPORTED:
        source = symbackprop.generate(bundled(name), backend="torch")
        imports = [line for line in source.splitlines() if line.startswith(("import ", "from "))]
        held = ["import weakref"] if _intermediate(name) else []  # the arguments, for a double backward
        assert imports == ["import math", *held, "import torch"]


def test_a_hostile_source_path_stays_inside_the_docstring(tmp_path):
    path = tmp_path / 'evil"""\nimport os.toml'
    path.write_text(catalog.resolve("sigmoid").read_text())
    source = symbackprop.load_spec(path).generate(backend="torch")
    compile(source, "<generated>", "exec")
    assert "\nimport os" not in source


def test_the_torch_spellings_name_real_torch_functions():
    from symbackprop.codegen.torch import TORCH_SPELLING
    from symbackprop.lang.functions import NODES

    for row in NODES:
        if row.numpy is None:
            continue
        spelled = TORCH_SPELLING.get(row.numpy, row.numpy)
        if spelled is not None:
            module, _, attr = f"torch.{spelled}".rpartition(".")
            assert hasattr(eval(module, {"torch": torch}), attr), row.name  # noqa: S307 - our own constant text


def test_every_function_of_the_table_runs_in_torch_or_is_refused_by_name():
    """Each function's layer as a torch op against SymPy's own derivative at the same points;
    a function torch lacks is refused with its name."""
    import sympy

    from tests.lang.test_function_table import FUNCTIONS, declaration, inputs_at, sympy_values

    refused = []
    for name in FUNCTIONS:
        spec, expr, points = declaration(name)
        try:
            function = symbackprop.compile(spec, backend="torch").function
        except GenerationError as exc:
            assert "torch has no function" in str(exc), (name, exc)
            refused.append(name)
            continue
        xs = inputs_at(spec, points)
        dout = np.array([0.7, -1.3, 2.1])
        inputs = [torch.tensor(x, requires_grad=True) for x in xs]
        out = function.apply(*inputs)
        np.testing.assert_allclose(out.detach().numpy(), sympy_values(expr, spec, xs), rtol=1e-12, atol=1e-300)
        grads = torch.autograd.grad(out, inputs, torch.tensor(dout))
        for got, s in zip(grads, spec.inputs):
            want = dout * sympy_values(sympy.diff(expr, s), spec, xs)
            np.testing.assert_allclose(got.numpy(), want, rtol=1e-9, atol=1e-12)
    assert set(refused) <= {"cbrt", "gamma", "heaviside", "polygamma", "digamma"}, refused  # digamma: its derivative


def test_the_command_line_generates_and_checks_the_torch_op(capsys):
    from symbackprop.cli import main

    assert main(["generate", "sigmoid", "--backend", "torch"]) == 0
    assert "class SigmoidFunction(torch.autograd.Function):" in capsys.readouterr().out
    assert main(["check", "relu", "--backend", "torch", "--examples", "3"]) == 0
    assert "1 of 1 declarations checked OK" in capsys.readouterr().out


def test_array_layers_pass_over_their_large_arrays_fewer_times():
    """(N, 1) factors out of LayerNorm's sums (its derived statements, run under
    ``create_graph=True``: torch's kernels otherwise), smaller factors multiplied first, a
    product added in one pass (``torch.addcmul``); the values are checked by the tests above."""
    layer_norm = symbackprop.generate(bundled("layer_norm"), backend="torch")
    assert "torch.sum(dxn*xn, dim=1, keepdim=True)" in layer_norm
    assert "xn*((dvar*std)*(2/D))" in layer_norm
    batch_norm = symbackprop.generate(bundled("batch_norm"), backend="torch")
    assert "out = torch.addcmul(beta, xn, gamma)" in batch_norm
    assert "torch.sum(dxn*xn, dim=0)" in batch_norm


@pytest.mark.parametrize("keepdims", [True, False])
@pytest.mark.parametrize("axis", [0, 1])
def test_a_factor_leaves_a_sum_only_where_it_is_constant_along_it_and_keeps_its_place(axis, keepdims):
    """Each of a scalar, an (N, 1), a (1, D)-like (D,) and an (N, D) factor of a sum, printed
    with the shapes and evaluated, equals the sum computed without the rewrite."""
    import sympy

    from symbackprop import ops
    from symbackprop.codegen.torch import TorchPrinter

    n, d = sympy.symbols("N D", positive=True, integer=True)
    c, s, r, a, b = (ops.ArrayVar(name, real=True) for name in "csrab")
    shapes = {"N": (), "D": (), "c": (), "s": (n, 1), "r": (d,), "a": (n, d), "b": (n, d)}
    printer = TorchPrinter(shapes=shapes)
    rng = np.random.default_rng(axis)
    values = {"c": torch.tensor(1.7, dtype=torch.float64), "s": torch.tensor(rng.standard_normal((3, 1))),
              "r": torch.tensor(rng.standard_normal(4)), "a": torch.tensor(rng.standard_normal((3, 4))),
              "b": torch.tensor(rng.standard_normal((3, 4))), "N": 3, "D": 4}
    expr = ops.ReduceSum(c * s * r * a * b, sympy.Tuple(axis), keepdims)
    text = printer.doprint(expr)
    got = eval(compile(text, "<printed>", "eval"), {"torch": torch}, values)  # noqa: S307 - our own printed text
    want = torch.sum(values["c"] * values["s"] * values["r"] * values["a"] * values["b"], dim=axis, keepdim=keepdims)
    torch.testing.assert_close(got, want, rtol=1e-14, atol=1e-14)
    assert text.count("torch.sum(") == 1


def test_swish_runs_torchs_silu_kernels_and_its_formula_under_create_graph():
    """u*sigmoid(u) as F.silu, its derived backward as silu_backward (proved equal by
    cancelling); that kernel has no derivative, so a double backward takes the formula
    (the gradgradcheck above passes on swish)."""
    source = symbackprop.generate(bundled("swish"), backend="torch")
    assert "y = torch.nn.functional.silu(x)" in source
    assert "torch.ops.aten.silu_backward(dout, x) if not torch.is_grad_enabled() else" in source
    assert "t = torch.sigmoid(x)" not in source  # the recomputed logistic is read no more


def test_gelu_runs_torchs_gelu_kernels():
    """GELU's tanh form (its constants exactly sqrt(2/pi) and 0.044715) as
    F.gelu(approximate="tanh"), its derived backward as gelu_backward (differentiable twice:
    the gradgradcheck above passes on gelu); the recomputed t3 is read no more."""
    source = symbackprop.generate(bundled("gelu"), backend="torch")
    assert 'y = torch.nn.functional.gelu(x, approximate="tanh")' in source
    assert 'dx = torch.ops.aten.gelu_backward(dout, x, approximate="tanh")' in source
    assert "        t3 = " not in source  # (the docstring still shows the derivation's t3)


def test_a_formula_near_a_kernels_is_not_taken_for_it():
    """GELU with another constant (0.0447) keeps its derived statements."""
    import sympy

    x = sympy.Symbol("x", real=True)
    spec = symbackprop.layer(0.5 * x * (1 + sympy.tanh(sympy.sqrt(2 / sympy.pi) * (x + sympy.Rational(447, 10**4) * x**3))),
                             name="NearGelu")
    source = spec.generate(backend="torch")
    assert "functional.gelu" not in source and "gelu_backward" not in source


def test_mish_runs_its_one_exp_kernels_and_its_formula_under_create_graph():
    """x*tanh(softplus(x)) as the module's mish_forward, its derived backward as mish_backward
    (proved equal by cancelling); that kernel has no derivative, so a double backward takes
    the formula (the gradgradcheck above passes on mish). Both branches against torch's
    F.mish autograd."""
    source = symbackprop.generate(bundled("mish"), backend="torch")
    assert "y = mish_forward(x)" in source and "def mish_forward(x):" in source
    assert "(mish_backward(dout, x) if not torch.is_grad_enabled() else" in source
    function = _module("mish").function
    x = torch.linspace(-30, 30, 601, dtype=torch.float64, requires_grad=True)
    g = torch.randn(601, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    (want,) = torch.autograd.grad(torch.nn.functional.mish(x), x, g, create_graph=True)
    (fast,) = torch.autograd.grad(function.apply(x), x, g)
    (formula,) = torch.autograd.grad(function.apply(x), x, g, create_graph=True)
    torch.testing.assert_close(fast, want.detach(), rtol=1e-13, atol=1e-13)
    torch.testing.assert_close(formula, want, rtol=1e-13, atol=1e-13)
    (want2,) = torch.autograd.grad(want.sum(), x)
    (got2,) = torch.autograd.grad(formula.sum(), x)
    torch.testing.assert_close(got2, want2, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_mishs_one_exp_kernels_match_mpmath_from_tail_to_tail(dtype):
    """The module's mish_forward and mish_backward (one exp, x clamped at 40) against
    mpmath's x*tanh(log1p(exp(x))) and its derivative at 50 digits, from -745 to 1e30:
    within a few units in the last place of max(1, |value|), no worse than torch's own
    kernels, and finite wherever the value is; ±inf and nan as torch's or better (the
    derivative is 1 at +inf, where torch's kernel gives nan)."""
    import mpmath

    F = torch.nn.functional
    namespace = _module("mish").function.forward.__globals__  # the generated module's
    forward, backward = namespace["mish_forward"], namespace["mish_backward"]
    dt = getattr(torch, dtype)
    x = torch.cat([torch.linspace(-60, 60, 2401, dtype=dt),
                   torch.tensor([-745, -100, -88, -1.1924, -1e-30, 0, 1e-30, 39.9, 40, 40.1, 88, 700, 1e30], dtype=dt)])
    with mpmath.workdps(50):
        def exact(v):
            v = mpmath.mpf(float(v))
            t = mpmath.tanh(mpmath.log1p(mpmath.exp(v)))
            return [float(v * t), float(t + v / (1 + mpmath.exp(-v)) * (1 - t**2))]

        want = torch.tensor([exact(v) for v in x], dtype=torch.float64).T
    eps = torch.finfo(dt).eps
    one = torch.ones_like(x)
    for got, torchs, ref in [(forward(x), F.mish(x), want[0]), (backward(one, x), torch.ops.aten.mish_backward(one, x), want[1])]:
        assert got.dtype == dt and torch.isfinite(got).all()
        err = ((got.double() - ref).abs() / ref.abs().clamp(min=1)).max().item()
        torch_err = ((torchs.double() - ref).abs() / ref.abs().clamp(min=1)).max().item()
        assert err <= 4 * eps and err <= max(torch_err, eps), (err, torch_err)
    special = torch.tensor([float("inf"), float("-inf"), float("nan")], dtype=dt)
    assert forward(special)[0] == float("inf") and torch.isnan(forward(special)[1:]).all()  # as F.mish
    assert backward(torch.ones(3, dtype=dt), special)[0] == 1 and torch.isnan(backward(torch.ones(3, dtype=dt), special)[1:]).all()
    half = x.bfloat16()  # another dtype: torch's kernels themselves
    assert torch.equal(forward(half), F.mish(half)) and torch.equal(backward(one.bfloat16(), half), torch.ops.aten.mish_backward(one.bfloat16(), half))
    recorded = forward(x.clone().requires_grad_())  # where autograd records: F.mish, with its graph
    assert recorded.grad_fn is not None and torch.equal(recorded.detach(), F.mish(x))


def test_relus_mask_is_its_outputs_nonzeros_and_its_gradient_torchs():
    """The mask x > 0 is computed as y.bool() from y = max(x, 0) (a cast, not a comparison),
    still one byte an element; its gradient equals torch.relu's autograd, at exact zeros
    (0 there, the book's convention and torch's) and at nan (passed through, as torch's)."""
    source = symbackprop.generate(bundled("relu"), backend="torch")
    forward = source.split("def forward(ctx")[1].partition("def backward(")[0]
    assert "mask = y.bool()" in forward and "x > 0" not in forward
    function = _module("relu").function
    x = torch.tensor([-2.0, -0.0, 0.0, 1e-300, 3.0, float("nan"), -float("inf"), float("inf")],
                     dtype=torch.float64, requires_grad=True)
    g = torch.arange(1.0, 9.0, dtype=torch.float64)
    (want,) = torch.autograd.grad(torch.relu(x), x, g)
    (got,) = torch.autograd.grad(function.apply(x), x, g)
    torch.testing.assert_close(got, want, equal_nan=True)
    assert saved_bytes(lambda: function.apply(x)) == [x.numel()]


def test_softmax_with_losss_forward_continues_in_place_but_not_where_autograd_records():
    """e = y - t is y.sub_(t) in the forward (y, softmax's fresh output, is read by nothing
    else), and y - t in the intermediates a double backward records (softmax keeps y for its
    own backward, which an in-place change would break): second derivatives against
    autograd of F.cross_entropy."""
    source = symbackprop.generate(bundled("softmax_with_loss"), backend="torch")
    forward, _, rest = source.split("def forward(ctx")[1].partition("def backward(")
    assert "e = y.sub_(t)" in forward and "y = torch.softmax(x, dim=1)" in forward
    assert "e = y - t" in rest.split("def intermediates(")[1]
    function = _module("softmax_with_loss").function
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(6, 4, dtype=torch.float64, generator=gen, requires_grad=True)
    t = torch.softmax(torch.randn(6, 4, dtype=torch.float64, generator=gen), dim=1)
    v = torch.randn(6, 4, dtype=torch.float64, generator=gen)
    hvp = []
    for loss in (function.apply(x, t), torch.nn.functional.cross_entropy(x, t)):
        (dx,) = torch.autograd.grad(loss, x, create_graph=True)
        hvp.append(torch.autograd.grad((dx * v).sum(), x)[0])
    torch.testing.assert_close(hvp[0], hvp[1], rtol=1e-12, atol=1e-14)
