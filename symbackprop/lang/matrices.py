"""Reading steps of hand derivations that use small matrices.

A standalone derivation may declare matrix symbols of small sizes (``X = "matrix 2x3"``);
they are expanded into real entries ``X[0,1]``, so ``@``, ``.T``, ``trace``, ``sum`` and
``diff(f, W)`` (the gradient, shaped like ``W``) give explicit matrices.  The reader is a
small walker over Python's ``ast`` that handles only those matrix operations and hands
every scalar sub-expression, as text, to the safe parser.  It reads names through a
*world* (:class:`symbackprop.spec.hand.World`): its symbols, matrices and definitions.
"""
from __future__ import annotations

import ast
from collections.abc import Callable
from typing import Any, Union

import sympy

from ..errors import ParseError
from .functions import BY_NAME
from .parser import MAX_DEPTH, MAX_LENGTH

Value = Union[sympy.Expr, sympy.MatrixBase]
#: Size of a written-out matrix expression.
MAX_MATRIX_NODES = 20_000


def entry_symbol(name: str, i: int, j: int) -> sympy.Symbol:
    return sympy.Symbol(f"{name}[{i},{j}]", real=True)


def matrix_symbol(name: str, rows: int, cols: int) -> sympy.Matrix:
    """The declared matrix ``name`` as explicit real entries ``name[i,j]``."""
    return sympy.Matrix(rows, cols, lambda i, j: entry_symbol(name, i, j))


class MatrixReader:
    """Reads a step with matrices: ``+ - * /`` (elementwise, or with a scalar), ``@``,
    ``.T``, ``trace(M)``, ``sum(M)``, ``diff(f, W)``, ``subs(M, u, v)`` and the parser's
    one-argument functions applied elementwise.  Any sub-expression without matrices
    is handed, as text, to :func:`~symbackprop.parsing.parse_expression`."""

    MATRIX_CALLS = ("trace", "sum", "diff", "subs")

    def __init__(self, world: Any):  # a symbackprop.spec.hand.World (names, matrices, definitions)
        self.world = world
        self.names = world.matrix_names()

    def read(self, text: str) -> Value:
        if len(text) > MAX_LENGTH:
            raise ParseError(f"expression too long ({len(text)} characters, at most {MAX_LENGTH})")
        self.source = text.replace("\n", " ").replace("\r", " ").replace("\t", " ").lstrip(" ")
        try:
            tree = ast.parse(self.source, mode="eval")
        except SyntaxError as exc:
            raise ParseError(" ".join(str(exc.msg).split()) or "invalid syntax", text=text,
                             column=exc.offset) from None
        except (RecursionError, MemoryError, ValueError):
            raise ParseError("expression nested too deeply or invalid", text=text) from None
        try:
            return self.node(tree.body, 0)
        except RecursionError:
            raise ParseError("expression nested too deeply", text=text) from None

    def has_matrix(self, node: ast.AST) -> bool:
        for n in ast.walk(node):
            if isinstance(n, ast.Name) and n.id in self.names:
                return True
            if isinstance(n, ast.Attribute) or (isinstance(n, ast.BinOp) and isinstance(n.op, ast.MatMult)):
                return True
            if isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id in ("trace", "sum"):
                return True
        return False

    def fail(self, message: str, node: ast.AST) -> ParseError:
        return ParseError(message, text=self.source, column=getattr(node, "col_offset", 0) + 1)

    def node(self, node: ast.AST, depth: int) -> Value:
        if depth > MAX_DEPTH:
            raise self.fail("expression nested too deeply", node)
        if not self.has_matrix(node):
            segment = ast.get_source_segment(self.source, node)
            return self.world.parse_scalar(segment)
        if isinstance(node, ast.Name):
            return self.world.value_of(node.id)  # a matrix: has_matrix() said so
        if isinstance(node, ast.Attribute):
            if node.attr != "T":
                raise self.fail(f"attribute '.{node.attr}' is not allowed (only .T, the transpose)", node)
            return self.matrix(self.node(node.value, depth + 1), node, ".T").T
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            value = self.node(node.operand, depth + 1)
            return -value if isinstance(node.op, ast.USub) else value
        if isinstance(node, ast.BinOp):
            return self.binop(node, depth)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            return self.call(node, depth)
        raise self.fail(f"{type(node).__name__} is not allowed in a matrix step", node)

    def matrix(self, value: Value, node: ast.AST, what: str) -> sympy.MatrixBase:
        if not isinstance(value, sympy.MatrixBase):
            raise self.fail(f"{what} needs a matrix", node)
        return value

    def binop(self, node: ast.BinOp, depth: int) -> Value:
        a, b = self.node(node.left, depth + 1), self.node(node.right, depth + 1)
        ma, mb = isinstance(a, sympy.MatrixBase), isinstance(b, sympy.MatrixBase)
        op = type(node.op)
        if op is ast.MatMult:
            a, b = self.matrix(a, node.left, "@"), self.matrix(b, node.right, "@")
            if a.cols != b.rows:
                raise self.fail(f"@ of a {a.rows}x{a.cols} and a {b.rows}x{b.cols} matrix", node)
            return self.bounded(a * b, node)
        if op not in (ast.Add, ast.Sub, ast.Mult, ast.Div, ast.Pow):
            raise self.fail("only + - * / ** @ are allowed in a matrix step", node)
        if op is ast.Pow and mb:
            raise self.fail("a matrix exponent is not allowed", node)
        if ma and mb and a.shape != b.shape:
            raise self.fail(f"elementwise operation on a {a.rows}x{a.cols} and a {b.rows}x{b.cols} matrix", node)
        combine = {ast.Add: lambda u, v: u + v, ast.Sub: lambda u, v: u - v, ast.Mult: lambda u, v: u * v,
                   ast.Div: lambda u, v: u / v, ast.Pow: lambda u, v: u ** v}[op]
        if ma and mb:
            return sympy.Matrix(a.rows, a.cols, lambda i, j: combine(a[i, j], b[i, j]))
        if ma:
            return a.applyfunc(lambda u: combine(u, b))
        if mb:
            return b.applyfunc(lambda v: combine(a, v))
        return combine(a, b)

    def call(self, node: ast.Call, depth: int) -> Value:
        name = node.func.id
        if node.keywords:
            raise self.fail(f"{name}() takes positional arguments only", node)
        if name in ("trace", "sum"):
            (arg,) = self.args(node, 1)
            m = self.matrix(self.node(arg, depth + 1), arg, f"{name}()")
            if name == "trace" and m.rows != m.cols:
                raise self.fail(f"trace of a non-square {m.rows}x{m.cols} matrix", node)
            return m.trace() if name == "trace" else sympy.Add(*m)
        if name == "diff":
            return self.diff(node, depth)
        if name == "subs":
            e, u, v = self.args(node, 3)
            if not isinstance(u, ast.Name) or u.id in self.names:
                raise self.fail("subs() in a matrix step substitutes a scalar name", node)
            body, point = self.node(e, depth + 1), self.node(v, depth + 1)
            target = self.world.symbols.get(u.id, sympy.Symbol(u.id, real=True))
            return apply(self.world.expand(body), lambda x: x.subs(target, self.world.expand(point)))
        builder = BY_NAME.get(name)
        if builder is None or builder.arity != 1:
            raise self.fail(f"{name}() is not allowed in a matrix step", node)
        (arg,) = self.args(node, 1)
        return apply(self.node(arg, depth + 1), builder.make)

    def bounded(self, m: sympy.MatrixBase, node: ast.AST) -> sympy.MatrixBase:
        """Refuse a product whose written-out entries grow past :data:`MAX_MATRIX_NODES`."""
        count = 0
        for entry in m:
            for _ in sympy.preorder_traversal(entry):
                count += 1
                if count > MAX_MATRIX_NODES:
                    raise self.fail(f"matrix expression too large to write out entry by entry "
                                    f"(more than {MAX_MATRIX_NODES} terms)", node)
        return m

    def args(self, node: ast.Call, n: int) -> list[ast.AST]:
        if len(node.args) != n:
            raise self.fail(f"{node.func.id}() takes {n} argument{'s' if n > 1 else ''}", node)
        return list(node.args)

    def diff(self, node: ast.Call, depth: int) -> Value:
        e, v = self.args(node, 2)
        if not isinstance(v, ast.Name):
            raise self.fail("the second argument of diff() must be a plain name", node)
        body = self.world.expand(self.node(e, depth + 1))
        if v.id in self.world.matrices:
            if isinstance(body, sympy.MatrixBase):
                raise self.fail("diff of a matrix by a matrix is not supported; take a scalar (trace, sum)", node)
            w = self.world.matrices[v.id]
            return w.applyfunc(lambda entry: sympy.diff(body, entry))
        if v.id in self.names or self.world.symbols.get(v.id) in self.world.definitions:
            raise self.fail("in a matrix step, diff() takes a declared symbol, not a shorthand", node)
        target = self.world.symbols.get(v.id, sympy.Symbol(v.id, real=True))
        return apply(body, lambda x: sympy.diff(x, target))


def apply(value: Value, fn: Callable[[sympy.Expr], sympy.Expr]) -> Value:
    """``fn`` of a scalar, or of every entry of a matrix."""
    return value.applyfunc(fn) if isinstance(value, sympy.MatrixBase) else fn(value)
