"""Verifying hand work: claims and chains, standalone derivations, the verify-steps command.

Oracles: SymPy's own identities (expand, together, ...) for true steps, values recomputed
with SymPy at the reported counterexample points, and hand-computed numbers.
"""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import sympy
from hypothesis import given, settings
from hypothesis import strategies as st

import symbackprop
from symbackprop.spec import catalog
from symbackprop.verify import verify_derivation
from symbackprop.cli import main
from symbackprop.errors import SpecError, SymbackpropError
from symbackprop.lang.parser import parse_expression
from symbackprop.lang.text import format_expression
from symbackprop.spec.toml import spec_from_toml
from symbackprop.reports import STATUSES
from symbackprop.spec.hand import derivation_from_toml
from symbackprop.verify import verify, verify_hand_derivation, verify_spec

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "derivations"


def chains_of(toml: str):
    return verify_hand_derivation(derivation_from_toml(toml)).chains


def one_chain(*steps: str, header: str = "", extra: str = "") -> list:
    """Statuses-and-verdicts of one standalone chain of the given steps."""
    text = f'name = "t"\n{header}\n[[chains]]\nof = "d"\n{extra}\nsteps = {json.dumps(list(steps))}\n'
    return chains_of(text)[0]


def value_at(text: str, point: dict, symbols: dict | None = None) -> float:
    """An independent evaluation: parse, substitute the point exactly, evaluate with SymPy."""
    expr = parse_expression(text, symbols=symbols or {}, calculus=True).doit()
    subs = {s: sympy.Rational(repr(point[s.name])) for s in expr.free_symbols}
    return float(sympy.N(expr.xreplace(subs), 30))


# -- the bundled declarations ---------------------------------------------------------------
ELEMENTWISE = [n for n in catalog.bundled_names() if not getattr(symbackprop.load(n), "is_array", False)]


@pytest.mark.parametrize("name", ELEMENTWISE)
def test_bundled_claims_and_chains_hold(name):
    report = verify_spec(symbackprop.load(name))
    assert report.ok
    assert all(c.verdict.status in STATUSES for c in report.claims)


def test_the_seeds_sigmoid_derivation_is_proved_step_by_step():
    report = verify("sigmoid")
    (chain,) = report.chains
    assert [s.verdict.status for s in chain.steps] == ["proved"] * 4
    assert {c.of: c.verdict.status for c in report.claims} == {"local.x": "proved", "backward.x": "proved"}


def test_check_delegates_to_steps_and_keeps_its_record_shape():
    claims, chains = ([r.to_json() for r in records] for records in verify_derivation(symbackprop.load("sigmoid").derive()))
    assert all({"of", "status", "counterexample"} <= set(c) for c in claims)
    assert all({"of", "ok", "first_wrong_step", "steps"} <= set(c) for c in chains)
    assert all({"index", "status", "counterexample"} <= set(s) for s in chains[0]["steps"])


# -- wrong claims and steps are pinpointed, with true counterexamples -----------------------
SIGMOID_WITH_SLIPS = """
name = "Sigmoid"
inputs = ["x"]
forward = "1 / (1 + exp(-x))"

[claims]
backward.x = "dout * y * (1 + y)"
local.x = "y * (1 - y)"

[[chains]]
of = "backward.x"
steps = [
  "dout * y**2 * exp(-x)",
  "dout * exp(-x) / (1 + exp(-x))**2",
  "dout * exp(-x) / (1 + exp(-x))",
  "dout * y * (1 - y)",
]
"""


def test_a_wrong_claim_has_a_counterexample_that_sympy_confirms():
    report = verify_spec(spec_from_toml(SIGMOID_WITH_SLIPS))
    wrong, right = report.claims
    assert (wrong.verdict.status, right.verdict.status) == ("wrong", "proved")
    point = wrong.verdict.counterexample["point"]
    x, dout = sympy.Rational(repr(point["x"])), sympy.Rational(repr(point["dout"]))
    y = 1 / (1 + sympy.exp(-x))
    claimed = float(sympy.N(dout * y * (1 + y), 30))
    derived = float(sympy.N(sympy.diff(1 / (1 + sympy.exp(-sympy.Symbol("s"))), "s").subs("s", x) * dout, 30))
    assert wrong.verdict.counterexample["left"] == pytest.approx(claimed, rel=1e-12)
    assert wrong.verdict.counterexample["right"] == pytest.approx(derived, rel=1e-12)
    assert claimed != pytest.approx(derived)
    assert not report.ok


def test_the_first_wrong_step_is_the_one_that_breaks():
    (chain,) = verify_spec(spec_from_toml(SIGMOID_WITH_SLIPS)).chains
    assert chain.first_wrong_step == 2 and not chain.ok
    assert [s.verdict.status for s in chain.steps[:2]] == ["proved", "proved"]
    assert "step 1" in chain.steps[2].verdict.explanation


TRUE_SIGMOID_STEPS = [
    "dout * y**2 * exp(-x)",
    "dout * exp(-x) / (1 + exp(-x))**2",
    "dout * (1 / (1 + exp(-x))) * (exp(-x) / (1 + exp(-x)))",
    "dout * y * (1 - y)",
    "dout * (y - y**2)",
]
SLIPS = [" + 1/7", " * 1.01", " + x", " - dout"]


@settings(max_examples=12, deadline=None)
@given(index=st.integers(0, len(TRUE_SIGMOID_STEPS) - 1), slip=st.sampled_from(SLIPS))
def test_one_planted_slip_is_found_at_its_step(index, slip):
    steps = list(TRUE_SIGMOID_STEPS)
    steps[index] = f"({steps[index]}){slip}"
    toml = (f'name = "S"\ninputs = ["x"]\nforward = "1 / (1 + exp(-x))"\n'
            f'[[chains]]\nof = "backward.x"\nsteps = {json.dumps(steps)}\n')
    (chain,) = verify_spec(spec_from_toml(toml)).chains
    assert chain.first_wrong_step == index
    bad = chain.steps[index].verdict.counterexample
    dout = sympy.Symbol("dout", real=True)
    x = sympy.Symbol("x", real=True)
    y = 1 / (1 + sympy.exp(-x))
    here = parse_expression(steps[index], symbols={"x": x, "dout": dout}).subs(sympy.Symbol("y", real=True), y)
    point = {x: sympy.Rational(repr(bad["point"]["x"])), dout: sympy.Rational(repr(bad["point"]["dout"]))}
    assert float(sympy.N(here.xreplace(point), 30)) == pytest.approx(bad["left"], rel=1e-10)


# -- no true step is reported wrong ---------------------------------------------------------
X, Y = sympy.symbols("x y", real=True)
ATOMS = st.sampled_from([X, Y, sympy.Integer(2), sympy.Rational(1, 3), X + 1])
UNARY = [sympy.exp, sympy.tanh, sympy.cosh, lambda u: u**2, lambda u: 1 / (1 + sympy.exp(-u)),
         lambda u: sympy.log(1 + u**2), sympy.sqrt]


def expressions():
    return st.recursive(
        ATOMS,
        lambda inner: st.one_of(
            st.tuples(st.sampled_from(UNARY), inner).map(lambda t: t[0](t[1])),
            st.tuples(inner, inner).map(lambda t: t[0] + t[1]),
            st.tuples(inner, inner).map(lambda t: t[0] * t[1]),
            st.tuples(inner, inner).map(lambda t: t[0] / (1 + t[1] ** 2)),
        ),
        max_leaves=5,
    )


IDENTITIES = [sympy.expand, sympy.together, lambda e: e.rewrite(sympy.exp), sympy.factor_terms,
              lambda e: sympy.expand(e, power_exp=True, mul=True, log=False)]


@settings(max_examples=25, deadline=None)
@given(expr=expressions(), identity=st.sampled_from(IDENTITIES))
def test_sympy_identities_are_never_reported_wrong(expr, identity):
    other = identity(expr)
    chain = one_chain(format_expression(expr), format_expression(other))
    assert chain.steps[1].verdict.status != "wrong", chain.steps[1].verdict.explanation


def test_cancellation_at_40_digits_is_not_a_difference():
    chain = one_chain("log(10**30 + exp(x)) - log(10**30)", "log(1 + exp(x)/10**30)")
    assert chain.steps[1].verdict.status != "wrong"


# -- conditional: assumptions, definedness, kinks, constraints ---------------------------------
def test_a_removable_singularity_is_conditional_and_says_where():
    chain = one_chain("(x**2 - 1)/(x - 1)", "x + 1")
    verdict = chain.steps[1].verdict
    assert verdict.status == "conditional" and "x - 1 != 0" in verdict.condition
    assert verdict.rule == "excluded-set"


def test_an_equality_that_needs_a_declared_assumption_is_conditional_and_names_it():
    chain = one_chain("log(p**2)", "2*log(p)", "sqrt(p**2)*log(p)/p*2", header='[symbols]\np = "positive"')
    first = chain.steps[1].verdict
    assert first.status == "conditional" and "p positive" in first.condition
    assert chain.steps[2].verdict.status in ("proved", "conditional")
    assert chain.ok


def test_without_the_assumption_the_same_step_is_wrong_with_a_negative_counterexample():
    chain = one_chain("sqrt(x**2)", "x")
    verdict = chain.steps[1].verdict
    assert verdict.status == "wrong"
    point = verdict.counterexample["point"]["x"]
    assert point < 0
    assert verdict.counterexample["right"] == pytest.approx(value_at("sqrt(x**2)", {"x": point}))


def test_a_step_that_loses_half_the_line_is_wrong_and_says_which_assumption_fixes_it():
    chain = one_chain("log(x**2)", "2*log(x)")
    verdict = chain.steps[1].verdict
    assert (verdict.status, verdict.rule) == ("wrong", "lost-region")
    point = verdict.counterexample["point"]["x"]
    assert point < 0 and verdict.counterexample["left"] is None
    assert verdict.counterexample["right"] == pytest.approx(value_at("log(x**2)", {"x": point}))
    assert verdict.condition == "holds for x > 0: declare x positive"
    fixed = one_chain("log(x**2)", "2*log(x)", header='[symbols]\nx = "positive"')
    assert fixed.ok and fixed.steps[1].verdict.status in ("proved", "conditional")


def test_a_product_rule_for_logs_loses_a_quadrant_of_the_plane():
    # -log(p1*p2) is defined where p1, p2 < 0; -log(p1) - log(p2) is not (issue 18's example)
    chain = one_chain("-log(p1*p2)", "-log(p1) - log(p2)", header='[symbols]\np1 = "real"\np2 = "real"')
    verdict = chain.steps[1].verdict
    assert (verdict.status, verdict.rule) == ("wrong", "lost-region")
    p1, p2 = verdict.counterexample["point"]["p1"], verdict.counterexample["point"]["p2"]
    assert p1 < 0 and p2 < 0  # where the product is positive and neither log is real
    assert verdict.counterexample["right"] == pytest.approx(value_at("-log(p1*p2)", {"p1": p1, "p2": p2}))
    assert "declare them positive" in verdict.condition and "p1, p2 > 0" in verdict.condition
    assert one_chain("-log(p1*p2)", "-log(p1) - log(p2)",
                     header='[symbols]\np1 = "positive"\np2 = "positive"').ok


@pytest.mark.parametrize("factor, argument", [("sqrt(2)*sqrt(-1 - x**2)/sqrt(-2 - 2*x**2)", "-1 - x**2"),
                                              ("log(-exp(x))/log(-2*exp(x))*log(-2*exp(x))", "-exp(x)")])
def test_a_factor_defined_at_no_real_point_makes_the_step_wrong(factor, argument):
    x = sympy.Symbol("x", real=True)
    assert parse_expression(argument, symbols={"x": x}).is_negative  # so no real x has a real factor
    chain = one_chain("x", f"x*{factor}")
    verdict = chain.steps[1].verdict
    assert (verdict.status, verdict.rule) == ("wrong", "nowhere-defined")
    assert not chain.ok and chain.first_wrong_step == 1


def test_two_steps_both_defined_nowhere_are_wrong_too():
    chain = one_chain("sqrt(-1 - x**2)", "sqrt(-2 - 2*x**2)/sqrt(2)")
    verdict = chain.steps[1].verdict
    assert (verdict.status, verdict.rule) == ("wrong", "nowhere-defined")


def test_a_curve_one_side_excludes_is_measure_zero_and_conditional():
    chain = one_chain("x + y", "(x**2 - y**2)/(x - y)")
    verdict = chain.steps[1].verdict
    assert (verdict.status, verdict.rule) == ("conditional", "excluded-set")
    assert "x - y != 0" in verdict.condition


def test_a_removable_point_of_an_integer_symbol_hit_exactly_is_still_conditional():
    chain = one_chain("(n**2 - 1)/(n - 1)", "n + 1", header='[symbols]\nn = "integer"')
    verdict = chain.steps[1].verdict
    assert verdict.status == "conditional" and "excluded-set" in verdict.rule


def test_sides_defined_only_far_from_zero_are_compared_there_not_called_undefined():
    chain = one_chain("sqrt(x - 50)", "sqrt(2*x - 100)/sqrt(2)")
    assert chain.steps[1].verdict.status in ("proved", "numeric")
    wrong = one_chain("sqrt(x - 50)", "sqrt(2*x - 100)")
    assert wrong.steps[1].verdict.status == "wrong" and wrong.steps[1].verdict.counterexample["point"]["x"] > 50


def test_a_side_undefined_at_the_chain_point_is_wrong_there():
    chain = one_chain("log(x)", "log(x) + 0*x", "1/(x - 2)", extra="at = { x = 2 }")
    verdict = chain.steps[2].verdict
    assert (verdict.status, verdict.rule) == ("wrong", "undefined-at-point")
    assert verdict.counterexample["point"] == {"x": 2.0}


def test_every_verdict_says_which_rule_applied_in_json_and_text(capsys):
    from symbackprop.reports import RULES
    for path in sorted(EXAMPLES.glob("*.toml")):
        report = verify(path)
        steps = [s for c in report.chains for s in c.steps] + list(report.claims)
        assert steps and all(s.verdict.rule in RULES or all(r in RULES for r in s.verdict.rule.split("+"))
                             for s in steps)
        assert all(json.loads(json.dumps(s.verdict.to_json()))["rule"] == s.verdict.rule for s in steps)
    assert main(["verify-steps", str(EXAMPLES / "softmax_with_loss.toml")]) == 0
    out = capsys.readouterr().out
    assert "conditional [assumption]" in out and "proved [identity]" in out


def test_another_convention_at_a_kink_is_conditional_and_names_the_point():
    chain = one_chain("where(x > 0, 1, 0)", "where(x >= 0, 1, 0)")
    verdict = chain.steps[1].verdict
    assert verdict.status == "conditional" and "x = 0" in verdict.condition


def test_the_softmax_with_loss_example_uses_its_constraint():
    report = verify(EXAMPLES / "softmax_with_loss.toml")
    assert report.ok
    for chain in report.chains:
        last = chain.steps[-1].verdict
        assert last.status == "conditional" and "t1 + t2 + t3 = 1" in last.condition
        assert all(s.verdict.status in ("given", "proved") for s in chain.steps[:-1])


def test_the_softmax_gradient_agrees_with_sympy_at_a_point_of_the_constraint():
    # the oracle: SymPy's derivative of the cross-entropy, at t = (0, 1, 0)
    x1, x2, x3 = sympy.symbols("x1 x2 x3", real=True)
    s = sympy.exp(x1) + sympy.exp(x2) + sympy.exp(x3)
    loss = -sympy.log(sympy.exp(x2) / s)
    point = {x1: sympy.Rational(1, 2), x2: sympy.Rational(-1, 3), x3: 2}
    want = float(sympy.diff(loss, x1).subs(point))
    assert want == pytest.approx(float((sympy.exp(x1) / s).subs(point)))  # y1 - t1 with t1 = 0
    chain = one_chain("diff(-log(exp(x2)/(exp(x1) + exp(x2) + exp(x3))), x1)", f"{want!r}",
                      extra="at = { x1 = 0.5, x2 = -0.3333333333333333, x3 = 2 }")
    assert chain.steps[1].verdict.status in ("numeric", "proved")


def test_dropping_the_constraint_makes_the_last_step_wrong():
    text = (EXAMPLES / "softmax_with_loss.toml").read_text().replace('constraints = ["t1 + t2 + t3 = 1"]', "")
    for chain in chains_of(text):
        assert chain.first_wrong_step == len(chain.steps) - 1


def test_onehot_is_a_constraint_too():
    chain = one_chain("y1*(t1 + t2) - t1", "y1 - t1", extra='constraints = ["onehot(t1, t2)"]')
    assert chain.steps[1].verdict.status == "conditional"


# -- numbers, at, tolerance ------------------------------------------------------------------------
def test_the_apple_example_as_numbers():
    report = verify(EXAMPLES / "apples.toml")
    assert report.ok
    statuses = {c.of: [s.verdict.status for s in c.steps[1:]] for c in report.chains}
    assert statuses["price"] == ["proved", "proved"]          # 715 exactly, 1.1 read as 11/10
    assert statuses["dprice/dorange"] == ["proved", "proved", "proved"]
    rounded = report.chains[2].steps[1].verdict
    assert rounded.status == "numeric" and rounded.tolerance == pytest.approx(5e-5, rel=1e-3)


def test_a_wrong_number_is_wrong_with_both_values():
    chain = one_chain("3 * 1.1", "3.4")
    verdict = chain.steps[1].verdict
    assert verdict.status == "wrong"
    assert (verdict.counterexample["left"], verdict.counterexample["right"]) == (pytest.approx(3.4), pytest.approx(3.3))


def test_a_stated_tolerance_is_used_and_reported():
    chain = one_chain("pi", "3.14", extra="tolerance = 0.01")
    assert chain.steps[1].verdict.status == "numeric" and chain.steps[1].verdict.tolerance >= 0.01
    assert one_chain("pi", "3.14", extra="tolerance = 0.001").steps[1].verdict.status == "wrong"


def test_at_judges_steps_as_numbers():
    chain = one_chain("2*(x + y)", "2*3", "6", "7", extra="at = { x = 1, y = 2 }")
    assert [s.verdict.status for s in chain.steps] == ["given", "proved", "proved", "wrong"]
    assert chain.first_wrong_step == 3


# -- diff, subs, definitions, matrices --------------------------------------------------------------
def test_the_chain_rule_example():
    report = verify(EXAMPLES / "chain_rule.toml")
    assert report.ok and all(s.verdict.status in ("given", "proved") for c in report.chains for s in c.steps)


def test_diff_by_a_shorthand_is_the_partial_derivative():
    header = '[definitions]\nu = "x**2"\nf = "sin(u)"'
    chain = one_chain("diff(f, x)", "diff(f, u) * diff(u, x)", "2*x*cos(x**2)", header=header)
    assert [s.verdict.status for s in chain.steps[1:]] == ["proved", "proved"]
    wrong = one_chain("diff(f, x)", "diff(f, u)", header=header)
    assert wrong.steps[1].verdict.status == "wrong"


def test_the_trace_trick_entry_by_entry():
    report = verify(EXAMPLES / "affine_trace_trick.toml")
    assert report.ok
    assert all(s.verdict.status in ("given", "proved") for c in report.chains for s in c.steps)


def test_a_matrix_slip_is_wrong_at_an_entry_sympy_confirms():
    header = '[symbols]\nA = "matrix 2x3"\nB = "matrix 3x2"'
    chain = one_chain("(A @ B).T", "B.T @ A.T", "A.T @ B.T", header=header)
    assert chain.steps[1].verdict.status == "proved"
    assert chain.steps[2].verdict.status == "wrong" and "shapes differ" in chain.steps[2].verdict.explanation
    square = one_chain("(A @ B).T", "A.T @ B.T", header='[symbols]\nA = "matrix 2x2"\nB = "matrix 2x2"')
    verdict = square.steps[1].verdict
    i, j = verdict.counterexample["entry"]
    a = sympy.Matrix(2, 2, lambda r, c: verdict.counterexample["point"].get(f"A[{r},{c}]", 0))
    b = sympy.Matrix(2, 2, lambda r, c: verdict.counterexample["point"].get(f"B[{r},{c}]", 0))
    assert float((a.T * b.T)[i, j]) == pytest.approx(verdict.counterexample["left"])
    assert float((a * b).T[i, j]) == pytest.approx(verdict.counterexample["right"])


# -- bad input ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("toml, field", [
    ('name = "t"\n[[chains]]\nof = "d"\nsteps = ["x", "x"]\nfoo = 1', "chains[0].foo"),
    ('name = "t"\n[symbols]\nx = "blue"\n[[chains]]\nof = "d"\nsteps = ["x", "x"]', "symbols.x"),
    ('name = "t"\n[symbols]\nX = "matrix 90x2"\n[[chains]]\nof = "d"\nsteps = ["1", "1"]', "symbols.X"),
    ('name = "t"\n[[chains]]\nof = "d"\nsteps = ["x"]', "chains[0].steps"),
    ('name = "t"\n[definitions]\na = "b"\nb = "a"\n[[chains]]\nof = "d"\nsteps = ["a", "a"]', "definitions"),
    ('name = "t"\n[[chains]]\nof = "d"\nconstraints = ["x > 1"]\nsteps = ["x", "x"]', "constraints"),
    ('name = "t"\n[[chains]]\nof = "d"\nconstraints = ["x**2 + exp(x) = -1 - x**4 - exp(2*x)"]\nsteps = ["x", "x"]',
     "constraints"),
    ('name = "t"\nbogus = 1', "bogus"),
])
def test_malformed_files_name_the_field(toml, field):
    with pytest.raises(SpecError, match=field.replace("[", r"\[").replace("]", r"\]")):
        verify_hand_derivation(derivation_from_toml(toml, "f.toml"))


@pytest.mark.parametrize("step", ["__import__('os').system('true')", "X.real", "(lambda: 1)()", "X @ 2",
                                  "trace(X) + open('f')", "diff(X, X)"])
def test_hostile_or_malformed_steps_are_refused(step):
    header = '[symbols]\nX = "matrix 2x2"'
    with pytest.raises(SymbackpropError):
        one_chain(step, "1", header=header)


# -- the command line ---------------------------------------------------------------------------------
def test_verify_steps_json_fields_and_exit_codes(capsys, tmp_path):
    assert main(["verify-steps", "sigmoid", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert {"ok", "claims", "chains"} <= set(data) and data["ok"] is True
    assert all({"of", "status", "counterexample"} <= set(c) for c in data["claims"])
    assert all({"of", "ok", "first_wrong_step", "steps"} <= set(c) for c in data["chains"])
    bad = tmp_path / "slips.toml"
    bad.write_text(SIGMOID_WITH_SLIPS)
    assert main(["verify-steps", str(bad), "--json"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert data["chains"][0]["first_wrong_step"] == 2 and data["claims"][0]["status"] == "wrong"


def test_verify_steps_text_on_a_standalone_file(capsys):
    assert main(["verify-steps", str(EXAMPLES / "softmax_with_loss.toml")]) == 0
    out = capsys.readouterr().out
    assert "conditional" in out and "t1 + t2 + t3 = 1" in out


def test_verify_steps_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "t"\n[[chains]]\nof = "d"\nsteps = ["x +", "x"]\n')
    before = sorted(tmp_path.iterdir())
    result = subprocess.run([sys.executable, "-m", "symbackprop", "verify-steps", str(bad)],
                            capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert result.returncode == 2 and result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    assert "steps[0]" in result.stderr
    assert sorted(tmp_path.iterdir()) == before
