"""Layers of several outputs (``outputs = [...]``) in matrix syntax: generated code returns the
tuple and takes one upstream gradient per output, compared with central differences of the
declared forward written out in numpy here; other backends refuse in one line."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import symbackprop
from symbackprop.checker import verify_layer
from symbackprop.cli import main
from symbackprop.errors import GenerationError
from symbackprop.spec.toml import spec_from_toml

TWO = """
name = "Two"
inputs = { x = ["N", "D"] }
params = { W = ["D", "M"] }
outputs = ["u", "v"]
[graph]
u = "tanh(x @ W)"
v = "exp(u) * u"
"""


def _objective(x, W, du, dv):
    u = np.tanh(x @ W)
    return np.sum(du * u) + np.sum(dv * np.exp(u) * u)


def _central(f, a, h=1e-6):
    out = np.zeros_like(a)
    for idx in np.ndindex(a.shape):
        e = np.zeros_like(a)
        e[idx] = h
        out[idx] = (f(a + e) - f(a - e)) / (2 * h)
    return out


@settings(max_examples=15, deadline=None)
@given(n=st.integers(1, 4), d=st.integers(1, 4), m=st.integers(1, 4), seed=st.integers(0, 2**16))
def test_two_outputs_match_central_differences(n, d, m, seed):
    rng = np.random.default_rng(seed)
    x, W = rng.standard_normal((n, d)), rng.standard_normal((d, m))
    du, dv = rng.standard_normal((n, m)), rng.standard_normal((n, m))
    layer = symbackprop.compile(spec_from_toml(TWO, source="two.toml"))(W.copy())
    u, v = layer.forward(x.copy())
    np.testing.assert_allclose(v, np.exp(np.tanh(x @ W)) * np.tanh(x @ W), rtol=1e-13)
    dx = layer.backward(du.copy(), dv.copy())
    np.testing.assert_allclose(dx, _central(lambda a: _objective(a, W, du, dv), x), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(layer.dW, _central(lambda a: _objective(x, a, du, dv), W), rtol=1e-6, atol=1e-8)


def test_two_outputs_check_and_generate_a_tuple():
    spec = spec_from_toml(TWO, source="two.toml")
    report = symbackprop.check(spec)
    assert report.ok, (report.problems, report.findings)
    source = symbackprop.generate(spec)
    assert "return u, v" in source and "def backward(self, du, dv):" in source
    assert symbackprop.derive(spec).to_json()["outputs"] == ["u", "v"]


@pytest.mark.parametrize("backend", ["fused", "torch", "jax", "array-api"])
def test_other_backends_refuse_several_outputs_in_one_line(backend, tmp_path, capsys):
    with pytest.raises(GenerationError, match=f"the {backend} backend does not generate layers of several outputs"):
        symbackprop.generate(spec_from_toml(TWO, source="two.toml"), backend=backend)
    path = tmp_path / "two.toml"
    path.write_text(TWO)
    assert main(["generate", str(path), "--backend", backend]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_a_class_returning_one_output_of_two_is_a_finding():
    good = symbackprop.compile(spec_from_toml(TWO, source="two.toml"))

    class OneOutput(good):
        def forward(self, x):
            return super().forward(x)[0]

    findings = verify_layer(OneOutput, spec_from_toml(TWO, source="two.toml")).findings
    assert findings and any("expected (u, v)" in f.message for f in findings)
