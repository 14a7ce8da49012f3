r"""Verifying hand work: claimed derivatives and derivations written step by step.

Two sources of hand work are checked:

* the ``[claims]`` and ``[[chains]]`` of a layer declaration, against its
  :class:`~symbackprop.derive.Derivation` (the derivative SymPy took, ``raw_local``;
  nothing is derived again here);
* a standalone derivation file (DESIGN.md's second TOML example): ``[symbols]`` with
  assumptions or ``"matrix RxC"``, ``[definitions]`` of shorthands, and ``[[chains]]``
  with ``constraints``, an optional point ``at`` and, in the steps,
  ``diff(expr, x)`` and ``subs(expr, u, v)``.

Each claim is compared with its target, and each step :math:`s_i` of a chain with the
one before it (step 0 with the chain's target when the chain is ``of`` a derived
quantity such as ``backward.x``).  A comparison :math:`L = R` has one of four outcomes:

``proved``
    :math:`L - R` is shown to be 0 by a bounded symbolic attempt (``cancel``; a case
    split at kinks; ``rewrite(exp)`` then ``cancel`` or ``simplify``; each at most
    :data:`PROOF_SECONDS`), and both sides are defined at the same points.
``numeric``
    equal at :data:`POINTS` random points at 40 digits (mpmath), not proved.
``conditional``
    equal only under a condition, which is stated: a declared assumption
    (``x positive``) or constraint (``t1 + t2 + t3 = 1``) that the equality needs,
    a point where one side is undefined and the other is not (a removable
    singularity: :math:`(x^2 - 1)/(x - 1) = x + 1` where :math:`x - 1 \ne 0`), or a
    kink where the sides take different values.
``wrong``
    different at a point of the declared domain; the counterexample gives the point
    and both values.  A difference at 40 digits is confirmed at 100 digits first, so
    that cancellation never makes a true step look wrong.

Steps that are plain numbers (after ``at`` is substituted) are compared as numbers:
exactly when both are rational, else within a tolerance that the result states.  A
step written as a bare decimal (``0.7311``) is read as rounded to the digits written
(tolerance half a unit in the last place, here ``5e-05``); a standalone chain may set
``tolerance`` explicitly.

Matrix symbols of small declared sizes (``X = "matrix 2x3"``) are expanded into their
entries (``X[0,1]``), so ``@``, ``.T``, ``trace``, ``sum`` and ``diff(f, W)`` (the
gradient, shaped like ``W``) give explicit matrices, compared entry by entry.  Matrix
steps are read by a small walker over Python's ``ast`` that handles only those matrix
operations and hands every scalar sub-expression to :func:`~symbackprop.parsing.parse_expression`.
"""
from __future__ import annotations

import ast
import re
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

import mpmath
import numpy as np
import sympy

from .equality import close, mp_function
from .errors import DerivationTimeout, ParseError, SpecError
from .parsing import FUNCTIONS, MAX_DEPTH, MAX_LENGTH, format_expression, is_identifier, parse_expression
from .spec import ASSUMPTIONS, DOUT, Spec, TomlLoader, parse_toml, read_text
from .timebound import attempt, bounded

if TYPE_CHECKING:  # pragma: no cover
    from .derive import Derivation

#: The four outcomes, from best to worst; ``given`` marks the first step of a chain
#: that has nothing before it (a standalone chain's starting expression).
STATUSES = ("proved", "numeric", "conditional", "wrong")
GIVEN = "given"
#: Random points of a numerical comparison (and of the check without assumptions).
POINTS = 16
RELAXED_POINTS = 12
#: Bound, in seconds, of each symbolic attempt.
PROOF_SECONDS = 1.0
#: Working precision (digits) of comparisons, and of the confirmation of a difference.
DPS, CONFIRM_DPS = 40, 100
#: Relative tolerance of numbers compared without a stated tolerance.
NUMBER_RTOL = 1e-12
#: Largest side of a declared matrix symbol, and size of a written-out matrix expression.
MAX_MATRIX_SIDE = 8
MAX_MATRIX_NODES = 20_000
#: Bound, in seconds, on writing out one step (definitions, diff, subs).
EXPAND_SECONDS = 10.0
#: Bound, in seconds, on one whole comparison (its symbolic attempts are bounded tighter).
JUDGE_SECONDS = 30.0

Value = Union[sympy.Expr, sympy.MatrixBase]
_KINKS = (sympy.Piecewise, sympy.Abs, sympy.sign, sympy.Heaviside, sympy.Max, sympy.Min)
_CHAIN_FIELDS = ("of", "steps", "constraints", "at", "tolerance")
_FILE_FIELDS = ("name", "section", "description", "symbols", "definitions", "chains")


# -- results ----------------------------------------------------------------------------
@dataclass
class Verdict:
    """The outcome of one comparison ``left = right``.

    Attributes
    ----------
    status : str
        One of :data:`STATUSES` (or :data:`GIVEN`).
    counterexample : dict or None
        For ``wrong`` (and for a conditional failing outside its condition):
        ``{"point": {name: value}, "left": value, "right": value}`` (plus ``"entry"``
        for matrices).
    condition : str or None
        For ``conditional``: where the equality holds, or what it needs.
    explanation : str
        One readable sentence.
    tolerance : float or None
        The tolerance used when numbers were compared.
    """

    status: str
    explanation: str = ""
    counterexample: dict | None = None
    condition: str | None = None
    tolerance: float | None = None

    def to_json(self) -> dict:
        out = {"status": self.status, "counterexample": self.counterexample,
               "condition": self.condition, "explanation": self.explanation}
        if self.tolerance is not None:
            out["tolerance"] = self.tolerance
        return out


@dataclass
class ClaimReport:
    """One claim (``backward.x = "..."``) against the derivation."""

    of: str
    text: str
    verdict: Verdict

    def to_json(self) -> dict:
        return {"of": self.of, "claim": self.text, **self.verdict.to_json()}


@dataclass
class StepReport:
    """Step ``index`` of a chain against the step before it (or the chain's target)."""

    index: int
    text: str
    verdict: Verdict

    def to_json(self) -> dict:
        return {"index": self.index, "step": self.text, **self.verdict.to_json()}


@dataclass
class ChainReport:
    """A chain of steps; ``first_wrong_step`` is 0-based, None when every step holds."""

    of: str
    steps: list[StepReport]

    @property
    def first_wrong_step(self) -> int | None:
        return next((s.index for s in self.steps if s.verdict.status == "wrong"), None)

    @property
    def ok(self) -> bool:
        return self.first_wrong_step is None

    def to_json(self) -> dict:
        return {"of": self.of, "ok": self.ok, "first_wrong_step": self.first_wrong_step,
                "steps": [s.to_json() for s in self.steps]}


@dataclass
class StepsReport:
    """Everything :func:`verify` found in one declaration or derivation file."""

    name: str
    source: str | None
    claims: list[ClaimReport] = field(default_factory=list)
    chains: list[ChainReport] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(c.verdict.status != "wrong" for c in self.claims) and all(c.ok for c in self.chains)

    def to_json(self) -> dict:
        """The ``verify-steps --json`` record (DESIGN.md; extra fields added, none renamed)."""
        return {"ok": self.ok, "name": self.name, "source": self.source,
                "claims": [c.to_json() for c in self.claims],
                "chains": [c.to_json() for c in self.chains], "notes": list(self.notes)}

    def text(self) -> str:
        """A readable account: one line per claim and step, the reason under each."""
        origin = f"  ({self.source})" if self.source else ""
        lines = [f"{self.name}{origin}"]
        for c in self.claims:
            lines += _entry(f"claim {c.of} = {c.text}", c.verdict, "  ")
        for chain in self.chains:
            state = "ok" if chain.ok else f"WRONG at step {chain.first_wrong_step}"
            lines.append(f"  chain {chain.of}: {state}")
            for s in chain.steps:
                lines += _entry(f"[{s.index}] {s.text}", s.verdict, "    ")
        lines += [f"  note: {n}" for n in self.notes]
        if not self.claims and not self.chains:
            lines.append("  nothing to verify: no claims and no chains")
        wrong = sum(c.verdict.status == "wrong" for c in self.claims) + sum(not c.ok for c in self.chains)
        lines.append(f"{_count(len(self.claims), 'claim')}, {_count(len(self.chains), 'chain')}: "
                     + ("all hold" if self.ok else f"{wrong} wrong"))
        return "\n".join(lines)


def _count(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _entry(head: str, verdict: Verdict, indent: str) -> list[str]:
    label = verdict.status.upper() if verdict.status == "wrong" else verdict.status
    out = [f"{indent}{head:<58} {label}"]
    if verdict.explanation and verdict.status not in ("proved", GIVEN):
        out.append(f"{indent}    {verdict.explanation}")
    return out


# -- worlds: names, definitions and how text becomes values -------------------------
class World:
    """The names of one derivation: symbols with their assumptions, shorthands, matrices.

    Parameters
    ----------
    symbols : mapping of str to sympy.Symbol
        Declared scalar symbols (and placeholders for definitions).
    definitions : mapping of sympy.Symbol to value
        Shorthands, substituted before comparing; a value may use other shorthands.
    matrices : mapping of str to sympy.Matrix
        Declared matrix symbols, as matrices of real entry symbols ``X[i,j]``.
    calculus : bool
        Whether ``diff`` and ``subs`` are allowed in steps.
    """

    def __init__(self, symbols: Mapping[str, sympy.Symbol], definitions: Mapping[sympy.Symbol, Value] | None = None,
                 matrices: Mapping[str, sympy.MatrixBase] | None = None, calculus: bool = True):
        self.symbols = dict(symbols)
        self.definitions = dict(definitions or {})
        self.matrices = dict(matrices or {})
        self.calculus = calculus

    def matrix_names(self) -> set[str]:
        return set(self.matrices) | {s.name for s, v in self.definitions.items() if isinstance(v, sympy.MatrixBase)}

    def parse(self, text: str) -> Value:
        """Text to an (unexpanded) value: scalar text through the parser, matrix text
        through :class:`_MatrixReader` (which uses the parser for every scalar part)."""
        if not isinstance(text, str):
            raise ParseError(f"expected an expression string, got {type(text).__name__}")
        if self.matrix_names():
            return _MatrixReader(self).read(text)
        return self.parse_scalar(text)

    def parse_scalar(self, text: str) -> sympy.Expr:
        return parse_expression(text, symbols=self.symbols, calculus=self.calculus)

    def value_of(self, name: str) -> Value | None:
        if name in self.matrices:
            return self.matrices[name]
        symbol = self.symbols.get(name)
        value = self.definitions.get(symbol) if symbol is not None else None
        return value if isinstance(value, sympy.MatrixBase) else None

    def expand(self, value: Value, keep: frozenset = frozenset()) -> Value:
        r"""Substitute every definition and carry out ``diff`` and ``subs``.

        ``diff(e, v)`` with ``v`` a shorthand differentiates with ``v`` held as a
        variable (every other shorthand written out), then writes ``v`` out: the
        partial derivative :math:`\partial e / \partial v` of the chain rule.
        """
        if isinstance(value, sympy.MatrixBase):
            return value.applyfunc(lambda e: self.expand(e, keep))
        return self._expand(value, keep, 0)

    def _expand(self, e: sympy.Basic, keep: frozenset, depth: int) -> sympy.Basic:
        if depth > 50:
            raise SpecError("definitions refer to each other in a cycle")
        if isinstance(e, sympy.Derivative):
            held = frozenset(v for v in e.variables if v in self.definitions)
            inner = self._expand(e.expr, keep | held, depth + 1)
            return self._expand(sympy.diff(inner, *e.variable_count), keep, depth + 1)
        if isinstance(e, sympy.Subs):
            held = frozenset(v for v in e.variables if v in self.definitions)
            inner = self._expand(e.expr, keep | held, depth + 1)
            point = [self._expand(p, keep, depth + 1) for p in e.point]
            return self._expand(inner.subs(dict(zip(e.variables, point)), simultaneous=True), keep, depth + 1)
        if isinstance(e, sympy.Symbol):
            value = self.definitions.get(e)
            if value is None or e in keep:
                return e
            if isinstance(value, sympy.MatrixBase):
                raise SpecError(f"the matrix '{e.name}' is used where a number is expected")
            return self._expand(value, keep, depth + 1)
        if not e.args:
            return e
        return e.func(*[self._expand(a, keep, depth + 1) for a in e.args])


def _entry_symbol(name: str, i: int, j: int) -> sympy.Symbol:
    return sympy.Symbol(f"{name}[{i},{j}]", real=True)


def matrix_symbol(name: str, rows: int, cols: int) -> sympy.Matrix:
    """The declared matrix ``name`` as explicit real entries ``name[i,j]``."""
    return sympy.Matrix(rows, cols, lambda i, j: _entry_symbol(name, i, j))


class _MatrixReader:
    """Reads a step with matrices: ``+ - * /`` (elementwise, or with a scalar), ``@``,
    ``.T``, ``trace(M)``, ``sum(M)``, ``diff(f, W)``, ``subs(M, u, v)`` and the parser's
    one-argument functions applied elementwise.  Any sub-expression without matrices
    is handed, as text, to :func:`~symbackprop.parsing.parse_expression`."""

    MATRIX_CALLS = ("trace", "sum", "diff", "subs")

    def __init__(self, world: World):
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
            return _map(self.world.expand(body), lambda x: x.subs(target, self.world.expand(point)))
        builder = FUNCTIONS.get(name)
        if builder is None or builder.arity != 1:
            raise self.fail(f"{name}() is not allowed in a matrix step", node)
        (arg,) = self.args(node, 1)
        return _map(self.node(arg, depth + 1), builder.build)

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
        return _map(body, lambda x: sympy.diff(x, target))


def _map(value: Value, fn: Callable[[sympy.Expr], sympy.Expr]) -> Value:
    return value.applyfunc(fn) if isinstance(value, sympy.MatrixBase) else fn(value)


# -- constraints and the setting of a comparison ------------------------------------------
@dataclass
class Setting:
    """What a chain's comparisons share: assumptions, constraints, a point, a tolerance.

    ``branches`` are substitutions that eliminate constrained symbols (``t3 -> 1 - t1
    - t2``); a comparison must hold on every branch.  ``relaxed`` is the same world
    without assumptions, used to tell what an equality needs.
    """

    world: World
    relaxed: World | None = None
    constraints: tuple[str, ...] = ()
    branches: list[dict] = field(default_factory=lambda: [{}])
    at: dict[str, sympy.Expr] = field(default_factory=dict)
    tolerance: float | None = None
    seed: int = 0

    def needs(self, symbols: Iterable[sympy.Symbol]) -> str:
        """The assumptions (of ``symbols``) and constraints an equality may rest on."""
        words = [f"{s.name} {w}" for s in sorted(set(symbols), key=lambda s: s.name)
                 if (w := _assumption_word(s)) != "real"]
        return "; ".join([*words, *self.constraints]) or "the declared assumptions"

    def at_map(self, world: World) -> dict:
        return {world.symbols.get(k, sympy.Symbol(k, real=True)): v for k, v in self.at.items()}


def _assumption_word(symbol: sympy.Symbol) -> str:
    for word in ("integer", "positive", "negative", "nonnegative", "nonzero"):
        if getattr(symbol, f"is_{word}"):
            return word
    return "real"


def constraint_branches(world: World, texts: Sequence[str], at: Mapping[sympy.Symbol, sympy.Expr],
                        where: str) -> list[dict]:
    """Substitutions that satisfy every constraint ``lhs = rhs`` (``onehot(a, b, c)``
    means ``a + b + c = 1``), each eliminating one symbol, solved after ``at``.

    Raises
    ------
    SpecError
        A constraint that is malformed, not satisfied at ``at``, or not solvable.
    """
    branches: list[dict] = [{}]
    for i, text in enumerate(texts):
        field_name = f"{where}.constraints[{i}]"
        residual = world.expand(_constraint_expr(world, text, field_name)).xreplace(dict(at))
        new = []
        for sub in branches:
            r = residual.xreplace(sub)
            if not r.free_symbols:
                if not _is_zero_number(r):
                    raise SpecError(f"{field_name}: '{text}' does not hold at the point 'at'")
                new.append(sub)
                continue
            symbol, solutions = _solve(r, field_name, text)
            for sol in solutions:
                new.append({**{k: v.xreplace({symbol: sol}) for k, v in sub.items()}, symbol: sol})
        branches = new
    return branches


def _constraint_expr(world: World, text: Any, field_name: str) -> sympy.Expr:
    if not isinstance(text, str):
        raise SpecError(f"{field_name}: expected a string such as \"t1 + t2 + t3 = 1\"")
    onehot = re.fullmatch(r"\s*onehot\(\s*(\w+(?:\s*,\s*\w+)+)\s*\)\s*", text)
    if onehot:
        names = [n.strip() for n in onehot.group(1).split(",")]
        text = " + ".join(names) + " = 1"
    parts = text.split("=")
    if len(parts) != 2 or any(not p.strip() for p in parts) or any(p.endswith(("<", ">", "!")) for p in parts[:1]):
        raise SpecError(f"{field_name}: expected one equation 'lhs = rhs' (or onehot(a, b, c)), got {text!r}")
    try:
        lhs, rhs = (world.parse_scalar(p) for p in parts)
    except ParseError as exc:
        raise SpecError(f"{field_name}: {exc}") from None
    return lhs - rhs


def _solve(residual: sympy.Expr, field_name: str, text: str) -> tuple[sympy.Symbol, list[sympy.Expr]]:
    """Eliminate one symbol: a linear one if any (the last by name), else any that
    ``solve`` handles within the time bound with real solutions."""
    symbols = sorted(residual.free_symbols, key=lambda s: s.name, reverse=True)
    for s in symbols:
        found = linear_root(residual, s)
        if found is not None:
            return found[0], [sympy.cancel(found[1])]
    for s in symbols:
        try:
            found, _ = attempt(lambda: sympy.solve(residual, s, dict=False), None, PROOF_SECONDS)
        except (NotImplementedError, TypeError, ValueError, sympy.PolynomialError):
            found = None
        real = [r for r in (found or []) if r.is_real is not False and not r.has(sympy.I)]
        if real:
            return s, real
    raise SpecError(f"{field_name}: cannot solve '{text}' for any of its symbols")


def _is_zero_number(e: sympy.Expr) -> bool:
    with mpmath.workdps(DPS):
        value = sympy.N(e, DPS)
    return bool(value == 0) or abs(complex(value)) < 1e-30


# -- comparing two values ---------------------------------------------------------------
@dataclass
class Side:
    """One side of a comparison: its value with and without assumptions, and its text."""

    value: Value
    relaxed: Value | None = None
    text: str | None = None
    label: str = "the left side"

    def entry(self, value: Value, relaxed: Value | None) -> Side:
        return Side(value, relaxed, self.text, self.label)


def judge(left: Side, right: Side, setting: Setting) -> Verdict:
    """Compare two sides (scalars or matrices, entry by entry) under ``setting``.

    ``left`` is the newer side (the claim, or the later step).
    """
    a, b = _as_scalar(left.value), _as_scalar(right.value)
    if isinstance(a, sympy.MatrixBase) or isinstance(b, sympy.MatrixBase):
        shape_a, shape_b = _shape(a), _shape(b)
        if shape_a != shape_b:
            return Verdict("wrong", f"shapes differ: {_show(shape_a)} against {_show(shape_b)}")
        ra, rb = left.relaxed, right.relaxed
        verdicts = []
        for i in range(shape_a[0]):
            for j in range(shape_a[1]):
                ea = left.entry(a[i, j], None if ra is None else _as_matrix(ra)[i, j])
                eb = right.entry(b[i, j], None if rb is None else _as_matrix(rb)[i, j])
                v = _judge_entry(ea, eb, setting)
                if v.counterexample is not None:
                    v.counterexample["entry"] = [i, j]
                v.explanation = f"entry [{i}, {j}]: {v.explanation}" if v.status != "proved" else v.explanation
                verdicts.append(v)
        return _combine(verdicts)
    return _judge_entry(left.entry(a, _as_scalar(left.relaxed)), right.entry(b, _as_scalar(right.relaxed)), setting)


def _as_scalar(value):
    if isinstance(value, sympy.MatrixBase) and value.shape == (1, 1):
        return value[0, 0]
    return value


def _as_matrix(value) -> sympy.MatrixBase:
    return value if isinstance(value, sympy.MatrixBase) else sympy.Matrix([[value]])


def _shape(value) -> tuple[int, int]:
    return value.shape if isinstance(value, sympy.MatrixBase) else (1, 1)


def _show(shape: tuple[int, int]) -> str:
    return "a scalar" if shape == (1, 1) else f"a {shape[0]}x{shape[1]} matrix"


def _combine(verdicts: Sequence[Verdict]) -> Verdict:
    """The worst verdict; conditions of conditional ones joined."""
    worst = max(verdicts, key=lambda v: _rank(v.status))
    if worst.status == "conditional":
        conditions = list(dict.fromkeys(v.condition for v in verdicts if v.condition))
        worst.condition = "; ".join(conditions) or worst.condition
    return worst


def _rank(status: str) -> int:
    return STATUSES.index(status) if status in STATUSES else -1


def _judge_entry(left: Side, right: Side, setting: Setting) -> Verdict:
    at = setting.at_map(setting.world)
    verdicts = []
    for branch in setting.branches:
        a = left.value.xreplace(at).xreplace(branch)
        b = right.value.xreplace(at).xreplace(branch)
        if not (a.free_symbols | b.free_symbols):
            verdicts.append(_judge_numbers(a, b, left, right, setting, branch))
        else:
            verdicts.append(_judge_symbolic(a, b, left, right, setting, branch))
    return _combine(verdicts)


def _judge_numbers(a: sympy.Expr, b: sympy.Expr, left: Side, right: Side,
                   setting: Setting, branch: dict) -> Verdict:
    """Numbers: exact when rational, else within the stated or written tolerance."""
    point = _point_json({**setting.at_map(setting.world), **branch}, {})
    if a == b:
        return Verdict("proved", "equal numbers (exact arithmetic)")
    tolerance = setting.tolerance
    if tolerance is None:
        written = [t for t in (_rounding(left.text), _rounding(right.text)) if t is not None]
        tolerance = max(written) if written else None
    va, vb = (_number(x, DPS) for x in (a, b))
    if va is None or vb is None:
        which = left.label if va is None else right.label
        return Verdict("conditional", f"{which} is undefined here", condition="where both sides are defined")
    with mpmath.workdps(DPS):
        gap = abs(va - vb)
        scale = max(abs(va), abs(vb))
        if close(va, vb):
            method = _proof(a - b)
            if method:
                return Verdict("proved", f"equal numbers, proved symbolically ({method})")
            return Verdict("numeric", "equal numbers to 25 digits (not proved exactly)")
        allowed = float((tolerance or 0.0) + NUMBER_RTOL * scale)
        if gap <= allowed:
            return Verdict("numeric", f"equal numbers within the tolerance {allowed:.3g} "
                           f"({left.label} is {float(va):.12g}, {right.label} {float(vb):.12g})", tolerance=allowed)
    return Verdict("wrong", f"{left.label} is {float(va):.12g}, {right.label} {float(vb):.12g} "
                   f"(difference {float(gap):.3g}, tolerance {allowed:.3g})",
                   counterexample={"point": point, "left": float(va), "right": float(vb)}, tolerance=float(allowed))


_DECIMAL = re.compile(r"\s*[-+]?(\d*)\.(\d+)(?:[eE]([-+]?\d+))?\s*")


def _rounding(text: str | None) -> float | None:
    """A bare decimal such as ``0.7311`` is read as rounded: half a unit in its last place."""
    if text is None:
        return None
    m = _DECIMAL.fullmatch(text)
    if not m:
        return None
    return 0.5 * 10.0 ** (-len(m.group(2)) + int(m.group(3) or 0))


def _number(e: sympy.Expr, dps: int):
    return _value(mp_function(e, ()), [], dps)


def _judge_symbolic(a: sympy.Expr, b: sympy.Expr, left: Side, right: Side, setting: Setting,
                    branch: dict) -> Verdict:
    rng = np.random.default_rng(setting.seed)
    sample = _compare_at_points(a, b, rng, POINTS, relaxed=False, branch=branch)
    if sample.mismatch is not None:
        return Verdict("wrong", _mismatch_text(sample.mismatch, left, right), counterexample=sample.mismatch)
    conditions = []
    if sample.one_sided is not None:
        conditions.append(_one_sided_text(sample.one_sided, left, right))
    kink = _kink_disagreement(a, b, rng, left, right)
    if kink is not None:
        conditions.append(kink)
    conditions += _singularities(a, b, left, right, rng)
    needs = _needs_assumptions(left, right, setting, rng)
    if needs is not None:
        conditions.append(needs)
    method = _proof(a - b)
    if conditions:
        how = ("proved symbolically" if method else f"equal at {sample.used} random points" if sample.used
               else "not compared")
        return Verdict("conditional", f"holds {'; '.join(conditions)}; {how} there",
                       condition="; ".join(conditions))
    if method:
        return Verdict("proved", f"proved symbolically ({method})")
    if sample.used < 3:
        return Verdict("conditional", "the sides are defined at too few of the sampled points to compare",
                       condition="where both sides are defined (almost nowhere on the sampled domain)")
    return Verdict("numeric", f"equal at {sample.used} random points (mpmath, {DPS} digits); "
                   f"not proved within {PROOF_SECONDS:g} s per attempt")


# -- numerical comparison -------------------------------------------------------------------
@dataclass
class _Sample:
    used: int = 0
    mismatch: dict | None = None
    one_sided: dict | None = None


def _compare_at_points(a: sympy.Expr, b: sympy.Expr, rng: np.random.Generator, n: int, *,
                       relaxed: bool, branch: Mapping | None = None) -> _Sample:
    """Evaluate both sides at ``n`` random points of the symbols' domains (all reals
    when ``relaxed``); a difference at 40 digits is confirmed at 100."""
    symbols = sorted(a.free_symbols | b.free_symbols, key=lambda s: s.name)
    f, g = mp_function(a, symbols), mp_function(b, symbols)
    out = _Sample()
    for _ in range(n):
        values = [_draw(s, rng, relaxed) for s in symbols]
        va, vb = _value(f, values, DPS), _value(g, values, DPS)
        if va is None and vb is None:
            continue
        record = {"point": _point_json(dict(zip(symbols, values)), branch or {}),
                  "left": _plain(va), "right": _plain(vb)}
        if va is None or vb is None:
            out.one_sided = out.one_sided or record
            continue
        out.used += 1
        if not close(va, vb) and not _close_confirmed(f, g, values):
            out.mismatch = record
            break
    return out


def _close_confirmed(f: Callable, g: Callable, values: list) -> bool:
    va, vb = _value(f, values, CONFIRM_DPS), _value(g, values, CONFIRM_DPS)
    if va is None or vb is None:
        return False
    with mpmath.workdps(CONFIRM_DPS):
        return abs(va - vb) <= mpmath.mpf(10) ** -60 * max(abs(va), abs(vb)) + mpmath.mpf(10) ** -90


def _draw(symbol: sympy.Symbol, rng: np.random.Generator, relaxed: bool) -> mpmath.mpf:
    word = "real" if relaxed else _assumption_word(symbol)
    if word == "integer":
        return mpmath.mpf(int(rng.integers(-6, 7)))
    if word in ("positive", "nonnegative", "negative"):
        v = float(np.exp(rng.uniform(-3, 3))) * (-1 if word == "negative" else 1)
    else:
        v = float(rng.uniform(-3, 3) if rng.random() < 0.75 else rng.uniform(-8, 8))
    return mpmath.mpf(v)


def _value(fn: Callable, values: Sequence, dps: int):
    """``fn(*values)`` at ``dps`` digits; None where it is undefined or not real."""
    with mpmath.workdps(dps), warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        try:
            v = mpmath.mpmathify(fn(*values))
        except (ZeroDivisionError, ValueError, TypeError, OverflowError, ArithmeticError, AttributeError,
                MemoryError):  # MemoryError: mpmath refusing exp of a number with a huge exponent
            return None
        if isinstance(v, mpmath.mpc):  # a complex intermediate: undefined over the reals
            return None
        return +v if mpmath.isfinite(v) else None


def _plain(v) -> float | None:
    return None if v is None else float(v)


def _point_json(point: Mapping, branch: Mapping) -> dict[str, float]:
    out = {s.name: float(v) for s, v in point.items()}
    symbols = list(point)
    values = [mpmath.mpf(float(v)) if isinstance(v, sympy.Basic) else v for v in point.values()]
    for s, expr in branch.items():  # symbols a constraint eliminated, at this point
        value = _value(mp_function(expr, symbols), values, DPS)
        if value is not None:
            out[s.name] = float(value)
    return dict(sorted(out.items()))


def _show_point(point: Mapping[str, float]) -> str:
    return ", ".join(f"{k} = {v:.6g}" for k, v in point.items()) or "this point"


def _mismatch_text(m: dict, left: Side, right: Side) -> str:
    return f"at {_show_point(m['point'])}, {left.label} is {m['left']:.12g} but {right.label} is {m['right']:.12g}"


def _one_sided_text(m: dict, left: Side, right: Side) -> str:
    which = left.label if m["left"] is None else right.label
    return f"where both sides are defined ({which} is undefined at {_show_point(m['point'])})"


# -- kinks, domains, assumptions ---------------------------------------------------------
def _kink_arguments(e: sympy.Expr) -> list[sympy.Expr]:
    """Expressions that are zero where ``e`` switches branch (``where``, abs, sign, max)."""
    out = []
    for sub in sympy.preorder_traversal(e):
        if isinstance(sub, sympy.Piecewise):
            for _, cond in sub.args:
                for rel in ([cond] if isinstance(cond, sympy.core.relational.Relational) else
                            [c for c in getattr(cond, "args", ()) if isinstance(c, sympy.core.relational.Relational)]):
                    out.append(rel.lhs - rel.rhs)
        elif isinstance(sub, (sympy.Abs, sympy.sign, sympy.Heaviside)):
            out.append(sub.args[0])
        elif isinstance(sub, (sympy.Max, sympy.Min)):
            out += [x - y for x, y in zip(sub.args, sub.args[1:])]
    return [u for u in dict.fromkeys(out) if u.free_symbols]


def linear_root(u: sympy.Expr, symbol: sympy.Symbol | None = None) -> tuple[sympy.Symbol, sympy.Expr] | None:
    """``(s, r)`` with ``u = 0`` exactly when ``s = r``, for ``u`` linear in ``s`` (the
    given ``symbol``, or the first by name that works)."""
    for s in ([symbol] if symbol is not None else sorted(u.free_symbols, key=lambda s: s.name)):
        try:
            poly = sympy.Poly(u, s)
        except (sympy.PolynomialError, sympy.GeneratorsError):
            continue
        if poly.degree() == 1:
            a, b = poly.all_coeffs()
            if not a.free_symbols and a != 0:
                return s, -b / a
    return None


def _kink_disagreement(a: sympy.Expr, b: sympy.Expr, rng: np.random.Generator, left: Side, right: Side) -> str | None:
    """Evaluate both sides exactly at the kinks of either; a difference there (and only
    there, since random points agreed) makes the equality conditional."""
    for u in _kink_arguments(a) + _kink_arguments(b):
        found = linear_root(u)
        if found is None:
            continue
        s, root = found
        others = sorted((u.free_symbols | a.free_symbols | b.free_symbols) - {s}, key=lambda t: t.name)
        point = {t: _draw(t, rng, False) for t in others}
        with mpmath.workdps(DPS):
            r = _value(mp_function(root, others), [point[t] for t in others], DPS)
        if r is None:
            continue
        point[s] = r
        symbols = sorted(point, key=lambda t: t.name)
        values = [point[t] for t in symbols]
        va = _value(mp_function(a, symbols), values, DPS)
        vb = _value(mp_function(b, symbols), values, DPS)
        if va is not None and vb is not None and not close(va, vb):
            return (f"everywhere except where {_fmt(u)} = 0 (a kink: at {s.name} = {float(r):.6g}, "
                    f"{left.label} is {float(va):.6g} and {right.label} {float(vb):.6g})")
    return None


def _singularities(a: sympy.Expr, b: sympy.Expr, left: Side, right: Side, rng: np.random.Generator) -> list[str]:
    """Zeros of a denominator of either side where one side is undefined and the other
    is not (a removable singularity such as :math:`(x^2 - 1)/(x - 1)` at 1): only
    conditions with such a witness point are reported."""
    out = []
    for f in dict.fromkeys(_denominators(a) + _denominators(b)):
        for symbol, root in _zeros(f)[:3]:
            point = _exact_point(a.free_symbols | b.free_symbols | f.free_symbols, symbol, root, rng)
            if point is None:
                continue
            va, vb = _defined(a, point), _defined(b, point)
            if va is None or vb is None or va == vb:
                continue
            where = ", ".join(f"{s.name} = {_fmt(v)}" for s, v in sorted(point.items(), key=lambda i: i[0].name)
                              if s.free_symbols or s in f.free_symbols)
            undefined = left.label if not va else right.label
            out.append(f"where {_fmt(f)} != 0 ({undefined} is undefined at {where})")
            break
    return out


def _denominators(e: sympy.Expr) -> list[sympy.Expr]:
    out = []
    for sub in sympy.preorder_traversal(e):
        if sub.is_Pow and sub.exp.is_number and sub.exp.is_negative and sub.base.is_zero is not False:
            out += [f for f in _factors(sub.base) if f.is_zero is not False]
    return out


def _zeros(f: sympy.Expr) -> list[tuple[sympy.Symbol, sympy.Expr]]:
    """Real zeros of ``f``: every root in its one symbol, or one symbol solved linearly."""
    symbols = sorted(f.free_symbols, key=lambda s: s.name)
    if len(symbols) > 1:
        found = linear_root(f)
        return [found] if found is not None else []
    try:
        roots, _ = attempt(lambda: sympy.solve(f, symbols[0]), [], 0.5)
    except (NotImplementedError, TypeError, ValueError, sympy.PolynomialError):
        roots = []
    return [(symbols[0], r) for r in roots if r.is_real]


def _exact_point(symbols: set, symbol: sympy.Symbol, root: sympy.Expr,
                 rng: np.random.Generator) -> dict | None:
    """The other symbols at random rationals, ``symbol`` at ``root``: None outside its domain."""
    point = {s: sympy.Rational(repr(float(_draw(s, rng, False)))) for s in symbols if s != symbol}
    value = root.xreplace(point)
    if not value.is_real or value.free_symbols:
        return None
    word = _assumption_word(symbol)
    if (word in ("positive", "nonzero") and value.is_zero) or (word == "positive" and value.is_negative) \
            or (word == "negative" and value.is_nonnegative) or (word == "integer" and not value.is_integer):
        return None
    point[symbol] = value
    return point


def _defined(e: sympy.Expr, point: dict) -> bool | None:
    """Is ``e`` a finite real number at the exact ``point``?  None when undecided in time."""

    def decide() -> bool:
        v = e.xreplace(point)
        if v.has(sympy.zoo, sympy.nan, sympy.oo, -sympy.oo):
            return False
        c = complex(sympy.N(v, 30))
        return abs(c.imag) <= 1e-20 * max(1.0, abs(c.real)) and np.isfinite(c.real)

    try:
        return attempt(decide, None, 0.5)[0]
    except (TypeError, ValueError, ZeroDivisionError, OverflowError):
        return False


def _factors(e: sympy.Expr) -> list[sympy.Expr]:
    try:
        found, finished = attempt(lambda: sympy.factor_list(e), None, 0.3)
    except (sympy.PolynomialError, TypeError, ValueError, NotImplementedError):
        found, finished = None, False
    items = [f for f, _ in found[1]] if finished and found is not None else [e]
    return [(-f if f.could_extract_minus_sign() else f) for f in items if f.free_symbols]


def _needs_assumptions(left: Side, right: Side, setting: Setting, rng: np.random.Generator) -> str | None:
    """Does the equality need the declared assumptions or constraints?  Compare the
    sides read without them (all symbols real, no constraint) on all reals."""
    if left.relaxed is None or right.relaxed is None or setting.relaxed is None:
        return None
    declared = _free(left.value) | _free(right.value)
    if not setting.constraints and all(_assumption_word(s) == "real" for s in declared):
        return None
    at = setting.at_map(setting.relaxed)
    a, b = left.relaxed.xreplace(at), right.relaxed.xreplace(at)
    if not (a.free_symbols | b.free_symbols):
        return None
    sample = _compare_at_points(a, b, rng, RELAXED_POINTS, relaxed=True)
    found = sample.mismatch or sample.one_sided
    if found is None:
        return None
    return f"only with {setting.needs(declared)} (without, they differ at {_show_point(found['point'])})"


def _free(value: Value) -> set:
    return set(value.free_symbols)


# -- symbolic proof ----------------------------------------------------------------------------
def _proof(d: sympy.Expr) -> str | None:
    """The name of the bounded symbolic method that shows ``d == 0``, or None."""
    if d == 0:
        return "identical once written out"
    tries = [("cancel", lambda: sympy.cancel(d) == 0)]
    if d.has(*_KINKS):
        tries.append(("cancel, case by case at the kinks", lambda: _zero_by_cases(d, 0)))
    if d.has(sympy.exp, sympy.tanh, sympy.sinh, sympy.cosh, sympy.Pow):
        tries.append(("rewrite(exp), cancel", lambda: sympy.cancel(d.rewrite(sympy.exp)) == 0))
    tries.append(("rewrite(exp), simplify", lambda: sympy.simplify(d.rewrite(sympy.exp)) == 0))
    for name, fn in tries:
        try:
            proved, _ = attempt(fn, False, PROOF_SECONDS)
        except (TypeError, ValueError, NotImplementedError, AttributeError, sympy.PolynomialError):
            proved = False
        if proved:
            return name
    return None


def _zero_by_cases(d: sympy.Expr, depth: int) -> bool:
    """Split at a kink ``u = 0`` (``u`` linear in ``s``) into ``s = r + p`` and ``s = r - p``
    with ``p > 0``; branches and signs then resolve.  The kink itself is checked apart."""
    kinks = _kink_arguments(d)
    if not kinks:
        e = d.rewrite(sympy.exp) if d.has(sympy.tanh, sympy.sinh, sympy.cosh) else d
        return sympy.cancel(e) == 0
    if depth >= 3:
        return False
    found = linear_root(kinks[0])
    if found is None:
        return False
    s, root = found
    p = sympy.Dummy("p", positive=True)
    return all(_zero_by_cases(d.xreplace({s: root + sign * p}), depth + 1) for sign in (1, -1))


def _fmt(e: sympy.Basic) -> str:
    try:
        return format_expression(e)
    except (ValueError, TypeError):
        return str(e)


# -- layer declarations ---------------------------------------------------------------------
def spec_world(spec: Spec, relaxed: bool = False) -> World:
    """The names of a layer declaration: inputs, graph nodes (defined as their
    expressions) and ``dout``.  ``relaxed``: every input only real."""
    relax = {s: sympy.Symbol(s.name, real=True) for s in spec.inputs} if relaxed else {}
    symbols = {s.name: relax.get(s, s) for s in spec.inputs}
    symbols.update({n.name: n for n, _ in spec.graph})
    symbols[DOUT.name] = DOUT
    definitions = {n: e.xreplace(relax) for n, e in spec.graph}
    return World(symbols, definitions, calculus=False)


def _needs_relaxed(world: World) -> bool:
    return any(_assumption_word(s) != "real" for s in world.symbols.values())


def verify_derivation(derivation: Derivation) -> tuple[list[ClaimReport], list[ChainReport]]:
    r"""Every claim of ``derivation.spec`` against ``derivation.raw_local``, every chain
    step against the one before (step 0 against the chain's target, if it names one).

    Targets: ``backward.x`` is :math:`\text{dout}\,\partial y/\partial x`, ``local.x``
    is :math:`\partial y/\partial x`.
    """
    spec = derivation.spec
    world = spec_world(spec)
    relaxed = spec_world(spec, relaxed=True) if _needs_relaxed(world) else None
    relax = {s: relaxed.symbols[s.name] for s in spec.inputs} if relaxed else {}
    targets = {}
    for name, raw in derivation.raw_local.items():
        targets[f"local.{name}"] = raw
        targets[f"backward.{name}"] = DOUT * raw

    def side(expr: sympy.Expr, text: str) -> Side:
        rel = relaxed.expand(relaxed.parse_scalar(text)) if relaxed else None
        return Side(world.expand(expr), rel, text, "the claim")

    def target(of: str) -> Side | None:
        t = targets.get(of)
        return None if t is None else Side(t, t.xreplace(relax) if relaxed else None, None, f"the derived {of}")

    base = Setting(world, relaxed)
    claims = [ClaimReport(c.of, c.text, _judge_or_missing(side(c.expr, c.text), target(c.of), base, c.of))
              for c in spec.claims]
    chains = []
    for i, chain in enumerate(spec.chains):
        where = f"{spec.source}: chains[{i}]" if spec.source else f"chains[{i}]"
        setting = _chain_setting(world, relaxed, chain.constraints, chain.at, None, where, seed=i + 1)
        sides, goal = [side(e, t) for e, t in zip(chain.exprs, chain.steps)], target(chain.of)
        if relaxed is None and chain.constraints:  # unconstrained: the same values
            sides = [s.entry(s.value, s.value) for s in sides]
            goal = goal and goal.entry(goal.value, goal.value)
        chains.append(_verify_chain(chain.of, list(chain.steps), sides, goal, setting))
    return claims, chains


def _judge_or_missing(left: Side, right: Side | None, setting: Setting, of: str) -> Verdict:
    if right is None:
        return Verdict("conditional", f"nothing derived to compare with: '{of}' is not backward.<input> "
                       "or local.<input>", condition="not compared")
    return _judge_bounded(left, right, setting)


def _chain_setting(world: World, relaxed: World | None, constraints: Sequence[str], at: Mapping,
                   tolerance: float | None, where: str, seed: int) -> Setting:
    at_values = {k: _exact(v, f"{where}.at.{k}") for k, v in at.items()}
    for k in at_values:
        if world.symbols.get(k) in world.definitions or k in world.matrices:
            raise SpecError(f"{where}.at.{k}: 'at' gives values to plain symbols, not to shorthands or matrices")
    setting = Setting(world, relaxed, tuple(constraints), at=at_values, tolerance=tolerance, seed=seed)
    if constraints and setting.relaxed is None:
        setting.relaxed = world
    setting.branches = constraint_branches(world, constraints, setting.at_map(world), where)
    return setting


def _exact(value: Any, where: str) -> sympy.Expr:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value or abs(value) == float("inf"):
        raise SpecError(f"{where}: expected a finite number")
    return sympy.Rational(Fraction(repr(value))) if isinstance(value, float) else sympy.Integer(value)


def _judge_bounded(left: Side, right: Side, setting: Setting) -> Verdict:
    try:
        return bounded(lambda: judge(left, right, setting), JUDGE_SECONDS)
    except DerivationTimeout:
        raise DerivationTimeout(f"comparing {left.label} with {right.label} ran past {JUDGE_SECONDS:g} s "
                                "(expressions too large?)") from None


def _verify_chain(of: str, texts: list[str], sides: list[Side], target: Side | None,
                  setting: Setting) -> ChainReport:
    steps = []
    previous = good = target
    for i, (text, current) in enumerate(zip(texts, sides)):
        current.label = f"step {i}"
        if previous is None:
            verdict = Verdict(GIVEN, "the starting expression")
        else:
            verdict = _judge_bounded(current, previous, setting)
            if verdict.status == "wrong" and good is not None and good is not previous \
                    and judge(current, good, setting).status != "wrong":
                verdict.explanation += f" (it agrees with {good.label}: the slip is in {previous.label})"
        if verdict.status != "wrong":
            good = current
        steps.append(StepReport(i, text, verdict))
        previous = current
    return ChainReport(of, steps)


def verify_spec(spec: Spec) -> StepsReport:
    """Verify the claims and chains of a layer declaration (derived once, memoized)."""
    if getattr(spec, "is_array", False):
        return _verify_array_spec(spec)
    claims, chains = verify_derivation(spec.derive())
    return StepsReport(spec.name, spec.source, claims, chains)


def _verify_array_spec(spec: Spec) -> StepsReport:
    """Array declarations: their claims are checked at small explicit shapes by the
    array checker; chains of array steps are not verified yet."""
    try:
        from .check_arrays import claims_check
    except ImportError:  # pragma: no cover - depends on the array work being present
        raise SpecError(f"{spec.source or spec.name}: array declarations cannot be verified step by step yet") from None
    claims = [ClaimReport(c["of"], c["claim"], Verdict(c["status"], "compared entry by entry at small shapes",
                                                       c.get("counterexample")))
              for c in claims_check(spec.derive())]
    notes = ["chains of array steps are not verified yet"] if spec.chains else []
    return StepsReport(spec.name, spec.source, claims, [], notes)


# -- standalone derivation files -----------------------------------------------------------------
@dataclass
class ChainText:
    """A chain of a standalone derivation file, as written."""

    of: str
    steps: list[str]
    constraints: list[str] = field(default_factory=list)
    at: dict[str, float] = field(default_factory=dict)
    tolerance: float | None = None


@dataclass
class HandDerivation:
    """A standalone derivation: names (declared and relaxed) and chains."""

    name: str
    source: str
    world: World
    relaxed: World | None
    chains: list[ChainText]


def load_derivation(path: str | Path, source: str | None = None) -> HandDerivation:
    """Load a standalone derivation file (DESIGN.md's second TOML example).

    Raises
    ------
    SpecError
        One line naming the file and the field.
    """
    path = Path(path)
    return derivation_from_toml(read_text(path), source or str(path))


def derivation_from_toml(text: str, source: str = "<toml>") -> HandDerivation:
    """Build a :class:`HandDerivation` from the text of a standalone derivation file."""
    return _FileLoader(parse_toml(text, source), source).load()


class _FileLoader(TomlLoader):
    """Reads one standalone derivation file."""

    def table(self, key: str) -> dict:
        value = self.doc.get(key, {})
        if not isinstance(value, dict):
            raise self.fail(key, "expected a table")
        return value

    def load(self) -> HandDerivation:
        self.known_fields(self.doc, _FILE_FIELDS)
        name = self.doc.get("name")
        if not isinstance(name, str) or not name:
            raise self.fail("name", "missing (every derivation has a name)")
        declared = self.table("symbols")
        world = self.world(declared, relaxed=False)
        relaxed = self.world(declared, relaxed=True) if _needs_relaxed(world) else None
        chains = self.chains()
        if not chains:
            raise self.fail("chains", "missing (a derivation has at least one [[chains]] table)")
        return HandDerivation(name, self.source, world, relaxed, chains)

    def world(self, declared: dict, relaxed: bool) -> World:
        symbols: dict[str, sympy.Symbol] = {}
        matrices: dict[str, sympy.MatrixBase] = {}
        for key, word in declared.items():
            where = f"symbols.{key}"
            if not is_identifier(key):
                raise self.fail(where, f"{key!r} cannot be a name")
            size = re.fullmatch(r"\s*matrix\s+(\d+)\s*x\s*(\d+)\s*", word) if isinstance(word, str) else None
            if size:
                rows, cols = int(size.group(1)), int(size.group(2))
                if not (1 <= rows <= MAX_MATRIX_SIDE and 1 <= cols <= MAX_MATRIX_SIDE):
                    raise self.fail(where, f"matrix sides must be between 1 and {MAX_MATRIX_SIDE}")
                matrices[key] = matrix_symbol(key, rows, cols)
            else:
                declared_kind = self.assumption(where, word, also=', or "matrix RxC"')
                symbols[key] = sympy.Symbol(key, **(ASSUMPTIONS["real"] if relaxed else declared_kind))
        world = World(symbols, {}, matrices)
        self.definitions(world)
        return world

    def definitions(self, world: World) -> None:
        table = self.table("definitions")
        for key in table:
            if not is_identifier(key) or key in world.symbols or key in world.matrices:
                raise self.fail(f"definitions.{key}", f"{key!r} cannot be defined (a declared symbol or not a name)")
            world.symbols[key] = sympy.Symbol(key, real=True)
        for key, text in table.items():
            try:
                value = world.parse(text)
                if isinstance(value, sympy.MatrixBase):
                    value = world.expand(value)
            except (ParseError, SpecError) as exc:
                raise self.fail(f"definitions.{key}", str(exc)) from None
            world.definitions[world.symbols[key]] = value
        for key in table:
            if isinstance(world.definitions[world.symbols[key]], sympy.MatrixBase):
                continue
            try:
                world.expand(world.symbols[key])
            except SpecError as exc:
                raise self.fail(f"definitions.{key}", str(exc)) from None
            except RecursionError:
                raise self.fail(f"definitions.{key}", "definitions refer to each other in a cycle") from None

    def chains(self) -> list[ChainText]:
        chains = self.doc.get("chains", [])
        if not isinstance(chains, list):
            raise self.fail("chains", "expected [[chains]] tables")
        out = []
        for i, chain in enumerate(chains):
            where, of, steps = self.chain_head(i, chain, _CHAIN_FIELDS, "dL/dx1", strings=True)
            constraints, at = self.chain_tail(where, chain)
            tolerance = chain.get("tolerance")
            if tolerance is not None and (isinstance(tolerance, bool) or not isinstance(tolerance, (int, float))
                                          or not 0 <= tolerance < float("inf")):
                raise self.fail(f"{where}.tolerance", "expected a non-negative number")
            out.append(ChainText(of, list(steps), list(constraints), dict(at),
                                 None if tolerance is None else float(tolerance)))
        return out


def verify_hand_derivation(d: HandDerivation) -> StepsReport:
    """Verify every chain of a standalone derivation: each step against the one before."""
    chains = []
    for i, chain in enumerate(d.chains):
        where = f"{d.source}: chains[{i}]"
        setting = _chain_setting(d.world, d.relaxed, chain.constraints, chain.at, chain.tolerance, where, seed=i + 1)
        sides = []
        for j, text in enumerate(chain.steps):
            try:
                value = bounded(lambda: d.world.expand(d.world.parse(text)), EXPAND_SECONDS)
                rel = bounded(lambda: d.relaxed.expand(d.relaxed.parse(text)), EXPAND_SECONDS) if d.relaxed else None
            except (ParseError, SpecError, DerivationTimeout) as exc:
                raise SpecError(f"{where}.steps[{j}]: {exc}") from None
            if setting.relaxed is d.world:  # constraints only: the same values, unconstrained
                rel = value
            sides.append(Side(value, rel, text))  # labelled by _verify_chain
        chains.append(_verify_chain(chain.of, chain.steps, sides, None, setting))
    return StepsReport(d.name, d.source, [], chains)


# -- one entry point -------------------------------------------------------------------------------
def is_standalone(doc: Mapping) -> bool:
    """A derivation file (no layer) has neither ``inputs`` nor ``forward``/``graph``."""
    return not any(k in doc for k in ("inputs", "forward", "graph"))


def verify(target: str | Path | Spec) -> StepsReport:
    """Verify hand work: a :class:`Spec`, or a SPEC argument (bundled name, layer
    ``.toml``, or standalone derivation ``.toml``).

    Raises
    ------
    SpecError, ParseError
        Bad input, one line naming the file and field.
    """
    if isinstance(target, Spec):
        return verify_spec(target)
    from . import catalog

    path = catalog.resolve(str(target))
    doc = parse_toml(read_text(path), str(path))
    if is_standalone(doc):
        return verify_hand_derivation(load_derivation(path))
    return verify_spec(catalog.load(str(target)))
