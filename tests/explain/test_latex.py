"""The chain-rule steps: every printed equality is true, the LaTeX compiles, the seed's steps appear.

Oracles: each notation symbol is given its meaning independently of the code under test
(a node's value from the printed forward rows, ``∂L/∂v`` as ``dout`` times the derivative
of the output with ``v`` made a free variable, a total derivative from SymPy's ``diff`` of
the declaration's forward pass); both sides of every printed equality are evaluated with
mpmath at random points; the worked numbers are compared exactly at the declaration's
values; the LaTeX goes through a real TeX engine; the project's step verifier
(:mod:`symbackprop.steps`) judges the chains too.
"""
import re
import shutil
import subprocess

import mpmath
import numpy as np
import pytest
import sympy

import symbackprop
from symbackprop.cli import main
from symbackprop.numerics.equality import first_mismatch
from symbackprop.explain import chain_rule_steps, derivation_latex, format_number, higher_order, latex
from symbackprop.explain.tex import document
from symbackprop.lang.text import format_expression
from symbackprop.spec.model import DOUT

SPECS = [("sigmoid", 2), ("tanh", 2), ("apple_orange", 1), ("apple", 2), ("chain_rule", 2), ("swish", 2),
         ("relu", 2), ("elu", 2), ("softplus", 2), ("softsign", 1), ("sqrt", 2), ("log", 2), ("reciprocal", 2),
         ("exp", 1), ("multiply", 2), ("add", 1), ("leaky_relu", 1)]


# -- the oracle --------------------------------------------------------------------------------------
class Meaning:
    """What every symbol of the printed steps stands for, in the inputs and ``dout``."""

    def __init__(self, steps):
        self.steps = steps
        self.spec = steps.spec
        self.forward_rows = [r for r in steps.rows if r.kind == "forward"]
        self.local_def = {r.lhs: r.forms[0].value for r in self.forward_rows}  # in the node's arguments
        self.values = self._compose({})
        for r in steps.rows:
            if r.kind == "define":
                self.values[r.lhs] = r.forms[0].value.xreplace(self.values)

    def _compose(self, override):
        values = {}
        for r in self.forward_rows:
            values[r.lhs] = override.get(r.lhs, self.local_def[r.lhs].xreplace(values))
        return values

    def grad(self, v):
        """dout times dy/dv with v a free variable (the adjoint), at v's value."""
        if v in self.spec.inputs:
            return DOUT * sympy.diff(self.spec.forward, v)
        free = sympy.Symbol("FREE_V", real=True)
        y = self._compose({v: free})[self.spec.output]
        return DOUT * sympy.diff(y, free).xreplace({free: self.values[v]})

    def meaning(self, symbol):
        """Derivatives hold almost everywhere: at kinks (never drawn) Heaviside and DiracDelta differ."""
        return almost_everywhere(self._meaning(symbol))

    def _meaning(self, symbol):
        kind = self.steps.meaning.get(symbol)
        if kind is None:
            return self.values.get(symbol, symbol)
        if kind[0] == "grad":
            return self.grad(kind[1])
        if kind[0] == "partial":
            return sympy.diff(self.local_def[kind[1]], kind[2]).xreplace(self.values)
        _, s, wrt = kind
        return sympy.diff(self.values.get(s, s), *wrt)

    def expand(self, expr):
        expr = sympy.sympify(expr)
        return expr.xreplace({s: self.meaning(s) for s in expr.free_symbols})


def almost_everywhere(expr):
    expr = sympy.sympify(expr).replace(sympy.DiracDelta, lambda *a: sympy.S.Zero)
    return expr.replace(sympy.Heaviside, lambda u, *h: sympy.Piecewise((1, u > 0), (0, True)))


def random_points(spec, n=10, seed=1):
    rng = np.random.default_rng(seed)
    points = []
    for _ in range(n):
        point = {s: mpmath.mpf(float(np.exp(rng.uniform(-2, 2)) if s.is_positive else rng.uniform(-3, 3)))
                 for s in spec.inputs}
        point[DOUT] = mpmath.mpf(float(rng.uniform(0.5, 2) * rng.choice([-1, 1])))
        points.append(point)
    return points


def check_rows(steps):
    """Every symbolic form equals the row's left side at random points; every worked
    number equals it exactly at the declaration's values (dout = 1)."""
    meaning = Meaning(steps)
    points = random_points(steps.spec)
    checked = 0
    for row in steps.rows:
        lhs = meaning.expand(row.lhs)
        for form in row.forms:
            if form.numeric:
                at = {s: steps.spec.values[s.name] for s in steps.spec.inputs} | {DOUT: 1}
                assert sympy.nsimplify(lhs.xreplace(at) - form.value) == 0, (row, form)
            else:
                mismatch, used = first_mismatch(lhs, meaning.expand(form.value), points)
                assert mismatch is None and used >= 5, (row.kind, row.lhs, form, mismatch)
            checked += 1
    return checked


@pytest.mark.parametrize("name, order", SPECS)
def test_every_printed_equality_is_true(name, order):
    steps = chain_rule_steps(symbackprop.load(name), order=order)
    assert check_rows(steps) >= 3


def test_the_oracle_catches_a_wrong_step():
    steps = chain_rule_steps(symbackprop.load("sigmoid"))
    row = next(r for r in steps.rows if r.kind == "chain")
    x, y = sympy.symbols("x y", real=True)
    bad = type(row.forms[0]).of(DOUT * y * (1 + y))
    steps.sections[-2].rows = [type(row)(row.kind, row.lhs, (*row.forms, bad))]
    with pytest.raises(AssertionError):
        check_rows(steps)


def test_declared_nodes_are_the_declared_graph():
    for name in ("apple_orange", "chain_rule"):
        spec = symbackprop.load(name)
        meaning = Meaning(chain_rule_steps(spec))
        for symbol, expr in spec.expanded().items():
            assert sympy.expand(meaning.values[symbol] - expr) == 0


# -- the seed's steps ---------------------------------------------------------------------------------
def test_sigmoid_nodes_are_the_seeds_figure_5_10_and_end_in_y_1_minus_y():
    steps = chain_rule_steps(symbackprop.load("sigmoid"))
    assert [n.op for n in steps.graph.nodes] == ["×(-1)", "exp", "+1", "/"]
    text = steps.latex()
    chain = [r for r in steps.rows if r.kind == "chain"]
    assert len(chain) == 1 and len(chain[0].forms) >= 4
    # the seed: dL/dy y^2 exp(-x) = ... = dL/dy 1/(1+exp(-x)) exp(-x)/(1+exp(-x)) = dL/dy y(1 - y)
    body = text.split(r"\intertext{Simplified")[1]
    assert r"\frac{\partial L}{\partial y} y^{2} e^{- x}" in body
    assert r"\frac{1}{1 + e^{- x}} \frac{e^{- x}}{1 + e^{- x}}" in body
    last_chain_line = body.split(r"\intertext")[0].strip().splitlines()[-1]
    assert last_chain_line.endswith(r"y \left(1 - y\right) \\")


def test_chain_rule_nodes_are_plus_and_square():
    steps = chain_rule_steps(symbackprop.load("chain_rule"))
    assert [n.op for n in steps.graph.nodes] == ["+", "**2"]
    assert r"\frac{\partial z}{\partial x} &= 2 x + 2 y = 2 t" in steps.latex()


def test_apple_numbers_appear_as_in_the_seed():
    text = latex(symbackprop.load("apple_orange"))
    for piece in ("100 \\cdot 2 = 200", "150 \\cdot 3 = 450", "200 + 450 = 650", "650 \\cdot 1.1 = 715",
                  "1.1 \\cdot 2 = 2.2", "1.1 \\cdot 100 = 110", "1.1 \\cdot 3 = 3.3", "1.1 \\cdot 150 = 165",
                  "1 \\cdot 650 = 650"):
        assert piece in text
    assert "0000" not in text


def test_inline_blocks_are_titled_display_math():
    text = latex(symbackprop.load("sigmoid"), inline=True)
    assert text.count("$$\\begin{aligned}") == text.count("\\end{aligned}$$") >= 4
    assert "\\intertext" not in text and "align*" not in text
    assert chain_rule_steps(symbackprop.load("sigmoid"))._repr_latex_() == text


# -- higher orders ------------------------------------------------------------------------------------
@pytest.mark.parametrize("name, expected", [
    ("tanh", "-2*y*(1 - y**2)"),
    ("sigmoid", "y*(1 - 2*y)*(1 - y)"),
    ("exp", "y"),
    ("reciprocal", "2*y**3"),
    ("relu", "0"),
])
def test_second_derivative_in_cached_values(name, expected):
    spec = symbackprop.load(name)
    (h,) = higher_order(spec.derive(), 2)
    assert format_expression(h.expr) == expected
    x = spec.inputs[0]
    mismatch, used = first_mismatch(h.expr.xreplace({spec.output: spec.forward}),
                                    almost_everywhere(sympy.diff(spec.forward, x, 2)),
                                    random_points(spec))
    assert mismatch is None and used >= 5


def test_derive_order_two_on_the_command_line(capsys):
    assert main(["derive", "tanh", "--order", "2"]) == 0
    assert "order 2   d2y/dx2 = -2*y*(1 - y**2)" in capsys.readouterr().out
    assert main(["derive", "chain_rule", "--order", "2", "--json"]) == 0
    import json

    data = json.loads(capsys.readouterr().out)
    assert data["higher_order"] == {"2": {"x,x": "2", "x,y": "2", "y,y": "2"}}
    assert main(["derive", "tanh", "--order", "9"]) == 2


# -- numbers ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("value, text", [
    (110.00000000000001, "110"), (3.3000000000000003, "3.3"), (715.0000000000001, "715"),
    (sympy.Rational(11, 5), "2.2"), (sympy.Rational(1, 3), "0.333333"), (sympy.exp(-1), "0.367879"),
    (sympy.Rational(-1, 4), "-0.25"), (1e-20, "1e-20"), (sympy.Integer(650), "650"), (0.1, "0.1"),
])
def test_numbers_are_written_as_people_write_them(value, text):
    assert format_number(value) == text


# -- a real TeX engine ---------------------------------------------------------------------------------------
@pytest.mark.needs("latex")
def test_the_latex_compiles(tmp_path):
    blocks = [latex(symbackprop.load(name), order=order) for name, order in SPECS]
    blocks += [latex(symbackprop.load(name), inline=True) for name in ("sigmoid", "apple_orange", "relu")]
    blocks += [latex(symbackprop.load("gelu"), order=2)]
    blocks += [derivation_latex(symbackprop.load(n)) for n in ("sigmoid", "swish", "affine")]
    (tmp_path / "all.tex").write_text(document(*blocks), encoding="utf-8")
    result = subprocess.run([shutil.which("latex"), "-interaction=nonstopmode", "-halt-on-error", "all.tex"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, "\n".join(line for line in result.stdout.splitlines() if line.startswith("!"))
    pages = re.search(r"Output written on all\.dvi \((\d+) pages?", result.stdout)
    assert pages and int(pages.group(1)) >= 1


@pytest.mark.needs("latex", "dvipng")
def test_latex_command_writes_tex_and_png(tmp_path, capsys):
    assert main(["latex", "sigmoid"]) == 0
    assert capsys.readouterr().out.startswith("\\begin{align*}")
    png = tmp_path / "sigmoid.png"
    assert main(["latex", "sigmoid", "-o", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["latex", "sigmoid", "-o", str(png)]) == 2  # never over an existing file
    assert "--force" in capsys.readouterr().err
    assert main(["latex", "apple_orange", "-o", str(tmp_path / "apples.pdf")]) == 0
    assert (tmp_path / "apples.pdf").read_bytes()[:5] == b"%PDF-"
    assert main(["latex", "sigmoid", "--inline", "-o", str(tmp_path / "s.tex")]) == 0
    assert (tmp_path / "s.tex").read_text().startswith("Forward pass")
    capsys.readouterr()
    assert main(["latex", "affine"]) == 0  # array layers too (tests/explain/test_arrays.py)
    assert capsys.readouterr().out.startswith("\\begin{align*}")


# -- the project's step verifier --------------------------------------------------------------------------
def _identifier(symbol, names):
    if symbol not in names:
        names[symbol] = f"s{len(names)}_" + re.sub(r"\W", "_", symbol.name)
    return names[symbol]


def _as_derivation_file(steps):
    """The steps as a standalone derivation for symbackprop.steps: every symbol defined by the oracle."""
    meaning = Meaning(steps)
    names: dict = {}
    symbols = {s.name: "positive" if s.is_positive else "real" for s in steps.spec.inputs} | {"dout": "real"}
    rename = {}
    for symbol in {s for r in steps.rows for f in (r.lhs, *(f.value for f in r.forms)) for s in
                   sympy.sympify(f).free_symbols} - {*steps.spec.inputs, DOUT}:
        rename[symbol] = sympy.Symbol(_identifier(symbol, names), real=True)
    definitions = {rename[s].name: format_expression(meaning.meaning(s)) for s in rename}
    chains = []
    for r in steps.rows:
        sides = [r.lhs, *(f.value for f in r.forms if not f.numeric)]
        if len(sides) >= 2:
            chains.append([format_expression(sympy.sympify(e).xreplace(rename)) for e in sides])
    lines = ['name = "printed steps"', "[symbols]", *[f'{k} = "{v}"' for k, v in symbols.items()],
             "[definitions]", *[f'{k} = "{v}"' for k, v in definitions.items()]]
    for i, chain in enumerate(chains):
        lines += ["[[chains]]", f'of = "row {i}"', "steps = [" + ", ".join(f'"{s}"' for s in chain) + "]"]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("name, order", [("sigmoid", 2), ("tanh", 2), ("apple_orange", 1), ("swish", 1)])
def test_the_step_verifier_accepts_every_printed_chain(name, order):
    from symbackprop.spec.hand import derivation_from_toml
    from symbackprop.verify import verify_hand_derivation

    steps = chain_rule_steps(symbackprop.load(name), order=order)
    report = verify_hand_derivation(derivation_from_toml(_as_derivation_file(steps)))
    bad = [(c.of, c.first_wrong_step) for c in report.chains if not c.ok]
    assert report.chains and not bad
