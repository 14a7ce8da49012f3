"""Turn untrusted expression text into SymPy, and SymPy back into that text.

This is the only place where user text becomes SymPy.  The text is never given to
``eval``, ``exec``, ``sympify`` or ``parse_expr``: it is parsed with
``ast.parse(text, mode="eval")`` and the tree is walked with a whitelist that
builds SymPy objects directly.

Grammar (a subset of Python expression syntax)::

    expr  := number | name | pi | expr OP expr | -expr | +expr | (expr) | call
    OP    := + - * / **
    call  := f(expr, ...)           f a name of the function table (functions.py), exact arity, positional only
           | where(a CMP b, expr, expr)    CMP one of < <= > >=, not chained (or a name of ``masks``)
           | diff(expr, name) | subs(expr, name, expr)    only with calculus=True

Integers are exact; float literals become exact rationals (``1.1`` is ``11/10``).
Names become ``Symbol(name, real=True)`` unless the caller maps them.  Newlines,
carriage returns and tabs count as spaces anywhere (so ``"x\\n+1"`` is ``x + 1``),
leading spaces are fine, and columns in error messages count characters of the
whole text from 1.

Limits, each refused with a one-line :class:`ParseError` before any costly work:
text length (``MAX_LENGTH``), nesting depth (``MAX_DEPTH``; a chain such as
``a + b - c`` is one level), integer literal digits, and the numbers SymPy would build
(:mod:`symbackprop.lang.guards`).  Values that are infinite, undefined or not real
(``1/0``, ``log(0)``, ``sqrt(-1)``) are refused too.  What remains is SymPy's own
automatic simplification, which for legitimate but extreme text (hundreds of nested
transcendental calls) can take around a second; callers wanting a wall-clock bound
wrap the call (see ``timebound``).

:func:`symbackprop.lang.text.format_expression` is the inverse: it prints SymPy in this syntax.
"""
from __future__ import annotations

import ast
import keyword
import math
from collections.abc import Callable, Collection, Mapping

import sympy

from .. import indexed, ops
from ..errors import ParseError
from . import guards
from .functions import BY_NAME, Function
from .guards import MAX_INT_DIGITS, Refusal

MAX_LENGTH = 10_000        # characters
MAX_DEPTH = 200            # AST nesting depth
INT_LIMIT = 10 ** MAX_INT_DIGITS
BAD = frozenset({sympy.nan, sympy.zoo, sympy.oo, -sympy.oo, sympy.I})

#: Available only with ``calculus=True``; both stay unevaluated.
CALCULUS_FUNCTIONS: dict[str, Function] = {
    "diff": Function(("diff",), 2, lambda e, x: sympy.Derivative(e, x), kinds="en"),
    "subs": Function(("subs",), 3, lambda e, u, v: sympy.Subs(e, u, v), kinds="ene"),
}

COMPARISONS = {ast.Lt: sympy.StrictLessThan, ast.LtE: sympy.LessThan,
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
        keywords, do not start with ``__``, and are not ``pi``, ``diff`` or ``subs``.
        A function's name may name a value (batch norm's ``gamma``): a call and a name
        are told apart by the syntax.
    """
    return (isinstance(name, str) and name.isascii() and name.isidentifier()
            and len(name) <= 64 and not keyword.iskeyword(name) and not name.startswith("__")
            and name != "pi" and name not in CALCULUS_FUNCTIONS)


def _one_line(message: object) -> str:
    return " ".join(str(message).split())[:500]


class _Parser:
    """One parse: the text, the name rules and the symbols made so far."""

    def __init__(self, text: str, source: str, shift: int, symbols: Mapping[str, sympy.Symbol],
                 allowed: Collection[str] | None, calculus: bool, arrays: bool = False,
                 masks: Collection[str] = ()):
        self.text, self.source, self.shift = text, source, shift  # source == text[shift:], spaced
        self.symbols, self.allowed, self.arrays, self.masks = symbols, allowed, arrays, masks
        self.functions = {**BY_NAME, **CALCULUS_FUNCTIONS} if calculus else BY_NAME
        self.made: dict[str, sympy.Symbol] = {}
        self.index_mode = False  # index notation: unknown names are indices, a[...] reads

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
        if self.index_mode and isinstance(node, ast.Subscript):
            handler = _Parser.subscript
        if handler is None:
            what = _REFUSED.get(type(node), f"{type(node).__name__} expressions are")
            raise self.fail(f"{what} not allowed{_HINTS.get(type(node), '')}", node)
        try:
            result = handler(self, node, depth)
        except Refusal as exc:
            raise self.fail(str(exc), node) from None
        if result in BAD or any(a in BAD for a in result.args):
            raise self.fail("value is infinite, undefined or not real here", node)
        return result

    def constant(self, node: ast.Constant, depth: int) -> sympy.Expr:
        value = node.value
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            kind = {bool: "True/False are", str: "strings are", complex: "complex numbers are",
                    bytes: "bytes are", type(None): "None is"}.get(type(value), f"{value!r} is")
            raise self.fail(f"{kind} not allowed", node)
        if isinstance(value, int):
            if abs(value) >= INT_LIMIT:
                raise self.fail(f"integer literal has more than {MAX_INT_DIGITS} digits", node)
            return sympy.Integer(value)
        if not math.isfinite(value):
            raise self.fail("number is infinite or nan (too large for a float)", node)
        return sympy.Rational(repr(value))

    def name(self, node: ast.Name, depth: int) -> sympy.Expr:
        name = node.id
        if name == "pi":
            return sympy.pi
        if name in self.symbols:  # a declared name, even one a function also has (batch norm's gamma)
            return self.symbols[name]
        if name in BY_NAME or name in CALCULUS_FUNCTIONS:
            raise self.fail(f"'{name}' is a function; call it as {name}(...)", node)
        if not is_identifier(name):
            raise self.fail(f"name {name!r} is not allowed", node)
        if self.index_mode:
            return self.made.setdefault(name, indexed.Index(name))
        if self.allowed is not None and name not in self.allowed:
            raise self.fail(f"unknown name {name!r}", node)
        return self.made.setdefault(name, sympy.Symbol(name, real=True))

    def subscript(self, node: ast.Subscript, depth: int) -> sympy.Expr:
        """``a[p, ...]``: a read of a declared array through affine positions (index notation)."""
        if not isinstance(node.value, ast.Name):
            raise self.fail("only a declared array can be indexed, as a[i, j]", node)
        if node.value.id not in self.symbols:
            raise self.fail(f"{node.value.id!r} is not a declared array (only arrays are indexed, as a[i, j])", node)
        array = self.symbols[node.value.id]
        if not isinstance(array, ops.ArrayVar):
            raise self.fail(f"{node.value.id!r} is not an array", node)
        items = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
        if any(isinstance(i, (ast.Slice, ast.Starred)) for i in items):
            raise self.fail("slices are not allowed in a read (positions are index expressions)", node)
        return indexed.Read(array, sympy.Tuple(*[self.build(i, depth + 1) for i in items]))

    def index_call(self, node: ast.Call, depth: int) -> sympy.Expr:
        """``index_sum/index_max/first_max(a, ..., at=, out=, ranges=, shape=)``: an index atom
        spelled out (how records and ``derive --json`` write them; see lang/text.py)."""
        name = node.func.id
        operands = [self.build(a, depth + 1) for a in node.args]
        given = {kw.arg: kw.value for kw in node.keywords}
        if set(given) != {"at", "out", "ranges", "shape"} or any(isinstance(a, ast.Starred) for a in node.args):
            raise self.fail(f"{name}() takes its operands and the keywords at, out, ranges, shape", node)
        saved, self.index_mode = self.index_mode, True
        try:
            def items(value: ast.AST) -> list:
                if not isinstance(value, ast.Tuple):
                    raise self.fail(f"{name}(): expected a tuple", value)
                return value.elts

            at = [sympy.Tuple(*[self.build(p, depth + 2) for p in items(m)]) for m in items(given["at"])]
            out = sympy.Tuple(*[self.build(p, depth + 1) for p in items(given["out"])])
            ranges = []
            for pair in items(given["ranges"]):
                i, n = items(pair)
                ranges.append(sympy.Tuple(self.build(i, depth + 2), self.build(n, depth + 2)))
            shape = sympy.Tuple(*[self.build(d, depth + 1) for d in items(given["shape"])])
        finally:
            self.index_mode = saved
        if any(not isinstance(i, indexed.Index) for i, _ in ranges):
            raise self.fail(f"{name}(): ranges pair index names with sizes", node)
        want = {"index_sum": len(at), "index_max": 1, "first_max": 2, "index_take": 2}[name]
        if len(operands) != want or (name != "index_sum" and len(at) != want) or not at:
            raise self.fail(f"{name}(): the operands and their maps do not match", node)
        if name == "index_sum":
            return indexed.IndexSum(*operands, sympy.Tuple(*at), out, sympy.Tuple(*ranges), shape)
        if name == "index_take":
            return self.taken(node, operands, at, out, ranges, shape)
        if name == "index_max":
            return indexed.IndexMax(operands[0], at[0], out, sympy.Tuple(*ranges), shape)
        return indexed.IndexMaxGrad(*operands, at[0], at[1], sympy.Tuple(*ranges), shape)

    def output_call(self, node: ast.Call, depth: int) -> sympy.Expr:
        """``stack(next_h, next_c)`` / ``pick(dout, 1)``: a layer's outputs and one's upstream gradient
        (records spell them; a declaration writes ``outputs = [...]``)."""
        name = node.func.id
        if node.keywords or any(isinstance(a, ast.Starred) for a in node.args) or \
                (name == "pick" and len(node.args) != 2) or (name == "stack" and len(node.args) < 2):
            raise self.fail(f"{name}() takes " + ("an array and an index" if name == "pick" else "two or more arrays"),
                            node)
        args = [self.build(a, depth + 1) for a in node.args]
        if name == "pick":
            if not args[1].is_Integer or args[1] < 0:
                raise self.fail("pick(): the index is a nonnegative integer", node)
            return ops.Pick(*args)
        return ops.Stack(*args)

    def block_call(self, node: ast.Call, depth: int) -> sympy.Expr:
        """``block(a, axis, start, size)`` / ``unblock(g, axis, start, full)``: a block of an axis and
        its adjoint, as records spell them (index notation reads ``a[n, H + h]``)."""
        name = node.func.id
        if len(node.args) != 4 or node.keywords or any(isinstance(a, ast.Starred) for a in node.args):
            raise self.fail(f"{name}() takes an array, an axis, a start and a size", node)
        array, axis, start, size = (self.build(a, depth + 1) for a in node.args)
        if not axis.is_Integer or axis < 0 or any(not (e.is_integer or e.is_Integer) for e in (start, size)):
            raise self.fail(f"{name}(): the axis is an integer, the start and the size are sizes", node)
        return (indexed.Block if name == "block" else indexed.Unblock)(array, axis, start, size)

    def taken(self, node: ast.Call, operands: list, at: list, out: sympy.Tuple, ranges: list,
              shape: sympy.Tuple) -> sympy.Expr:
        """``index_take(a, c, at=(...), ...)``: the constant ``c`` an array, named once in ``at[0]`` or ``out``."""
        c = operands[1]
        if not isinstance(c, ops.ArrayVar) or [*at[0], *out].count(c) != 1:
            raise self.fail("index_take(): the second operand is the integer constant, a position once", node)
        return indexed.IndexTake(*operands, sympy.Tuple(*at), out, sympy.Tuple(*ranges), shape)

    def over(self, node: ast.Call, depth: int) -> sympy.Expr:
        """``sum/mean/max(body, (k, l), k=K)``: a reduction over named indices (index notation)."""
        name = node.func.id
        if not 1 <= len(node.args) <= 2 or any(isinstance(a, ast.Starred) for a in node.args):
            raise self.fail(f"{name}() takes a body and the indices it reduces, as {name}(a[i, k], (k,))", node)
        bound = []
        if len(node.args) == 2:
            items = node.args[1].elts if isinstance(node.args[1], ast.Tuple) else [node.args[1]]
            for item in items:
                if not isinstance(item, ast.Name) or item.id in self.symbols or not is_identifier(item.id):
                    raise self.fail(f"the indices {name}() reduces must be plain index names", item)
                bound.append(self.build(item, depth + 1))
        sizes = []
        for kw in node.keywords:
            if kw.arg is None or kw.arg in self.symbols or not is_identifier(kw.arg):
                raise self.fail(f"{name}() takes index=size keywords only", node)
            size = self.build(kw.value, depth + 1)
            if size.atoms(indexed.Index) or not (size.is_integer or size.is_Integer):
                raise self.fail(f"the size of index {kw.arg} must be a dimension, a hyperparameter or an integer",
                                kw.value)
            sizes.append(sympy.Tuple(self.made.setdefault(kw.arg, indexed.Index(kw.arg)), size))
        if not bound and not sizes:
            raise self.fail(f"{name}() needs the indices it reduces, as {name}(a[i, k], (k,))", node)
        body = self.build(node.args[0], depth + 1)
        return indexed.Over(sympy.Integer(indexed.Over.KINDS.index(name)), body, sympy.Tuple(*bound),
                            sympy.Tuple(*sizes))

    def attribute(self, node: ast.Attribute, depth: int) -> sympy.Expr:
        if node.attr != "T":
            raise self.fail(f"attribute '.{node.attr}' is not allowed (only .T, the transpose)", node)
        return ops.Transposed(self.build(node.value, depth + 1))

    def binop(self, node: ast.BinOp, depth: int) -> sympy.Expr:
        op = type(node.op)
        if op is ast.MatMult and self.arrays:
            return ops.Matmul(self.build(node.left, depth + 1), self.build(node.right, depth + 1))
        if op is ast.Pow:
            return guards.power(self.build(node.left, depth + 1), self.build(node.right, depth + 1))
        if op is ast.FloorDiv and self.index_mode:  # sizes: a window count (IH + 2*pad - FH)//stride + 1
            return sympy.floor(self.build(node.left, depth + 1) / self.build(node.right, depth + 1))
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
                value = -value if is_sum else guards.power(value, sympy.S.NegativeOne)
            terms.append(value)
        return sympy.Add(*terms) if is_sum else guards.product(terms)

    def unary(self, node: ast.UnaryOp, depth: int) -> sympy.Expr:
        if isinstance(node.op, (ast.USub, ast.UAdd)):
            value = self.build(node.operand, depth + 1)
            return -value if isinstance(node.op, ast.USub) else value
        raise self.fail(f"operator '{_OPERATORS[type(node.op)]}' is not allowed", node)

    def call(self, node: ast.Call, depth: int) -> sympy.Basic:
        if not isinstance(node.func, ast.Name):
            raise self.fail("calling anything but a plain function name is not allowed", node)
        if self.index_mode and node.func.id in indexed.Over.KINDS:
            return self.over(node, depth)
        if self.arrays and node.func.id in INDEX_CALLS:
            return self.index_call(node, depth)
        if self.arrays and node.func.id in BLOCK_CALLS:
            return self.block_call(node, depth)
        if self.arrays and node.func.id in OUTPUT_CALLS:
            return self.output_call(node, depth)
        if self.arrays and node.func.id in ARRAY_FUNCTIONS:
            return self.array_call(node, depth)
        name, builder = node.func.id, self.functions.get(node.func.id)
        if builder is None:
            hint = "; diff and subs need calculus=True" if name in CALCULUS_FUNCTIONS else ""
            raise self.fail(f"calls of {name!r} are not allowed: unknown function{hint} "
                            f"(known: {', '.join(sorted(self.functions))})", node)
        if node.keywords or any(isinstance(a, ast.Starred) for a in node.args):
            raise self.fail(f"{name}() takes positional arguments only", node)
        if len(node.args) != builder.arity:
            plural = "s" if builder.arity != 1 else ""
            raise self.fail(f"{name}() takes {builder.arity} argument{plural} ({len(node.args)} given)", node)
        kinds = builder.kinds or "e" * builder.arity
        return builder.make(*(self.argument(a, k, name, depth + 1) for a, k in zip(node.args, kinds)))

    def argument(self, node: ast.AST, kind: str, function: str, depth: int) -> sympy.Basic:
        if kind == "n" and not isinstance(node, ast.Name):
            raise self.fail(f"this argument of {function}() must be a plain name", node)
        if kind != "c":
            return self.build(node, depth)
        if isinstance(node, ast.Name) and node.id in self.masks:  # as np.where(mask, a, b) takes it
            return self.build(node, depth)
        if not isinstance(node, ast.Compare):
            raise self.fail(f"the first argument of {function}() must be a comparison such as x > 0", node)
        if len(node.ops) != 1:
            raise self.fail("chained comparisons are not allowed", node)
        relation = COMPARISONS.get(type(node.ops[0]))
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
        if name == "broadcast_to":
            if "shape" not in options:
                raise self.fail("broadcast_to() needs shape=", node)
            return ops.BroadcastTo(a, sympy.Tuple(*options["shape"]))
        if name == "expand_dims":
            axis = options.get("axis")
            if axis is None:
                raise self.fail("expand_dims() needs axis=", node)
            return ops.expand_dims(a, axis)
        if name in ("softmax", "log_softmax"):
            axis = options.get("axis", -1)
            if not isinstance(axis, int):
                raise self.fail(f"{name}() needs a single integer axis", node)
            return (ops.Softmax if name == "softmax" else ops.LogSoftmax)(a, sympy.Integer(axis))
        return ops.reduce_op(name, a, options.get("axis"), options.get("keepdims", False))

    def keyword_value(self, key: str, node: ast.AST):
        if key == "shape":
            return self.shape_value(node)
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


    def shape_value(self, node: ast.AST) -> list[sympy.Expr]:
        """``shape=(N, 3)``: dimension names and positive sizes."""
        items = node.elts if isinstance(node, ast.Tuple) else [node]
        dims = []
        for item in items:
            if isinstance(item, ast.Constant) and type(item.value) is int and 0 < item.value < 2**31:
                dims.append(sympy.Integer(item.value))
            elif isinstance(item, ast.Name):
                dims.append(self.build(item, 1))
            else:
                raise self.fail("shape must be a tuple of dimension names and sizes", item)
        return dims


#: Index atoms spelled out (only with ``arrays=True``): records and ``derive --json``.
BLOCK_CALLS = ("block", "unblock")
OUTPUT_CALLS = ("stack", "pick")
INDEX_CALLS = ("index_sum", "index_max", "first_max", "index_take")

#: Array functions (only with ``arrays=True``) and their keywords.
ARRAY_FUNCTIONS: dict[str, tuple[str, ...]] = {
    "sum": ("axis", "keepdims"), "mean": ("axis", "keepdims"), "max": ("axis", "keepdims"),
    "logsumexp": ("axis", "keepdims"), "softmax": ("axis",), "log_softmax": ("axis",),
    "expand_dims": ("axis",), "broadcast_to": ("shape",),
}

_HANDLERS: dict[type, Callable[[_Parser, ast.AST, int], sympy.Basic]] = {
    ast.Constant: _Parser.constant, ast.Name: _Parser.name, ast.BinOp: _Parser.binop,
    ast.UnaryOp: _Parser.unary, ast.Call: _Parser.call,
}


def parse_expression(text: str, *, symbols: Mapping[str, sympy.Symbol] | None = None,
                     allowed_names: Collection[str] | None = None,
                     calculus: bool = False, arrays: bool = False,
                     masks: Collection[str] = ()) -> sympy.Expr:
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
    masks : collection of str
        Names of boolean masks, allowed alone as the condition of ``where`` (a derivation's
        cached masks, read back from its record; a declaration has none).

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
    parser = _Parser(text, source, shift, symbols or {}, allowed_names, calculus, arrays, masks)
    try:
        with guards.budget():
            result = parser.build(tree.body, 1)
    except ParseError:
        raise
    except RecursionError:
        raise ParseError("expression nested too deeply", text=text) from None
    except Exception as exc:  # SymPy refusing a construction is still the user's input
        raise ParseError(f"cannot build expression: {type(exc).__name__}: {_one_line(exc)}",
                         text=text) from None
    if not isinstance(result, sympy.Expr) or result.has(*BAD):
        raise ParseError("expression is not a finite real expression", text=text)
    return result


def parse_index_statement(text: str, name: str, *, symbols: Mapping[str, sympy.Symbol]
                          ) -> tuple[list[sympy.Symbol], sympy.Expr]:
    """Parse an index-notation statement ``name[i, j, ...] = rhs`` (untrusted text).

    Parameters
    ----------
    text : str
        ``y[n, f, i, j] = sum(x[n, c, i*stride + k - pad, j*stride + l - pad] * W[f, c, k, l],
        (c, k, l)) + b[f]``: reads ``a[p, ...]`` of declared arrays through positions affine in
        the indices, ``sum/mean/max(body, (indices), index=size)`` reductions, and elementwise
        functions of the table around them.  Names not declared are indices.
    name : str
        The node the statement defines (the left side must name it).
    symbols : mapping of str to sympy.Symbol
        The declared arrays, dimensions and hyperparameters.

    Returns
    -------
    (indices, rhs)
        The left side's indices (:class:`symbackprop.indexed.Index`) and the right side with
        placeholders (:class:`~symbackprop.indexed.Read`, :class:`~symbackprop.indexed.Over`)
        for :func:`symbackprop.indexed.build_statement`.

    Raises
    ------
    ParseError
        One line, with the column, for every malformed or disallowed input.
    """
    if not isinstance(text, str):
        raise ParseError(f"expected an expression string, got {type(text).__name__}")
    if len(text) > MAX_LENGTH:
        raise ParseError(f"expression too long ({len(text)} characters, at most {MAX_LENGTH})")
    if "\x00" in text:
        raise ParseError("null bytes are not allowed", text=text, column=text.index("\x00") + 1)
    spaced = text.replace("\n", " ").replace("\r", " ").replace("\t", " ")
    source = spaced.lstrip(" ")
    shift = len(spaced) - len(source)
    try:
        tree = ast.parse(source, mode="exec")
    except SyntaxError as exc:
        column = (exc.offset or len(source) + 1) + shift if exc.lineno == 1 else None
        raise ParseError(_one_line(exc.msg or "invalid syntax"), text=text, column=column) from None
    except (RecursionError, MemoryError, ValueError):
        raise ParseError("invalid or too deeply nested text", text=text) from None
    parser = _Parser(text, source, shift, symbols, None, False, True)
    parser.index_mode = True
    if len(tree.body) != 1 or not isinstance(tree.body[0], ast.Assign) or len(tree.body[0].targets) != 1:
        raise ParseError(f"expected one statement {name}[i, ...] = ...", text=text)
    target, value = tree.body[0].targets[0], tree.body[0].value
    if not (isinstance(target, ast.Subscript) and isinstance(target.value, ast.Name) and target.value.id == name):
        raise parser.fail(f"the left side must be {name}[i, ...] (the node this statement defines)", target)
    items = target.slice.elts if isinstance(target.slice, ast.Tuple) else [target.slice]
    indices = []
    for item in items:
        if not isinstance(item, ast.Name) or item.id in symbols or not is_identifier(item.id):
            raise parser.fail("the left side names each index once, as y[n, f, i, j]", item)
        indices.append(parser.made.setdefault(item.id, indexed.Index(item.id)))
    try:
        with guards.budget():
            rhs = parser.build(value, 1)
    except ParseError:
        raise
    except RecursionError:
        raise ParseError("expression nested too deeply", text=text) from None
    except Exception as exc:  # SymPy refusing a construction is still the user's input
        raise ParseError(f"cannot build expression: {type(exc).__name__}: {_one_line(exc)}", text=text) from None
    return indices, rhs
