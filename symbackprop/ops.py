r"""Array expressions: numpy operations as opaque SymPy atoms, each with its shape rule,
its vector-Jacobian product and its explicit evaluation, side by side.

An array expression is a SymPy expression in which

* array variables are plain commutative symbols (:class:`ArrayVar`), so ``+ - * / **``
  and elementwise functions mean numpy's broadcasting elementwise operations, and
  SymPy's algebra (``factor``, ``cancel``) is valid on them;
* every other numpy operation is an opaque function atom of this module:
  ``Matmul(a, b)`` (``a @ b``), ``Transposed(a)`` (``a.T``), ``ReduceSum(a, axes, keepdims)``,
  ``ReduceMean``, ``ReduceMax``, ``Softmax(a, axis)``, ``LogSoftmax(a, axis)``,
  ``LogSumExp(a, axes, keepdims)``, ``ExpandDims(a, axes)``, ``BroadcastTo(a, shape)``.

Each atom carries, as methods, what every stage needs of it: :meth:`ArrayOp.shape` (its
symbolic shape, with a one-line error naming the dimensions), :meth:`ArrayOp.pullback`
(its vector-Jacobian product) and :meth:`ArrayOp.apply` (its definitional value on numpy
arrays: of SymPy scalars for the explicit check, of floats or complex numbers for the
checker's reference).  A new atom is one class here plus one ``_print_<Atom>`` per printer.

SymPy's own matrix calculus is not used: it silently returns wrong gradients for
softmax-with-loss and two-layer networks (DESIGN.md).  The elementwise parts are
differentiated by the scalar engine:

.. math::

    \bar a = \text{unbroadcast}(\bar y\, \partial f/\partial a) \quad (y = f(a, \dots)),\qquad
    \overline{A} = \bar Y B^T,\ \overline{B} = A^T \bar Y \quad (Y = AB),

    \overline{x} = s \odot (\bar s - \textstyle\sum_{axis} \bar s \odot s) \quad (s = \mathrm{softmax}(x)),\qquad
    \overline{x} = \bar\ell - \mathrm{softmax}(x) \textstyle\sum_{axis} \bar\ell \quad (\ell = \log\mathrm{softmax}(x)).

A derived formula is accepted only after it has been expanded at small explicit shapes
with scalar symbols and compared with SymPy's ``diff`` entry by entry
(:mod:`symbackprop.derivation.explicit`).
"""
from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import sympy
from sympy.printing.precedence import PRECEDENCE

from .errors import SpecError

Shape = tuple  # of sympy dims (Symbol or Integer)
Shapes = Mapping[sympy.Symbol, Shape]


class Elementary:
    """How :meth:`ArrayOp.apply` computes: elementwise functions and reductions for numpy
    arrays of one kind of element (SymPy scalars, or floats)."""

    exp: Callable = staticmethod(np.exp)
    log: Callable = staticmethod(np.log)

    @staticmethod
    def maximum(a: np.ndarray, axes: tuple[int, ...], keepdims: bool) -> np.ndarray:
        return np.max(a, axis=axes, keepdims=keepdims)

    @staticmethod
    def array(value) -> np.ndarray:
        return np.asarray(value)


class Symbolic(Elementary):
    """Object arrays of SymPy scalars: the explicit expansion (definitional forms only)."""

    @staticmethod
    def exp(a):
        return _map(sympy.exp, a)

    @staticmethod
    def log(a):
        return _map(sympy.log, a)

    @staticmethod
    def maximum(a, axes, keepdims):
        out = np.apply_over_axes(lambda v, ax: _reduce_max(v, ax), a, axes)
        return out if keepdims else np.squeeze(out, axis=axes)

    @staticmethod
    def array(value) -> np.ndarray:
        return np.asarray(value, dtype=object)


NUMERIC, SYMBOLIC = Elementary(), Symbolic()


# -- the atoms ------------------------------------------------------------------------
class ArrayOp(sympy.Function):
    """Base of the opaque numpy operations (never evaluated or differentiated by SymPy).

    The first :attr:`operands` arguments are arrays; the others say how (axes, sizes).
    """

    is_real = True
    operands = 1

    @classmethod
    def eval(cls, *args):
        return None

    def shape(self, shapes: Shapes, what: str = "") -> Shape:
        """The symbolic shape of the atom's value (``what`` prefixes an error message)."""
        raise NotImplementedError  # pragma: no cover

    def pullback(self, g: sympy.Expr, shapes: Shapes) -> list[tuple[sympy.Expr, sympy.Expr]]:
        """``(argument, gradient)`` pairs: each array argument's share of ``sum(g * self)``."""
        raise NotImplementedError  # pragma: no cover

    def apply(self, values: list, kind: Elementary) -> object:
        """The atom's value from its array arguments' values (definitional forms)."""
        raise NotImplementedError  # pragma: no cover

    @property
    def operand(self) -> sympy.Expr:
        return self.args[0]


class Matmul(ArrayOp):
    """``a @ b`` of two matrices."""

    nargs = 2
    operands = 2
    #: ``@`` binds as ``*`` does (left to right): a product with it as a factor needs parentheses
    precedence = PRECEDENCE["Mul"]

    def shape(self, shapes, what=""):
        a, b = (shape_of(x, shapes, what) for x in self.args)
        if len(a) != 2 or len(b) != 2:
            raise SpecError(f"{what}@ needs two 2-D operands, got {show_shape(a)} @ {show_shape(b)}")
        if a[1] != b[0]:
            raise SpecError(f"{what}@: inner dimensions differ ({a[1]} vs {b[0]}) in {show_shape(a)} @ {show_shape(b)}")
        return (a[0], b[1])

    def pullback(self, g, shapes):
        a, b = self.args
        return [(a, Matmul(g, Transposed(b))), (b, Matmul(Transposed(a), g))]

    def apply(self, values, kind):
        return np.dot(*values)


class Transposed(ArrayOp):
    """``a.T``; ``Transposed(Transposed(a))`` is ``a`` (numpy's ``.T`` reverses the axes)."""

    nargs = 1

    @classmethod
    def eval(cls, a):
        if isinstance(a, Transposed):
            return a.args[0]
        return None

    def shape(self, shapes, what=""):
        return tuple(reversed(shape_of(self.operand, shapes, what)))

    def pullback(self, g, shapes):
        return [(self.operand, _transposed(g))]

    def apply(self, values, kind):
        return np.transpose(values[0])


def _axes(axes) -> sympy.Tuple:
    if axes is None:
        return sympy.Tuple()
    if isinstance(axes, (int, sympy.Integer)):
        return sympy.Tuple(sympy.Integer(axes))
    return sympy.Tuple(*[sympy.Integer(a) for a in axes])


class Reduction(ArrayOp):
    """``op(a, axis=axes, keepdims=k)``; ``axes == ()`` means every axis."""

    nargs = 3

    @property
    def axes(self) -> tuple[int, ...]:
        return tuple(int(a) for a in self.args[1])

    @property
    def keepdims(self) -> bool:
        return bool(self.args[2])

    def shape(self, shapes, what=""):
        inner = shape_of(self.operand, shapes, what)
        axes = normal_axes(self.axes, len(inner), what)
        if self.keepdims:
            return tuple(sympy.S.One if i in axes else d for i, d in enumerate(inner))
        return tuple(d for i, d in enumerate(inner) if i not in axes)

    def spread(self, g: sympy.Expr, shapes: Shapes) -> tuple[sympy.Expr, sympy.Tuple]:
        """``g`` with the reduced axes restored (broadcasting restores leading ones by
        itself), and those axes, normalized."""
        inner = shape_of(self.operand, shapes)
        ax = _axes(normal_axes(self.axes, len(inner), ""))
        leading = tuple(ax) == tuple(range(len(ax)))
        return (g if self.keepdims or not self.axes or leading else ExpandDims(g, ax)), ax

    def reduced_axes(self, a: np.ndarray) -> tuple[int, ...]:
        return normal_axes(self.axes, a.ndim, "")


class ReduceSum(Reduction):
    """``sum(a, axis, keepdims)``; linear, so scalar factors move out.  Sums split only
    where shapes are known (:func:`split_sums`): ``sum(x + b)`` is ``sum(x) + N*sum(b)``
    for ``b`` broadcast over ``N`` rows, not ``sum(x) + sum(b)``."""

    @classmethod
    def eval(cls, a, axes, keepdims):
        if isinstance(a, sympy.Mul):
            scalars = [f for f in a.args if _is_scalar(f)]
            if scalars and len(scalars) < len(a.args):
                rest = sympy.Mul(*[f for f in a.args if not _is_scalar(f)])
                return sympy.Mul(*scalars) * cls(rest, axes, keepdims)
        return None

    def pullback(self, g, shapes):
        return [(self.operand, self.spread(g, shapes)[0])]

    def apply(self, values, kind):
        a = kind.array(values[0])
        return np.sum(a, axis=self.reduced_axes(a), keepdims=self.keepdims)


class ReduceMean(Reduction):
    """``mean(a, axis, keepdims)``."""

    def pullback(self, g, shapes):
        return [(self.operand, self.spread(g, shapes)[0] / size_of(shape_of(self.operand, shapes), self.axes))]

    def apply(self, values, kind):
        a = kind.array(values[0])
        axes = self.reduced_axes(a)
        return np.sum(a, axis=axes, keepdims=self.keepdims) / int(np.prod([a.shape[i] for i in axes]))


class ReduceMax(Reduction):
    """``max(a, axis, keepdims)``: the gradient goes to every tied maximum (ties are
    measure-zero; an even split, a subgradient, waits for pooling's arg-max routing)."""

    def pullback(self, g, shapes):
        a, axes, _ = self.args
        spread, ax = self.spread(g, shapes)
        top = self if self.keepdims else ExpandDims(ReduceMax(a, axes, sympy.Integer(0)), ax)
        return [(a, sympy.Piecewise((spread, sympy.GreaterThan(a, top)), (0, True)))]

    def apply(self, values, kind):
        a = kind.array(values[0])
        return kind.maximum(a, self.reduced_axes(a), self.keepdims)


class LogSumExp(Reduction):
    """``logsumexp(a, axis, keepdims)``: ``log(sum(exp(a)))``, computed with the max shift."""

    def pullback(self, g, shapes):
        a = self.operand
        spread, ax = self.spread(g, shapes)
        if len(ax) == 1:
            return [(a, Softmax(a, ax[0]) * spread)]
        return [(a, sympy.exp(a - self if self.keepdims else a - ExpandDims(self, ax)) * spread)]

    def apply(self, values, kind):
        a = kind.array(values[0])
        if kind is NUMERIC:  # the stable form: log(sum(exp(a - max))) + max
            top = np.max(a, axis=self.reduced_axes(a), keepdims=True)
            out = top + np.log(np.sum(np.exp(a - top), axis=self.reduced_axes(a), keepdims=True))
            return out if self.keepdims else np.squeeze(out, axis=self.reduced_axes(a))
        return kind.log(np.sum(kind.exp(a), axis=self.reduced_axes(a), keepdims=self.keepdims))


class _AlongAxis(ArrayOp):
    """``op(a, axis)``: an operation over one axis that keeps the shape."""

    nargs = 2

    def shape(self, shapes, what=""):
        inner = shape_of(self.operand, shapes, what)
        normal_axes((int(self.args[1]),), len(inner), what)
        return inner


class Softmax(_AlongAxis):
    """``softmax(a, axis)`` computed with the max shift."""

    def pullback(self, g, shapes):
        a, axis = self.args
        return [(a, self * (g - ReduceSum(g * self, sympy.Tuple(axis), sympy.Integer(1))))]

    def apply(self, values, kind):
        return _softmax(kind.array(values[0]), int(self.args[1]), kind)


class LogSoftmax(_AlongAxis):
    """``log_softmax(a, axis)``: ``a - logsumexp(a, axis, keepdims=True)``, at most 0."""

    is_nonpositive = True

    def pullback(self, g, shapes):
        a, axis = self.args
        return [(a, g - Softmax(a, axis) * ReduceSum(g, sympy.Tuple(axis), sympy.Integer(1)))]

    def apply(self, values, kind):
        a, axis = kind.array(values[0]), int(self.args[1])
        if kind is NUMERIC:  # the stable form, never log of an underflowed 0
            shifted = a - np.max(a, axis=axis, keepdims=True)
            return shifted - np.log(np.sum(np.exp(shifted), axis=axis, keepdims=True))
        return kind.log(_softmax(a, axis, kind))


class ExpandDims(ArrayOp):
    """``np.expand_dims(a, axes)``: undo a reduction without keepdims."""

    nargs = 2

    def shape(self, shapes, what=""):
        inner = list(shape_of(self.operand, shapes, what))
        for a in sorted(int(x) for x in self.args[1]):
            inner.insert(a, sympy.S.One)
        return tuple(inner)

    def pullback(self, g, shapes):
        return [(self.operand, ReduceSum(g, self.args[1], sympy.Integer(0)))]

    def apply(self, values, kind):
        return np.expand_dims(values[0], tuple(int(a) for a in self.args[1]))


class Stack(ArrayOp):
    """The outputs of a layer of several (``outputs = ["next_h", "next_c"]``), stacked on a new
    first axis: what the derivation and the checkers take as the one output, never generated
    (forward returns the tuple, backward takes one upstream gradient each)."""

    @property
    def operands(self) -> int:  # type: ignore[override]
        return len(self.args)

    def shape(self, shapes, what=""):
        first = shape_of(self.args[0], shapes, what)
        if any(shape_of(a, shapes, what) != first for a in self.args[1:]):
            raise SpecError(f"{what}outputs of different shapes are not supported yet (stacked as one)")
        return (sympy.Integer(len(self.args)), *first)

    def pullback(self, g, shapes):
        return [(a, Pick(g, sympy.Integer(k))) for k, a in enumerate(self.args)]

    def apply(self, values, kind):
        return np.stack([np.asarray(v, dtype=object) if kind is SYMBOLIC else v for v in values])


class Pick(ArrayOp):
    """``g[k]``: one output's upstream gradient out of the stacked ones (generated as ``d<output>``)."""

    nargs = 2

    def shape(self, shapes, what=""):
        return tuple(shape_of(self.operand, shapes, what)[1:])

    def pullback(self, g, shapes):  # pragma: no cover - upstream gradients are leaves
        raise SpecError("an upstream gradient is not differentiated")

    def apply(self, values, kind):
        return values[0][int(self.args[1])]


class BroadcastTo(ArrayOp):
    """``np.broadcast_to(a, shape)`` (copied): a gradient that broadcasting left smaller."""

    nargs = 2

    def shape(self, shapes, what=""):
        return tuple(self.args[1])

    def apply(self, values, kind):
        raise NotImplementedError  # evaluated by evaluate(), which knows the sizes


class ArrayVar(sympy.Symbol):
    """An array variable (input, parameter, constant or graph value); plain symbols are scalars."""


def _is_scalar(e: sympy.Expr) -> bool:
    return not e.atoms(ArrayVar) and not e.atoms(ArrayOp)


def _softmax(a: np.ndarray, axis: int, kind: Elementary) -> np.ndarray:
    if kind is NUMERIC:
        a = a - np.max(a, axis=axis, keepdims=True)
    e = kind.exp(a)
    return e / np.sum(e, axis=axis, keepdims=True)


# -- builders used by the parser ---------------------------------------------------------
def reduce_op(name: str, a: sympy.Expr, axis=None, keepdims: bool = False) -> sympy.Expr:
    """``sum/mean/max/logsumexp(a, axis=..., keepdims=...)`` as an atom."""
    op = {"sum": ReduceSum, "mean": ReduceMean, "max": ReduceMax, "logsumexp": LogSumExp}[name]
    return op(a, _axes(axis), sympy.Integer(bool(keepdims)))


def expand_dims(a: sympy.Expr, axes) -> ExpandDims:
    """``expand_dims(a, axis=...)`` as an atom."""
    return ExpandDims(a, _axes(axes))


# -- shapes ----------------------------------------------------------------------------
def broadcast(*shapes: Shape, what: str = "") -> Shape:
    """numpy's broadcasting of symbolic shapes; a mismatch names the dimensions."""
    ndim = max((len(s) for s in shapes), default=0)
    out = []
    for i in range(ndim):
        dims = {s[len(s) - ndim + i] for s in shapes if len(s) - ndim + i >= 0} - {sympy.S.One}
        if len(dims) > 1:
            names = " vs ".join(str(d) for d in sorted(dims, key=str))
            raise SpecError(f"{what}shapes do not broadcast: dimensions {names} "
                            f"({' and '.join(show_shape(s) for s in shapes)})")
        out.append(dims.pop() if dims else sympy.S.One)
    return tuple(out)


def show_shape(shape: Shape) -> str:
    """``(N, D)``, ``(M,)``, ``()``; a window count as ``(IH + 2*pad - FH)//stride + 1``."""
    return "(" + ", ".join(size_text(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"


def size_text(d: sympy.Expr, leaf: Callable[[sympy.Expr], str] = str) -> str:
    """A size in Python's integer arithmetic: ``floor(a/b)`` as ``(a)//b``, nested too (the
    pooled size of a convolution: ``((IH - FH)//stride - 1)//2 + 1``); ``leaf`` prints the rest."""
    if isinstance(d, sympy.floor):
        num, den = sympy.fraction(sympy.together(d.args[0]))
        return f"({size_text(num, leaf)})//{leaf(den) if den.is_Atom else f'({leaf(den)})'}"
    if isinstance(d, sympy.Add) and d.has(sympy.floor):
        first, *rest = sorted(d.args, key=lambda t: (not t.has(sympy.floor), t.is_Number))
        out = size_text(first, leaf)
        for t in rest:
            out += f" - {size_text(-t, leaf)}" if t.could_extract_minus_sign() else f" + {size_text(t, leaf)}"
        return out
    return leaf(d)


def normal_axes(axes: tuple[int, ...], ndim: int, what: str) -> tuple[int, ...]:
    """Axes in ``0..ndim-1``, sorted (``()``: all of them); an axis out of range is an error."""
    if not axes:
        return tuple(range(ndim))
    out = []
    for a in axes:
        if not -ndim <= a < ndim:
            raise SpecError(f"{what}axis {a} is out of range for {ndim} dimensions")
        out.append(a % ndim)
    return tuple(sorted(out))


def shape_of(expr: sympy.Basic, shapes: Shapes, what: str = "") -> Shape:
    """The symbolic shape of an array expression (``()`` for scalars)."""
    if isinstance(expr, sympy.Symbol):
        return tuple(shapes.get(expr, ()))
    if expr.is_number or isinstance(expr, sympy.logic.boolalg.BooleanAtom):
        return ()
    if isinstance(expr, ArrayOp):
        return expr.shape(shapes, what)
    if isinstance(expr, sympy.Piecewise):
        return broadcast(*[shape_of(v, shapes, what) for v, _ in expr.args],
                         *[shape_of(c, shapes, what) for _, c in expr.args], what=what)
    return broadcast(*[shape_of(a, shapes, what) for a in expr.args if isinstance(a, sympy.Basic)], what=what)


def size_of(shape: Shape, axes: tuple[int, ...]) -> sympy.Expr:
    """Number of elements a reduction over ``axes`` averages."""
    return sympy.Mul(*[shape[a] for a in normal_axes(axes, len(shape), "")])


def split_sums(expr: sympy.Expr, shapes: Shapes) -> sympy.Expr:
    """``sum(a + b)`` as ``sum(a) + sum(b)`` wherever every term has the shape of the whole
    (so that assumptions such as one-hot rows can act on each); a term that broadcasts, or
    whose shape is unknown here, keeps the sum whole.  A sum of a broadcast scalar is the
    scalar times the number of elements summed."""

    def split(e: sympy.Basic) -> sympy.Basic:
        if isinstance(e, ReduceSum) and isinstance(e.operand, BroadcastTo) and _is_scalar(e.operand.args[0]):
            shape = tuple(e.operand.args[1])
            return e.operand.args[0] * size_of(shape, normal_axes(e.axes, len(shape), ""))
        if isinstance(e, ReduceSum) and isinstance(e.operand, sympy.Mul):
            return _constant_factors_out(e, shapes)
        if not (isinstance(e, ReduceSum) and isinstance(e.operand, sympy.Add)):
            return e
        if any(v not in shapes for v in e.operand.atoms(ArrayVar)):
            return e
        try:
            whole = shape_of(e.operand, shapes)
            same = all(shape_of(t, shapes) == whole for t in e.operand.args)
        except SpecError:
            return e
        return sympy.Add(*[ReduceSum(t, e.args[1], e.args[2]) for t in e.operand.args]) if same else e

    return expr.replace(lambda e: isinstance(e, ReduceSum), split)


def _constant_factors_out(e: ReduceSum, shapes: Shapes) -> sympy.Expr:
    """:func:`factor_out_of_sum` with the declaration's shapes, then the sum left split again."""
    if any(v not in shapes for v in e.operand.atoms(ArrayVar)):
        return e

    def shape(f: sympy.Basic) -> Shape | None:
        try:
            return shape_of(f, shapes)
        except SpecError:
            return None

    out = factor_out_of_sum(e, shape)
    return e if out is e else split_sums(out, shapes)


def factor_out_of_sum(e: ReduceSum, shape: Callable[[sympy.Basic], Shape | None]) -> sympy.Expr:
    r"""``sum(f*h, axis=A)`` as ``f*sum(h, axis=A)`` for each factor ``f`` constant along the
    summed axes that keeps its place in the result (:math:`\sum_j s_i a_{ij} = s_i \sum_j a_{ij}`):
    of size 1 along ``A`` with ``keepdims``, without any of ``A`` (broadcast there) without it.
    A masked temporal loss's ``sum(t*expand_dims(g, axis=2), axis=2, keepdims=True)`` becomes
    ``expand_dims(g, axis=2)*sum(t, ...)``, where a one-hot ``t`` sums to 1; LayerNorm's ``(N, 1)``
    factors leave its sums (one pass over the large array fewer each). ``shape(f)`` gives a
    factor's shape, None where unknown (the factor then stays)."""
    if not isinstance(e.operand, sympy.Mul):
        return e
    full = shape(e.operand)
    if full is None:
        return e
    axes = normal_axes(e.axes, len(full), "") if e.axes else tuple(range(len(full)))
    outside = []
    for f in e.operand.args:
        sh = shape(f)
        if sh is None:
            continue
        lead = len(full) - len(sh)
        if all(a < lead or (e.keepdims and sh[a - lead] == 1) for a in axes):
            outside.append(f)
    inside = [f for f in e.operand.args if f not in outside]
    if not outside or not inside:
        return e
    return sympy.Mul(*outside) * ReduceSum(sympy.Mul(*inside), e.args[1], e.args[2])


# -- rewrites before differentiating ---------------------------------------------------------
def fuse_logs(expr: sympy.Expr, definitions: Mapping[sympy.Symbol, sympy.Expr]) -> sympy.Expr:
    """``log(softmax(a))`` as ``log_softmax(a)`` and ``log(sum(exp(a)))`` as ``logsumexp(a)``,
    also through named graph values (``log(y)`` with ``y = softmax(x)``): stable, and the
    backward never differentiates through ``log(y)``."""

    def fused(arg):
        inner = definitions.get(arg, arg)
        if isinstance(inner, Softmax):
            return LogSoftmax(*inner.args)
        if isinstance(inner, ReduceSum) and isinstance(inner.args[0], sympy.exp):
            return LogSumExp(inner.args[0].args[0], inner.args[1], inner.args[2])
        return None

    return expr.replace(lambda e: isinstance(e, sympy.log) and fused(e.args[0]) is not None,
                        lambda e: fused(e.args[0]))


# -- vector-Jacobian products ---------------------------------------------------------------
def _leaves(expr: sympy.Expr) -> list[sympy.Basic]:
    """The array atoms an elementwise expression is built from (outermost ArrayOps, symbols)."""
    out: list[sympy.Basic] = []

    def walk(e):
        if isinstance(e, (ArrayOp, sympy.Symbol)):
            if e not in out:
                out.append(e)
            return
        for a in e.args:
            if isinstance(a, sympy.Basic) and not isinstance(a, sympy.logic.boolalg.BooleanAtom):
                walk(a)

    walk(expr)
    return out


def unbroadcast(g: sympy.Expr, g_shape: Shape, target: Shape) -> sympy.Expr:
    """Sum ``g`` over the axes along which a value of shape ``target`` was broadcast.  A
    scalar ``g`` standing for an array of ``g_shape`` (broadcasting left it whole) sums to
    itself times the sizes of those axes: ``sum(x + b)`` gives ``db = N*dout``."""
    lead = len(g_shape) - len(target)
    if _is_scalar(g):
        summed = [*g_shape[:max(lead, 0)]]
        summed += [d for t, d in zip(target, g_shape[max(lead, 0):]) if t == 1 and d != 1]
        return g * sympy.Mul(*summed)
    if lead > 0:
        g = ReduceSum(g, _axes(tuple(range(lead))), sympy.Integer(0))
        g_shape = g_shape[lead:]
    kept = tuple(i for i, (t, d) in enumerate(zip(target, g_shape)) if t == 1 and d != 1)
    if kept:
        g = ReduceSum(g, _axes(kept), sympy.Integer(1))
    return g


def vjp(expr: sympy.Expr, g: sympy.Expr, shapes: Shapes,
        wrt: Sequence[sympy.Symbol], kink) -> dict[sympy.Symbol, sympy.Expr]:
    """Gradients of ``sum(g * expr)`` with respect to the symbols ``wrt``.

    ``kink`` maps a raw scalar derivative to its kink-free form (the scalar engine's
    convention for ``Heaviside``).
    """
    grads: dict[sympy.Symbol, sympy.Expr] = {}
    _backprop(expr, g, shapes, set(wrt), grads, kink)
    return grads


def _depends(e: sympy.Basic, wrt: set) -> bool:
    return bool(e.free_symbols & wrt)


def _backprop(expr, g, shapes, wrt: set, grads: dict, kink) -> None:
    if not _depends(expr, wrt):
        return
    if isinstance(expr, sympy.Symbol):
        grads[expr] = grads.get(expr, sympy.S.Zero) + g
        return
    if isinstance(expr, ArrayOp):
        for arg, ga in expr.pullback(g, shapes):
            _backprop(arg, ga, shapes, wrt, grads, kink)
        return
    out_shape = shape_of(expr, shapes)
    leaves = [leaf for leaf in _leaves(expr) if _depends(leaf, wrt)]
    holes = {leaf: sympy.Dummy(f"h{i}", real=True) for i, leaf in enumerate(leaves)}
    scalar = expr.xreplace(holes)
    back = {h: leaf for leaf, h in holes.items()}
    for leaf, hole in holes.items():
        local = kink(sympy.diff(scalar, hole)).xreplace(back)
        gl = unbroadcast(g * local, broadcast(out_shape, shape_of(g, shapes)), shape_of(leaf, shapes))
        _backprop(leaf, gl, shapes, wrt, grads, kink)


def _transposed(g: sympy.Expr) -> sympy.Expr:
    """``g.T``, with a product's transpose written ``(A @ B).T = B.T @ A.T`` (``@`` is 2-D only)."""
    if isinstance(g, Matmul):
        a, b = g.args
        return Matmul(Transposed(b), Transposed(a))
    return Transposed(g)


# -- explicit evaluation: small shapes, scalar symbols ---------------------------------------------
def evaluate(expr: sympy.Basic, env: Mapping[sympy.Symbol, object]) -> object:
    """Evaluate an array expression on numpy object arrays of SymPy scalars (or numbers).

    The definitional forms are used (``softmax = exp(a)/sum(exp(a))``): this is the
    independent reference the derived formulas are expanded against.
    """
    if isinstance(expr, sympy.Symbol):
        return env[expr]
    if expr.is_number:
        return expr
    args = expr.args
    if isinstance(expr, BroadcastTo):
        dims = tuple(int(evaluate(d, env)) for d in args[1])
        return np.broadcast_to(np.asarray(evaluate(args[0], env), dtype=object), dims).copy()
    if getattr(expr, "needs_sizes", False):  # index atoms: sizes and hyperparameters too
        sizes = {s: sympy.Integer(int(env[s])) for s in expr.free_symbols if s in env and not isinstance(
            env[s], np.ndarray) and s.is_integer}
        return expr.apply_sized([evaluate(a, env) for a in args[:expr.operands]], SYMBOLIC, sizes)
    if isinstance(expr, ArrayOp):
        return expr.apply([evaluate(a, env) for a in args[:expr.operands]], SYMBOLIC)
    if isinstance(expr, sympy.Piecewise):
        (v1, c1), (v2, _) = expr.args[0], expr.args[-1]
        c, a, b = np.broadcast_arrays(*(np.asarray(evaluate(x, env), dtype=object) for x in (c1, v1, v2)))
        return _map(lambda ci, ai, bi: sympy.Piecewise((ai, ci), (bi, True)), c, a, b)
    if isinstance(expr, sympy.core.relational.Relational):
        lhs, rhs = np.broadcast_arrays(*(np.asarray(evaluate(x, env), dtype=object) for x in args))
        return _map(lambda a, b: expr.func(a, b), lhs, rhs)
    values = [np.asarray(evaluate(a, env), dtype=object) for a in args]
    if isinstance(expr, sympy.Add):
        return sum(values[1:], values[0])
    if isinstance(expr, sympy.Mul):
        out = values[0]
        for v in values[1:]:
            out = out * v
        return out
    if isinstance(expr, sympy.Pow):
        return values[0] ** values[1]
    return _map(lambda *xs: expr.func(*xs), *values)


def _reduce_max(v, ax):
    # unevaluated: the explicit check only evaluates it, and SymPy's simplification of a max of
    # large symbolic cells (a network's) takes seconds per cell
    return np.apply_along_axis(lambda r: sympy.Max(*r, evaluate=False), ax, v) if v.ndim else v


def _map(fn, *arrays):
    arrays = np.broadcast_arrays(*(np.asarray(a, dtype=object) for a in arrays))
    out = np.empty(arrays[0].shape, dtype=object)
    for idx in np.ndindex(out.shape):
        out[idx] = fn(*(a[idx] for a in arrays))
    return out if out.shape else out[()]


def explicit_env(shapes: Shapes, sizes: Mapping[sympy.Symbol, int]) -> dict:
    """Every array symbol as an object array of fresh scalar symbols at the given sizes."""
    env: dict = {}
    at = {d: sympy.Integer(n) for d, n in sizes.items()}
    for symbol, shape in shapes.items():
        dims = [int(d) if d.is_Integer else sizes[d] if d in sizes else int(d.xreplace(at)) for d in shape]
        cells = np.empty(dims, dtype=object)
        for idx in np.ndindex(*dims):
            cells[idx] = sympy.Symbol(f"{symbol.name}_{'_'.join(map(str, idx))}", real=True)
        env[symbol] = cells if dims else cells[()]
    env.update({d: sympy.Integer(n) for d, n in sizes.items()})
    return env


def explicit_sizes(dims: Sequence[sympy.Symbol]) -> dict[sympy.Symbol, int]:
    """Small sizes for the dimensions, alternately 2 and 3, so that a transposed shape
    rarely fits where the right one does."""
    return {d: n for d, n in zip(sorted(dims, key=str), itertools.cycle((2, 3)))}
