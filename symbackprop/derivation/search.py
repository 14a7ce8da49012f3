r"""The search for the cheapest form of one node's local derivatives.

For a node :math:`v = f(a_1, \dots, a_k)` we take the exact partial derivatives
:math:`\partial f / \partial a_i` with SymPy's ``diff``, then look for cheaper *forms*
written in values the forward pass has already computed.  Candidates come from one
mechanism, with no table of known derivatives:

1. the raw derivative, in the node's arguments;
2. literal substitution of the node's output and of its sub-expressions
   (``exp(-x)/(1 + exp(-x))**2`` becomes ``y**2*exp(-x)``);
3. inversion of the output (or a sub-expression) for an argument, one function atom
   at a time (``y = 1/(1 + exp(-x))`` gives ``x = -log(1/y - 1)``), substituted and
   tidied under a time bound (``y*(1 - y)``).

Each candidate is accepted only if it equals the raw derivative at many points
(mpmath, 40 digits) and is accurate in float64 in the tails.  Among accepted
candidates, and over the choice of caching a value or recomputing it in ``backward``,
the cheapest by the cost model (:mod:`symbackprop.derivation.cost`) wins.
"""
from __future__ import annotations

import itertools
import time
from collections.abc import Iterator, Sequence

import mpmath
import numpy as np
import sympy

from ..lang.functions import BY_CLASS
from ..numerics.equality import first_mismatch
from ..numerics.evaluate import Unsupported, float_function, mp_value
from ..numerics.kinks import book_convention
from ..spec.model import DOUT
from ..timebound import attempt
from .cost import arithmetic_cost, tree_cost
from .model import FLOAT_BYTES, MASK_BYTES, Cached, NodeDerivation

NOT_FINITE = (sympy.zoo, sympy.oo, -sympy.oo, sympy.nan)
#: Functions the generated code may call besides the table's rows.
_PRINTABLE = (sympy.Max, sympy.Min, sympy.Heaviside, sympy.Piecewise)
SECONDS_PER_TIDY = 1.0
SECONDS_PER_NODE = 4.0
#: Sample points at which each argument that may be 0 is set to 0 (:meth:`NodeSearch._zeros_where_defined`).
ZERO_POINTS = 3
#: At most this many branch-by-branch forms of a piecewise derivative.
BRANCH_FORMS = 16


def printable(expr: sympy.Basic) -> bool:
    """Can the generated code compute ``expr``: is every function in it a row of the table
    with a numpy spelling (or max, min, a step)?  A candidate with LambertW never is."""
    for f in expr.atoms(sympy.Function):
        row = BY_CLASS.get(type(f))
        if not (isinstance(f, _PRINTABLE) or (row is not None and (row.numpy is not None or row.name == "softplus"))):
            return False
    return True


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


def _subexpressions(expr: sympy.Expr, args: Sequence[sympy.Symbol], limit: int = 8) -> list[sympy.Expr]:
    """Sub-expressions of ``expr`` worth caching or recomputing: depend on an argument,
    are not an argument, are not ``expr`` itself, cost something."""
    out: list[sympy.Expr] = []
    for sub in sympy.preorder_traversal(expr):
        if (
            sub is not expr and sub not in args and isinstance(sub, sympy.Expr)
            and not sub.is_Atom and sub.free_symbols & set(args)
            and tree_cost(sub) > 0 and sub not in out
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


def _merged_conditions(expr: sympy.Expr) -> sympy.Expr:
    """Products of indicators ``where(c1, 1, 0)*where(c2, 1, 0)`` as ``where(c1 & c2, 1, 0)``:
    one mask instead of two (clip's gradient is 1 strictly inside its bounds, 0 elsewhere)."""

    def indicator(e: sympy.Basic) -> sympy.Basic | None:
        if isinstance(e, sympy.Piecewise) and len(e.args) == 2 and e.args[0][0] == 1 \
                and e.args[1][0] == 0 and e.args[1][1] == sympy.true:
            return e.args[0][1]
        return None

    def merge(m: sympy.Mul) -> sympy.Expr:
        conditions = [c for f in m.args if (c := indicator(f)) is not None]
        if len(conditions) < 2:
            return m
        rest = [f for f in m.args if indicator(f) is None]
        return sympy.Mul(*rest, sympy.Piecewise((1, sympy.And(*conditions)), (0, True)))

    return expr.replace(lambda e: isinstance(e, sympy.Mul), merge)


def _positive_lead(expr: sympy.Expr) -> sympy.Expr:
    """``-y*(y - 1)`` as ``y*(1 - y)``: absorb a leading minus into one sum."""
    if isinstance(expr, sympy.Mul) and expr.args[0] == -1:
        sums = [f for f in expr.args[1:] if isinstance(f, sympy.Add)]
        if sums:
            return sympy.Mul(*[(-f if f is sums[0] else f) for f in expr.args[1:]])
    return expr


class NodeSearch:
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
        # conditions on the node's output that test what a condition on its argument tests
        self.output_conditions: set[sympy.Basic] = set()

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
        found += self._branchwise(raw)
        found += [m for c in found if (m := _merged_conditions(c)) != c]
        found += [v for c in found if (v := self._on_output(c)) is not None]
        unique = list(dict.fromkeys(found))
        out: list[sympy.Expr] = []
        deadline = time.monotonic() + SECONDS_PER_NODE
        for cand in unique:
            variants = _tidy_variants(cand, self.notes) if time.monotonic() < deadline else [cand]
            for variant in variants:
                variant = self._masked(variant)
                if variant not in out and not variant.has(*NOT_FINITE) and printable(variant):
                    out.append(variant)
        if time.monotonic() >= deadline:
            self.notes.add(f"the search for cheaper forms stopped at its {SECONDS_PER_NODE:g} s bound "
                           "for one node; the best form found so far is used")
        zeros = self._zeros_where_defined(raw)
        return [c for c in out if self._equal(c, raw) and self._accurate(c, raw)
                and all(mp_value(c, env) is not None for env in zeros)]

    def _branchwise(self, raw: sympy.Expr) -> list[sympy.Expr]:
        """Forms of a piecewise derivative written, branch by branch, in the output: on the
        branch where ``y = exp(x) - 1``, ``exp(x)`` is ``y + 1`` (ELU's ``dout*(y + 1)``)."""
        expr = self.expr
        if not (isinstance(expr, sympy.Piecewise) and isinstance(raw, sympy.Piecewise)
                and [c for _, c in raw.args] == [c for _, c in expr.args]):
            return []
        options = []
        for (d, _), (v, _) in zip(raw.args, expr.args):
            forms, hole = [d], sympy.Dummy("hole")
            for sub in (v, *_subexpressions(v, self.args)):
                solution = invert(v.xreplace({sub: hole}), hole, self.symbol)
                if solution is not None:
                    forms.append(d.subs(sub, solution))
            options.append(list(dict.fromkeys(forms)))
        conditions = [c for _, c in raw.args]
        return [sympy.Piecewise(*zip(choice, conditions)) for choice in itertools.product(*options)][:BRANCH_FORMS]

    def _on_output(self, expr: sympy.Expr) -> sympy.Expr | None:
        """``expr`` with each branch condition on the argument replaced by the same test on
        the node's output, where there is one (ELU: ``x > 0`` is ``y > 0``), so that a backward
        from the cached output needs no input; None if no condition changes."""
        if not expr.has(sympy.Piecewise) or len(self.args) != 1:
            return None
        conditions = {c for p in expr.atoms(sympy.Piecewise) for _, c in p.args
                      if isinstance(c, sympy.core.relational.Relational)}
        swap = {c: o for c in conditions if (o := self._output_condition(c)) is not None}
        return expr.xreplace(swap) if swap else None

    def _output_condition(self, cond: sympy.Basic) -> sympy.Basic | None:
        """``y > f(c)`` for ``x > c`` (any of < <= > >=) when the two agree at every sample and
        tail point and at the float64 neighbours of ``c``, evaluated in float64 as the generated
        code evaluates them (``y`` by the forward)."""
        (arg,) = self.args
        if cond.lhs != arg or cond.rhs.free_symbols:
            return None
        boundary = self.expr.subs(arg, cond.rhs)
        if not boundary.is_real or not boundary.is_number:
            return None
        candidate = cond.func(self.symbol, boundary)
        c = float(cond.rhs)
        near = [c + k * np.spacing(max(abs(c), np.finfo(float).tiny)) for k in range(-4, 5)]
        xs = np.array([float(p[arg]) for p in (*self.points, *self.tails)] + near + [c - 1.0, c + 1.0])
        try:
            ys = np.asarray(float_function(self.expr, [arg])(xs), dtype=float) * np.ones(len(xs))
            before = np.asarray(float_function(cond, [arg])(xs), dtype=bool)
            after = np.asarray(float_function(candidate, [self.symbol])(ys), dtype=bool)
        except Unsupported:
            return None
        if not np.array_equal(before, after):
            return None
        self.output_conditions.add(candidate)
        return candidate

    def _float_env(self) -> dict:
        """float64 values of the arguments, anchors and masks at the tail points."""
        if self._tails_env is None:
            env = {a: np.array([float(p[a]) for p in self.tails]) for a in self.args}
            args = [env[a] for a in self.args]
            for anchor, value in self.anchors.items():
                env[anchor] = _float_values(value, self.args, args, len(self.tails))
            self._tails_env = env
        env = dict(self._tails_env)
        for cond, mask in self.masks.items():
            symbols = sorted(cond.free_symbols, key=lambda s: s.name)
            value = float_function(cond, symbols)(*[env[s] for s in symbols])
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
        try:
            got = np.asarray(float_function(cand, symbols)(*[env[s] for s in symbols]), dtype=float) \
                * np.ones(len(self.tails))
        except Unsupported:
            return False
        # a reference float64 can hold must be met: a form that overflows where the raw
        # derivative does not (sinh's sqrt(1 + y**2) at x = 700) is rejected
        ref = np.array([float(v) if v is not None else np.nan for v in (mp_value(raw, p) for p in self.tails)])
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
            if cond not in self.output_conditions:
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
            env[anchor] = point.get(anchor) if anchor in point else mp_value(value, point)
        for cond, mask in self.masks.items():
            value = mp_value(cond, env)
            env[mask] = None if value is None else bool(value)
        return env

    def _equal(self, cand: sympy.Expr, raw: sympy.Expr) -> bool:
        if cand == raw:
            return True
        envs = [self._env(p) for p in self.points]
        envs = [e for e in envs if all(v is not None for v in e.values())]
        mismatch, used = first_mismatch(cand, raw, envs)
        return mismatch is None and used >= max(3, len(envs) // 2)

    def _zeros_where_defined(self, raw: sympy.Expr) -> list[dict]:
        """Points where an argument that may be 0 is 0 and ``raw`` is defined: random points
        never hit such a set, and inputs do (a batch of one centres ``x - mu`` to exactly 0).
        A form must be defined there too: batch normalization's ``1/std`` written ``xn/xc``
        would be 0/0."""
        envs = [self._env({**{a: p[a] for a in self.args}, arg: mpmath.mpf(0)})
                for arg in self.args if not arg.is_nonzero for p in self.points[:ZERO_POINTS]]
        return [env for env in envs if mp_value(raw, env) is not None]

    def helper_of(self, atom: sympy.Symbol) -> Cached | None:
        if atom in self.anchors and atom != self.symbol:
            return Cached(atom, self.anchors[atom])
        for cond, mask in self.masks.items():
            if mask == atom:
                return Cached(atom, cond, mask=True)
        return None


def _choose(search: NodeSearch, per_arg: dict[sympy.Symbol, list[sympy.Expr]]):
    """Pick one candidate per argument and what to cache: memory first, then arithmetic."""
    best = None
    for combo in itertools.product(*per_arg.values()):
        atoms = set().union(*(c.free_symbols for c in combo)) - {DOUT}
        # a symbol with no definition here (a constant of the declaration, such as targets t)
        # is stored as it is, like an argument
        given = {a for a in atoms if a in search.args or (a not in search.anchors and search.helper_of(a) is None)}
        optional = sorted(atoms - given, key=lambda s: s.name)
        for cached_flags in itertools.product((True, False), repeat=len(optional)):
            cached = {a for a, keep in zip(optional, cached_flags) if keep}
            recomputed = [a for a in optional if a not in cached]
            needed_args = set(given)
            arithmetic = sum(arithmetic_cost(c) for c in combo)
            if any(search.symbol not in cached and search.helper_of(a).expr.has(search.symbol)
                   for a in optional if a in search.masks.values()):
                continue  # a mask tested on the output needs the output kept, and is never kept itself
            for a in recomputed:
                definition = search.anchors.get(a)
                if definition is None:
                    helper = search.helper_of(a)
                    definition = helper.expr
                needed_args |= definition.free_symbols & set(search.args)
                arithmetic += tree_cost(definition)
            memory = FLOAT_BYTES * len(needed_args) + sum(
                MASK_BYTES if (h := search.helper_of(a)) is not None and h.mask else FLOAT_BYTES for a in cached
            )
            # a cached helper is extra work for forward (the output and inputs are free)
            arithmetic += sum(tree_cost(h.expr) for a in cached if (h := search.helper_of(a)) is not None)
            key = (memory, arithmetic, sum(len(str(c)) for c in combo), [str(c) for c in combo],
                   sorted(a.name for a in cached))
            if best is None or key < best[0]:
                best = (key, combo, cached, recomputed, needed_args)
    return best


def derive_node(symbol: sympy.Symbol, expr: sympy.Expr, args: tuple[sympy.Symbol, ...],
                points: list[dict], tails: list[dict], names: set[str],
                notes: set[str]) -> tuple[NodeDerivation, set, list]:
    """Derive one node; return it with the symbols it caches and the helpers it recomputes."""
    search = NodeSearch(symbol, expr, args, points, tails, names, notes)
    raw = {a: book_convention(sympy.diff(expr, a), notes) for a in args}
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
        if helper is None and atom == symbol and atom in recomputed:  # the output itself, recomputed
            helper = Cached(atom, expr)
        if helper is not None:
            helpers[atom] = helper
    cache_syms = set(needed_args) | set(cached)
    return NodeDerivation(symbol, expr, args, raw, local, helpers), cache_syms, recomputed


def _float_values(expr: sympy.Expr, symbols: tuple, values: list, n: int) -> np.ndarray:
    """``expr`` in float64 at ``n`` points; nan where numpy cannot compute it."""
    try:
        return np.asarray(float_function(expr, symbols)(*values), dtype=float) * np.ones(n)
    except Unsupported:
        return np.full(n, np.nan)
