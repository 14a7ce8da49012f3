r"""Derivation: local derivatives, the backward pass, and what to cache.

For every node :math:`v = f(a_1, \dots, a_k)` of a declaration's graph we take the
exact partial derivatives :math:`\partial f / \partial a_i` with SymPy's ``diff``,
then look for a cheaper *form* of each one, written in values the forward pass has
already computed.  Candidates come from one mechanism, with no table of known
derivatives:

1. the raw derivative, in the node's arguments;
2. literal substitution of the node's output and of its sub-expressions
   (``exp(-x)/(1 + exp(-x))**2`` becomes ``y**2*exp(-x)``);
3. inversion of the output (or a sub-expression) for an argument, one function atom
   at a time (``y = 1/(1 + exp(-x))`` gives ``x = -log(1/y - 1)``), substituted and
   tidied under a time bound (``y*(1 - y)``).

Each candidate is accepted only if it equals the raw derivative at many points
(mpmath, 40 digits).  Among accepted candidates, and over the choice of caching a
value or recomputing it in ``backward``, we take the cheapest by a cost model:
bytes cached per element first (a float is 8, a boolean mask 1), then weighted
arithmetic (``exp``, ``log``, ``tanh`` cost about 10 multiplications).

The backward pass is reverse accumulation over the declared nodes:
:math:`\bar a_i \mathrel{+}= \bar v \, \partial f / \partial a_i`, with
:math:`\bar y = \text{dout}`.
"""
from __future__ import annotations

import itertools
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import sympy

from .equality import first_mismatch
from .npprint import numpy_function
from .errors import SpecError
from .spec import DOUT, Spec
from .timebound import attempt

if TYPE_CHECKING:  # pragma: no cover
    from .check import CheckReport

#: Weighted cost of one call of each function, in multiplications.
FUNCTION_COST = {
    sympy.exp: 10, sympy.log: 10, sympy.tanh: 10, sympy.sinh: 10, sympy.cosh: 10,
    sympy.sin: 10, sympy.cos: 10, sympy.tan: 10, sympy.atan: 10, sympy.asinh: 10,
    sympy.atanh: 10, sympy.erf: 10, sympy.Abs: 1, sympy.sign: 1, sympy.Max: 1, sympy.Min: 1,
}
#: Functions numpy lacks: a candidate using them is never chosen.
UNPRINTABLE = (sympy.LambertW, sympy.erfinv, sympy.polylog, sympy.RootOf)
NOT_FINITE = (sympy.zoo, sympy.oo, -sympy.oo, sympy.nan)
DIVISION_COST = 4
SQRT_COST = 5
GENERIC_POWER_COST = 20
FLOAT_BYTES, MASK_BYTES = 8, 1

SECONDS_PER_TIDY = 1.0
SECONDS_PER_NODE = 4.0
SAMPLE_POINTS = 12


# -- results -----------------------------------------------------------------------
@dataclass(frozen=True)
class Cached:
    """A value computed in ``forward`` for ``backward``: ``name = expr`` (a mask is boolean)."""

    symbol: sympy.Symbol
    expr: sympy.Expr | sympy.Basic
    mask: bool = False

    @property
    def bytes_per_element(self) -> int:
        return MASK_BYTES if self.mask else FLOAT_BYTES


@dataclass
class NodeDerivation:
    """Derivatives of one node ``symbol = expr`` with respect to its arguments.

    ``local[a]`` is the chosen form of ``∂expr/∂a``, written in the node's arguments,
    its output, and the helper values in ``helpers`` (masks and sub-expressions),
    each either cached by ``forward`` or recomputed in ``backward``.
    """

    symbol: sympy.Symbol
    expr: sympy.Expr
    args: tuple[sympy.Symbol, ...]
    raw: dict[sympy.Symbol, sympy.Expr]
    local: dict[sympy.Symbol, sympy.Expr]
    helpers: dict[sympy.Symbol, Cached]
    #: array nodes: each argument's gradient as an expression in ``upstream`` (a VJP)
    pullback: dict[sympy.Symbol, sympy.Expr] | None = None
    upstream: sympy.Symbol | None = None

    def contribution(self, arg: sympy.Symbol, grad: sympy.Expr) -> sympy.Expr:
        """What this node adds to ``arg``'s gradient, given its own gradient ``grad``."""
        if self.pullback is not None:
            return self.pullback[arg].xreplace({self.upstream: grad})
        return grad * self.local[arg]


@dataclass
class Derivation:
    """Everything derived from one :class:`~symbackprop.spec.Spec`.

    Attributes
    ----------
    local : dict
        ``∂y/∂x`` for every input name, in cached values (``y*(1 - y)``).
    backward : dict
        ``dout * ∂y/∂x`` accumulated over the graph, for every input name.
    cache : list of Cached
        What ``forward`` stores, in order.
    recompute : list of Cached
        Helper values ``backward`` recomputes from the cache.
    steps : list of (Symbol, Expr)
        The backward pass as statements ``d<name> = ...``, node by node.
    raw_local : dict
        ``∂y/∂x`` straight from SymPy's ``diff`` of the whole forward, in the inputs.
    notes : list of str
        Conventions and fallbacks (a kink's gradient at 0, a simplification that
        ran out of time and kept the unsimplified form).
    """

    spec: Spec
    nodes: list[NodeDerivation]
    cache: list[Cached]
    recompute: list[Cached]
    steps: list[tuple[sympy.Symbol, sympy.Expr]]
    local: dict[str, sympy.Expr]
    backward: dict[str, sympy.Expr]
    raw_local: dict[str, sympy.Expr]
    notes: list[str] = field(default_factory=list)
    dout: sympy.Symbol = DOUT
    dims_used: list[sympy.Symbol] = field(default_factory=list)
    _compiled: type | None = field(default=None, repr=False)

    @property
    def cache_names(self) -> list[str]:
        return [c.symbol.name for c in self.cache]

    @property
    def definitions(self) -> dict[sympy.Symbol, sympy.Expr]:
        """Every cached or helper symbol as an expression in the inputs."""
        env = dict(self.spec.expanded())
        for c in (*self.cache, *self.recompute):
            env[c.symbol] = c.expr.xreplace(env)
        return env

    def generate(self, **options) -> str:
        """Source of the numpy layer class (see :func:`symbackprop.codegen.generate`)."""
        from .codegen import generate

        return generate(self, **options)

    def compile(self, backend: str = "numpy") -> type:
        """The generated class, compiled in memory (memoized per backend)."""
        from .codegen import compile_class

        if backend != "numpy":
            from .fused import memoized

            return memoized(self, backend, lambda: compile_class(self, backend=backend))
        if self._compiled is None:
            self._compiled = compile_class(self)
        return self._compiled

    def check(self, **options) -> CheckReport:
        return self.spec.check(**options)

    def _repr_latex_(self) -> str:
        """How a derivation shows in Jupyter: typeset (see :mod:`symbackprop.explain.latex`)."""
        from .explain.latex import derivation_latex

        return derivation_latex(self)

    def readable(self, expr: sympy.Expr, standalone: bool = True) -> str:
        """``expr`` in the parser's syntax, boolean masks written as their comparisons
        (``where(x > 0, dout, 0)``).  ``standalone``: helpers that ``backward`` recomputes
        are written out too, so that the text uses cached values only and parses back."""
        from .parsing import format_expression

        inline = {c.symbol: c.expr for c in (*self.cache, *self.recompute) if c.mask}
        if standalone:
            inline.update({c.symbol: c.expr for c in self.recompute})
        expr = expr.xreplace(inline).xreplace(inline)
        fold = expr.has(sympy.Piecewise) and not self.spec.is_array  # where() of matrices reads badly
        return format_expression(sympy.piecewise_fold(expr) if fold else expr)

    def to_json(self) -> dict:
        """The ``derive --json`` record (DESIGN.md); expressions in the parser's syntax."""
        from .parsing import format_expression

        spec = self.spec
        return {
            "name": spec.name,
            "inputs": list(spec.input_names),
            "outputs": [spec.output.name],
            "forward": {spec.output.name: format_expression(spec.forward)},
            "graph": {n.name: format_expression(e) for n, e in spec.graph},
            "local": {k: self.readable(v) for k, v in self.local.items()},
            "backward": {k: self.readable(v) for k, v in self.backward.items()},
            "cache": self.cache_names,
            "cache_definitions": {c.symbol.name: format_expression(c.expr) for c in self.cache},
            "recompute": {c.symbol.name: self.readable(c.expr) for c in self.recompute},
            "notes": list(self.notes),
        }


# -- the cost model ------------------------------------------------------------------
def arithmetic_cost(expr: sympy.Basic) -> int:
    """Weighted operation count after common-subexpression elimination."""
    replacements, reduced = sympy.cse(expr, order="none")
    return sum(_tree_cost(e) for _, e in replacements) + sum(_tree_cost(e) for e in reduced)


def _tree_cost(e: sympy.Basic) -> int:
    if e.is_Atom or not e.args:
        return 0
    if isinstance(e, sympy.Add):
        return len(e.args) - 1 + sum(_tree_cost(a) for a in e.args)
    if isinstance(e, sympy.Mul):
        num, den = e.as_numer_denom() if not e.has(sympy.Piecewise) else (e, sympy.S.One)
        if den != 1:
            return DIVISION_COST + _tree_cost(num) + _tree_cost(den)
        coeff, factors = e.as_coeff_mul()
        return (len(factors) - 1) + (coeff != 1) + sum(_tree_cost(f) for f in factors)
    if isinstance(e, sympy.Pow):
        base, ex = e.args
        inner = _tree_cost(base)
        if ex == sympy.S.Half:
            return inner + SQRT_COST
        if ex == -sympy.S.Half:
            return inner + SQRT_COST + DIVISION_COST
        if ex.is_Integer:
            n = abs(int(ex))
            return inner + max(1, 2 * int(np.log2(n))) - (n == 1) + (DIVISION_COST if ex < 0 else 0)
        return inner + _tree_cost(ex) + GENERIC_POWER_COST
    if isinstance(e, sympy.Piecewise):
        return 2 + sum(_tree_cost(v) + _tree_cost(c) for v, c in e.args)
    if isinstance(e, sympy.core.relational.Relational):
        return 1 + sum(_tree_cost(a) for a in e.args)
    weight = FUNCTION_COST.get(e.func, GENERIC_POWER_COST)
    return weight + sum(_tree_cost(a) for a in e.args)


# -- candidates ----------------------------------------------------------------------
def invert(expr: sympy.Expr, var: sympy.Symbol, value: sympy.Expr) -> sympy.Expr | None:
    """Solve ``value = expr`` for ``var`` by peeling one function atom at a time.

    Works where ``var`` occurs once: ``1/(1 + exp(-x)) = y`` gives
    ``x = -log(1/y - 1)``.  Returns None where a step has no inverse.  The branch
    taken may be wrong for part of the domain; candidates built from it are
    verified numerically before use.
    """
    while expr != var:
        if expr.count(var) != 1:
            return None
        if isinstance(expr, (sympy.Add, sympy.Mul)):
            inner = [a for a in expr.args if a.has(var)][0]
            rest = expr.func(*[a for a in expr.args if a is not inner])
            value = value - rest if isinstance(expr, sympy.Add) else value / rest
            expr = inner
        elif isinstance(expr, sympy.Pow):
            base, ex = expr.args
            if base.has(var) and not ex.has(var):
                value, expr = value ** (1 / ex), base
            elif ex.has(var) and not base.has(var):
                value, expr = sympy.log(value) / sympy.log(base), ex
            else:
                return None
        elif isinstance(expr, sympy.Function) and len(expr.args) == 1:
            try:
                value, expr = expr.inverse()(value), expr.args[0]
            except (AttributeError, TypeError, NotImplementedError):
                return None
        else:
            return None
    return value


def _kink_free(expr: sympy.Expr, notes: set[str]) -> sympy.Expr:
    """Write kinks the book's way: a step ``Heaviside(u)`` is 1 for ``u > 0``, else 0."""

    def step(u, *h0):
        notes.add("the gradient at a kink is taken as 0 there (the book's convention: ReLU'(0) = 0)")
        return sympy.Piecewise((1, u > 0), (0, True))

    expr = expr.replace(sympy.Heaviside, step)
    if expr.has(sympy.DiracDelta):
        notes.add("point masses (DiracDelta) of a step's derivative are dropped: zero almost everywhere")
        expr = expr.replace(sympy.DiracDelta, lambda *a: sympy.S.Zero)
    return expr


def _subexpressions(expr: sympy.Expr, args: Sequence[sympy.Symbol], limit: int = 8) -> list[sympy.Expr]:
    """Sub-expressions of ``expr`` worth caching or recomputing: depend on an argument,
    are not an argument, are not ``expr`` itself, cost something."""
    out: list[sympy.Expr] = []
    for sub in sympy.preorder_traversal(expr):
        if (
            sub is not expr and sub not in args and isinstance(sub, sympy.Expr)
            and not sub.is_Atom and sub.free_symbols & set(args)
            and _tree_cost(sub) > 0 and sub not in out
            and not (isinstance(sub, sympy.Mul) and sub.args[0] == -1 and len(sub.args) == 2)
        ):
            out.append(sub)
    return out[:limit]


def _tidy_variants(expr: sympy.Expr, notes: set[str]) -> Iterator[sympy.Expr]:
    """The expression and bounded rewrites of it (``factor``, ``cancel``, ...)."""
    yield expr
    # No simplify(): slow, erratic (sigmoid' becomes 1/(4*cosh(x/2)**2)), and its run time
    # would make the chosen form depend on the machine's speed.
    for name, rewrite in (("factor", sympy.factor), ("cancel", sympy.cancel), ("expand", sympy.expand)):
        value, finished = attempt(lambda: rewrite(expr), None, SECONDS_PER_TIDY)
        if not finished:
            notes.add(f"{name} ran past its {SECONDS_PER_TIDY:g} s bound on one candidate; kept the other forms")
            continue
        if value is not None and value != expr:
            yield value
            yield _positive_lead(value)


def _positive_lead(expr: sympy.Expr) -> sympy.Expr:
    """``-y*(y - 1)`` as ``y*(1 - y)``: absorb a leading minus into one sum."""
    if isinstance(expr, sympy.Mul) and expr.args[0] == -1:
        sums = [f for f in expr.args[1:] if isinstance(f, sympy.Add)]
        if sums:
            return sympy.Mul(*[(-f if f is sums[0] else f) for f in expr.args[1:]])
    return expr


class _NodeSearch:
    """The search for the cheapest form of one node's local derivatives."""

    def __init__(self, symbol: sympy.Symbol, expr: sympy.Expr, args: tuple[sympy.Symbol, ...],
                 points: list[dict], tails: list[dict], names: set[str], notes: set[str]):
        self.symbol, self.expr, self.args = symbol, expr, args
        self.points, self.tails, self.names, self.notes = points, tails, names, notes
        self._tails_env: dict | None = None
        # anchors: a symbol standing for a value, and its expression in the args
        self.anchors: dict[sympy.Symbol, sympy.Expr] = {symbol: expr}
        for sub in _subexpressions(expr, args):
            self.anchors[self._fresh("t")] = sub
        self.masks: dict[sympy.Basic, sympy.Symbol] = {}

    def _fresh(self, stem: str) -> sympy.Symbol:
        for i in itertools.count():
            name = stem if i == 0 else f"{stem}{i}"
            if name not in self.names and f"d{name}" not in self.names:
                self.names.add(name)
                return sympy.Symbol(name, real=True)
        raise AssertionError  # pragma: no cover

    def candidates(self, raw: sympy.Expr) -> list[sympy.Expr]:
        """Every accepted form of ``raw``: equal at the sample points (mpmath) and
        accurate in float64 at the tails."""
        found: list[sympy.Expr] = [raw]
        for anchor, value in self.anchors.items():
            literal = raw.subs(value, anchor)
            found.append(literal)
            for var in self.args:
                solution = invert(value, var, anchor)
                if solution is not None:
                    found += [raw.subs(var, solution), literal.subs(var, solution)]
            for inner, inner_value in self.anchors.items():
                # a smaller anchor written in this one: exp(-x) = 1/s - 1 when s = 1/(1 + exp(-x))
                if inner != anchor and value.has(inner_value) and value != inner_value:
                    hole = sympy.Dummy("hole")
                    solution = invert(value.xreplace({inner_value: hole}), hole, anchor)
                    if solution is not None:
                        found.append(literal.subs(inner_value, solution))
        unique = list(dict.fromkeys(found))
        out: list[sympy.Expr] = []
        deadline = time.monotonic() + SECONDS_PER_NODE
        for cand in unique:
            variants = _tidy_variants(cand, self.notes) if time.monotonic() < deadline else [cand]
            for variant in variants:
                variant = self._masked(variant)
                if variant not in out and not variant.has(*UNPRINTABLE, *NOT_FINITE):
                    out.append(variant)
        if time.monotonic() >= deadline:
            self.notes.add(f"the search for cheaper forms stopped at its {SECONDS_PER_NODE:g} s bound "
                           "for one node; the best form found so far is used")
        return [c for c in out if self._equal(c, raw) and self._accurate(c, raw)]

    def _float_env(self) -> dict:
        """float64 values of the arguments, anchors and masks at the tail points."""
        if self._tails_env is None:
            env = {a: np.array([float(p[a]) for p in self.tails]) for a in self.args}
            args = [env[a] for a in self.args]
            for anchor, value in self.anchors.items():
                env[anchor] = np.asarray(numpy_function(value, self.args)(*args), dtype=float) * np.ones(len(self.tails))
            self._tails_env = env
        env = dict(self._tails_env)
        for cond, mask in self.masks.items():
            symbols = sorted(cond.free_symbols, key=lambda s: s.name)
            value = numpy_function(cond, symbols)(*[env[s] for s in symbols])
            env[mask] = np.asarray(value, dtype=bool) * np.ones(len(self.tails), bool)
        return env

    def _accurate(self, cand: sympy.Expr, raw: sympy.Expr) -> bool:
        """Does ``cand`` give the right float64 numbers in the tails (``|x|`` to 1e3)?

        Error allowed: ``1e-8`` relative, plus ``1e-12`` of the derivative's largest
        magnitude (``y*(1 - y)`` at ``x = 40`` is 0 instead of 4e-18, which is fine
        for backpropagation; ``inf/inf`` is not)."""
        if not self.tails:
            return True
        env = self._float_env()
        symbols = sorted(cand.free_symbols, key=lambda s: s.name)
        if any(s not in env for s in symbols):
            return False
        got = np.asarray(numpy_function(cand, symbols)(*[env[s] for s in symbols]), dtype=float) \
            * np.ones(len(self.tails))
        ref = np.array([float(v) if v is not None and abs(v) < 1e300 else np.nan
                        for v in (_mp_value(raw, p) for p in self.tails)])
        usable = np.isfinite(ref)
        scale = np.max(np.abs(ref[usable]), initial=0.0)
        error = np.abs(got[usable] - ref[usable])
        return bool(np.all(error <= 1e-8 * np.abs(ref[usable]) + 1e-12 * scale))

    def _masked(self, expr: sympy.Expr) -> sympy.Expr:
        """Replace each comparison inside a Piecewise by a boolean mask symbol."""
        if not expr.has(sympy.Piecewise):
            return expr

        def mask_of(cond):
            if cond == sympy.true or isinstance(cond, sympy.Symbol):
                return cond
            cond = cond.xreplace(self.anchors)  # masks are computed from the arguments
            if cond not in self.masks:
                self.masks[cond] = self._fresh("mask")
            return self.masks[cond]

        return expr.replace(
            lambda e: isinstance(e, sympy.Piecewise),
            lambda e: sympy.Piecewise(*[(v, mask_of(c)) for v, c in e.args]),
        )

    def _env(self, point: dict) -> dict:
        env = {a: point[a] for a in self.args}
        for anchor, value in self.anchors.items():
            env[anchor] = point.get(anchor) if anchor in point else _mp_value(value, point)
        for cond, mask in self.masks.items():
            value = _mp_value(cond, env)
            env[mask] = None if value is None else bool(value)
        return env

    def _equal(self, cand: sympy.Expr, raw: sympy.Expr) -> bool:
        if cand == raw:
            return True
        envs = [self._env(p) for p in self.points]
        envs = [e for e in envs if all(v is not None for v in e.values())]
        mismatch, used = first_mismatch(cand, raw, envs)
        return mismatch is None and used >= max(3, len(envs) // 2)

    def helper_of(self, atom: sympy.Symbol) -> Cached | None:
        if atom in self.anchors and atom != self.symbol:
            return Cached(atom, self.anchors[atom])
        for cond, mask in self.masks.items():
            if mask == atom:
                return Cached(atom, cond, mask=True)
        return None


def _mp_value(expr: sympy.Basic, point: dict):
    from .equality import evaluate, mp_function

    symbols = sorted(expr.free_symbols, key=lambda s: s.name)
    if any(s not in point for s in symbols):
        return None
    value = evaluate(mp_function(expr, symbols), [point[s] for s in symbols])
    if value is None or (hasattr(value, "imag") and value.imag):
        return None
    return value.real if hasattr(value, "real") else value


def _choose(search: _NodeSearch, per_arg: dict[sympy.Symbol, list[sympy.Expr]]):
    """Pick one candidate per argument and what to cache: memory first, then arithmetic."""
    best = None
    for combo in itertools.product(*per_arg.values()):
        atoms = set().union(*(c.free_symbols for c in combo)) - {DOUT}
        optional = sorted(atoms - set(search.args), key=lambda s: s.name)
        for cached_flags in itertools.product((True, False), repeat=len(optional)):
            cached = {a for a, keep in zip(optional, cached_flags) if keep}
            recomputed = [a for a in optional if a not in cached]
            needed_args = atoms & set(search.args)
            arithmetic = sum(arithmetic_cost(c) for c in combo)
            for a in recomputed:
                definition = search.anchors.get(a)
                if definition is None:
                    helper = search.helper_of(a)
                    definition = helper.expr
                needed_args |= definition.free_symbols & set(search.args)
                arithmetic += _tree_cost(definition)
            memory = FLOAT_BYTES * len(needed_args) + sum(
                MASK_BYTES if (h := search.helper_of(a)) is not None and h.mask else FLOAT_BYTES for a in cached
            )
            # a cached helper is extra work for forward (the output and inputs are free)
            arithmetic += sum(_tree_cost(h.expr) for a in cached if (h := search.helper_of(a)) is not None)
            key = (memory, arithmetic, sum(len(str(c)) for c in combo), [str(c) for c in combo],
                   sorted(a.name for a in cached))
            if best is None or key < best[0]:
                best = (key, combo, cached, recomputed, needed_args)
    return best


def derive_node(symbol: sympy.Symbol, expr: sympy.Expr, args: tuple[sympy.Symbol, ...],
                points: list[dict], tails: list[dict], names: set[str],
                notes: set[str]) -> tuple[NodeDerivation, set, list]:
    """Derive one node; return it with the symbols it caches and the helpers it recomputes."""
    search = _NodeSearch(symbol, expr, args, points, tails, names, notes)
    raw = {a: _kink_free(sympy.diff(expr, a), notes) for a in args}
    per_arg = {}
    for a in args:
        found = search.candidates(raw[a])
        masked_raw = search._masked(raw[a])
        per_arg[a] = found or [masked_raw]
    _, combo, cached, recomputed, needed_args = _choose(search, per_arg)
    local = dict(zip(args, combo))
    helpers = {}
    for atom in (*sorted(cached, key=lambda s: s.name), *recomputed):
        helper = search.helper_of(atom)
        if helper is not None:
            helpers[atom] = helper
    cache_syms = set(needed_args) | set(cached)
    return NodeDerivation(symbol, expr, args, raw, local, helpers), cache_syms, recomputed


def sample_points(spec: Spec, n: int = SAMPLE_POINTS, seed: int = 0) -> list[dict]:
    """Random points for candidate verification: inputs drawn from their domain and
    every graph value computed from them (mpmath, 40 digits)."""
    import mpmath

    rng = np.random.default_rng(seed)
    points = []
    with mpmath.workdps(40):
        for _ in range(n * 3):
            point: dict = {}
            for s in spec.inputs:
                domain = spec.domain(s)
                if domain == "real":
                    v = rng.uniform(-4, 4)
                else:
                    v = float(np.exp(rng.uniform(-3, 3))) * (1 if domain == "positive" else -1)
                point[s] = mpmath.mpf(repr(float(v)))
            if _with_graph_values(spec, point):
                points.append(point)
            if len(points) == n:
                break
    return points


def _with_graph_values(spec: Spec, point: dict) -> bool:
    """Add every graph value at ``point`` (mpmath); False where one is undefined."""
    for name, expr in spec.graph:
        value = _mp_value(expr, point)
        if value is None:
            return False
        point[name] = value
    return True


#: Input values where float64 accuracy of a candidate is judged.
TAILS = {
    "real": (-1000.0, -700.0, -100.0, -30.0, -5.0, -0.5, -1e-3, 1e-3, 0.5, 5.0, 30.0, 100.0, 700.0, 1000.0),
    "positive": (1e-8, 1e-3, 0.1, 0.5, 2.0, 5.0, 30.0, 100.0, 700.0, 1000.0),
}
TAILS["negative"] = tuple(-v for v in TAILS["positive"])


def tail_points(spec: Spec) -> list[dict]:
    """Points in the tails of every input's domain (inputs rotated against each other),
    with every graph value computed in mpmath; points where a value is undefined are dropped."""
    import mpmath

    points = []
    with mpmath.workdps(40):
        for k in range(len(TAILS["real"])):
            point: dict = {}
            for i, s in enumerate(spec.inputs):
                values = TAILS[spec.domain(s)]
                point[s] = mpmath.mpf(values[(k + 5 * i) % len(values)])
            if _with_graph_values(spec, point):
                points.append(point)
    return points


def derive(spec: Spec) -> Derivation:
    """Derive a declaration: see the module docstring."""
    if spec.is_array:
        from .derive_arrays import derive_arrays

        return derive_arrays(spec)
    notes: set[str] = set()
    names = {s.name for s in spec.inputs} | {n.name for n, _ in spec.graph} | {DOUT.name}
    names |= {f"d{n}" for n in list(names)}
    points = sample_points(spec)
    tails = tail_points(spec)
    if len(points) < 3:
        raise SpecError(f"{spec.source or spec.name}: the forward pass is undefined almost everywhere "
                        "on the inputs' domain (declare e.g. [symbols] x = \"positive\")")
    graph_names = [n for n, _ in spec.graph]
    nodes, cache_syms, recompute = [], set(), []
    for symbol, expr in spec.graph:
        args = tuple(s for s in (*spec.inputs, *graph_names) if s in expr.free_symbols)
        node, cached, recomputed = derive_node(symbol, expr, args, points, tails, names, notes)
        nodes.append(node)
        cache_syms |= cached
        recompute += [node.helpers[a] for a in recomputed if a in node.helpers]
    cache = _cache_list(spec, nodes, cache_syms)
    steps, backward = _reverse_accumulate(spec, nodes)
    local = {k: _simplest(v.subs(DOUT, 1)) for k, v in backward.items()}
    raw_local = {s.name: _kink_free(sympy.diff(spec.forward, s), notes) for s in spec.inputs}
    return Derivation(spec, nodes, cache, recompute, steps, local, backward, raw_local, sorted(notes))


def _cache_list(spec: Spec, nodes: list[NodeDerivation], cache_syms: set) -> list[Cached]:
    """Cached values in a stable order: inputs, graph values, then helpers."""
    order: list[Cached] = []
    for s in spec.inputs:
        if s in cache_syms:
            order.append(Cached(s, s))
    for symbol, expr in spec.graph:
        if symbol in cache_syms:
            order.append(Cached(symbol, expr))
    for node in nodes:
        for atom, helper in node.helpers.items():
            if atom in cache_syms:
                order.append(helper)
    return order


def _grad_symbol(s: sympy.Symbol) -> sympy.Symbol:
    return type(s)(f"d{s.name}", real=True)


def _reverse_accumulate(spec: Spec, nodes: list[NodeDerivation], dout: sympy.Symbol = DOUT,
                        tidy=None):
    """Statements ``d<name> = ...`` from the output back to the inputs (and parameters),
    and the flattened backward expression of each."""
    tidy = tidy or (lambda e: e)
    contributions: dict[sympy.Symbol, list[sympy.Expr]] = {}
    steps: list[tuple[sympy.Symbol, sympy.Expr]] = []
    flat: dict[sympy.Symbol, sympy.Expr] = {}
    for index, node in enumerate(reversed(nodes)):
        if index == 0:
            grad = dout
        elif node.symbol in contributions:
            grad = _grad_symbol(node.symbol)
            steps.append((grad, tidy(sympy.Add(*contributions[node.symbol]))))
            flat[grad] = steps[-1][1].xreplace(flat)
        else:
            continue  # a dead node: nothing downstream uses it
        for a in node.args:
            contributions.setdefault(a, []).append(node.contribution(a, grad))
    backward = {}
    for s in spec.differentiated:
        expr = tidy(sympy.Add(*contributions.get(s, [sympy.S.Zero])))
        g = _grad_symbol(s)
        steps.append((g, expr))
        backward[s.name] = _simplest(tidy(expr.xreplace(flat)))
    return steps, backward


def _simplest(expr: sympy.Expr) -> sympy.Expr:
    """Flattened expressions stay as accumulated; only pull common factors when cheaper."""
    factored, ok = attempt(lambda: sympy.factor_terms(expr), expr, SECONDS_PER_TIDY)
    return factored if ok and arithmetic_cost(factored) < arithmetic_cost(expr) else expr
