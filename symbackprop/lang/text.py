"""SymPy back to the declaration syntax: :func:`format_expression`.

The inverse of :func:`symbackprop.lang.parser.parse_expression`: what it prints parses
back to an equal expression.  Functions are spelled by their row of the function table
(``atan`` prints as ``arctan``), decimals as they were written (``0.044715``).
"""
from __future__ import annotations

import decimal
import math

import sympy
from sympy.printing.precedence import PRECEDENCE
from sympy.printing.str import StrPrinter

from .. import indexed, ops
from .functions import BY_CLASS, NODES
from .parser import COMPARISONS, INT_LIMIT, BAD, is_identifier

def _decimal_denominator(q: int) -> bool:
    """Is ``q`` the denominator of a number written with decimals (0.01, 0.044715, 1e-07):
    ``2**a * 5**b``, at least 100 (``x/4`` and ``x/20`` stay fractions)?"""
    if q < 100:
        return False
    for p in (2, 5):
        while q % p == 0:
            q //= p
    return q == 1


def is_decimal(number: sympy.Basic) -> bool:
    """A rational written with decimals in a declaration (0.01, 0.044715, 1e-07): printed
    back as a decimal; exact inside the engine."""
    return (isinstance(number, sympy.Rational) and number.q != 1 and _decimal_denominator(int(number.q))
            and abs(number.p) < 10**40)


def decimal_text(number: sympy.Rational) -> str:
    """The decimal digits of a rational :func:`is_decimal` accepts, exactly (``1e-07`` as Python writes it)."""
    short = repr(float(number))
    if sympy.Rational(short) == number:
        return short
    with decimal.localcontext() as context:
        context.prec = 100  # more than any terminating decimal is_decimal accepts
        return format(decimal.Decimal(int(number.p)) / decimal.Decimal(int(number.q)), "f")


def with_decimals(expr: sympy.Basic) -> sympy.Basic:
    """``expr`` with its decimal rationals as SymPy Floats of the same digits, for printers
    that write rationals as fractions (LaTeX): to print only, never to compute with."""
    decimals = {r: sympy.Float(decimal_text(r), 40) for r in expr.atoms(sympy.Rational) if is_decimal(abs(r))}
    return expr.xreplace(decimals) if decimals else expr


class _Printer(StrPrinter):
    """Prints SymPy in the parser's own syntax."""

    #: index atoms in index notation (for people) rather than the spelling that parses back
    pretty = False

    def _print(self, expr, **kwargs) -> str:
        if isinstance(expr, sympy.Basic) and (
                expr in BAD or (isinstance(expr, sympy.NumberSymbol) and expr not in (sympy.pi, sympy.E))):
            raise ValueError(f"{expr} has no spelling in the expression syntax")
        return super()._print(expr, **kwargs)

    def _call(self, name: str, *args: sympy.Basic) -> str:
        return f"{name}({', '.join(self._print(a) for a in args)})"

    def _print_Symbol(self, expr: sympy.Symbol) -> str:
        if not is_identifier(expr.name):
            raise ValueError(f"symbol name {expr.name!r} is not a valid identifier")
        return expr.name

    def _print_Integer(self, expr: sympy.Integer) -> str:
        n = int(expr.p)
        if abs(n) < INT_LIMIT:
            return str(n)
        terms, rest, i = [], abs(n), 0  # (c2*(10**90)**2 + c1*10**90 + c0) parses back
        while rest:
            rest, digits = divmod(rest, 10 ** 90)
            if digits:
                terms.append(str(digits) + ("" if i == 0 else "*10**90" if i == 1 else f"*(10**90)**{i}"))
            i += 1
        body = " + ".join(reversed(terms))
        return f"(-({body}))" if n < 0 else f"({body})"

    def _print_Mul(self, expr) -> str:
        """A decimal coefficient leads, as written: ``0.044715*x**3``, not ``8943*x**3/200000``."""
        coeff, rest = expr.as_coeff_Mul()
        if rest != 1 and is_decimal(coeff):
            sign = "-" if coeff < 0 else ""
            return f"{sign}{self._print_Rational(abs(coeff))}*{self.parenthesize(rest, PRECEDENCE['Mul'])}"
        if coeff == -1 and isinstance(rest, sympy.Mul):
            factors = rest.as_ordered_factors()
            if isinstance(factors[0], sympy.Add) and not any(f.is_Pow and f.exp.is_negative for f in factors):
                # "-(1 - t)*p" would parse back as (t - 1)*p: a sum must not follow the minus
                ordered = sorted(factors, key=lambda f: isinstance(f, sympy.Add))
                product = "*".join(self.parenthesize(f, PRECEDENCE["Mul"]) for f in ordered)
                return f"-({product})" if isinstance(ordered[0], sympy.Add) else f"-{product}"
        return super()._print_Mul(expr)

    def _print_Rational(self, expr: sympy.Rational) -> str:
        if expr.q == 1:
            return self._print_Integer(sympy.Integer(expr.p))
        if is_decimal(expr):
            return decimal_text(expr)  # 1e-07 and 0.044715 as written; the parser reads them back exactly
        return f"{self._print_Integer(sympy.Integer(expr.p))}/{self._print_Integer(sympy.Integer(expr.q))}"

    def _print_Add(self, expr, order=None) -> str:
        """Positive terms first, as people write them: ``1 - y``, ``x @ W + b``, ``var + 1e-07``
        (whole numbers lead, other numbers close, compound terms come before plain names)."""
        terms = list(expr.args)
        negative = [t for t in terms if t.could_extract_minus_sign()]

        def place(t):
            return (0 if t.is_Integer else 3 if t.is_Number else 2 if isinstance(t, sympy.Symbol) else 1, str(t))

        positive = sorted((t for t in terms if t not in negative), key=place)
        if not positive:
            return super()._print_Add(expr, order)
        text = " + ".join(self._print(t) for t in positive)
        for t in negative:
            inner = self._print(-t)
            text += f" - ({inner})" if isinstance(-t, sympy.Add) else f" - {inner}"
        return text

    def _print_Float(self, expr: sympy.Float) -> str:
        value = float(expr)
        if not math.isfinite(value):
            raise ValueError(f"{expr} has no spelling in the expression syntax")
        return repr(value)

    def _print_Exp1(self, expr) -> str:
        return "exp(1)"

    # -- array atoms (see ops.py), in the array syntax ------------------------------
    def _operand(self, expr) -> str:
        text = self._print(expr)
        return text if isinstance(expr, (sympy.Symbol, ops.ArrayOp)) and not isinstance(
            expr, ops.Matmul) else f"({text})"

    def _print_Matmul(self, expr) -> str:
        a, b = expr.args
        right = self._print(b) if isinstance(b, (sympy.Symbol, ops.Transposed)) else f"({self._print(b)})"
        return f"{self._operand(a) if not isinstance(a, ops.Matmul) else self._print(a)} @ {right}"

    def _print_Transposed(self, expr) -> str:
        return f"{self._operand(expr.args[0])}.T"

    def _axes_text(self, axes) -> str:
        values = [int(a) for a in axes]
        return str(values[0]) if len(values) == 1 else "(" + ", ".join(map(str, values)) + ")"

    def _print_Reduction(self, expr) -> str:
        name = {"ReduceSum": "sum", "ReduceMean": "mean", "ReduceMax": "max", "LogSumExp": "logsumexp"}
        keywords = ([f"axis={self._axes_text(expr.args[1])}"] if len(expr.args[1]) else []) + (
            ["keepdims=True"] if expr.keepdims else [])
        return f"{name[type(expr).__name__]}({', '.join([self._print(expr.args[0]), *keywords])})"

    # SymPy dispatches a Function subclass by its own name only
    _print_ReduceSum = _print_ReduceMean = _print_ReduceMax = _print_LogSumExp = _print_Reduction


    # -- index atoms (see indexed.py), in index notation ------------------------------------
    def _read_text(self, operand, positions) -> str:
        positions = list(positions)
        while isinstance(operand, indexed.Block) and self.pretty:  # a block: a[n, H + h]
            axis = int(operand.args[1])
            positions[axis] = positions[axis] + operand.args[2]
            operand = operand.args[0]
        name = self._print(operand) if isinstance(operand, sympy.Symbol) else f"({self._print(operand)})"
        return f"{name}[{', '.join(self._print(p) for p in positions)}]"

    def _reduced_text(self, e, reduced, maps) -> str:
        """``(k, l)``, with ``k=pool_h`` for an index no read gives the range of."""
        plain = {p for m in maps for p in m if isinstance(p, indexed.Index)}
        ranges = dict(e.ranges)
        named = [i.name for i in reduced if i in plain]
        sized = [f"{i.name}={self._print(ranges[i])}" for i in reduced if i not in plain]
        parts = [f"({', '.join(named)}{',' if len(named) == 1 else ''})"] if named else []
        return ", ".join(parts + sized)

    def _print_floor(self, e) -> str:
        """A window count's floor division, as index notation writes it: ``(IH + 2*pad - FH)//stride``."""
        num, den = sympy.fraction(sympy.together(e.args[0]))
        left = self._print(num) if num.is_Symbol or num.is_Integer else f"({self._print(num)})"
        right = self._print(den) if den.is_Symbol or den.is_Integer else f"({self._print(den)})"
        return f"{left}//{right}"

    def _tuple_text(self, items) -> str:
        return "(" + ", ".join(items) + ("," if len(items) == 1 else "") + ")"

    def _exact(self, name: str, e, operands: int, maps) -> str:
        """The spelling that parses back: ``index_sum(a, b, at=(...), out=(...), ranges=(...), shape=(...))``."""
        at = self._tuple_text([self._tuple_text([self._print(p) for p in m]) for m in maps])
        out = self._tuple_text([self._print(p) for p in e.args[-3]])
        ranges = self._tuple_text([f"({self._print(i)}, {self._print(n)})" for i, n in e.ranges])
        shape = self._tuple_text([self._print(d) for d in e.args[-1]])
        args = [self._print(a) for a in e.args[:operands]]
        return f"{name}({', '.join(args)}, at={at}, out={out}, ranges={ranges}, shape={shape})"

    def _print_IndexSum(self, e) -> str:
        maps = e.maps
        if not self.pretty:
            return self._exact("index_sum", e, e.operands, maps)
        body = "*".join(self._read_text(a, m) for a, m in zip(e.args[:e.operands], maps))
        written = set().union(*(p.atoms(indexed.Index) for p in e.out_map))
        reduced = [i for i, _ in e.ranges if i not in written]
        return f"sum({body}, {self._reduced_text(e, reduced, maps)})" if reduced else body

    def _print_Stack(self, e) -> str:
        return self._call("stack", *e.args)

    def _print_Pick(self, e) -> str:
        return self._call("pick", *e.args)

    def _print_Block(self, e) -> str:
        return self._call("block", *e.args)

    def _print_Unblock(self, e) -> str:
        return self._call("unblock", *e.args)

    def _print_Read(self, e) -> str:
        return self._read_text(e.args[0], e.args[1])

    def _print_IndexTake(self, e) -> str:
        if not self.pretty:
            return self._exact("index_take", e, 2, e.maps)
        return self._read_text(e.args[0], taken_positions(e, e.maps[0]))

    def _print_IndexMax(self, e) -> str:
        if not self.pretty:
            return self._exact("index_max", e, 1, [e.args[1]])
        reduced = [i for i, _ in e.ranges if i not in set(e.args[2])]
        return f"max({self._read_text(e.args[0], e.args[1])}, {self._reduced_text(e, reduced, [e.args[1]])})"

    def _print_IndexMaxGrad(self, e) -> str:
        if not self.pretty:
            return self._exact("first_max", e, 2, [e.args[2], e.args[3]])
        reduced = [i for i, _ in e.ranges if i not in set(e.args[3])]
        return (f"first_max({self._read_text(e.args[0], e.args[2])}, {self._read_text(e.args[1], e.args[3])}, "
                f"{self._reduced_text(e, reduced, [e.args[2]])})")

    def _print_Softmax(self, expr) -> str:
        return f"softmax({self._print(expr.args[0])}, axis={int(expr.args[1])})"

    def _print_LogSoftmax(self, expr) -> str:
        return f"log_softmax({self._print(expr.args[0])}, axis={int(expr.args[1])})"

    def _print_BroadcastTo(self, expr) -> str:
        dims = [self._print(d) for d in expr.args[1]]
        shape = f"({dims[0]},)" if len(dims) == 1 else "(" + ", ".join(dims) + ")"
        return f"broadcast_to({self._print(expr.args[0])}, shape={shape})"

    def _print_ExpandDims(self, expr) -> str:
        return f"expand_dims({self._print(expr.args[0])}, axis={self._axes_text(expr.args[1])})"

    def _print_row(self, expr) -> str:
        """A function of the table, by its first name (``atan`` as ``arctan``)."""
        return self._call(BY_CLASS[type(expr)].name, *expr.args)

    def _print_Max(self, expr) -> str:
        return self._nested("maximum", expr.args)

    def _print_Min(self, expr) -> str:
        return self._nested("minimum", expr.args)

    def _nested(self, name: str, args: tuple) -> str:
        if len(args) == 1:
            return self._print(args[0])
        return f"{name}({self._print(args[0])}, {self._nested(name, args[1:])})"

    def _print_Heaviside(self, expr) -> str:
        u, h0 = expr.args[0], (expr.args[1] if len(expr.args) > 1 else sympy.S.Half)
        if h0 == 0:
            return self._call("heaviside", u)
        arg, value = self._print(u), self._print(h0)
        return f"where({arg} > 0, 1, where({arg} < 0, 0, {value}))"

    def _print_Piecewise(self, expr) -> str:
        *branches, (last, final) = expr.args
        if final is not sympy.true:
            raise ValueError("a Piecewise without a final True branch cannot be written with where()")
        out = self._print(last)
        for value, cond in reversed(branches):
            out = self._where(cond, self._print(value), out)
        return out

    def _where(self, cond: sympy.Basic, then: str, other: str) -> str:
        """``where`` text for any condition built from real comparisons, and, or, not, and
boolean masks."""
        if type(cond) in COMPARISONS.values() or isinstance(cond, sympy.Symbol):  # a symbol: a boolean mask
            return f"where({self._print(cond)}, {then}, {other})"
        if cond is sympy.true or cond is sympy.false:
            return then if cond is sympy.true else other
        if isinstance(cond, (sympy.And, sympy.Or)):
            first, rest = cond.args[0], cond.func(*cond.args[1:])
            if isinstance(cond, sympy.And):
                return self._where(first, self._where(rest, then, other), other)
            return self._where(first, then, self._where(rest, then, other))
        if isinstance(cond, sympy.Not):
            return self._where(cond.args[0], other, then)
        if isinstance(cond, (sympy.Eq, sympy.Ne)):
            a, b = cond.args
            if isinstance(cond, sympy.Ne):
                then, other = other, then
            return self._where(sympy.Lt(a, b, evaluate=False), other,
                               self._where(sympy.Gt(a, b, evaluate=False), other, then))
        raise ValueError(f"condition {cond} cannot be written in the expression syntax")

    def _print_Derivative(self, expr) -> str:
        out = self._print(expr.expr)
        for var, count in expr.variable_count:
            for _ in range(int(count)):
                out = f"diff({out}, {self._print(var)})"
        return out

    def _print_Subs(self, expr) -> str:
        out = self._print(expr.expr)
        for var, point in zip(expr.variables, expr.point):
            out = f"subs({out}, {self._print(var)}, {self._print(point)})"
        return out


for _row in NODES:  # a row prints by its name unless the printer has a method of its own for it
    if f"_print_{_row.sympy.__name__}" not in _Printer.__dict__:
        setattr(_Printer, f"_print_{_row.sympy.__name__}", _Printer._print_row)


class _Pretty(_Printer):
    pretty = True


def taken_positions(e: indexed.IndexTake, positions) -> list:
    """A gather's positions with the integer constant's read in its place (``x[n, t], d``)."""
    c = e.args[1]
    read = indexed.Read(c, sympy.Tuple(*e.maps[1]))
    return [read if p == c else p for p in positions]


def format_statement(name: str, expr: sympy.Basic) -> str:
    """``name = expr``; in index notation ``name[n, f, i, j] = ...`` with the left side's
    positions (a scatter's: ``dx[n, c, i*stride + k - pad, ...] = ...``) when every index
    atom of ``expr`` writes through the same ones."""
    atoms = expr.atoms(*indexed.INDEX_ATOMS)
    if expr.atoms(indexed.Unblock):  # a gradient assembled from blocks: the whole array
        return f"{name} = {_Pretty().doprint(expr)}"
    targets = {tuple(taken_positions(a, a.out_map)) if isinstance(a, indexed.IndexTake) else tuple(a.out_map)
               if isinstance(a, indexed.IndexSum) else tuple(a.args[2]) for a in atoms}
    if len(targets) == 1:
        positions = targets.pop()
        plain = all(isinstance(p, indexed.Index) for p in positions)  # else a scatter-add (col2im)
        return (f"{name}[{', '.join(_Printer().doprint(p) for p in positions)}] {'=' if plain else '+='} "
                f"{_Pretty().doprint(expr)}")
    return f"{name} = {_Pretty().doprint(expr)}"


def format_expression(expr: sympy.Basic) -> str:
    """Print ``expr`` in the parser's syntax, so that it parses back to an equal expression.

    Parameters
    ----------
    expr : sympy.Basic
        The expression (symbols must have identifier names).

    Returns
    -------
    str

    Raises
    ------
    ValueError
        If ``expr`` has no spelling in the syntax: a ``Piecewise`` without a final
        ``True`` branch or with a condition not built from ``< <= > >= == !=`` with
        and/or/not (those are spelled as nested ``where``), infinities,
        ``nan``, ``I``, constants other than ``pi`` and ``E``, or a symbol whose name
        fails :func:`is_identifier`.  Functions outside the grammar print in SymPy's
        spelling and so fail to parse back, loudly.
    """
    return _Printer().doprint(expr)
