"""Turn untrusted expression text into SymPy, and SymPy back into that text.

This is the only place where user text becomes SymPy.  The text is never given to
``eval``, ``exec``, ``sympify`` or ``parse_expr``: it is parsed with
``ast.parse(text, mode="eval")`` and the tree is walked with a whitelist that
builds SymPy objects directly.

Grammar (a subset of Python expression syntax)::

    expr  := number | name | pi | expr OP expr | -expr | +expr | (expr) | call
    OP    := + - * / **
    call  := f(expr, ...)           f a key of FUNCTIONS, exact arity, positional only
           | where(a CMP b, expr, expr)    CMP one of < <= > >=, not chained
           | diff(expr, name) | subs(expr, name, expr)    only with calculus=True

Integers are exact; float literals become exact rationals (``1.1`` is ``11/10``).
Names become ``Symbol(name, real=True)`` unless the caller maps them.  Newlines,
carriage returns and tabs count as spaces anywhere (so ``"x\\n+1"`` is ``x + 1``),
leading spaces are fine, and columns in error messages count characters of the
whole text from 1.

Limits, each refused with a one-line :class:`ParseError` before any costly work:
text length (``MAX_LENGTH``), nesting depth (``MAX_DEPTH``; a chain such as
``a + b - c`` is one level), integer literal digits (``MAX_INT_DIGITS``), numeric
exponents (``MAX_EXPONENT``), numbers of more than ``MAX_NUMBER_DIGITS`` digits, and
fractional powers of large numbers (SymPy factors those; their size per power and
per expression is bounded).  Values that are infinite, undefined or not real
(``1/0``, ``log(0)``, ``sqrt(-1)``) are refused too.  What remains is SymPy's own
automatic simplification, which for legitimate but extreme text (hundreds of nested
transcendental calls) can take around a second; callers wanting a wall-clock bound
wrap the call (see ``timebound``).

:func:`format_expression` is the inverse: it prints SymPy in this syntax.
"""
from __future__ import annotations

import ast
import keyword
import math
from collections.abc import Callable, Collection, Mapping
from contextvars import ContextVar
from typing import NamedTuple

import sympy
from sympy.printing.str import StrPrinter

from . import arrays
from .errors import ParseError

MAX_LENGTH = 10_000        # characters
MAX_DEPTH = 200            # AST nesting depth
MAX_INT_DIGITS = 100       # integer literal digits
MAX_EXPONENT = 1000        # |numeric exponent| allowed in a ** b

MAX_NUMBER_DIGITS = 4000   # any number built (CPython prints at most 4300 digits by default)
_MAX_BITS = int(MAX_NUMBER_DIGITS * math.log2(10))
_ROOT_BITS = 1_200         # one fractional power of a number (SymPy factors it)
_ROOT_BUDGET = 12_000      # all fractional powers of numbers in one parse
_INT_LIMIT = 10 ** MAX_INT_DIGITS
_BAD = frozenset({sympy.nan, sympy.zoo, sympy.oo, -sympy.oo, sympy.I})
_root_spent: ContextVar[list[int] | None] = ContextVar("_root_spent", default=None)


class _Refusal(Exception):
    """A guard refused a computation; the parser adds the column."""


class Builder(NamedTuple):
    """How one whitelisted function becomes SymPy.

    Attributes
    ----------
    arity : int
        Number of positional arguments.
    build : callable
        Called with the built arguments; returns the SymPy expression.
    kinds : str
        One letter per argument: ``e`` expression, ``c`` comparison, ``n`` plain
        name.  Empty means all expressions.
    """

    arity: int
    build: Callable[..., sympy.Basic]
    kinds: str = ""


# ---------------------------------------------------------------- numeric guards
def _bits(r: sympy.Rational) -> int:
    return abs(int(r.p)).bit_length() + int(r.q).bit_length()


def _num_bits(expr: sympy.Basic) -> int:
    """Largest rational in ``expr`` up to two levels down (what SymPy may multiply out)."""
    nodes = [expr, *expr.args, *(g for a in expr.args for g in a.args)]
    return max((_bits(n) for n in nodes if isinstance(n, sympy.Rational)), default=0)


def _root_bits(expr: sympy.Basic) -> int:
    """Size of the numbers under fractional powers among the factors of ``expr``."""
    return sum(_bits(f.base) for f in sympy.Mul.make_args(expr)
               if f.is_Pow and f.base.is_Rational and not f.exp.is_Integer)


def _charge_roots(bits: int) -> None:
    spent = _root_spent.get()
    if bits > _ROOT_BITS or (spent is not None and spent[0] + bits > _ROOT_BUDGET):
        raise _Refusal("fractional power of a number too large")
    if spent is not None:
        spent[0] += bits


def _coeff_bits(expr: sympy.Basic) -> int:
    """Size of the numeric factors of ``expr`` (what a fractional power would root)."""
    return sum(_bits(f) for f in sympy.Mul.make_args(expr) if f.is_Rational)


def _check_power(base: sympy.Basic, e: sympy.Rational) -> None:
    """Refuse ``base**e`` if SymPy would build a huge number or factor a large one."""
    if abs(e) > MAX_EXPONENT:
        raise _Refusal(f"exponent too large (|exponent| > {MAX_EXPONENT})")
    n = abs(int(e.p))
    if _num_bits(base) * n > _MAX_BITS:
        raise _Refusal(f"number too large (more than {MAX_NUMBER_DIGITS} digits)")
    rooted = _root_bits(base) + (0 if e.is_Integer else _coeff_bits(base))
    if rooted:
        _charge_roots(rooted * n)


def _check_exp(arg: sympy.Expr) -> None:
    """``exp(c*log(n))`` evaluates to ``n**c``: bound it like a power."""
    for term in sympy.Add.make_args(arg):
        coeff, rest = term.as_coeff_Mul()
        for f in sympy.Mul.make_args(rest):
            if isinstance(f, sympy.log) and f.args[0].is_number and coeff.is_Rational:
                _check_power(f.args[0], coeff)


def _pow(base: sympy.Expr, e: sympy.Expr) -> sympy.Expr:
    """``base**e`` after checking that SymPy will not compute something huge."""
    if e.is_Rational:
        _check_power(base, e)
    if base is sympy.E or isinstance(base, sympy.exp):
        _check_exp(e if base is sympy.E else base.args[0] * e)
    return sympy.Pow(base, e)


def _product(factors: list[sympy.Expr]) -> sympy.Expr:
    if sum(_num_bits(f) for f in factors) > _MAX_BITS:
        raise _Refusal(f"number too large (more than {MAX_NUMBER_DIGITS} digits)")
    roots = [b for b in map(_root_bits, factors) if b]
    if len(roots) > 1:  # SymPy merges sqrt(a)*sqrt(b) into sqrt(a*b)
        _charge_roots(sum(roots))
    return sympy.Mul(*factors)


def _exp(u: sympy.Expr) -> sympy.Expr:
    _check_exp(u)
    return sympy.exp(u)


# ---------------------------------------------------------------- function table
FUNCTIONS: dict[str, Builder] = {
    "exp": Builder(1, _exp),
    "log": Builder(1, sympy.log),
    "sqrt": Builder(1, lambda u: _pow(u, sympy.S.Half)),
    "tanh": Builder(1, sympy.tanh),
    "sinh": Builder(1, sympy.sinh),
    "cosh": Builder(1, sympy.cosh),
    "sin": Builder(1, sympy.sin),
    "cos": Builder(1, sympy.cos),
    "tan": Builder(1, sympy.tan),
    "arctan": Builder(1, sympy.atan),
    "arcsinh": Builder(1, sympy.asinh),
    "arctanh": Builder(1, sympy.atanh),
    "erf": Builder(1, sympy.erf),
    "abs": Builder(1, sympy.Abs),
    "sign": Builder(1, sympy.sign),
    "log1p": Builder(1, lambda u: sympy.log(1 + u)),
    "expm1": Builder(1, lambda u: _exp(u) - 1),
    "sigmoid": Builder(1, lambda u: _pow(1 + _exp(-u), sympy.S.NegativeOne)),
    "softplus": Builder(1, lambda u: sympy.log(1 + _exp(u))),
    "relu": Builder(1, lambda u: sympy.Max(u, 0)),
    "maximum": Builder(2, sympy.Max),
    "minimum": Builder(2, sympy.Min),
    "where": Builder(3, lambda c, a, b: sympy.Piecewise((a, c), (b, True)), "cee"),
    "heaviside": Builder(1, lambda u: sympy.Heaviside(u, 0)),
}
#: Available only with ``calculus=True``; both stay unevaluated.
CALCULUS_FUNCTIONS: dict[str, Builder] = {
    "diff": Builder(2, lambda e, x: sympy.Derivative(e, x), "en"),
    "subs": Builder(3, lambda e, u, v: sympy.Subs(e, u, v), "ene"),
}

_COMPARISONS = {ast.Lt: sympy.StrictLessThan, ast.LtE: sympy.LessThan,
                ast.Gt: sympy.StrictGreaterThan, ast.GtE: sympy.GreaterThan}
_CHAINS = {ast.Add: (True, False), ast.Sub: (True, True),
           ast.Mult: (False, False), ast.Div: (False, True)}  # (is_sum, inverted)
_OPERATORS = {ast.Mod: "%", ast.FloorDiv: "//", ast.MatMult: "@", ast.BitAnd: "&",
              ast.BitOr: "|", ast.BitXor: "^", ast.LShift: "<<", ast.RShift: ">>",
              ast.Not: "not", ast.Invert: "~"}
_REFUSED = {ast.Attribute: "attribute access is", ast.Subscript: "indexing is", ast.Lambda: "lambda is",
            ast.Compare: "a comparison is", ast.IfExp: "'a if c else b' is", ast.BoolOp: "'and'/'or' are",
            ast.List: "lists are", ast.Tuple: "tuples are", ast.Set: "sets are", ast.Dict: "dicts are",
            ast.ListComp: "comprehensions are", ast.SetComp: "comprehensions are",
            ast.DictComp: "comprehensions are", ast.GeneratorExp: "generator expressions are",
            ast.JoinedStr: "f-strings are", ast.NamedExpr: "':=' is", ast.Starred: "'*' unpacking is",
            ast.Slice: "slices are", ast.Await: "await is", ast.Yield: "yield is", ast.YieldFrom: "yield is"}
_HINTS = {ast.IfExp: " (use where(c, a, b))",
          ast.Compare: " (comparisons are allowed only as the first argument of where)"}


def is_identifier(name: str) -> bool:
    """Whether ``name`` may name a variable (and so may reach generated source).

    Parameters
    ----------
    name : str
        Candidate name.

    Returns
    -------
    bool
        True for ASCII Python identifiers of at most 64 characters that are not
        keywords, do not start with ``__``, and are not ``pi`` or a function name.
    """
    return (isinstance(name, str) and name.isascii() and name.isidentifier()
            and len(name) <= 64 and not keyword.iskeyword(name) and not name.startswith("__")
            and name != "pi" and name not in FUNCTIONS and name not in CALCULUS_FUNCTIONS)


def _one_line(message: object) -> str:
    return " ".join(str(message).split())[:500]


class _Parser:
    """One parse: the text, the name rules and the symbols made so far."""

    def __init__(self, text: str, source: str, shift: int, symbols: Mapping[str, sympy.Symbol],
                 allowed: Collection[str] | None, calculus: bool, arrays: bool = False):
        self.text, self.source, self.shift = text, source, shift  # source == text[shift:], spaced
        self.symbols, self.allowed, self.arrays = symbols, allowed, arrays
        self.functions = {**FUNCTIONS, **CALCULUS_FUNCTIONS} if calculus else FUNCTIONS
        self.made: dict[str, sympy.Symbol] = {}

    def fail(self, message: str, node: ast.AST) -> ParseError:
        prefix = self.source.encode()[:node.col_offset]  # col_offset counts UTF-8 bytes
        column = self.shift + len(prefix.decode("utf-8", "ignore")) + 1
        return ParseError(_one_line(message), text=self.text, column=column)

    def build(self, node: ast.AST, depth: int) -> sympy.Basic:
        if depth > MAX_DEPTH:
            raise self.fail(f"expression nested too deeply (more than {MAX_DEPTH} levels)", node)
        handler = _HANDLERS.get(type(node))
        if self.arrays and isinstance(node, ast.Attribute):
            handler = _Parser.attribute
        if handler is None:
            what = _REFUSED.get(type(node), f"{type(node).__name__} expressions are")
            raise self.fail(f"{what} not allowed{_HINTS.get(type(node), '')}", node)
        try:
            result = handler(self, node, depth)
        except _Refusal as exc:
            raise self.fail(str(exc), node) from None
        if result in _BAD or any(a in _BAD for a in result.args):
            raise self.fail("value is infinite, undefined or not real here", node)
        return result

    def constant(self, node: ast.Constant, depth: int) -> sympy.Expr:
        value = node.value
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            kind = {bool: "True/False are", str: "strings are", complex: "complex numbers are",
                    bytes: "bytes are", type(None): "None is"}.get(type(value), f"{value!r} is")
            raise self.fail(f"{kind} not allowed", node)
        if isinstance(value, int):
            if abs(value) >= _INT_LIMIT:
                raise self.fail(f"integer literal has more than {MAX_INT_DIGITS} digits", node)
            return sympy.Integer(value)
        if not math.isfinite(value):
            raise self.fail("number is infinite or nan (too large for a float)", node)
        return sympy.Rational(repr(value))

    def name(self, node: ast.Name, depth: int) -> sympy.Expr:
        name = node.id
        if name == "pi":
            return sympy.pi
        if name in FUNCTIONS or name in CALCULUS_FUNCTIONS:
            raise self.fail(f"'{name}' is a function; call it as {name}(...)", node)
        if not is_identifier(name):
            raise self.fail(f"name {name!r} is not allowed", node)
        if name in self.symbols:
            return self.symbols[name]
        if self.allowed is not None and name not in self.allowed:
            raise self.fail(f"unknown name {name!r}", node)
        return self.made.setdefault(name, sympy.Symbol(name, real=True))

    def attribute(self, node: ast.Attribute, depth: int) -> sympy.Expr:
        if node.attr != "T":
            raise self.fail(f"attribute '.{node.attr}' is not allowed (only .T, the transpose)", node)
        return arrays.Transposed(self.build(node.value, depth + 1))

    def binop(self, node: ast.BinOp, depth: int) -> sympy.Expr:
        op = type(node.op)
        if op is ast.MatMult and self.arrays:
            return arrays.Matmul(self.build(node.left, depth + 1), self.build(node.right, depth + 1))
        if op is ast.Pow:
            return _pow(self.build(node.left, depth + 1), self.build(node.right, depth + 1))
        if op not in _CHAINS:
            raise self.fail(f"operator '{_OPERATORS.get(op, op.__name__)}' is not allowed", node)
        is_sum = _CHAINS[op][0]
        items = []  # flatten a + b - c (or a * b / c) iteratively: one level, one SymPy call
        while isinstance(node, ast.BinOp) and _CHAINS.get(type(node.op), (None,))[0] == is_sum:
            items.append((_CHAINS[type(node.op)][1], node.right))
            node = node.left
        items.append((False, node))
        terms = []
        for inverted, operand in reversed(items):
            value = self.build(operand, depth + 1)
            if inverted:
                value = -value if is_sum else _pow(value, sympy.S.NegativeOne)
            terms.append(value)
        return sympy.Add(*terms) if is_sum else _product(terms)

    def unary(self, node: ast.UnaryOp, depth: int) -> sympy.Expr:
        if isinstance(node.op, (ast.USub, ast.UAdd)):
            value = self.build(node.operand, depth + 1)
            return -value if isinstance(node.op, ast.USub) else value
        raise self.fail(f"operator '{_OPERATORS[type(node.op)]}' is not allowed", node)

    def call(self, node: ast.Call, depth: int) -> sympy.Basic:
        if not isinstance(node.func, ast.Name):
            raise self.fail("calling anything but a plain function name is not allowed", node)
        if self.arrays and node.func.id in ARRAY_FUNCTIONS:
            return self.array_call(node, depth)
        name, builder = node.func.id, self.functions.get(node.func.id)
        if builder is None:
            hint = "; diff and subs need calculus=True" if name in CALCULUS_FUNCTIONS else ""
            raise self.fail(f"calls of {name!r} are not allowed: unknown function{hint} "
                            f"(known: {', '.join(self.functions)})", node)
        if node.keywords or any(isinstance(a, ast.Starred) for a in node.args):
            raise self.fail(f"{name}() takes positional arguments only", node)
        if len(node.args) != builder.arity:
            plural = "s" if builder.arity != 1 else ""
            raise self.fail(f"{name}() takes {builder.arity} argument{plural} ({len(node.args)} given)", node)
        kinds = builder.kinds or "e" * builder.arity
        return builder.build(*(self.argument(a, k, name, depth + 1) for a, k in zip(node.args, kinds)))

    def argument(self, node: ast.AST, kind: str, function: str, depth: int) -> sympy.Basic:
        if kind == "n" and not isinstance(node, ast.Name):
            raise self.fail(f"this argument of {function}() must be a plain name", node)
        if kind != "c":
            return self.build(node, depth)
        if not isinstance(node, ast.Compare):
            raise self.fail(f"the first argument of {function}() must be a comparison such as x > 0", node)
        if len(node.ops) != 1:
            raise self.fail("chained comparisons are not allowed", node)
        relation = _COMPARISONS.get(type(node.ops[0]))
        if relation is None:
            raise self.fail("only the comparisons <, <=, >, >= are allowed", node)
        return relation(self.build(node.left, depth + 1), self.build(node.comparators[0], depth + 1))


    def array_call(self, node: ast.Call, depth: int) -> sympy.Basic:
        """``sum/mean/max/logsumexp(a, axis=..., keepdims=...)``, ``softmax/log_softmax(a, axis=...)``."""
        name = node.func.id
        allowed = ARRAY_FUNCTIONS[name]
        if len(node.args) != 1 or any(isinstance(a, ast.Starred) for a in node.args):
            raise self.fail(f"{name}() takes one array argument (and keywords {', '.join(allowed)})", node)
        options = {}
        for kw in node.keywords:
            if kw.arg not in allowed:
                raise self.fail(f"{name}() has no keyword {kw.arg!r} (known: {', '.join(allowed)})", kw.value)
            options[kw.arg] = self.keyword_value(kw.arg, kw.value)
        a = self.build(node.args[0], depth + 1)
        if name == "expand_dims":
            axis = options.get("axis")
            if axis is None:
                raise self.fail("expand_dims() needs axis=", node)
            return arrays.ExpandDims(a, arrays._axes(axis))
        if name in ("softmax", "log_softmax"):
            axis = options.get("axis", -1)
            if not isinstance(axis, int):
                raise self.fail(f"{name}() needs a single integer axis", node)
            return (arrays.Softmax if name == "softmax" else arrays.LogSoftmax)(a, sympy.Integer(axis))
        return arrays.reduce_op(name, a, options.get("axis"), options.get("keepdims", False))

    def keyword_value(self, key: str, node: ast.AST):
        if key == "keepdims":
            if isinstance(node, ast.Constant) and isinstance(node.value, bool):
                return node.value
            raise self.fail("keepdims must be True or False", node)
        if isinstance(node, ast.Constant) and node.value is None:
            return None
        items = node.elts if isinstance(node, ast.Tuple) else [node]
        axes = []
        for item in items:
            sign = -1 if isinstance(item, ast.UnaryOp) and isinstance(item.op, ast.USub) else 1
            item = item.operand if sign < 0 else item
            if not (isinstance(item, ast.Constant) and type(item.value) is int and item.value < 32):
                raise self.fail("axis must be a small integer, a tuple of them, or None", node)
            axes.append(sign * item.value)
        return tuple(axes) if isinstance(node, ast.Tuple) else axes[0]


#: Array functions (only with ``arrays=True``) and their keywords.
ARRAY_FUNCTIONS: dict[str, tuple[str, ...]] = {
    "sum": ("axis", "keepdims"), "mean": ("axis", "keepdims"), "max": ("axis", "keepdims"),
    "logsumexp": ("axis", "keepdims"), "softmax": ("axis",), "log_softmax": ("axis",),
    "expand_dims": ("axis",),
}

_HANDLERS: dict[type, Callable[[_Parser, ast.AST, int], sympy.Basic]] = {
    ast.Constant: _Parser.constant, ast.Name: _Parser.name, ast.BinOp: _Parser.binop,
    ast.UnaryOp: _Parser.unary, ast.Call: _Parser.call,
}


def parse_expression(text: str, *, symbols: Mapping[str, sympy.Symbol] | None = None,
                     allowed_names: Collection[str] | None = None,
                     calculus: bool = False, arrays: bool = False) -> sympy.Expr:
    """Parse untrusted expression text into a SymPy expression.

    Parameters
    ----------
    text : str
        The expression, in the grammar described in the module docstring.
    symbols : mapping of str to sympy.Symbol, optional
        Names that map to these symbols.  Other names become ``Symbol(name, real=True)``.
    allowed_names : collection of str, optional
        If given, names outside it (and outside ``symbols``) are refused.
    calculus : bool
        Also allow ``diff(expr, x)`` and ``subs(expr, u, v)`` (both unevaluated).
    arrays : bool
        Also allow the array syntax: ``a @ b``, ``a.T``, ``sum/mean/max/logsumexp(a,
        axis=..., keepdims=...)``, ``softmax/log_softmax(a, axis=...)``.

    Returns
    -------
    sympy.Expr

    Raises
    ------
    ParseError
        For every malformed, disallowed or too costly input; the message is one line.
    """
    if not isinstance(text, str):
        raise ParseError(f"expected an expression string, got {type(text).__name__}")
    if len(text) > MAX_LENGTH:
        raise ParseError(f"expression too long ({len(text)} characters, at most {MAX_LENGTH})")
    if not text.strip():
        raise ParseError("empty expression", text=text)
    if "\x00" in text:
        raise ParseError("null bytes are not allowed", text=text, column=text.index("\x00") + 1)
    spaced = text.replace("\n", " ").replace("\r", " ").replace("\t", " ")
    source = spaced.lstrip(" ")  # ast.parse, unlike eval, refuses leading spaces
    shift = len(spaced) - len(source)
    try:
        tree = ast.parse(source, mode="eval")
    except SyntaxError as exc:
        column = (exc.offset or len(source) + 1) + shift if exc.lineno == 1 else None  # 0: at the end
        raise ParseError(_one_line(exc.msg or "invalid syntax"), text=text, column=column) from None
    except (RecursionError, MemoryError):
        raise ParseError("expression nested too deeply", text=text) from None
    except ValueError as exc:
        raise ParseError(f"invalid text: {_one_line(exc)}", text=text) from None
    parser = _Parser(text, source, shift, symbols or {}, allowed_names, calculus, arrays)
    token = _root_spent.set([0])
    try:
        result = parser.build(tree.body, 1)
    except ParseError:
        raise
    except RecursionError:
        raise ParseError("expression nested too deeply", text=text) from None
    except Exception as exc:  # SymPy refusing a construction is still the user's input
        raise ParseError(f"cannot build expression: {type(exc).__name__}: {_one_line(exc)}",
                         text=text) from None
    finally:
        _root_spent.reset(token)
    if not isinstance(result, sympy.Expr) or result.has(*_BAD):
        raise ParseError("expression is not a finite real expression", text=text)
    return result


# ---------------------------------------------------------------- printing
def _decimal_denominator(q: int) -> bool:
    """Is ``q`` 10**k with k >= 2 (a number written with decimals, such as 0.01 or 1e-07)?"""
    k = 0
    while q % 10 == 0:
        q //= 10
        k += 1
    return q == 1 and k >= 2


class _Printer(StrPrinter):
    """Prints SymPy in the parser's own syntax."""

    def _print(self, expr, **kwargs) -> str:
        if isinstance(expr, sympy.Basic) and (
                expr in _BAD or (isinstance(expr, sympy.NumberSymbol) and expr not in (sympy.pi, sympy.E))):
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
        if abs(n) < _INT_LIMIT:
            return str(n)
        terms, rest, i = [], abs(n), 0  # (c2*(10**90)**2 + c1*10**90 + c0) parses back
        while rest:
            rest, digits = divmod(rest, 10 ** 90)
            if digits:
                terms.append(str(digits) + ("" if i == 0 else "*10**90" if i == 1 else f"*(10**90)**{i}"))
            i += 1
        body = " + ".join(reversed(terms))
        return f"(-({body}))" if n < 0 else f"({body})"

    def _print_Rational(self, expr: sympy.Rational) -> str:
        if expr.q == 1:
            return self._print_Integer(sympy.Integer(expr.p))
        if _decimal_denominator(int(expr.q)) and abs(expr.p) < 10**15:
            return repr(float(expr))  # 1e-07 and 0.044715 as written; the parser reads them back exactly
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

    # -- array atoms (see arrays.py), in the array syntax ------------------------------
    def _operand(self, expr) -> str:
        text = self._print(expr)
        return text if isinstance(expr, (sympy.Symbol, arrays.ArrayOp)) and not isinstance(
            expr, arrays.Matmul) else f"({text})"

    def _print_Matmul(self, expr) -> str:
        a, b = expr.args
        right = self._print(b) if isinstance(b, (sympy.Symbol, arrays.Transposed)) else f"({self._print(b)})"
        return f"{self._operand(a) if not isinstance(a, arrays.Matmul) else self._print(a)} @ {right}"

    def _print_Transposed(self, expr) -> str:
        return f"{self._operand(expr.args[0])}.T"

    def _axes_text(self, axes) -> str:
        values = [int(a) for a in axes]
        return str(values[0]) if len(values) == 1 else "(" + ", ".join(map(str, values)) + ")"

    def _print__Reduce(self, expr) -> str:
        name = {"ReduceSum": "sum", "ReduceMean": "mean", "ReduceMax": "max", "LogSumExp": "logsumexp"}
        keywords = ([f"axis={self._axes_text(expr.args[1])}"] if len(expr.args[1]) else []) + (
            ["keepdims=True"] if expr.keepdims else [])
        return f"{name[type(expr).__name__]}({', '.join([self._print(expr.args[0]), *keywords])})"

    _print_ReduceSum = _print_ReduceMean = _print_ReduceMax = _print_LogSumExp = _print__Reduce

    def _print_Softmax(self, expr) -> str:
        return f"softmax({self._print(expr.args[0])}, axis={int(expr.args[1])})"

    def _print_LogSoftmax(self, expr) -> str:
        return f"log_softmax({self._print(expr.args[0])}, axis={int(expr.args[1])})"

    def _print_ExpandDims(self, expr) -> str:
        return f"expand_dims({self._print(expr.args[0])}, axis={self._axes_text(expr.args[1])})"

    def _print_Abs(self, expr) -> str:
        return self._call("abs", *expr.args)

    def _print_atan(self, expr) -> str:
        return self._call("arctan", *expr.args)

    def _print_asinh(self, expr) -> str:
        return self._call("arcsinh", *expr.args)

    def _print_atanh(self, expr) -> str:
        return self._call("arctanh", *expr.args)

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
        """``where`` text for any condition built from real comparisons, and, or, not."""
        if type(cond) in _COMPARISONS.values():
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
