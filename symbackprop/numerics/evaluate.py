r"""Evaluating SymPy expressions: at high precision with mpmath, or in float64 with numpy.

Both evaluators walk the expression tree once and build a function of closures, one
per node; no source code is generated and no name is looked up in a namespace, so a
user's symbol called ``e`` or ``mpf`` is just a symbol.  Functions are evaluated from
their row of the function table (:mod:`symbackprop.lang.functions`).

One convention for "undefined" at high precision: :func:`mp_value` returns ``None``
where the expression raises (a division by zero, ``log`` of a negative number), is not
finite, or is not real (a complex intermediate, such as ``sqrt(-1)``, means undefined
over the reals).  Comparisons evaluate to ``bool``.

The float64 evaluator applies the stable rewrites (:mod:`symbackprop.lang.stable`)
first, as the generated code does, and computes with numpy's overflow and invalid
warnings off: ``inf`` and ``nan`` are values to be judged by the caller.
"""
from __future__ import annotations

import functools
import operator
import warnings
from collections.abc import Callable, Mapping, Sequence

import mpmath
import numpy as np
import sympy

from .. import ops
from ..lang.functions import BY_CLASS
from ..lang.stable import stable

#: Working precision (decimal digits) of high-precision evaluation.
DPS = 40
#: Precision (bits) of the constants of a compiled expression: more than any working precision.
CONSTANT_BITS = 512

Closure = Callable[[Sequence], object]


class Unsupported(Exception):
    """An expression node neither evaluator knows (an array atom at high precision, say)."""


# -- shared tree walk ---------------------------------------------------------------------------
class _Compiler:
    """Turns a tree into closures over a list of argument values; subclasses give the arithmetic."""

    def __init__(self, symbols: Sequence[sympy.Symbol]):
        self.index = {s: i for i, s in enumerate(symbols)}
        self.memo: dict[sympy.Basic, Closure] = {}

    def compile(self, e: sympy.Basic) -> Closure:
        if e not in self.memo:
            self.memo[e] = self.node(e)
        return self.memo[e]

    def node(self, e: sympy.Basic) -> Closure:
        if isinstance(e, sympy.Symbol):
            if e not in self.index:
                raise Unsupported(f"no value for {e}")
            i = self.index[e]
            return lambda v: v[i]
        if e is sympy.true or e is sympy.false:
            value = bool(e)
            return lambda v: value
        if e.is_Number or isinstance(e, sympy.NumberSymbol):
            c = self.number(e)
            return lambda v: c
        if isinstance(e, sympy.Piecewise):
            return self.piecewise([(self.compile(v), self.compile(c)) for v, c in e.args])
        if isinstance(e, ops.ArrayOp):
            return self.array_op(e, [self.compile(a) for a in e.args[:e.operands]])
        parts = [self.compile(a) for a in e.args if isinstance(a, sympy.Basic)]
        if isinstance(e, sympy.Add):
            return self.fold(self.add, parts)
        if isinstance(e, sympy.Mul):
            return self.fold(operator.mul, parts)
        if isinstance(e, sympy.Pow):
            return self.power(e, *parts)
        if isinstance(e, sympy.core.relational.Relational):
            return self.relation(type(e), *parts)
        if isinstance(e, (sympy.And, sympy.Or, sympy.Not)):
            return self.logic(type(e), parts)
        if isinstance(e, sympy.ITE):  # a condition on a piecewise value: (a & b) | (~a & c)
            return self.compile(e.to_nnf())
        return self.function(e, parts)

    @staticmethod
    def fold(op, parts: list[Closure]) -> Closure:
        first, rest = parts[0], parts[1:]

        def run(v):
            out = first(v)
            for p in rest:
                out = op(out, p(v))
            return out

        return run

    add = staticmethod(operator.add)


# -- high precision -------------------------------------------------------------------------------
_MP_RELATIONS = {sympy.StrictLessThan: operator.lt, sympy.LessThan: operator.le, sympy.StrictGreaterThan: operator.gt,
                 sympy.GreaterThan: operator.ge, sympy.Equality: operator.eq, sympy.Unequality: operator.ne}


class _MpCompiler(_Compiler):
    def number(self, e):
        if e is sympy.pi:
            return mpmath.pi  # a constant: evaluated at the precision of each use
        if e is sympy.E:
            return mpmath.e
        with mpmath.workprec(CONSTANT_BITS):  # exact beyond any working precision used here
            if e.is_Rational:
                return mpmath.mpf(int(e.p)) / int(e.q)
            return mpmath.mpf(str(sympy.Float(e, CONSTANT_BITS // 3)))

    def array_op(self, e, parts):
        raise Unsupported(f"no high-precision evaluation of the array operation {type(e).__name__}")

    def power(self, e, base, ex):
        if e.exp == sympy.S.Half:
            return lambda v: _real_sqrt(base(v))
        if e.exp.is_Integer:
            n = int(e.exp)
            return lambda v: _in_range([base(v)])[0] ** n
        return lambda v: _real_power(*_in_range([base(v), ex(v)]))

    def piecewise(self, branches):
        def run(v):
            for value, cond in branches:
                if cond(v):
                    return value(v)
            raise ValueError("no branch applies")

        return run

    def relation(self, kind, a, b):
        op = _MP_RELATIONS[kind]
        return lambda v: bool(op(a(v), b(v)))

    def logic(self, kind, parts):
        if kind is sympy.Not:
            return lambda v: not parts[0](v)
        combine = all if kind is sympy.And else any
        return lambda v: combine(p(v) for p in parts)

    def function(self, e, parts):
        row = BY_CLASS.get(type(e))
        if row is not None and row.mpmath is not None:
            fn = row.mpmath
            return lambda v: fn(*_in_range([p(v) for p in parts]))
        if isinstance(e, (sympy.Max, sympy.Min)):
            pick = max if isinstance(e, sympy.Max) else min
            return lambda v: pick(p(v) for p in parts)
        if isinstance(e, sympy.Heaviside):
            u, h0 = parts[0], (parts[1] if len(parts) > 1 else (lambda v: mpmath.mpf(0.5)))
            return lambda v: (lambda x: mpmath.mpf(1) if x > 0 else mpmath.mpf(0) if x < 0 else h0(v))(u(v))
        fn = _MP_FALLBACK.get(type(e).__name__)
        if fn is None:
            raise Unsupported(f"no high-precision evaluation of {type(e).__name__}")
        return lambda v: fn(*[p(v) for p in parts])


#: SymPy functions without a row that the derivation's inversions can produce.
_MP_FALLBACK = {"asin": mpmath.asin, "acos": mpmath.acos, "acosh": mpmath.acosh, "acot": mpmath.acot,
                "LambertW": mpmath.lambertw, "erfinv": mpmath.erfinv, "erfc": mpmath.erfc, "gamma": mpmath.gamma,
                "loggamma": mpmath.loggamma, "cot": mpmath.cot, "sec": mpmath.sec, "csc": mpmath.csc,
                "coth": mpmath.coth, "acoth": mpmath.acoth, "asec": mpmath.asec, "acsc": mpmath.acsc}


#: Arguments of a function beyond 2**MAX_MAGNITUDE_BITS (about 1e4932, extended precision's
#: range) are overflows: ``exp(exp(exp(exp(exp(1)))))`` would otherwise take mpmath minutes.
MAX_MAGNITUDE_BITS = 16384


def _in_range(args: list) -> list:
    for a in args:
        if isinstance(a, mpmath.mpf) and a and mpmath.mag(a) > MAX_MAGNITUDE_BITS:
            raise OverflowError("an argument beyond any floating-point range")
    return args


def _real_sqrt(x):
    if x < 0:
        raise ValueError("square root of a negative number")
    return mpmath.sqrt(x)


def _real_power(base, ex):
    if base < 0:
        raise ValueError("fractional power of a negative number")
    return base ** ex


def mp_function(expr: sympy.Basic, symbols: Sequence[sympy.Symbol]) -> Closure:
    """``expr`` as a function of the values of ``symbols`` (a sequence), for mpmath numbers.

    Memoized.  An expression with a node the evaluator lacks, or a symbol not among
    ``symbols``, gives a function that is undefined everywhere (:func:`mp_call` says None).
    """
    return _mp_function(expr, tuple(symbols))


@functools.lru_cache(maxsize=4096)
def _mp_function(expr: sympy.Basic, symbols: tuple[sympy.Symbol, ...]) -> Closure:
    try:
        return _MpCompiler(symbols).compile(expr)
    except Unsupported as exc:
        reason = str(exc)

        def undefined(values):
            raise ValueError(reason)

        return undefined


class _SharedMpCompiler(_MpCompiler):
    """Closures that remember their last value: a node shared by many others (a network's
    activations, read by every later cell) is computed once per list of values.  The list
    is the key, by identity: callers pass a new list for new values, never a mutated one."""

    def compile(self, e: sympy.Basic) -> Closure:
        if e not in self.memo:
            fn = self.node(e)
            if not (isinstance(e, sympy.Symbol) or e.is_Number):
                fn = _remembering(fn)
            self.memo[e] = fn
        return self.memo[e]


def _remembering(fn: Closure) -> Closure:
    last: list = [None, None]

    def run(v):
        if last[0] is not v:
            last[1] = fn(v)
            last[0] = v
        return last[1]

    return run


def mp_functions(exprs: Sequence[sympy.Basic], symbols: Sequence[sympy.Symbol]) -> list[Closure]:
    """Each of ``exprs`` as a function of the values of ``symbols`` (a list, new for new
    values: never mutated between calls), compiled together; a subexpression they share is
    compiled once and computed once per list of values (the cells of an expanded network).

    Raises
    ------
    Unsupported
        A node the evaluator lacks, or a symbol not among ``symbols``.
    """
    compiler = _SharedMpCompiler(tuple(symbols))
    return [compiler.compile(e) for e in exprs]


def mp_call(fn: Closure, values: Sequence, dps: int = DPS):
    """``fn(values)`` at ``dps`` digits: an mpf, a bool, or None where undefined (see the
    module docstring)."""
    with mpmath.workdps(dps):
        try:
            value = fn(values)
        except (ZeroDivisionError, ValueError, TypeError, OverflowError, ArithmeticError, AttributeError,
                MemoryError):  # MemoryError: mpmath refusing exp of a number with a huge exponent
            return None
        if isinstance(value, bool):
            return value
        if isinstance(value, mpmath.mpc):
            if value.imag:
                return None
            value = value.real
        try:
            value = mpmath.mpf(value)
        except (TypeError, ValueError):
            return None
        return +value if mpmath.isfinite(value) else None


def mp_value(expr: sympy.Basic, point: Mapping[sympy.Symbol, object], dps: int = DPS):
    """``expr`` at ``point`` (symbol -> number): an mpf, a bool, or None where undefined,
    where a symbol has no value, or where the expression has nodes the evaluator lacks."""
    symbols = sorted(expr.free_symbols, key=lambda s: s.name)
    if any(s not in point for s in symbols):
        return None
    return mp_call(mp_function(expr, symbols), [point[s] for s in symbols], dps)


def mp_float(expr: sympy.Basic, point: Mapping[sympy.Symbol, object]) -> float:
    """:func:`mp_value` rounded to float64; nan where undefined or beyond float64's range."""
    value = mp_value(expr, point)
    if value is None or isinstance(value, bool) or abs(value) > np.finfo(float).max:
        return float("nan")
    return float(value)


# -- float64 --------------------------------------------------------------------------------------
_NP_RELATIONS = {sympy.StrictLessThan: np.less, sympy.LessThan: np.less_equal,
                 sympy.StrictGreaterThan: np.greater, sympy.GreaterThan: np.greater_equal,
                 sympy.Equality: np.equal, sympy.Unequality: np.not_equal}


class _FloatCompiler(_Compiler):
    def number(self, e):
        return float(e)

    def power(self, e, base, ex):
        if e.exp == sympy.S.Half:
            return lambda v: np.sqrt(base(v))
        if e.exp == -sympy.S.Half:
            return lambda v: 1.0 / np.sqrt(base(v))
        if e.exp.is_Integer:
            n = int(e.exp)
            return (lambda v: base(v) ** n) if n >= 0 else (lambda v: 1.0 / base(v) ** -n)
        return lambda v: np.power(base(v), ex(v))

    def piecewise(self, branches):
        def run(v):
            *heads, (last, _) = branches
            out = last(v)
            for value, cond in reversed(heads):
                out = np.where(cond(v), value(v), out)
            return out

        return run

    def relation(self, kind, a, b):
        op = _NP_RELATIONS[kind]
        return lambda v: op(a(v), b(v))

    def logic(self, kind, parts):
        if kind is sympy.Not:
            return lambda v: np.logical_not(parts[0](v))
        combine = np.logical_and if kind is sympy.And else np.logical_or
        return self.fold(combine, parts)

    def array_op(self, e, parts):
        """The atom's own definition in numpy (its stable forms)."""
        if isinstance(e, ops.BroadcastTo):
            dims = [self.compile(d) for d in e.args[1]]
            return lambda v: np.broadcast_to(parts[0](v), tuple(int(d(v)) for d in dims)).copy()
        if getattr(e, "needs_sizes", False):  # index atoms: sizes and hyperparameters too
            named = sorted((s for s in e.free_symbols if s.is_integer and s in self.index), key=lambda s: s.name)
            values = [self.compile(s) for s in named]
            return lambda v: e.apply_sized([p(v) for p in parts], ops.NUMERIC,
                                           {s: sympy.Integer(int(c(v))) for s, c in zip(named, values)})
        return lambda v: e.apply([p(v) for p in parts], ops.NUMERIC)

    def function(self, e, parts):
        row = BY_CLASS.get(type(e))
        fn = None
        if row is not None:
            fn = row.numpy_function()
        elif isinstance(e, (sympy.Max, sympy.Min)):
            return self.fold(np.maximum if isinstance(e, sympy.Max) else np.minimum, parts)
        elif isinstance(e, sympy.Heaviside):
            h0 = parts[1] if len(parts) > 1 else (lambda v: 0.5)
            return lambda v: np.heaviside(parts[0](v), h0(v))
        if fn is None:
            raise Unsupported(f"no float64 evaluation of {type(e).__name__}")
        return lambda v: fn(*[p(v) for p in parts])


def float_function(expr: sympy.Basic, symbols: Sequence[sympy.Symbol]) -> Callable[..., np.ndarray]:
    """``expr`` (after the stable rewrites) as a numpy function of ``symbols``, evaluated
    with floating-point warnings off.

    Raises
    ------
    Unsupported
        For a node without a float64 evaluation.
    """
    fn = _FloatCompiler(symbols).compile(stable(expr))

    def quiet(*values):
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return fn(values)

    return quiet
