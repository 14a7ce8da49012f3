r"""Judging hand work: one step of a derivation against another, or a claim against its target.

Two sources of hand work are judged (:mod:`symbackprop.verify.claims`):

* the ``[claims]`` and ``[[chains]]`` of a layer declaration, against its
  :class:`~symbackprop.derivation.Derivation` (the derivative SymPy took, ``raw_local``;
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

Matrix steps (:mod:`symbackprop.lang.matrices`) give explicit matrices, compared
entry by entry.
"""
from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import mpmath
import numpy as np
import sympy

from ..errors import DerivationTimeout, ParseError, SpecError
from ..lang.text import format_expression
from ..numerics.domain import Domain, domain_of
from ..numerics.equality import close
from ..numerics.evaluate import mp_call, mp_function
from ..numerics.kinks import NON_ANALYTIC, kink_arguments, linear_root
from ..reports import GIVEN, STATUSES, ChainReport, StepReport, Verdict
from ..spec.hand import Value, World, assumption_word
from ..timebound import attempt, bounded

#: Random points of a numerical comparison (and of the check without assumptions).
POINTS = 16
RELAXED_POINTS = 12
#: Bound, in seconds, of each symbolic attempt.
PROOF_SECONDS = 1.0
#: Working precision (digits) of comparisons, and of the confirmation of a difference.
DPS, CONFIRM_DPS = 40, 100
#: Relative tolerance of numbers compared without a stated tolerance.
NUMBER_RTOL = 1e-12
#: Bound, in seconds, on writing out one step (definitions, diff, subs).
EXPAND_SECONDS = 10.0
#: Bound, in seconds, on one whole comparison (its symbolic attempts are bounded tighter).
JUDGE_SECONDS = 30.0


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
                 if (w := assumption_word(s)) != "real"]
        return "; ".join([*words, *self.constraints]) or "the declared assumptions"

    def at_map(self, world: World) -> dict:
        return {world.symbols.get(k, sympy.Symbol(k, real=True)): v for k, v in self.at.items()}


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
        return Verdict("proved", "equal numbers (exact arithmetic)", rule="exact-numbers")
    tolerance = setting.tolerance
    if tolerance is None:
        written = [t for t in (_rounding(left.text), _rounding(right.text)) if t is not None]
        tolerance = max(written) if written else None
    va, vb = (_number(x, DPS) for x in (a, b))
    if va is None or vb is None:
        which = " and ".join(s.label for s, v in ((left, va), (right, vb)) if v is None)
        return Verdict("wrong", f"{which} {'is' if ' and ' not in which else 'are'} undefined at this point",
                       counterexample={"point": point, "left": _plain(va), "right": _plain(vb)},
                       rule="undefined-at-point")
    with mpmath.workdps(DPS):
        gap = abs(va - vb)
        scale = max(abs(va), abs(vb))
        if close(va, vb):
            method = _proof(a - b)
            if method:
                return Verdict("proved", f"equal numbers, proved symbolically ({method})", rule="identity")
            return Verdict("numeric", "equal numbers to 25 digits (not proved exactly)", rule="random-points")
        allowed = float((tolerance or 0.0) + NUMBER_RTOL * scale)
        if gap <= allowed:
            return Verdict("numeric", f"equal numbers within the tolerance {allowed:.3g} "
                           f"({left.label} is {float(va):.12g}, {right.label} {float(vb):.12g})", tolerance=allowed,
                           rule="numbers-within-tolerance")
    return Verdict("wrong", f"{left.label} is {float(va):.12g}, {right.label} {float(vb):.12g} "
                   f"(difference {float(gap):.3g}, tolerance {allowed:.3g})",
                   counterexample={"point": point, "left": float(va), "right": float(vb)}, tolerance=float(allowed),
                   rule="numbers-differ")


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
    return mp_call(mp_function(e, ()), [], dps)


def _judge_symbolic(a: sympy.Expr, b: sympy.Expr, left: Side, right: Side, setting: Setting,
                    branch: dict) -> Verdict:
    """The rules of docs/verifying.md ("Which rule applied"), in order: a difference at a
    point is ``wrong``; so is a side undefined on a region where the other is defined, or
    both defined nowhere; points and curves one side excludes, kinks and the declared
    assumptions a step needs make it ``conditional``, the excluded set named."""
    rng = np.random.default_rng(setting.seed)
    sample = _compare_at_points(a, b, rng, POINTS, relaxed=False, branch=branch)
    if sample.mismatch is not None:
        return Verdict("wrong", _mismatch_text(sample.mismatch, left, right), counterexample=sample.mismatch,
                       rule="differs")
    if sample.region is not None:
        return _lost_region(a, b, sample, left, right, rng)
    if sample.used == 0:
        return Verdict("wrong", f"neither side is defined at any of the {sample.tried} points tried on the declared "
                       "domain", rule="nowhere-defined")
    conditions: list[tuple[str, str]] = []
    if sample.one_sided is not None:
        conditions.append((_one_sided_text(sample.one_sided, left, right), "excluded-set"))
    kink = _kink_disagreement(a, b, rng, left, right)
    if kink is not None:
        conditions.append((kink, "kink"))
    conditions += [(c, "excluded-set") for c in _singularities(a, b, left, right, rng)]
    needs = _needs_assumptions(left, right, setting, rng)
    if needs is not None:
        conditions.append((needs, "assumption"))
    method = _proof(a - b)
    if conditions:
        how = "proved symbolically" if method else f"equal at {sample.used} random points"
        where = "; ".join(c for c, _ in conditions)
        return Verdict("conditional", f"holds {where}; {how} there", condition=where,
                       rule="+".join(dict.fromkeys(r for _, r in conditions)))
    if method:
        return Verdict("proved", f"proved symbolically ({method})", rule="identity")
    if sample.used < 3:
        return Verdict("conditional", "the sides are defined at too few of the sampled points to compare",
                       condition="where both sides are defined (almost nowhere on the sampled domain)",
                       rule="few-points")
    return Verdict("numeric", f"equal at {sample.used} random points (mpmath, {DPS} digits); "
                   f"not proved within {PROOF_SECONDS:g} s per attempt", rule="random-points")


def _lost_region(a: sympy.Expr, b: sympy.Expr, sample: _Sample, left: Side, right: Side,
                 rng: np.random.Generator) -> Verdict:
    """``wrong``: one side is undefined around a point where the other is defined (or
    defined nowhere at all)."""
    record = sample.region
    side = 0 if record["left"] is None else 1
    undefined, defined = (left, right) if side == 0 else (right, left)
    if sample.defined[side] == 0:
        return Verdict("wrong", f"{undefined.label} is defined at none of the {sample.tried} points tried on the "
                       f"declared domain, {defined.label} at {sample.defined[1 - side]} of them (such as "
                       f"{_show_point(record['point'])})", counterexample=record, rule="nowhere-defined")
    text = (f"{undefined.label} is undefined at {_show_point(record['point'])} and around it, where "
            f"{defined.label} is {record['left'] if side else record['right']:.12g}: "
            "a region of the declared domain is lost, not a point")
    fix = _assumption_that_helps(a, b, rng)
    if fix is not None:
        text += f"; {fix}"
    return Verdict("wrong", text, counterexample=record, condition=fix, rule="lost-region")


#: Sign assumptions tried, in order, to say what would make a step that loses a region hold.
_SIGNS = (("positive", "> 0", Domain("positive", lo=0.0)), ("negative", "< 0", Domain("negative", hi=0.0)))


def _assumption_that_helps(a: sympy.Expr, b: sympy.Expr, rng: np.random.Generator) -> str | None:
    """The first sign assumption (all undeclared symbols, then one at a time) under which
    the sides agree wherever either is defined: ``holds for p1, p2 > 0: declare them positive``."""
    free = sorted((s for s in a.free_symbols | b.free_symbols if assumption_word(s) == "real"), key=lambda s: s.name)
    groups = [free] + ([[s] for s in free] if 1 < len(free) <= 4 else [])
    for word, relation, domain in _SIGNS:
        for group in groups:
            if not group:
                continue
            sample = _compare_at_points(a, b, rng, RELAXED_POINTS, relaxed=False,
                                        domains={s: domain for s in group})
            if sample.mismatch is None and sample.region is None and sample.used >= 3:
                names = ", ".join(s.name for s in group)
                them = "them" if len(group) > 1 else names
                return f"holds for {names} {relation}: declare {them} {word}"
    return None


# -- numerical comparison -------------------------------------------------------------------
@dataclass
class _Sample:
    used: int = 0
    tried: int = 0
    defined: list[int] = field(default_factory=lambda: [0, 0])  # points where each side is defined
    mismatch: dict | None = None
    one_sided: dict | None = None  # a point where one side only is undefined, on a set of measure zero
    region: dict | None = None     # a point where one side only is undefined, and around it too


#: Points drawn over many scales (:meth:`Domain.draw_far`) when the bulk finds too few defined.
FAR_POINTS = 64


def _compare_at_points(a: sympy.Expr, b: sympy.Expr, rng: np.random.Generator, n: int, *,
                       relaxed: bool, branch: Mapping | None = None,
                       domains: Mapping[sympy.Symbol, Domain] | None = None) -> _Sample:
    """Evaluate both sides at ``n`` random points of the symbols' domains (all reals
    when ``relaxed``; ``domains`` overrides some), then at up to :data:`FAR_POINTS` points
    over many scales while fewer than 3 were defined; a difference at 40 digits is
    confirmed at 100.  A point where one side only is undefined is a ``region`` when
    small moves keep it so, else (a removable point hit exactly) ``one_sided``."""
    symbols = sorted(a.free_symbols | b.free_symbols, key=lambda s: s.name)
    f, g = mp_function(a, symbols), mp_function(b, symbols)
    space = [(Domain() if relaxed else domain_of(s, domains)) for s in symbols]
    out = _Sample()
    draws = [False] * n + [True] * FAR_POINTS
    for far in draws:
        if far and (out.used >= 3 or out.region is not None):
            break
        out.tried += 1
        values = [mpmath.mpf(d.draw_far(rng)) if far else d.draw_mp(rng) for d in space]
        va, vb = mp_call(f, values, DPS), mp_call(g, values, DPS)
        out.defined[0] += va is not None
        out.defined[1] += vb is not None
        if va is None and vb is None:
            continue
        record = {"point": _point_json(dict(zip(symbols, values)), branch or {}),
                  "left": _plain(va), "right": _plain(vb)}
        if va is None or vb is None:
            if out.region is None and _undefined_around(f if va is None else g, values, rng):
                out.region = record
            out.one_sided = out.one_sided or record
            continue
        out.used += 1
        if not close(va, vb) and not _close_confirmed(f, g, values):
            out.mismatch = record
            break
    return out


def _undefined_around(fn: Callable, values: list, rng: np.random.Generator, moves: int = 4) -> bool:
    """Is ``fn`` undefined at small random moves away from ``values`` too (a region, not a
    point or a curve, which a move leaves)?"""
    for _ in range(moves):
        moved = [v * (1 + mpmath.mpf(rng.uniform(-1e-6, 1e-6))) + mpmath.mpf(rng.uniform(-1e-9, 1e-9))
                 for v in values]
        if mp_call(fn, moved, DPS) is not None:
            return False
    return True


def _close_confirmed(f: Callable, g: Callable, values: list) -> bool:
    va, vb = mp_call(f, values, CONFIRM_DPS), mp_call(g, values, CONFIRM_DPS)
    if va is None or vb is None:
        return False
    with mpmath.workdps(CONFIRM_DPS):
        return abs(va - vb) <= mpmath.mpf(10) ** -60 * max(abs(va), abs(vb)) + mpmath.mpf(10) ** -90


def _plain(v) -> float | None:
    return None if v is None else float(v)


def _point_json(point: Mapping, branch: Mapping) -> dict[str, float]:
    out = {s.name: float(v) for s, v in point.items()}
    symbols = list(point)
    values = [mpmath.mpf(float(v)) if isinstance(v, sympy.Basic) else v for v in point.values()]
    for s, expr in branch.items():  # symbols a constraint eliminated, at this point
        value = mp_call(mp_function(expr, symbols), values, DPS)
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
def _draw(symbol: sympy.Symbol, rng: np.random.Generator, relaxed: bool) -> mpmath.mpf:
    """One value of ``symbol``'s declared domain (all reals when ``relaxed``)."""
    return (Domain() if relaxed else domain_of(symbol)).draw_mp(rng)


def _kink_disagreement(a: sympy.Expr, b: sympy.Expr, rng: np.random.Generator, left: Side, right: Side) -> str | None:
    """Evaluate both sides exactly at the kinks of either; a difference there (and only
    there, since random points agreed) makes the equality conditional."""
    for u in kink_arguments(a) + kink_arguments(b):
        found = linear_root(u)
        if found is None:
            continue
        s, root = found
        others = sorted((u.free_symbols | a.free_symbols | b.free_symbols) - {s}, key=lambda t: t.name)
        point = {t: _draw(t, rng, False) for t in others}
        with mpmath.workdps(DPS):
            r = mp_call(mp_function(root, others), [point[t] for t in others], DPS)
        if r is None:
            continue
        point[s] = r
        symbols = sorted(point, key=lambda t: t.name)
        values = [point[t] for t in symbols]
        va = mp_call(mp_function(a, symbols), values, DPS)
        vb = mp_call(mp_function(b, symbols), values, DPS)
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
    word = assumption_word(symbol)
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
    if not setting.constraints and all(assumption_word(s) == "real" for s in declared):
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
    if d.has(*NON_ANALYTIC):
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
    kinks = kink_arguments(d)
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




# -- chains ---------------------------------------------------------------------------------
def chain_setting(world: World, relaxed: World | None, constraints: Sequence[str], at: Mapping,
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


def judge_bounded(left: Side, right: Side, setting: Setting) -> Verdict:
    try:
        return bounded(lambda: judge(left, right, setting), JUDGE_SECONDS)
    except DerivationTimeout:
        raise DerivationTimeout(f"comparing {left.label} with {right.label} ran past {JUDGE_SECONDS:g} s "
                                "(expressions too large?)") from None


def verify_chain(of: str, texts: list[str], sides: list[Side], target: Side | None,
                  setting: Setting) -> ChainReport:
    steps = []
    previous = good = target
    for i, (text, current) in enumerate(zip(texts, sides)):
        current.label = f"step {i}"
        if previous is None:
            verdict = Verdict(GIVEN, "the starting expression", rule="given")
        else:
            verdict = judge_bounded(current, previous, setting)
            if verdict.status == "wrong" and good is not None and good is not previous \
                    and judge(current, good, setting).status != "wrong":
                verdict.explanation += f" (it agrees with {good.label}: the slip is in {previous.label})"
        if verdict.status != "wrong":
            good = current
        steps.append(StepReport(i, text, verdict))
        previous = current
    return ChainReport(of, steps)
