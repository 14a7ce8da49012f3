"""The one domain model: declared words and intervals, and what the forward pass needs.

Oracles: SymPy's ``continuous_domain`` (an independent solver) and the textbook domains
of the functions; every drawn, edge and tail value must lie inside the domain.
"""
import re

import numpy as np
import pytest
import sympy
from hypothesis import given, strategies as st
from sympy.calculus.util import continuous_domain

import symbackprop
from symbackprop.errors import SpecError
from symbackprop.lang.parser import parse_expression
from symbackprop.numerics.domain import Domain, natural_domains

X = sympy.Symbol("x", real=True)
OUT = sympy.Symbol("out", real=True)


@pytest.mark.parametrize("text", [
    "arctanh(x)", "arcsin(x)", "arccos(2*x)", "arccosh(x)", "log1p(x)", "log(1 - x)", "sqrt(x)", "sqrt(3 - x)",
    "logit(x)", "log(x/(1 - x))", "sqrt(1 - x**2)", "atanh(x/2 - 1)",
])
def test_the_natural_domain_is_where_sympy_finds_the_forward_continuous(text):
    expr = parse_expression(text)
    (domain,) = natural_domains([X], [(OUT, expr)]).values()
    solved = continuous_domain(expr, X, sympy.S.Reals)
    assert (domain.lo, domain.hi) == (float(solved.inf), float(solved.sup))


@pytest.mark.parametrize("text, lo, hi", [
    ("erfinv(2*x - 1)", 0.0, 1.0),   # SymPy's solver cannot say; the table can
    ("lgamma(x) + gamma(x)", 0.0, np.inf),
    ("sigmoid(x)", -np.inf, np.inf),
    ("1/(x - 2)", -np.inf, np.inf),  # one excluded point: left to the sampler
])
def test_the_table_knows_what_the_solver_does_not(text, lo, hi):
    (domain,) = natural_domains([X], [(OUT, parse_expression(text))]).values()
    assert (domain.lo, domain.hi) == (lo, hi)


def test_a_negative_power_excludes_zero():
    (domain,) = natural_domains([X], [(OUT, X**-2)]).values()
    assert domain.nonzero and not domain.contains(0.0) and 0.0 not in domain.edges()


DOMAINS = [Domain(), Domain("positive", lo=0.0), Domain("negative", hi=0.0), Domain(lo=-1.0, hi=1.0),
           Domain(lo=1.0), Domain(hi=1.0), Domain(lo=0.0, hi=1e-3), Domain(nonzero=True)]


@pytest.mark.parametrize("domain", DOMAINS, ids=repr)
@given(seed=st.integers(0, 2**32 - 1))
def test_every_sampled_value_lies_inside(domain, seed):
    rng = np.random.default_rng(seed)
    values = [*domain.draw(rng, 50), *domain.edges(), *domain.tails(), *np.linspace(*domain.search, 6)]
    assert values and all(domain.contains(float(v)) for v in values)


def test_a_declared_interval_is_kept_and_narrowed(tmp_path):
    path = tmp_path / "layer.toml"
    path.write_text('name = "Atanh"\ninputs = ["x"]\nforward = "arctanh(x) + log(x + 2)"\n'
                    '[symbols]\nx = "interval(-3, 0.5)"\n')
    spec = symbackprop.load_spec(path)
    (domain,) = spec.domains.values()
    assert (domain.lo, domain.hi) == (-1.0, 0.5)  # the declaration's (-3, 0.5) narrowed by arctanh to (-1, 0.5)


@pytest.mark.parametrize("word, message", [
    ("interval(1, 1)", "empty interval"), ("interval(a, 1)", "unknown assumption"), ("between", "interval(a, b)"),
])
def test_a_bad_interval_is_one_line_naming_the_field(tmp_path, word, message):
    path = tmp_path / "layer.toml"
    path.write_text(f'name = "L"\ninputs = ["x"]\nforward = "x"\n[symbols]\nx = "{word}"\n')
    with pytest.raises(SpecError, match=re.escape(message)) as info:
        symbackprop.load_spec(path)
    assert "symbols.x" in str(info.value) and "\n" not in str(info.value)
