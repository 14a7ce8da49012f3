r"""The chain-rule steps of a declaration, as LaTeX that compiles.

:func:`chain_rule_steps` lays a derivation out the way the seed's section 5.5.2 does,
in four parts, every line a chain of true equalities:

1. the forward pass, one primitive node at a time (sigmoid: ``u_1 = -x``,
   ``u_2 = e^{u_1}``, ``u_3 = u_2 + 1``, ``y = 1/u_3``), with the worked numbers of a
   declaration's ``[values]`` (``200 + 450 = 650``);
2. each node's local derivative, from ``diff`` and in the node's own output where that
   is cheaper (``∂y/∂u_3 = -1/u_3^2 = -y^2``);
3. the backward pass from ``∂L/∂y`` to every input, one node at a time
   (``∂L/∂u_1 = ∂L/∂u_2 ∂u_2/∂u_1 = -∂L/∂y y^2 e^{-x}``);
4. the simplification of each input's gradient from the raw product down to the form
   the derivation chose (``... = ∂L/∂y y(1 - y)``), through the forward pass written
   out, and optionally higher derivatives in cached values (``--order 2``).

:meth:`ChainRuleSteps.latex` gives an ``align*`` block for papers (``amsmath``), or with
``inline=True`` titled ``$$\begin{aligned}...\end{aligned}$$`` blocks for a notebook or
a Markdown cell.  Every row is also kept as SymPy expressions (:attr:`ChainRuleSteps.rows`),
with what each notation symbol means (:attr:`ChainRuleSteps.meaning`), so that the
tests check every printed equality numerically.
"""
from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import sympy

from ..derivation import Derivation, derivation_of, operations_of
from ..derivation.operations import Operation, Operations
from ..derivation.order import HigherDerivative, higher_order, total_symbol
from ..lang.numbers import as_sympy, format_number
from ..spec.model import DOUT, Spec
from .tex import Form, Row, Section, StepsText, aligned, tex_name, tex_text

#: Rows longer than this (characters of LaTeX) put each further form on its own line.
ONE_LINE = 64


@dataclass(repr=False)
class ChainRuleSteps(StepsText):
    """The chain-rule steps of one declaration (see the module docstring).

    Attributes
    ----------
    graph : Operations
        The forward pass split into primitive nodes (the derivation's).
    derivation : Derivation
        The derivation whose chosen backward forms the steps end in.
    sections : list of Section
        Titled groups of rows, in order.
    meaning : dict
        What each notation symbol stands for: ``('grad', v)`` for ``∂L/∂v``,
        ``('partial', v, a)`` for a node's local derivative, ``('total', s, (x, ...))``
        for a derivative of a value through the whole forward pass.
    """

    graph: Operations
    derivation: Derivation
    sections: list[Section]
    meaning: dict[sympy.Symbol, tuple]
    order: int = 1

    @property
    def spec(self) -> Spec:
        return self.graph.spec

    def row_writer(self) -> Callable[[Row], str]:
        return _Printer(self.spec, self.total_notation).row

    @property
    def total_notation(self) -> str:
        r"""``d`` for derivatives through the whole forward pass (``\frac{d y}{d x}``) when
        the layer has one input, or when ``\partial`` would read as a node's local
        derivative of the same names; otherwise ``\partial``."""
        if len(self.spec.inputs) == 1:
            return "d"
        inputs = set(self.spec.inputs)
        differ = {(m[1], m[2]) for m in self.meaning.values()
                  if m[0] == "partial" and not set(self.graph.producer(m[1]).args) <= inputs}
        total = {(m[1], m[2][0]) for m in self.meaning.values() if m[0] == "total" and len(m[2]) == 1}
        return "d" if differ & total else r"\partial"


# -- notation symbols -----------------------------------------------------------------------
def grad_symbol(v: sympy.Symbol) -> sympy.Symbol:
    """The notation symbol ``∂L/∂v``."""
    return sympy.Symbol(f"grad|{v.name}")


def partial_symbol(v: sympy.Symbol, a: sympy.Symbol) -> sympy.Symbol:
    """The notation symbol of a node's local derivative ``∂v/∂a``."""
    return sympy.Symbol(f"partial|{v.name}|{a.name}")


# -- building the rows -----------------------------------------------------------------------
class _Builder:
    def __init__(self, derivation: Derivation):
        self.g, self.d = operations_of(derivation), derivation
        self.meaning: dict[sympy.Symbol, tuple] = {}
        self.masks = derivation.masks

    def grad(self, v: sympy.Symbol) -> sympy.Symbol:
        if v == self.g.output:
            return DOUT
        s = grad_symbol(v)
        self.meaning[s] = ("grad", v)
        return s

    def partial(self, v: sympy.Symbol, a: sympy.Symbol) -> sympy.Symbol:
        s = partial_symbol(v, a)
        self.meaning[s] = ("partial", v, a)
        return s

    def total(self, s: sympy.Symbol, wrt: tuple[sympy.Symbol, ...]) -> sympy.Symbol:
        symbol = total_symbol(s, wrt)
        self.meaning[symbol] = ("total", s, wrt)
        return symbol

    def unmask(self, expr: sympy.Expr) -> sympy.Expr:
        return expr.xreplace(self.masks)

    def num(self, value: sympy.Expr) -> Form:
        return Form.of(value, numeric=True)

    # forward
    def forward_rows(self) -> list[Row]:
        rows = []
        for node in self.g.nodes:
            forms = [Form.of(node.expr)]
            shown = self.g.readable.get(node.symbol)
            if shown is not None and shown != node.expr:
                forms.append(Form.of(shown))
            if self.g.values is not None:
                forms += self.numbers_of(node)
            rows.append(Row("forward", node.symbol, tuple(forms)))
        return rows

    def numbers_of(self, node: Operation) -> list[Form]:
        values = self.g.values
        out = []
        if node.op in ("×", "+") or (node.op[:1] in "×+" and len(node.args) == 1):
            c, _rest = node.expr.as_independent(*node.args, as_Add=node.op.startswith("+"))
            operands = [values[a] for a in node.args if a != sympy.S.One]
            if node.op.startswith("×"):
                terms = ((*([c] if c != 1 else []), *operands),)
            else:
                terms = tuple((v,) for v in operands) + (((c,),) if c != 0 else ())
            out.append(Form(terms, numeric=True))
        out.append(self.num(values[node.symbol]))
        return out

    # local derivatives
    def local_rows(self) -> list[Row]:
        rows = []
        for node in self.g.nodes:
            for a in node.args:
                forms = [Form.of(self.unmask(node.raw[a]))]
                if node.local[a] != node.raw[a]:
                    forms.append(Form.of(node.local[a]))
                if self.g.values is not None and not node.local[a].is_number:
                    forms.append(self.num(node.local[a].xreplace(self.g.values)))
                rows.append(Row("local", self.partial(node.symbol, a), tuple(forms)))
        return rows

    # backward pass
    def backward_rows(self) -> list[Row]:
        rows = []
        if self.g.values is not None:
            rows.append(Row("backward", DOUT, (self.num(1),)))
        order = [n.symbol for n in reversed(self.g.nodes[:-1])] + list(self.g.inputs)
        for v in order:
            if v in self.g.gradients:
                rows.append(self.backward_row(v))
        return rows

    def backward_row(self, v: sympy.Symbol) -> Row:
        consumers = self.g.consumers(v)
        if not consumers:
            return Row("backward", self.grad(v), (Form.of(0),))
        notation = Form(tuple((self.grad(c.symbol), self.partial(c.symbol, v)) for c in consumers))
        forms = [notation, Form.of(self.g.gradients[v])]
        if self.g.values is not None:
            gv, values = self.g.gradient_values, self.g.values
            forms.append(Form(tuple((gv[c.symbol], c.local[v].xreplace(values)) for c in consumers), numeric=True))
            forms.append(self.num(gv[v]))
        return Row("backward", self.grad(v), tuple(forms))

    # simplification to the chosen form
    def chain_rows(self) -> list[Row]:
        rows = []
        for x in self.g.inputs:
            raw = self.g.gradients[x]
            chosen = self.unmask(self.d.backward[x.name])
            if raw == chosen:
                continue
            rows.append(Row("chain", self.grad(x), tuple(_dedupe(self.chain_forms(raw, chosen)))))
        return rows

    def chain_forms(self, raw: sympy.Expr, chosen: sympy.Expr) -> list[Form]:
        definitions = {k: self.unmask(v) for k, v in self.d.definitions.items() if k not in self.g.inputs}
        factors = _dout_first(sympy.Mul.make_args(chosen))
        written = tuple(f.xreplace(definitions) for f in factors)
        combined = tuple(_common_denominator(f) for f in written)
        expanded = [Form((combined,)), Form((written,))]
        if any(f.has(sympy.ITE) for f in written):
            expanded = []  # a condition on the output (ELU's y > 0) does not read better in the input
        return [Form.of(raw), Form.of(raw.xreplace(self.g.definitions)), *expanded, Form((tuple(factors),))]

    def helper_rows(self, rows: list[Row]) -> list[Row]:
        """Definitions of the derivation's cached helpers (``t = 1/(1 + e^{-x})``) used below."""
        known = set(self.g.inputs) | {n.symbol for n in self.g.nodes} | set(self.meaning) | {DOUT}
        used = set()
        for r in rows:
            for f in r.forms:
                used |= f.value.free_symbols
        definitions = self.d.definitions
        return [Row("define", s, (Form.of(self.unmask(definitions[s])),))
                for s in sorted(used - known, key=lambda s: s.name) if s in definitions]

    # higher orders
    def order_rows(self, order: int) -> list[Row]:
        y = self.g.output
        rows = []
        for x in self.g.inputs:
            forms = [Form.of(self.d.raw_local[x.name]), Form.of(self.unmask(self.d.local[x.name]))]
            rows.append(Row("total", self.total(y, (x,)), tuple(_dedupe(forms))))
        rates: dict[sympy.Symbol, Row] = {}
        derivatives: list[HigherDerivative] = []
        for k in range(2, max(order, 1) + 1):
            found = higher_order(self.d, k)
            derivatives += found
            for h in found:
                for symbol, (s, x, rate) in h.rates.items():
                    if s != y and symbol not in rates:
                        rates[symbol] = Row("total", self.total(s, (x,)), (Form.of(rate),))
                    self.total(s, (x,))
        rows += list(rates.values())
        for h in derivatives:
            forms = _dedupe([Form.of(h.expansion), Form.of(h.expr)])
            rows.append(Row("order", self.total(y, h.wrt), tuple(forms)))
        return rows


def _dout_first(factors: tuple) -> list[sympy.Expr]:
    return sorted(factors, key=lambda f: (f != DOUT, not f.is_number))


def _dedupe(forms: list[Form]) -> list[Form]:
    out: list[Form] = []
    for f in forms:
        if not out or f.terms != out[-1].terms:
            out.append(f)
    return out


def _denominator(term: sympy.Expr) -> sympy.Expr:
    """The product of the factors of ``term`` with negative integer powers (not ``exp``)."""
    return sympy.Mul(*[f**-1 for f in sympy.Mul.make_args(term)
                       if f.is_Pow and f.exp.is_Integer and f.exp < 0 and not f.base.is_number])


def _common_denominator(expr: sympy.Expr) -> sympy.Expr:
    """``1 - 1/(1 + e^{-x})`` as ``e^{-x}/(1 + e^{-x})``: a sum over its one denominator."""
    if not isinstance(expr, sympy.Add):
        return expr
    denominators = {_denominator(t) for t in expr.args} - {sympy.S.One}
    if len(denominators) != 1:
        return expr
    (d,) = denominators
    numerator = sympy.expand(sympy.Add(*[t * d for t in expr.args]))
    return sympy.Mul(numerator, sympy.Pow(d, -1))


# -- printing ---------------------------------------------------------------------------------
class _Printer:
    """SymPy to LaTeX with the seed's notation: ``dout`` is ``∂L/∂y``, written first."""

    def __init__(self, spec: Spec, total: str = r"\partial"):
        self.y = tex_name(spec.output)
        self.d = r"\mathrm{d}" if total == "d" else total
        self.names: dict[sympy.Symbol, str] = {}

    def name(self, s: sympy.Symbol) -> str:
        if s not in self.names:
            self.names[s] = self._name(s)
        return self.names[s]

    def _name(self, s: sympy.Symbol) -> str:
        if s == DOUT:
            return rf"\frac{{\partial L}}{{\partial {self.y}}}"
        kind, *names = s.name.split("|") if "|" in s.name else ("", s.name)
        tex = [tex_name(sympy.Symbol(n)) for n in names]
        if kind == "grad":
            return rf"\frac{{\partial L}}{{\partial {tex[0]}}}"
        if kind == "partial":
            return rf"\frac{{\partial {tex[0]}}}{{\partial {tex[1]}}}"
        if kind == "total":
            k = len(tex) - 1
            power = f"^{{{k}}}" if k > 1 else ""
            return rf"\frac{{{self.d}{power} {tex[0]}}}{{{_denominators(tex[1:], self.d)}}}"
        return tex_name(s)

    def expr(self, e: sympy.Expr) -> str:
        e = as_sympy(e)
        names = {s: self.name(s) for s in e.free_symbols}
        return sympy.latex(e, symbol_names=names, mul_symbol="dot" if self.wordy(e) else None)

    def wordy(self, e: sympy.Expr) -> bool:
        """Names of several letters: products are written with a dot between factors."""
        return any(self.name(s).startswith(r"\mathit") for s in e.free_symbols)

    def signed(self, e: sympy.Expr) -> str:
        """``e`` with ``∂L/∂y`` pulled to the front of each product that has it."""
        if isinstance(e, sympy.Add) and e.has(DOUT):
            parts = [self.signed(t) for t in e.as_ordered_terms()]
            return _join_terms(parts)
        if isinstance(e, sympy.Mul) and DOUT in e.args:
            rest = sympy.Mul(*[a for a in e.args if a != DOUT])
            coeff, body = rest.as_coeff_Mul()
            sign = "- " if coeff < 0 else ""
            coeff = abs(coeff)
            lead = "" if coeff == 1 else self.expr(coeff) + " "
            tail = "" if body == 1 else (r" \cdot " if self.wordy(body) else " ") + self.factor(body)
            return f"{sign}{lead}{self.name(DOUT)}{tail}"
        return self.expr(e)

    def factor(self, e: sympy.Expr) -> str:
        text = self.signed(e)
        return rf"\left({text}\right)" if isinstance(e, sympy.Add) else text

    def form(self, f: Form) -> str:
        if not f.terms:
            return "0"
        printer = self.number if f.numeric else None
        return _join_terms([self.product(t, printer) for t in f.terms])

    def product(self, factors: tuple, printer=None) -> str:
        if len(factors) == 1:
            return printer(factors[0]) if printer else self.signed(factors[0])
        parts = [printer(f) if printer else self.factor(f) for f in factors]
        out = parts[0]
        for p in parts[1:]:
            numberish = p[:1].isdigit() or p.startswith("-")
            out += (r" \cdot " if numberish or printer else " ") + (rf"\left({p}\right)" if p.startswith("-") else p)
        return out

    def number(self, value: sympy.Expr) -> str:
        text = format_number(value)
        if "e" in text:
            mantissa, exponent = text.split("e")
            text = rf"{mantissa} \times 10^{{{int(exponent)}}}"
        return text

    def row(self, r: Row) -> str:
        """``lhs &= a = b`` on one line, or broken before an ``=`` where it grows too wide
        (worked numbers stay together on one line)."""
        lhs = self.expr(r.lhs) if r.lhs != DOUT else self.name(DOUT)
        chunks: list[str] = []
        previous = None
        for i, f in enumerate(r.forms):
            text = self.form(f)
            if text == previous:
                continue  # two forms that differ only in grouping print alike
            previous = text
            if f.numeric and i and r.forms[i - 1].numeric:
                chunks[-1] += f" = {text}"
            else:
                chunks.append(text)
        lines = [f"{lhs} &= {chunks[0]}"]
        for chunk in chunks[1:]:
            if _visible_length(lines[-1]) + _visible_length(chunk) + 3 <= ONE_LINE:
                lines[-1] += f" = {chunk}"
            else:
                lines.append(f"  &= {chunk}")
        return " \\\\\n".join(lines)


def _visible_length(tex: str) -> int:
    """Roughly how many characters wide ``tex`` is typeset (a fraction as its wider part)."""
    simple = re.compile(r"\\frac\{([^{}]*)\}\{([^{}]*)\}")
    while simple.search(tex):
        tex = simple.sub(lambda m: max(m.group(1), m.group(2), key=len), tex)
    tex = re.sub(r"\\(left|right|mathit|frac|,)", "", tex)
    tex = re.sub(r"\\[A-Za-z]+", "x", tex)
    return len(re.sub(r"[{}\s]", "", tex))


def _denominators(names: list[str], d: str) -> str:
    counts: dict[str, int] = {}
    for n in names:
        counts[n] = counts.get(n, 0) + 1
    return r"\,".join(f"{d} {n}" + (f"^{{{k}}}" if k > 1 else "") for n, k in counts.items())


def _join_terms(parts: list[str]) -> str:
    out = parts[0]
    for p in parts[1:]:
        out += f" - {p[1:].lstrip()}" if p.startswith("-") else f" + {p}"
    return out


# -- the public functions -----------------------------------------------------------------
def elementwise_steps(obj: Spec | Derivation, order: int = 1) -> ChainRuleSteps:
    """The chain-rule steps of an elementwise declaration (see the module docstring).

    Parameters
    ----------
    obj : Spec or Derivation
        A declaration, or its derivation.
    order : int
        1 (default); 2 or more adds the derivatives of that order in cached values
        (elementwise layers only).

    Returns
    -------
    ChainRuleSteps
        Its ``latex()`` is an ``align*`` block; in Jupyter it displays as typeset math.
    """
    derivation = derivation_of(obj)
    b = _Builder(derivation)
    y = tex_name(derivation.spec.output)
    sections = [Section("Forward pass, node by node", b.forward_rows()),
                Section("Local derivatives of the nodes", b.local_rows()),
                Section(rf"Backward pass, from $\partial L/\partial {y}$ to the inputs", b.backward_rows())]
    chain = b.chain_rows()
    higher = b.order_rows(order)
    helpers = b.helper_rows(chain + higher)
    sections += [Section("Values the backward pass reads (cached or recomputed)", helpers),
                 Section("Simplified to the chosen backward form", chain),
                 Section("The layer's derivatives through the whole forward pass, in cached values"
                         if order == 1 else f"The layer's derivatives up to order {order}, in cached values", higher)]
    return ChainRuleSteps(operations_of(derivation), derivation, sections, b.meaning, order)


def elementwise_derivation_latex(derivation: Derivation) -> str:
    """A derivation in brief, typeset: forward, local derivatives, backward, cache.

    How an elementwise derivation shows in Jupyter.
    """
    spec = derivation.spec
    printer = _Printer(spec)
    masks = derivation.masks
    rows = [f"{printer.expr(n)} &= {printer.expr(e)}" for n, e in spec.graph]
    y = spec.output
    for x in spec.inputs:
        local = derivation.local[x.name].xreplace(masks)
        rows.append(rf"\frac{{\partial {tex_name(y)}}}{{\partial {tex_name(x)}}} &= {printer.expr(local)}")
    for x in spec.inputs:
        rows.append(rf"\frac{{\partial L}}{{\partial {tex_name(x)}}} &= "
                    + printer.signed(derivation.backward[x.name].xreplace(masks)))
    rows += [f"{printer.expr(c.symbol)} &= {printer.expr(c.expr.xreplace(masks))}"
             for c in derivation.recompute if not c.mask]
    cache = ", ".join(tex_name(c.symbol) for c in derivation.cache if not c.mask)
    masks_text = ", ".join(rf"[{printer.expr(c.expr)}]" for c in derivation.cache if c.mask)
    cached = ", ".join(t for t in (cache, masks_text) if t) or r"\text{nothing}"
    rows.append(rf"\text{{cache}} &: {cached}")
    return aligned(tex_text(spec.name), rows)


