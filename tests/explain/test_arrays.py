"""Explaining array layers: graphs with shapes, backward statements in matrix notation.

Oracles, independent of the code under test:

- shapes, labels and node operations typed by hand for the two-layer network and Affine;
- a small numpy interpreter of the array atoms written here (``@`` is ``np.matmul``,
  ``softmax`` is ``exp``/``sum``...), run at random sizes with distinct dimensions;
- ``∂L/∂v`` for every value ``v`` by central differences of ``sum(dout * output)`` with ``v``
  made free and everything after it recomputed; every printed backward equality and
  every backward arrow of a graph is compared with it entry by entry;
- a real TeX engine and a real Graphviz render.
"""
import re
import shutil
import subprocess
from collections import Counter

import numpy as np
import pytest
import sympy

import symbackprop
from symbackprop import ops as arrays
from symbackprop.ops import ArrayVar
from symbackprop.cli import main
from symbackprop.explain import chain_rule_steps, derivation_latex, graph, latex, operations
from symbackprop.explain.tex import document

ARRAY_SPECS = ["affine", "softmax", "softmax_with_loss", "log_softmax", "cross_entropy", "mse", "batch_norm",
               "layer_norm", "two_layer_net"]
NODE = re.compile(r'^\s*"(\w+)" \[label="([^"]*)"', re.MULTILINE)
EDGE = re.compile(r'^\s*"(\w+)" -> "(\w+)" \[label="([^"]*)"([^\]]*)\];', re.MULTILINE)


# -- an independent numpy interpreter of array expressions ------------------------------------------
def _axes(expr):
    axes = tuple(int(a) for a in expr.args[1])
    return axes or None


def npeval(expr, env):
    """Evaluate an array expression with numpy floats (the atoms as numpy defines them)."""
    if isinstance(expr, sympy.Symbol):
        return env[expr]
    if expr.is_number:
        return float(expr)
    args = expr.args
    value = [lambda k=k: npeval(args[k], env) for k in range(len(args))]
    if isinstance(expr, arrays.Matmul):
        return np.matmul(value[0](), value[1]())
    if isinstance(expr, arrays.Transposed):
        return value[0]().T
    if isinstance(expr, (arrays.ReduceSum, arrays.ReduceMean, arrays.ReduceMax, arrays.LogSumExp)):
        reduce = {arrays.ReduceSum: np.sum, arrays.ReduceMean: np.mean, arrays.ReduceMax: np.max,
                  arrays.LogSumExp: lambda a, **kw: np.log(np.sum(np.exp(a), **kw))}[type(expr)]
        return reduce(value[0](), axis=_axes(expr), keepdims=bool(args[2]))
    if isinstance(expr, (arrays.Softmax, arrays.LogSoftmax)):
        a, axis = value[0](), int(args[1])
        log_p = a - np.log(np.sum(np.exp(a), axis=axis, keepdims=True))
        return np.exp(log_p) if isinstance(expr, arrays.Softmax) else log_p
    if isinstance(expr, arrays.ExpandDims):
        return np.expand_dims(value[0](), tuple(int(a) for a in args[1]))
    if isinstance(expr, arrays.BroadcastTo):
        return np.broadcast_to(value[0](), tuple(int(npeval(d, env)) for d in args[1]))
    if isinstance(expr, sympy.Add):
        return sum(v() for v in value)
    if isinstance(expr, sympy.Mul):
        return np.prod(np.broadcast_arrays(*[v() for v in value]), axis=0) if len(value) > 1 else value[0]()
    if isinstance(expr, sympy.Pow):
        return np.power(value[0](), value[1]())
    if isinstance(expr, sympy.Piecewise):
        (v, c), (w, _) = expr.args
        return np.where(npeval(c, env), npeval(v, env), npeval(w, env))
    if isinstance(expr, sympy.core.relational.Relational):
        return {">": np.greater, ">=": np.greater_equal, "<": np.less, "<=": np.less_equal}[expr.rel_op](
            value[0](), value[1]())
    functions = {sympy.exp: np.exp, sympy.log: np.log, sympy.Max: np.maximum, sympy.tanh: np.tanh}
    return functions[type(expr)](*[v() for v in value])


# -- the gradient oracle ---------------------------------------------------------------------------
class Oracle:
    """A forward program (named steps) at random sizes and inputs; ∂L/∂v by central differences."""

    def __init__(self, spec, program, seed=0):
        rng = np.random.default_rng(seed)
        self.spec, self.program = spec, program
        self.sizes = dict(zip(spec.dims, rng.permutation([2, 3, 4, 5, 6])[:len(spec.dims)].tolist()))
        self.leaves = {d: n for d, n in self.sizes.items()}
        onehot = {t for kind, t, _ in spec.assumptions if kind == "onehot"}
        for s in (*spec.inputs, *spec.params, *spec.constants):
            shape = self.shape(spec.shapes[s])
            values = rng.uniform(0.2, 1.0, shape) if s.is_positive or s in onehot else rng.normal(size=shape)
            self.leaves[s] = values / values.sum(axis=1, keepdims=True) if s in onehot else values
        self.dout = rng.normal(size=self.shape(spec.shapes[spec.output]))
        self.values = self.run({})
        self.cache = {}

    def shape(self, symbolic):
        return tuple(int(d.xreplace(self.sizes)) for d in symbolic)

    def run(self, override):
        env = {**self.leaves, **override}
        for symbol, expr in self.program:
            env[symbol] = override[symbol] if symbol in override else npeval(expr, env)
        return env

    def objective(self, override):
        return float(np.sum(self.dout * self.run(override)[self.spec.output]))

    def gradient(self, v):
        """∂(sum(dout * output))/∂v, entry by entry, everything after v recomputed."""
        if v not in self.cache:
            base = np.array(self.values[v], dtype=float)
            grad = np.zeros_like(base)
            for idx in np.ndindex(base.shape):
                h = 1e-6 * max(1.0, abs(base[idx]))
                up, down = base.copy(), base.copy()
                up[idx] += h
                down[idx] -= h
                grad[idx] = (self.objective({v: up}) - self.objective({v: down})) / (2 * h)
            self.cache[v] = grad
        return self.cache[v]


def assert_close(got, want, what):
    got = np.broadcast_to(np.asarray(got, dtype=float), np.shape(want))
    scale = max(1.0, float(np.max(np.abs(want))) if np.size(want) else 1.0)
    assert np.allclose(got, want, rtol=1e-5, atol=1e-7 * scale), (what, got, want)


def gradient_env(oracle, symbols):
    """Gradient symbols (``dW1``, ``dout``) bound to the oracle's gradients."""
    spec = oracle.spec
    env = dict(oracle.values)
    for v in (*spec.inputs, *spec.params, *(s for s, _ in spec.graph)):
        for g in (ArrayVar(f"d{v.name}", real=True), sympy.Symbol(f"d{v.name}", real=True)):
            if g in symbols:
                env[g] = oracle.dout if v == spec.output else oracle.gradient(v)
    return env


# -- the printed steps ---------------------------------------------------------------------------------
def check_steps(steps, seed=0):
    """Every printed equality holds: a backward row's left side is the oracle's ∂L/∂v."""
    spec = steps.spec
    oracle = Oracle(spec, spec.graph, seed)
    rows = steps.rows
    symbols = set().union(*(sympy.sympify(f.value).free_symbols for r in rows for f in r.forms))
    env = gradient_env(oracle, symbols | set(steps.meaning))
    env[steps.derivation.dout] = oracle.dout
    for r in rows:
        if r.kind == "define":
            env[r.lhs] = npeval(r.forms[0].value, env)
    checked = 0
    for r in rows:
        if r.kind == "backward":
            _, v = steps.meaning[r.lhs]
            lhs = oracle.gradient(v) if v != spec.output else oracle.dout
        else:
            lhs = npeval(r.lhs, env)
        for form in r.forms:
            assert_close(npeval(form.value, env), lhs, (spec.name, r.kind, r.lhs, form.value))
            checked += 1
    return checked


@pytest.mark.parametrize("name", ARRAY_SPECS)
def test_every_printed_backward_equality_is_true(name):
    steps = chain_rule_steps(symbackprop.load(name))
    derivation = steps.derivation
    assert [r.lhs for r in steps.rows if r.kind == "backward"] == [t for t, _ in derivation.steps]
    assert check_steps(steps) >= len(derivation.steps) + len(steps.spec.graph)


def test_the_oracle_catches_a_wrong_statement():
    steps = chain_rule_steps(symbackprop.load("two_layer_net"))
    backward = next(s for s in steps.sections if s.title.startswith("Backward"))
    i = next(k for k, r in enumerate(backward.rows) if r.lhs.name == "dW1")
    row = backward.rows[i]
    x, da1 = (ArrayVar(n, real=True) for n in ("x", "da1"))
    wrong = arrays.Matmul(arrays.Transposed(x), da1 * 2)
    backward.rows[i] = type(row)(row.kind, row.lhs, (type(row.forms[0]).of(wrong),))
    with pytest.raises(AssertionError):
        check_steps(steps)


def test_two_layer_net_reads_as_matrix_calculus():
    text = latex(symbackprop.load("two_layer_net"))
    for piece in (r"a_{1} &= x W_{1} + b_{1} && N \times H",
                  r"y &= \operatorname{softmax}_{\text{axis } 1}\left(a_{2}\right) && N \times K",
                  r"\mathit{loss} &= -\frac{1}{N} \sum \left(t \odot \log{\left(y \right)}\right) && \text{scalar}",
                  r"\sum_{\text{axis } 1,\ \text{keepdims}} t &= 1",
                  (r"\frac{\partial L}{\partial a_{2}} &= \frac{1}{N} \frac{\partial L}{\partial \mathit{loss}} "
                   r"\left(y - t\right) && N \times K"),
                  r"\frac{\partial L}{\partial z_{1}} &= \frac{\partial L}{\partial a_{2}} W_{2}^{T} && N \times H",
                  (r"\frac{\partial L}{\partial a_{1}} &= \frac{\partial L}{\partial z_{1}} \odot "
                   r"\mathbf{1}\left[a_{1} > 0\right]"),
                  r"\frac{\partial L}{\partial W_{1}} &= x^{T} \frac{\partial L}{\partial a_{1}} && D \times H",
                  r"\frac{\partial L}{\partial b_{1}} &= \sum_{\text{axis } 0} \frac{\partial L}{\partial a_{1}} && H"):
        assert piece in text, piece
    assert text.startswith("\\begin{align*}") and text.rstrip().endswith("\\end{align*}")


def test_affine_softmax_and_batch_norm_notation():
    affine = latex(symbackprop.load("affine"))
    assert r"\frac{\partial L}{\partial x} &= \frac{\partial L}{\partial y} W^{T} && N \times D" in affine
    assert r"\frac{\partial L}{\partial W} &= x^{T} \frac{\partial L}{\partial y} && D \times M" in affine
    assert r"\frac{\partial L}{\partial b} &= \sum_{\text{axis } 0} \frac{\partial L}{\partial y} && M" in affine
    assert r"\log\operatorname{softmax}_{\text{axis } 1}\left(x\right)" in latex(symbackprop.load("log_softmax"))
    norm = latex(symbackprop.load("batch_norm"))
    assert r"\mu &= \operatorname{mean}_{\text{axis } 0}\left(x\right) && D" in norm
    assert r"\mathit{std} &= \sqrt{\mathit{var} + 10^{-7}} && D" in norm
    assert r"t_{1} &= \frac{1}{\mathit{std}} && D" in norm   # the recomputed helper is defined
    assert r"\frac{\partial L}{\partial y} &= -\frac{\partial L}{\partial \mathit{loss}} \frac{t}{N y}" in \
        latex(symbackprop.load("cross_entropy"))


# declarations beyond the catalog: transposes in the forward pass, where, logsumexp, max and mean
OWN = {
    "transposed": 'inputs = { x = ["N", "D"] }\nparams = { W = ["M", "D"] }\nforward = "tanh(x @ W.T)"',
    "leaky": 'inputs = { x = ["N", "D"] }\nparams = { W = ["D", "M"] }\n[graph]\na = "x @ W"\n'
             'y = "where(a > 0, a, 0.01 * a)"\nloss = "mean(y**2)"',
    "logsumexp": 'inputs = { x = ["N", "K"] }\n[graph]\nm = "logsumexp(x, axis=1, keepdims=True)"\ny = "x - m"',
    "row_max": 'inputs = { x = ["N", "K"] }\nforward = "max(x, axis=1) * 2"',
    "column_mean": 'inputs = { x = ["N", "D"] }\nparams = { g = ["D"] }\nforward = "sum(exp(x) * g, axis=0) / N"',
}


def own(name):
    from symbackprop.spec.toml import spec_from_toml

    return spec_from_toml(f'name = "{name}"\n' + OWN[name])


@pytest.mark.needs("dot")
@pytest.mark.parametrize("name", sorted(OWN))
def test_declarations_of_ones_own(name):
    spec = own(name)
    assert check_steps(chain_rule_steps(spec)) >= 2
    check_arrows(operations(spec))
    assert graph(spec, symbolic=True).svg().count("<svg") == 1


def test_where_and_transposes_print_as_written():
    leaky = latex(own("leaky"))
    assert r"y &= \operatorname{where}\left(a > 0, a, \frac{1}{100} a\right)" in leaky
    assert r"\frac{\partial L}{\partial a} &= \frac{\partial L}{\partial y} \odot " \
           r"\operatorname{where}\left(a > 0, 1, \frac{1}{100}\right)" in leaky
    transposed = latex(own("transposed"))
    assert r"y &= \tanh{\left(x W^{T} \right)}" in transposed
    assert r"\right)\right) W && N \times D" in transposed      # (W^T)^T is written W


def test_higher_orders_are_for_elementwise_layers(capsys):
    assert main(["latex", "affine", "--order", "2"]) == 2
    assert "elementwise" in capsys.readouterr().err


# -- graphs --------------------------------------------------------------------------------------------
def parse(dot):
    """Node labels by id; forward and backward edges as (from label, to label, edge label),
    in the direction each arrow points."""
    nodes = dict(NODE.findall(dot))
    forward, backward = [], []
    for a, b, label, attrs in EDGE.findall(dot):
        if 'color="red"' in attrs:
            assert 'style="bold"' in attrs and 'dir="back"' in attrs
            backward.append((nodes[b], nodes[a], label))
        else:
            forward.append((nodes[a], nodes[b], label))
    return nodes, forward, backward


SOFTMAX = "softmax\\naxis=1"


def test_two_layer_net_graph_by_hand():
    dot = graph(symbackprop.load("two_layer_net")).dot
    nodes, forward, backward = parse(dot)
    assert Counter(nodes.values()) == Counter(["x", "W1", "b1", "W2", "b2", "t", "@", "+", "relu", "@", "+",
                                               SOFTMAX, "log", "×", "sum", "×(-1/N)", "loss"])
    assert Counter(forward) == Counter([
        ("x", "@", "N×D"), ("W1", "@", "D×H"), ("@", "+", "N×H"), ("b1", "+", "H"), ("+", "relu", "a1: N×H"),
        ("relu", "@", "z1: N×H"), ("W2", "@", "H×K"), ("@", "+", "N×K"), ("b2", "+", "K"),
        ("+", SOFTMAX, "a2: N×K"), (SOFTMAX, "log", "y: N×K"), ("log", "×", "N×K"), ("t", "×", "N×K"),
        ("×", "sum", "N×K"), ("sum", "×(-1/N)", "scalar"), ("×(-1/N)", "loss", "scalar")])
    # the backward pass skips softmax: log(softmax) is differentiated as log_softmax, da2 = dout*(y - t)/N
    assert Counter(backward) == Counter([
        ("loss", "×(-1/N)", "dout"), ("×(-1/N)", "+", "da2"), ("+", "@", "da2"), ("+", "b2", "db2"),
        ("@", "relu", "dz1"), ("@", "W2", "dW2"), ("relu", "+", "da1"), ("+", "@", "da1"), ("+", "b1", "db1"),
        ("@", "x", "dx"), ("@", "W1", "dW1")])
    assert 'label="backward fused: log(y) = log_softmax(a2, axis=1)"' in dot
    _, _, symbolic = parse(graph(symbackprop.load("two_layer_net"), symbolic=True).dot)
    assert Counter(label for *_, label in symbolic) == Counter([
        "dout", "dout*(y - t)/N", "da2", "sum(da2, axis=0)", "da2 @ W2.T", "z1.T @ da2", "dz1*where(a1 > 0, 1, 0)",
        "da1", "sum(da1, axis=0)", "da1 @ W1.T", "x.T @ da1"])


def test_affine_graph_is_the_seeds_figure_5_25():
    _, forward, backward = parse(graph(symbackprop.load("affine")).dot)
    assert Counter(forward) == Counter([("x", "@", "N×D"), ("W", "@", "D×M"), ("@", "+", "N×M"), ("b", "+", "M"),
                                        ("+", "y", "N×M")])
    assert Counter(backward) == Counter([("y", "+", "dout"), ("+", "@", "dout"), ("+", "b", "db"), ("@", "x", "dx"),
                                         ("@", "W", "dW")])
    _, _, collapsed = parse(graph(symbackprop.load("affine"), collapse=True, symbolic=True).dot)
    assert Counter(collapsed) == Counter([("y", "Affine", "dout"), ("Affine", "x", "dout @ W.T"),
                                          ("Affine", "W", "x.T @ dout"), ("Affine", "b", "sum(dout, axis=0)")])
    _, only_forward, none = parse(graph(symbackprop.load("affine"), backward=False).dot)
    assert len(only_forward) == 5 and none == []


def check_arrows(g, seed=0):
    """Every backward arrow is true: the arrows into a value add up to the oracle's ∂L/∂v."""
    spec = g.spec
    oracle = Oracle(spec, [(n.symbol, n.expr) for n in g.nodes], seed)
    symbols = set().union(*(a.expr.free_symbols for a in g.arrows))
    env = gradient_env(oracle, symbols)
    env[g.derivation.dout] = oracle.dout
    into = {}
    for a in g.arrows:
        into.setdefault(a.target, []).append(np.asarray(npeval(a.expr, env), dtype=float))
    for v, parts in into.items():
        want = oracle.gradient(v)
        assert_close(sum(np.broadcast_to(p, want.shape) for p in parts), want, (spec.name, v))
    return oracle, into


@pytest.mark.parametrize("name", ARRAY_SPECS)
def test_every_graph_node_edge_and_arrow(name):
    spec = symbackprop.load(name)
    g = operations(spec)
    oracle, into = check_arrows(g)
    # the declared values come out of the nodes unchanged, and every declared step has its node
    declared = Oracle(spec, spec.graph)
    for symbol, _ in spec.graph:
        assert_close(oracle.values[symbol], declared.values[symbol], symbol)
        assert g.producer(symbol).step == symbol
    assert set(spec.differentiated) <= set(into)
    # every forward edge's label is the shape of the value it carries, at these sizes
    dot = graph(spec).dot
    ids = {f"in_{s.name}": s for s in g.leaves} | {f"op{i + 1}": n.symbol for i, n in enumerate(g.nodes)}
    ids["out"] = spec.output
    edges = [e for e in EDGE.findall(dot) if 'color="red"' not in e[3]]
    assert len(edges) == sum(len(n.args) for n in g.nodes) + 1
    sizes = {d.name: n for d, n in oracle.sizes.items()}
    for a, b, label, _ in edges:
        name, _, text = label.rpartition(": ")
        shape = () if text == "scalar" else tuple(sizes[d] if d in sizes else int(d) for d in text.split("×"))
        assert shape == np.shape(oracle.values[ids[a]]), (a, b, label)
        assert name in ("", ids[a].name)
    red = [e for e in EDGE.findall(dot) if 'color="red"' in e[3]]
    assert len(red) == len(g.arrows) + 1


def test_a_wrong_arrow_is_caught():
    g = operations(symbackprop.load("two_layer_net"))
    i = next(k for k, a in enumerate(g.arrows) if a.name == "dW1")
    a = g.arrows[i]
    g.arrows[i] = type(a)(a.source, a.target, 2 * a.expr, a.name)
    with pytest.raises(AssertionError):
        check_arrows(g)


# -- rendering, the command line, Jupyter and the report ----------------------------------------------------
@pytest.mark.needs("latex")
def test_array_latex_compiles(tmp_path):
    blocks = [latex(symbackprop.load(name)) for name in ARRAY_SPECS]
    blocks += [latex(symbackprop.load(name), inline=True) for name in ("two_layer_net", "batch_norm")]
    blocks += [derivation_latex(symbackprop.load(name)) for name in ARRAY_SPECS]
    blocks += [latex(own(name)) for name in sorted(OWN)]
    (tmp_path / "arrays.tex").write_text(document(*blocks), encoding="utf-8")
    result = subprocess.run([shutil.which("latex"), "-interaction=nonstopmode", "-halt-on-error", "arrays.tex"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, "\n".join(line for line in result.stdout.splitlines() if line.startswith("!"))
    assert re.search(r"Output written on arrays\.dvi \(\d+ pages?", result.stdout)


@pytest.mark.needs("dot", "latex", "dvipng")
def test_commands_for_the_two_layer_network(tmp_path, capsys):
    svg = tmp_path / "net.svg"
    assert main(["graph", "two_layer_net", "-o", str(svg)]) == 0
    text = svg.read_text()
    for label in (">N×D</text>", ">a1: N×H</text>", ">dW1</text>", ">da2</text>", ">relu</text>"):
        assert label in text, label
    assert main(["graph", "two_layer_net", "--symbolic", "-o", str(tmp_path / "net.png")]) == 0
    assert (tmp_path / "net.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["latex", "two_layer_net", "-o", str(tmp_path / "net_steps.png")]) == 0
    assert (tmp_path / "net_steps.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    capsys.readouterr()
    assert main(["latex", "affine", "--inline"]) == 0
    assert capsys.readouterr().out.startswith("Forward pass")
    assert main(["graph", "softmax_with_loss", "--collapse"]) == 0
    assert '"layer" [label="SoftmaxWithLoss"' in capsys.readouterr().out


@pytest.mark.needs("dot")
def test_jupyter_shows_array_derivations_and_graphs():
    derivation = symbackprop.load("two_layer_net").derive()
    shown = derivation_latex(derivation)
    assert shown.startswith("TwoLayerNet\n$$\\begin{aligned}") and shown.endswith("\\end{aligned}$$")
    assert r"\frac{\partial L}{\partial W_{1}} &= x^{T} \frac{\partial L}{\partial a_{1}}" in shown
    # the forward keeps y - t, not y and t: the loss's backward reads only their difference
    assert r"\text{cache} &: x, z_{1}, y - t, \mathbf{1}\left[a_{1} > 0\right]" in shown
    steps = chain_rule_steps(derivation)
    assert steps._repr_latex_() == steps.latex(inline=True)
    bundle = graph(derivation)._repr_mimebundle_()
    assert "<svg" in bundle["image/svg+xml"] and bundle["text/plain"].startswith('digraph "TwoLayerNet"')


@pytest.mark.needs("dot")
def test_markdown_report_of_the_network(tmp_path):
    report = tmp_path / "report.md"
    assert main(["check", "two_layer_net", "--examples", "3", "--markdown", str(report)]) == 0
    text = report.read_text()
    assert "`dz1 = da2 @ W2.T`<br>`da1 = dz1*where(a1 > 0, 1, 0)`" in text       # node by node, as derive prints
    assert re.search(r"\| gradient check \| mean &#124;backprop - numerical&#124;: W1 \S+, b1 \S+, W2 \S+, b2 \S+ \|",
                     text)
    assert "![computational graph of TwoLayerNet](report_files/twolayernet.svg)" in text
    assert ">dW1</text>" in (tmp_path / "report_files" / "twolayernet.svg").read_text()
