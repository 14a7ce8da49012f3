"""torch's own kernels in the generated torch code, matched by proof (codegen/torch.py,
codegen/torch_layer_norm.py): which statements become which kernel, and that the ops stay
exactly right where the bundled catalog does not reach (normalizations without a bias or
without parameters, another epsilon): gradcheck, gradgradcheck, opcheck."""
import pytest

import symbackprop
from tests.fixtures.frameworks import require

torch = require("torch")

HEAD = '''inputs = { x = ["N", "D"] }
[graph]
mu = "mean(x, axis=1, keepdims=True)"
xc = "x - mu"
var = "mean(xc**2, axis=1, keepdims=True)"
'''
#: Normalizations over the last axis: (parameters, the rest of the graph, the kernels expected).
VARIANTS = {
    "scale_only": ('params = { gamma = ["D"] }\n', 'std = "sqrt(var + 1e-3)"\nxn = "xc / std"\nout = "gamma * xn"\n',
                   ["native_layer_norm(x, x.shape[-1:], None, None, 0.001)", "native_layer_norm_backward(dout, xn"]),
    "no_parameters": ("", 'std = "sqrt(var + 1e-5)"\nout = "xc / std"\n', ["native_layer_norm(x, x.shape[-1:], None"]),
    "affine": ('params = { gamma = ["D"], beta = ["D"] }\n', 'std = "sqrt(var + 1e-5)"\nxn = "xc / std"\nout = "gamma * xn + beta"\n',
               ["native_layer_norm(x, x.shape[-1:], gamma, beta, 1e-05)", "native_layer_norm_backward(dout, x, "]),
}


def _declaration(tmp_path, name):
    params, rest, _ = VARIANTS[name]
    path = tmp_path / f"{name}.toml"
    head = HEAD.replace("[graph]", params + "[graph]") if params else HEAD
    path.write_text(f'name = "{name}"\ndescription = "a normalization"\n' + head + rest)
    return symbackprop.load(str(path))


def _args(declaration):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(4, 5, dtype=torch.float64, generator=gen).requires_grad_()
    params = [(1 + 0.1 * torch.randn(5, dtype=torch.float64, generator=gen)).requires_grad_()
              for _ in declaration.params]
    return [x, *params]


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_normalizations_use_torch_kernels_and_stay_exact(tmp_path, name):
    declaration = _declaration(tmp_path, name)
    source = symbackprop.generate(declaration, backend="torch")
    for kernel in VARIANTS[name][2]:
        assert kernel in source
    args = _args(declaration)
    function = symbackprop.compile(declaration, backend="torch").function
    assert torch.autograd.gradcheck(function.apply, args)
    assert torch.autograd.gradgradcheck(function.apply, args)
    op = symbackprop.compile(declaration, backend="torch-op")
    torch.library.opcheck(op.op, args)
    assert torch.autograd.gradgradcheck(op.function, args)


def test_a_normalization_over_another_axis_is_not_layer_norm(tmp_path):
    """Batch normalization (means over the rows) is no layer norm: no kernel, the derived statements."""
    source = symbackprop.generate(symbackprop.load("batch_norm"), backend="torch")
    assert "native_layer_norm" not in source


def test_kernels_of_the_elementwise_layers():
    softplus = symbackprop.generate(symbackprop.load("softplus"), backend="torch")
    assert "softplus_backward(dout, x, 1, 40.0)" in softplus and "ctx.save_for_backward(x)" in softplus
    relu = symbackprop.generate(symbackprop.load("relu"), backend="torch")
    assert "threshold_backward(dout, mask.view(torch.uint8), 0)" in relu and "ctx.save_for_backward(mask)" in relu
    sigmoid = symbackprop.generate(symbackprop.load("sigmoid"), backend="torch")
    assert "ctx.save_for_backward(y)" in sigmoid  # no kernel from x: the derivation's cache stays
