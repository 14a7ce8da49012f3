r"""LaTeX of layers in index notation: every statement entry by entry, compiled by real TeX.

Oracles, independent of the printer: what each row must show is read from the
derivation's own atoms (:mod:`symbackprop.indexed`) with the helpers below: the positions a
statement writes through (the row's left side, ``=`` for plain indices, ``\mathrel{+}=`` for
a scatter-add), the indices each sum and maximum reduces (the subscripts of ``\sum`` and
``\max``, the arg-max's variables), the hyperparameters its positions name; and the whole
text goes through a real TeX engine (a missing one fails under ``SYMBACKPROP_REQUIRE_TOOLS=1``).
"""
import re
import shutil
import subprocess

import pytest

import symbackprop
from symbackprop import indexed
from symbackprop.cli import main
from symbackprop.explain import chain_rule_steps, derivation_latex, latex
from symbackprop.explain.tex import document
from symbackprop.spec.toml import spec_from_toml

INDEX_SPECS = ["convolution", "max_pooling", "avg_pooling", "attention", "simple_conv_net"]
#: Gathers and blocks: typeset (and compiled below), their entries checked on their own.
GATHERS_AND_BLOCKS = ["embedding", "lstm_step"]
OWN = {
    # an input read in index notation and in matrix notation: its gradient is both
    "mixed": 'inputs = { x = ["N", "D"] }\nparams = { W = ["D", "M"] }\n[graph]\n'
             'a = "a[n, m] = sum(x[n, d] * W[d, m], (d,))"\nb = "x * 2"\ny = "sum(a) + sum(b)"',
    # names and hyperparameters that need escaping, multi-letter indices
    "odd_names": 'inputs = { x_in = ["N", "C", "L"] }\nparams = { w_2 = ["C", "K"] }\n'
                 'hyper = { my_step = 2, off = 1 }\n[graph]\n'
                 'out_1 = "out_1[n, ch, o] = sum(x_in[n, ch, o*my_step + kk - off] * w_2[ch, kk], (kk,))"',
    # a compound stride and offset
    "strided": 'inputs = { x = ["N", "L"] }\nparams = { w = ["K"] }\nhyper = { s = 2, off = 2 }\n[graph]\n'
               'y = "y[n, o] = sum(x[n, o*2*s + kk + 1 - off] * w[kk], (kk,))"',
}
FALLBACKS = ("IndexSum", "IndexMax", "index\\_sum", "index\\_max", "first\\_max", "\\mathtt", "\\operatorname{Index")


def own(name):
    return spec_from_toml(f'name = "{name}"\n' + OWN[name])


def load(name):
    return own(name) if name in OWN else symbackprop.load(name)


# -- the oracle: what the atoms say ---------------------------------------------------------------
def target(atom):
    return tuple(atom.args[-3]) if isinstance(atom, indexed.IndexSum) else tuple(atom.args[2])


def reduced(atom):
    """The indices the atom reduces: those of its ranges its output positions do not name."""
    out = tuple(atom.args[3]) if isinstance(atom, indexed.IndexMaxGrad) else target(atom)
    named = set().union(*(p.atoms(indexed.Index) for p in out))
    return [i.name for i, _ in atom.args[-2] if i not in named]


def subscripts(text, operator):
    """The index names under each ``\\sum_{...}`` (or ``\\max_{...}``) of ``text``, in order."""
    found = []
    for sub in re.findall(re.escape(operator) + r"_\{((?:[^{}]|\{[^{}]*\})*)\}", text):
        parts = [p.strip() for p in sub.replace(r"\,", " ").split(",")]
        found.append([re.sub(r"\\mathit\{(\w+)\}", r"\1", p.split("<")[0].strip()) for p in parts])
    return found


def index_rows(steps):
    """(row, its LaTeX lines, its atoms) for every row with index atoms."""
    write = steps.row_writer()
    for row in steps.rows:
        atoms = row.forms[0].value.atoms(*indexed.INDEX_ATOMS)
        if atoms:
            yield row, write(row).split(" \\\\\n"), atoms


def tex_of(index_name):
    return index_name if len(index_name) == 1 else rf"\mathit{{{index_name}}}"


# -- content --------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", [*INDEX_SPECS, *OWN])
def test_every_index_statement_shows_its_positions_and_reductions(name):
    spec = load(name)
    steps = chain_rule_steps(spec)
    checked = 0
    for row, lines, atoms in index_rows(steps):
        by_target = {}
        for atom in atoms:
            by_target.setdefault(target(atom), []).append(atom)
        indexed_lines = [line for line in lines if "_{" in line.split("&")[0]]
        assert len(indexed_lines) >= len(by_target), (row.lhs, lines)
        for where, group in by_target.items():
            names = {i.name for p in where for i in p.atoms(indexed.Index)}
            line = next(ln for ln in lines if all(tex_of(n) in ln.split("&")[0] for n in names))
            left, relation = line.split("&")[0], line.split("&")[1].split()[0]
            plain = all(isinstance(p, indexed.Index) for p in where)
            assert relation == ("=" if plain and line is lines[0] else r"\mathrel{+}="), line
            right = line.split("&")[1]
            sums = [reduced(a) for a in group if isinstance(a, indexed.IndexSum) and reduced(a)]
            maxima = [reduced(a) for a in group if isinstance(a, indexed.IndexMax)]
            assert sorted(subscripts(right, r"\sum")) == sorted(sums), (line, sums)
            assert sorted(subscripts(right, r"\max")) == sorted(maxima), (line, maxima)
            for a in group:
                if isinstance(a, indexed.IndexMaxGrad):
                    over = reduced(a)
                    assert f"({', '.join(over)}) = " in right and f"({', '.join(i + chr(39) for i in over)})" in right
            checked += 1
            assert left
    assert checked >= 1
    text = latex(spec)
    assert not [f for f in FALLBACKS if f in text], text
    used = {s for _, e in spec.graph for s in e.free_symbols} & set(spec.hyper)
    for h in used:
        assert rf"\mathrm{{{h.name.replace('_', chr(92) + '_')}}}" in text, h


def test_convolution_reads_as_the_sums_people_write():
    text = latex(symbackprop.load("convolution"))
    window = r"x_{n,c,\,i\,\mathrm{stride} + k - \mathrm{pad},\,j\,\mathrm{stride} + l - \mathrm{pad}}"
    assert rf"y_{{n f i j}} &= b_{{f}} + \sum_{{c,k,l}} {window}\, W_{{f c k l}} && N \times" in text
    assert (rf"\frac{{\partial L}}{{\partial {window}}} &\mathrel{{+}}= \sum_{{f}} "
            r"\frac{\partial L}{\partial y_{n f i j}}\, W_{f c k l} && N \times C \times \mathit{IH} \times \mathit{IW}"
            in text)
    assert rf"\frac{{\partial L}}{{\partial W_{{f c k l}}}} &= \sum_{{n,i,j}} \frac{{\partial L}}{{\partial y_{{n f i j}}}}" \
           rf"\, {window}" in text
    assert r"\frac{\partial L}{\partial b_{f}} &= \sum_{n,i,j} \frac{\partial L}{\partial y_{n f i j}} && \mathit{FN}" in text
    assert r"\left(\left\lfloor \frac{2\,\mathrm{pad} + \mathit{IH} - \mathit{FH}}{\mathrm{stride}} \right\rfloor + 1\right)" \
        in text


def test_pooling_routes_to_the_first_maximum_and_means_divide_by_the_window():
    pooled = latex(symbackprop.load("max_pooling"))
    assert r"y_{n c i j} &= \max_{k < \mathrm{pool\_h},\, l < \mathrm{pool\_w}} x_{n,c,\," in pooled
    assert (r"&\mathrel{+}= \frac{\partial L}{\partial y_{n c i j}}\, \mathbf{1}\left[(k, l) = "
            r"\operatorname{first\,arg\,max}_{(k', l')} x_{n,c,\,i\,\mathrm{stride} + k' - \mathrm{pad},\,"
            r"j\,\mathrm{stride} + l' - \mathrm{pad}}\right]") in pooled
    mean = latex(symbackprop.load("avg_pooling"))
    assert r"y_{n c i j} &= \frac{1}{\mathrm{pool\_h}\,\mathrm{pool\_w}} \sum_{k < \mathrm{pool\_h},\, l < " in mean
    assert r"&\mathrel{+}= \frac{1}{\mathrm{pool\_h}\,\mathrm{pool\_w}} \frac{\partial L}{\partial y_{n c i j}} && N" in mean


def test_networks_mix_index_and_matrix_notation():
    net = latex(symbackprop.load("simple_conv_net"))
    assert r"\left(p_{1}\right)_{n f i j} &= \max_{k < 2,\, l < 2} \left(z_{1}\right)_{n,f,\,2 i + k,\,2 j + l}" in net
    assert r"\frac{\partial L}{\partial \left(W_{2}\right)_{f i j h}} &= \sum_{n} " in net
    assert r"\frac{\partial L}{\partial W_{3}} &= z_{2}^{T} \frac{\partial L}{\partial a_{3}} && H \times K" in net
    attention = latex(symbackprop.load("attention"))
    assert r"s_{n t u} &= \sum_{d} q_{n t d}\, k_{n u d} && N \times T \times S" in attention
    assert r"\frac{\partial L}{\partial k_{n u d}} &= \sum_{t} \frac{\partial L}{\partial s_{n t u}}\, q_{n t d}" in attention
    mixed = latex(own("mixed"))    # dx = 2 dB (matrix), then += the index statement's part
    assert (r"\frac{\partial L}{\partial x} &= 2 \frac{\partial L}{\partial b} && N \times D \\" + "\n"
            r"\frac{\partial L}{\partial x_{n d}} &\mathrel{+}= \sum_{m} \frac{\partial L}{\partial a_{n m}}\, W_{d m}") \
        in mixed


def test_a_gather_reads_through_the_constant_and_its_gradient_scatters_through_it():
    """The embedding: the forward reads W at x's entry, the gradient of W is added through it."""
    text = latex(load("embedding"))
    assert "W_{\\,x_{n t},d}" in text
    assert "\\frac{\\partial L}{\\partial W_{\\,x_{n t},d}} &\\mathrel{+}=" in text
    assert not any(f in text for f in FALLBACKS)


def test_names_from_the_declaration_are_escaped():
    text = latex(own("odd_names"))
    assert r"\mathit{out\_1}_{n,\mathit{ch},o} &= \sum_{\mathit{kk}} \mathit{x\_in}_{n,\mathit{ch},\,o\,\mathrm{my\_step} " \
           r"+ \mathit{kk} - \mathrm{off}}" in text
    assert "my_step" not in text.replace(r"my\_step", "")
    strided = latex(own("strided"))
    assert r"x_{n,\,2\,\mathrm{s}\, o + \mathit{kk} - \mathrm{off} + 1}" in strided


def test_jupyter_shows_index_derivations():
    derivation = symbackprop.load("convolution").derive()
    shown = derivation_latex(derivation)
    assert shown.startswith("Convolution\n$$\\begin{aligned}") and shown.endswith("\\end{aligned}$$")
    assert r"\text{cache} &: x" in shown and r"&\mathrel{+}= \sum_{f}" in shown
    steps = chain_rule_steps(derivation)
    assert steps._repr_latex_() == steps.latex(inline=True)


# -- real TeX ---------------------------------------------------------------------------------------
@pytest.mark.needs("latex")
def test_index_latex_compiles(tmp_path):
    names = [*INDEX_SPECS, *OWN, *GATHERS_AND_BLOCKS]
    blocks = [latex(load(name)) for name in names]
    blocks += [latex(load(name), inline=True) for name in names]
    blocks += [derivation_latex(load(name)) for name in names]
    (tmp_path / "index.tex").write_text(document(*blocks), encoding="utf-8")
    result = subprocess.run([shutil.which("latex"), "-interaction=nonstopmode", "-halt-on-error", "index.tex"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, "\n".join(line for line in result.stdout.splitlines() if line.startswith("!"))
    assert re.search(r"Output written on index\.dvi \(\d+ pages?", result.stdout)


@pytest.mark.needs("latex", "dvipng")
def test_the_command_typesets_an_index_layer(tmp_path, capsys):
    png = tmp_path / "conv.png"
    assert main(["latex", "convolution", "-o", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    capsys.readouterr()
    assert main(["latex", "max_pooling", "--inline"]) == 0
    assert r"\operatorname{first\,arg\,max}" in capsys.readouterr().out
