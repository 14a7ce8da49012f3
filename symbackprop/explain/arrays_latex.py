r"""The backward pass of an array layer, as LaTeX written the way people write matrix calculus.

:func:`array_steps` lays out an array derivation in the same ``align*`` form as the
elementwise chain-rule steps:

1. the forward pass, one declared step at a time, each with its shape on the right
   (``a_1 = x W_1 + b_1``, ``N \times H``);
2. the assumptions the derivation used (``\sum_{\text{axis } 1} t = 1``);
3. the backward pass, one statement of the derivation at a time, each gradient from
   the ones before (``\frac{\partial L}{\partial W_1} = x^{T} \frac{\partial L}{\partial a_1}``,
   ``\frac{\partial L}{\partial b_1} = \sum_{\text{axis } 0} \frac{\partial L}{\partial a_1}``);
4. the values the backward pass recomputes.

Notation: a matrix product is juxtaposition (``x W``), a transpose ``W^{T}``, an
elementwise product ``\odot``, a scalar (``\frac{1}{N}``, ``\partial L/\partial loss``)
multiplies by juxtaposition, a reduction names its axis (``\sum_{\text{axis } 0}``,
``\operatorname{mean}_{\text{axis } 0}``), softmax and log-softmax are functions of
their axis, and a ReLU mask is the indicator ``\mathbf{1}[a_1 > 0]``.  Only
``amsmath`` is needed.

A statement in index notation is written entry by entry, as a sum over the indices it
reduces (``y_{n f i j} = b_{f} + \sum_{c,k,l} x_{\ldots} W_{f c k l}``), its gradients as the
sums and scatter-adds they are (``\frac{\partial L}{\partial x_{\ldots}} \mathrel{+}= \ldots``);
see :mod:`.index_latex`.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import sympy
from sympy.printing.latex import LatexPrinter

from .. import indexed, ops
from ..derivation import Derivation, derivation_of, operations_of
from ..errors import SpecError
from ..spec.model import Spec
from .index_latex import IndexNotation, reduced as index_reduced
from .tex import Form, Row, Section, StepsText, aligned, tex_name, tex_text


def _axis_sub(axes: tuple[int, ...], keepdims: bool = False) -> str:
    if not axes:
        return ""
    text = r"\text{axis } " + ", ".join(str(a) for a in axes) + (r",\ \text{keepdims}" if keepdims else "")
    return f"_{{{text}}}"


def _is_reduction(e: sympy.Basic) -> bool:
    """A sum or maximum printed with its operator in front (a factor after it would read as reduced)."""
    if isinstance(e, indexed.IndexSum):
        return bool(index_reduced(e))
    return isinstance(e, (ops.ReduceSum, ops.ReduceMax, indexed.IndexMax))


class ArrayLatexPrinter(IndexNotation, LatexPrinter):
    """SymPy's LaTeX printer taught the array atoms, the index atoms and the notation above.

    Parameters
    ----------
    names : dict
        LaTeX for particular symbols (gradients as ``\\frac{\\partial L}{\\partial v}``).
    shapes : dict
        Symbolic shapes, to tell arrays (``\\odot``) from scalars (juxtaposition).
    of : dict, optional
        For each gradient symbol, the LaTeX of the value it is the gradient of (``x``): an
        entry of it in index notation is ``\\frac{\\partial L}{\\partial x_{n c}}``.
    constants : iterable of Symbol, optional
        Integers fixed at construction (hyperparameters), printed among the numbers of a product.
    """

    def __init__(self, names: dict[sympy.Symbol, str], shapes: dict[sympy.Symbol, tuple],
                 of: dict[sympy.Symbol, str] | None = None, constants: Iterable[sympy.Symbol] = ()):
        super().__init__()
        self.names, self.shapes, self.of = names, shapes, dict(of or {})
        self.gradients = {s for s, tex in names.items() if tex.startswith(r"\frac{\partial L}")}
        self.constants = set(constants)
        self.dims = {d for shape in shapes.values() for d in shape if isinstance(d, sympy.Symbol)} | self.constants

    # leaves
    def _print_Symbol(self, expr, style="plain"):
        return self.names.get(expr) or tex_name(expr)

    _print_ArrayVar = _print_Symbol

    def _print_Rational(self, expr):
        if expr.p == 1 and expr.q > 1000 and str(expr.q).rstrip("0") == "1":
            return f"10^{{-{len(str(expr.q)) - 1}}}"
        return super()._print_Rational(expr)

    def is_array(self, e: sympy.Basic) -> bool:
        """An array, not a scalar; inside an index statement an atom's entry is a scalar."""
        if self.inside is not None:
            e = e.xreplace({a: sympy.S.One for a in e.atoms(*indexed.INDEX_ATOMS)})
        return bool(ops.shape_of(e, self.shapes))

    def wrap(self, e: sympy.Basic) -> str:
        """``e`` as an operand: parenthesized when it is a sum or a product."""
        text = self._print(e)
        return rf"\left({text}\right)" if isinstance(e, (sympy.Add, sympy.Mul, ops.Matmul)) else text

    # array operations
    def _print_Matmul(self, expr):
        return " ".join(self.wrap(a) if not isinstance(a, ops.Matmul) else self._print(a) for a in expr.args)

    def _print_Transposed(self, expr):
        (a,) = expr.args  # never a transpose: Transposed(Transposed(W)) is W
        base = self._print(a) if isinstance(a, sympy.Symbol) else rf"\left({self._print(a)}\right)"
        return f"{base}^{{T}}"

    def _print_ReduceSum(self, expr):
        return rf"\sum{_axis_sub(expr.axes, expr.keepdims)} {self.wrap(expr.args[0])}"

    def _print_ReduceMax(self, expr):
        return rf"\max{_axis_sub(expr.axes, expr.keepdims)} {self.wrap(expr.args[0])}"

    def _function(self, name: str, sub: str, arg: sympy.Basic) -> str:
        return rf"{name}{sub}\left({self._print(arg)}\right)"

    def _print_ReduceMean(self, expr):
        return self._function(r"\operatorname{mean}", _axis_sub(expr.axes, expr.keepdims), expr.args[0])

    def _print_LogSumExp(self, expr):
        return self._function(r"\operatorname{logsumexp}", _axis_sub(expr.axes, expr.keepdims), expr.args[0])

    def _print_Softmax(self, expr):
        return self._function(r"\operatorname{softmax}", _axis_sub((int(expr.args[1]),)), expr.args[0])

    def _print_LogSoftmax(self, expr):
        return self._function(r"\log\operatorname{softmax}", _axis_sub((int(expr.args[1]),)), expr.args[0])

    def _print_ExpandDims(self, expr):
        return self._function(r"\operatorname{expand}", _axis_sub(tuple(int(a) for a in expr.args[1])), expr.args[0])

    def _print_BroadcastTo(self, expr):
        shape = r" \times ".join(self._print(d) for d in expr.args[1])
        return self._function(r"\operatorname{broadcast}", f"_{{{shape}}}", expr.args[0])

    def _print_Piecewise(self, expr):
        """``where(c, v, 0)`` as ``v \\odot 1[c]``, the mask as an indicator; else ``where(c, v, w)``."""
        (value, condition), rest = expr.args[0], expr.args[1:]
        if rest == ((0, True),):
            indicator = rf"\mathbf{{1}}\left[{self._print(condition)}\right]"
            return indicator if value == 1 else rf"{self.wrap(value)} \odot {indicator}"
        other = rest[0][0] if rest[0][1] is sympy.true else sympy.Piecewise(*rest)
        parts = (self._print(condition), self._print(value), self._print(other))
        return r"\operatorname{where}\left(" + ", ".join(parts) + r"\right)"

    # sums and products
    def _print_Add(self, expr, order=None):
        """Positive terms first, products before names, numbers last (``x W + b``, ``x - \\mu``)."""
        terms = sorted(expr.as_ordered_terms(),
                       key=lambda t: (t.could_extract_minus_sign(), t.is_number, isinstance(t, sympy.Symbol)))
        out = ""
        for i, t in enumerate(terms):
            if t.could_extract_minus_sign():
                out += ("-" if i == 0 else " - ") + self._print(-t)
            else:
                out += ("" if i == 0 else " + ") + self._print(t)
        return out

    def _print_Mul(self, expr):
        c, rest = expr.as_independent(*(expr.free_symbols - self.dims), as_Add=False)
        factors = sympy.Mul.make_args(rest)
        if all(f.is_number or (isinstance(f, sympy.Symbol) and not self.is_array(f) and f not in self.gradients)
               for f in factors):
            return super()._print_Mul(expr)  # numbers, dimensions and plain scalars: \frac{1}{2 N}
        sign = "-" if c.could_extract_minus_sign() else ""
        return sign + self._product(-c if sign else c, factors)

    def _order(self, factors: list) -> list:
        """Gradients first, reductions last (a factor after a ``\\sum`` would read as summed)."""
        return sorted(factors, key=lambda f: (_is_reduction(f), not (f.free_symbols & self.gradients)))

    def _joined(self, factors: list, more_after: bool = False) -> list[str]:
        """Each factor printed; a reduction in parentheses unless it ends the product."""
        last = len(factors) - 1
        return [rf"\left({self._print(f)}\right)" if _is_reduction(f) and (i < last or more_after) else self.wrap(f)
                for i, f in enumerate(factors)]

    def _product(self, c: sympy.Expr, factors: tuple) -> str:
        """``c`` times the factors: scalars juxtaposed first, then arrays joined by ``\\odot``;
        array denominators make one fraction with the plain array factors."""
        def below(f):
            return f.is_Pow and f.exp.is_Integer and f.exp < 0 and self.is_array(f.base)

        den = [f.base**-f.exp for f in factors if below(f)]
        num = [f for f in factors if not below(f)]
        arrays_ = self._order([f for f in num if self.is_array(f)])
        scalars = self._order([f for f in num if not self.is_array(f)])
        parts = self._joined(scalars, more_after=bool(arrays_ or den))
        if den:
            plain = [f for f in arrays_ if not f.free_symbols & self.gradients and not _is_reduction(f)]
            arrays_ = [f for f in arrays_ if f not in plain]
            top, bottom = sympy.fraction(c)
            numerator = " ".join(([self._print(top)] if top != 1 or not plain else []) + [self.wrap(f) for f in plain])
            denominator = " ".join([self._print(bottom)] * (bottom != 1) + [self.wrap(f) for f in den])
            joined = [rf"\frac{{{numerator}}}{{{denominator}}}", *self._joined(arrays_)]
        else:
            joined = self._joined(arrays_)
            if c != 1:
                parts.insert(0, self._print(c))
        return " ".join(parts + ([r" \odot ".join(joined)] if joined else []))


# -- the steps ------------------------------------------------------------------------------------------
@dataclass(repr=False)
class ArraySteps(StepsText):
    """The forward and backward pass of an array layer, statement by statement.

    Attributes
    ----------
    derivation : Derivation
        The array derivation the rows come from.
    sections : list of Section
        Titled groups of rows (forward, assumed, backward, recomputed), in order.
    meaning : dict
        ``('grad', v)`` for each gradient symbol: it stands for ``∂L/∂v``.
    shapes : dict
        The symbolic shape of every symbol in the rows.
    """

    derivation: Derivation
    sections: list[Section]
    meaning: dict[sympy.Symbol, tuple]
    shapes: dict[sympy.Symbol, tuple]

    @property
    def spec(self) -> Spec:
        return self.derivation.spec

    def printer(self) -> ArrayLatexPrinter:
        """A printer that writes each gradient symbol as ``\\frac{\\partial L}{\\partial v}`` and
        each hyperparameter upright (``\\mathrm{stride}``)."""
        of = {s: tex_name(m[1]) for s, m in self.meaning.items()}
        names = {s: rf"\frac{{\partial L}}{{\partial {v}}}" for s, v in of.items()}
        hyper = self.spec.hyper
        names.update({h: rf"\mathrm{{{tex_text(h.name)}}}" for h in hyper})
        return ArrayLatexPrinter(names, self.shapes, of, hyper)

    def row(self, r: Row, p: ArrayLatexPrinter) -> str:
        """``lhs &= rhs && shape``; in index notation one line per target the statement writes
        through (``\\frac{\\partial L}{\\partial x_{\\ldots}} &\\mathrel{+}= \\ldots``)."""
        shape = ops.shape_of(r.lhs, self.shapes)
        shape_tex = r" \times ".join(p.wrap(d) for d in shape) if shape else r"\text{scalar}"
        lines = [f"{left} &{relation} {right}" for left, relation, right in p.statement(r.lhs, r.forms[0].value)]
        lines[0] += f" && {shape_tex}"
        return " \\\\\n".join(lines)

    def row_writer(self) -> Callable[[Row], str]:
        p = self.printer()
        return lambda r: self.row(r, p)


def _shapes(derivation: Derivation) -> dict[sympy.Symbol, tuple]:
    """The operations' shapes (values, gradients) and those of the cached helpers."""
    shapes = dict(operations_of(derivation).shapes)
    for c in (*derivation.cache, *derivation.recompute):
        shapes.setdefault(c.symbol, ops.shape_of(c.expr, shapes))
    return shapes


def _meaning(derivation: Derivation) -> dict[sympy.Symbol, tuple]:
    spec = derivation.spec
    by_name = {f"d{v.name}": v for v in (*spec.differentiated, *(s for s, _ in spec.graph))}
    meaning = {target: ("grad", by_name[target.name]) for target, _ in derivation.steps}
    meaning[derivation.dout] = ("grad", spec.output)
    return meaning


def _assumed(spec: Spec) -> list[Row]:
    return [Row("assume", ops.ReduceSum(t, sympy.Tuple(axis), sympy.Integer(1)), (Form.of(1),))
            for kind, t, axis in spec.assumptions if kind == "onehot"]


def array_steps(obj: Spec | Derivation, order: int = 1) -> ArraySteps:
    """The forward and backward pass of an array layer, as rows of true equalities.

    Parameters
    ----------
    obj : Spec or Derivation
        An array declaration, or its derivation.
    order : int
        Must be 1: higher derivatives are for elementwise layers.

    Returns
    -------
    ArraySteps
        Its ``latex()`` is an ``align*`` block; in Jupyter it displays as typeset math.
    """
    derivation = derivation_of(obj)
    spec = derivation.spec
    if order != 1:
        raise SpecError(f"{spec.source or spec.name}: higher derivatives (order {order}) are for "
                        "elementwise layers; this is an array layer")
    masks = derivation.masks
    meaning = _meaning(derivation)
    output = tex_name(spec.output)
    sections = [
        Section("Forward pass, node by node (shapes on the right)",
                [Row("forward", s, (Form.of(e),)) for s, e in spec.graph]),
        Section("Assumed", _assumed(spec)),
        Section(rf"Backward pass, node by node, from $\partial L/\partial {output}$",
                [Row("backward", t, (Form.of(e.xreplace(masks).xreplace(derivation.kept)),))
                 for t, e in derivation.steps]),
        Section("Values the backward pass recomputes",
                [Row("define", c.symbol, (Form.of(c.expr),)) for c in derivation.recompute if not c.mask]),
    ]
    return ArraySteps(derivation, sections, meaning, _shapes(derivation))


def array_derivation_latex(derivation: Derivation) -> str:
    """An array derivation in brief, typeset: forward, backward statements, cache.

    This is ``Derivation._repr_latex_`` for array layers.
    """
    steps = array_steps(derivation)
    p = steps.printer()
    rows = [steps.row(r, p) for s in steps.sections for r in s.rows if r.kind != "assume"]
    kept = derivation.kept
    cache = [p._print(kept.get(c.symbol, c.symbol)) for c in derivation.cache if not c.mask]
    cache += [p._print(sympy.Piecewise((1, c.expr), (0, True))) for c in derivation.cache if c.mask]
    cached = ", ".join(cache) or r"\text{nothing}"
    rows.append(rf"\text{{cache}} &: {cached}")
    return aligned(tex_text(derivation.spec.name), rows)

