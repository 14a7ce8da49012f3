"""Untrusted text: random and hostile declarations and expressions give only the project's
own errors (exit code 2, one line), never another exception, never a file."""
import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from symbackprop.cli import main
from symbackprop.errors import SymbackpropError
from symbackprop.spec.toml import spec_from_toml

FIELDS = ["name", "inputs", "params", "constants", "assume", "output", "forward", "graph", "predict",
          "symbols", "values", "expect", "claims", "chains", "section", "bogus"]
HOSTILE = ["x", "y", "N", "__import__('os')", "9**9**9", "exp(x) +", "x @ W", "softmax(x, axis=1)",
           "sum(x, axis=7)", "onehot(t, axis=1)", "positive", "", "(" * 300, "x.T", "lambda: 0", "1e400"]

text = st.one_of(st.sampled_from(HOSTILE), st.text(max_size=30))
scalar = st.one_of(text, st.integers(-5, 10**6), st.floats(allow_nan=True), st.booleans())
value = st.recursive(scalar, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.sampled_from(["x", "y", "W", "t", "N", "grad", "backward"]),
                                                 inner, max_size=4)), max_leaves=12)
documents = st.dictionaries(st.sampled_from(FIELDS), value, max_size=8)


@settings(max_examples=300, derandomize=True, deadline=None, suppress_health_check=list(HealthCheck))
@given(documents)
def test_the_loader_raises_only_its_own_errors(doc):
    from symbackprop.spec.toml import _Loader

    try:
        _Loader(doc, "fuzz.toml").spec()
    except SymbackpropError as exc:
        assert "\n" not in str(exc) and str(exc).startswith("fuzz.toml")


@settings(max_examples=200, derandomize=True, deadline=None)
@given(st.text(max_size=200))
def test_random_toml_text_raises_only_its_own_errors(raw):
    try:
        spec_from_toml(raw, "fuzz.toml")
    except SymbackpropError as exc:
        assert "\n" not in str(exc)


@settings(max_examples=60, derandomize=True, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.one_of(st.sampled_from(HOSTILE), st.text(alphabet="x+-*/()._[]'\"@ 0123456789eplogsqrt", max_size=40)))
def test_the_command_line_exits_2_with_one_line_and_writes_nothing(tmp_path_factory, capsys, expression):
    folder = tmp_path_factory.mktemp("cwd")
    before = os.getcwd()
    os.chdir(folder)
    try:
        code = main(["derive", "--expr", expression, "--json"])
    finally:
        os.chdir(before)
    out, err = capsys.readouterr()
    assert code in (0, 2)
    if code == 2:
        assert out == "" and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert list(folder.iterdir()) == []
