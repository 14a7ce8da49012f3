"""The torch-op backend (``torch.library.custom_op`` + ``register_autograd``): every bundled
declaration it supports, checked with torch's own tools (opcheck, gradcheck, gradgradcheck),
against torch autograd of the same forward composed from torch operations, by the project's
checks, and for what it saves (exactly the cache)."""

import numpy as np
import pytest

import symbackprop
from symbackprop.errors import GenerationError
from symbackprop.pipeline import check as check_spec
from tests.fixtures.declarations import bundled
from tests.fixtures.frameworks import SUPPORTED, kept_bytes, require, saved_bytes
from tests.fixtures.frameworks import problem as _problem

torch = require("torch")


def _module(name):
    return symbackprop.compile(bundled(name), backend="torch-op")


def _args(name, seed, dtype=np.float64, device="cpu"):
    """Inputs, parameters (requiring gradients) and constants as tensors; dout."""
    params, xs, constants, dout = _problem(name, seed, dtype)
    grad = [torch.tensor(a, device=device).requires_grad_(True) for a in (*xs, *params)]
    return [*grad, *(torch.tensor(c, device=device) for c in constants)], torch.tensor(dout, device=device)


def _composed(name, args):
    """The same forward composed from torch operations (the op's implementation run
    outside the op), differentiated by torch autograd itself."""
    return _module(name).function.__globals__["_forward"](*args)


def _output(result):
    return result[0] if isinstance(result, tuple) else result


@pytest.mark.parametrize("name", SUPPORTED)
def test_opcheck(name):
    """Schema, autograd registration, fake tensors and AOT dispatch, as torch.library checks them."""
    args, _ = _args(name, seed=1)
    torch.library.opcheck(_module(name).op, args)


@pytest.mark.parametrize("name", SUPPORTED)
def test_gradcheck_fast_and_slow(name):
    args, _ = _args(name, seed=2)
    for fast in (False, True):
        assert torch.autograd.gradcheck(_module(name).function, args, fast_mode=fast)


@pytest.mark.parametrize("name", SUPPORTED)
def test_gradgradcheck_the_registered_backward_is_differentiable(name):
    """Every op, those whose cache holds an intermediate (recomputed under create_graph) included."""
    args, _ = _args(name, seed=3)
    for fast in (False, True):
        assert torch.autograd.gradgradcheck(_module(name).function, args, fast_mode=fast)


@pytest.mark.parametrize("name", SUPPORTED)
def test_second_derivatives_agree_with_autograd_of_the_composed_forward(name):
    from tests.codegen.test_torch_backend import second_derivatives

    args, dout = _args(name, seed=8)
    got = second_derivatives(_module(name).function, args, dout, seed=8)
    want = second_derivatives(lambda *a: _output(_composed(name, a)), args, dout, seed=8)
    for g, w, a in zip(got, want, [*(a for a in args if a.requires_grad), dout]):
        g = torch.zeros_like(a) if g is None else g
        w = torch.zeros_like(a) if w is None else w
        torch.testing.assert_close(g, w, rtol=1e-9, atol=1e-11)


def test_a_double_backward_after_the_input_is_freed_says_which():
    args, dout = _args("batch_norm", seed=3)  # LayerNorm's op keeps x itself (torch_layer_norm.py)
    x = args[0].detach().clone().requires_grad_(True)
    h = x * 1.0
    out = _module("batch_norm").function(h, *args[1:])
    del h
    with pytest.raises(RuntimeError, match="from the argument 'x', which was freed or modified in place"):
        torch.autograd.grad(out, x, dout, create_graph=True)


@pytest.mark.parametrize("name", SUPPORTED)
@pytest.mark.parametrize("seed", [4, 5, 6])
def test_gradients_agree_with_autograd_of_the_composed_forward(name, seed):
    args, dout = _args(name, seed)
    wrt = [a for a in args if a.requires_grad]
    got = torch.autograd.grad(_module(name).function(*args), wrt, dout)
    want = torch.autograd.grad(_output(_composed(name, args)), wrt, dout)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", SUPPORTED)
def test_the_op_writes_into_no_argument_and_not_into_dout(name):
    args, dout = _args(name, seed=7)
    before = [a.detach().clone() for a in (*args, dout)]
    torch.autograd.grad(_module(name).function(*args), [a for a in args if a.requires_grad], dout)
    for was, now in zip(before, (*args, dout)):
        torch.testing.assert_close(now.detach(), was, rtol=0, atol=0)


@pytest.mark.parametrize("name", SUPPORTED)
def test_saved_tensors_are_exactly_the_cache(name):
    args, _ = _args(name, seed=4)
    assert saved_bytes(lambda: _module(name).function(*args)) == kept_bytes(name, seed=4)


@pytest.mark.parametrize("name", ["sigmoid", "relu", "softmax_with_loss", "layer_norm", "affine"])
def test_float32_in_float32_out_through_the_module(name):
    params, xs, constants, dout = _problem(name, seed=5, dtype=np.float32)
    module = _module(name)(*[torch.tensor(p) for p in params])
    inputs = [torch.tensor(x, requires_grad=True) for x in xs]
    out = module(*inputs, *(torch.tensor(c) for c in constants))
    out.backward(torch.tensor(dout))
    assert out.dtype == torch.float32
    assert all(t.grad.dtype == torch.float32 for t in (*inputs, *module.parameters()))


@pytest.mark.parametrize("name", SUPPORTED)
def test_nothing_assumes_the_cpu(name):
    args, dout = _args(name, seed=6, device="meta")
    wrt = [a for a in args if a.requires_grad]
    out = _module(name).function(*args)
    grads = torch.autograd.grad(out, wrt, dout)
    assert out.device.type == "meta" and all(g.device.type == "meta" for g in grads)


@pytest.mark.parametrize("name", ["sigmoid", "relu", "softmax_with_loss", "layer_norm"])
def test_the_projects_checks_pass_on_the_custom_op(name):
    report = check_spec(bundled(name), max_examples=5, backend="torch-op")
    assert report.ok, (report.problems, report.findings)


def test_integer_labels_give_the_loss_of_their_one_hot_rows():
    x = torch.randn(4, 3, dtype=torch.float64)
    labels = torch.tensor([0, 2, 1, 2])
    want = torch.nn.functional.cross_entropy(x, labels)
    torch.testing.assert_close(_module("softmax_with_loss").function(x, labels), want)


def test_the_same_source_registers_one_op():
    from symbackprop.codegen import _compile

    source = symbackprop.generate(bundled("sigmoid"), backend="torch-op")
    first, second = (_compile(source, "Sigmoid", "<test>") for _ in range(2))
    assert first is not second and first.op is second.op


def test_the_op_runs_under_torch_compile_without_a_graph_break():
    function = _module("swish").function
    x = torch.randn(5, 4, dtype=torch.float64)
    compiled = torch.compile(function, backend="eager", fullgraph=True)
    torch.testing.assert_close(compiled(x), function(x))


def test_refused_with_one_line():
    with pytest.raises(GenerationError, match="does not generate networks") as exc:
        symbackprop.generate(bundled("two_layer_net"), backend="torch-op")
    assert "\n" not in str(exc.value)


def test_generated_source_imports_torch_math_and_weakref_only():
    for name in SUPPORTED:
        source = symbackprop.generate(bundled(name), backend="torch-op")
        imports = [line for line in source.splitlines() if line.startswith(("import ", "from "))]
        held = ["import weakref"] if "def _arguments(" in source else []  # the inputs, for a double backward
        assert imports == ["import math", *held, "import torch"]


def test_the_command_line_generates_and_checks_the_custom_op(capsys):
    from symbackprop.cli import main

    assert main(["generate", "sigmoid", "--backend", "torch-op"]) == 0
    assert "torch.library.custom_op(NAME, _forward, mutates_args=())" in capsys.readouterr().out
    assert main(["check", "relu", "--backend", "torch-op", "--examples", "3"]) == 0
    assert "1 of 1 declarations checked OK" in capsys.readouterr().out
