r"""Verifying hand work: the claims and chains of a declaration, and standalone derivations.

Each claim is compared with its target (``backward.x`` is :math:`\text{dout}\,\partial y/\partial x`,
``local.x`` is :math:`\partial y/\partial x`, both read from the derivation, never taken
again here), each step of a chain with the one before it (step 0 with the chain's target
when it names one); the comparisons are :mod:`symbackprop.verify.judge`'s.
"""
from __future__ import annotations

from pathlib import Path

import sympy

from .. import derivation as derivation_stage
from ..derivation.explicit import explicit_difference
from ..derivation.model import Derivation
from ..errors import DerivationTimeout, ParseError, SpecError
from ..reports import ChainReport, ClaimReport, StepsReport, Verdict
from ..spec import catalog
from ..spec.hand import HandDerivation, World, is_standalone, load_derivation, needs_relaxed
from ..spec.model import DOUT, Spec
from ..spec.toml import parse_toml, read_text
from ..timebound import bounded
from .judge import EXPAND_SECONDS, Setting, Side, chain_setting, judge_bounded, verify_chain


def spec_world(spec: Spec, relaxed: bool = False) -> World:
    """The names of a layer declaration: inputs, graph nodes (defined as their
    expressions) and ``dout``.  ``relaxed``: every input only real."""
    relax = {s: sympy.Symbol(s.name, real=True) for s in spec.inputs} if relaxed else {}
    symbols = {s.name: relax.get(s, s) for s in spec.inputs}
    symbols.update({n.name: n for n, _ in spec.graph})
    symbols[DOUT.name] = DOUT
    definitions = {n: e.xreplace(relax) for n, e in spec.graph}
    return World(symbols, definitions, calculus=False)


def verify_derivation(derivation: Derivation) -> tuple[list[ClaimReport], list[ChainReport]]:
    r"""Every claim of ``derivation.spec`` against ``derivation.raw_local``, every chain
    step against the one before (step 0 against the chain's target, if it names one).

    Targets: ``backward.x`` is :math:`\text{dout}\,\partial y/\partial x`, ``local.x``
    is :math:`\partial y/\partial x`.
    """
    spec = derivation.spec
    world = spec_world(spec)
    relaxed = spec_world(spec, relaxed=True) if needs_relaxed(world) else None
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
        setting = chain_setting(world, relaxed, chain.constraints, chain.at, None, where, seed=i + 1)
        sides, goal = [side(e, t) for e, t in zip(chain.exprs, chain.steps)], target(chain.of)
        if relaxed is None and chain.constraints:  # unconstrained: the same values
            sides = [s.entry(s.value, s.value) for s in sides]
            goal = goal and goal.entry(goal.value, goal.value)
        chains.append(verify_chain(chain.of, list(chain.steps), sides, goal, setting))
    return claims, chains


def _judge_or_missing(left: Side, right: Side | None, setting: Setting, of: str) -> Verdict:
    if right is None:
        return Verdict("conditional", f"nothing derived to compare with: '{of}' is not backward.<input> "
                       "or local.<input>", condition="not compared", rule="no-target")
    return judge_bounded(left, right, setting)


def verify_spec(spec: Spec) -> StepsReport:
    """Verify the claims and chains of a layer declaration (derived once, memoized)."""
    if getattr(spec, "is_array", False):
        return _verify_array_spec(spec)
    claims, chains = verify_derivation(derivation_stage.derive(spec))
    return StepsReport(spec.name, spec.source, claims, chains)


def _verify_array_spec(spec: Spec) -> StepsReport:
    """Array declarations: their claims are checked at small explicit shapes;
    chains of array steps are not verified yet."""
    claims = array_claims(derivation_stage.derive(spec))
    notes = ["chains of array steps are not verified yet"] if spec.chains else []
    return StepsReport(spec.name, spec.source, claims, [], notes)


def array_claims(derivation: Derivation) -> list[ClaimReport]:
    """Each ``backward.<name>`` claim of an array declaration against the derived formula,
    entry by entry at small explicit shapes (``numeric`` or ``wrong``)."""
    out = []
    for claim in derivation.spec.claims:
        kind, _, name = claim.of.partition(".")
        if kind != "backward" or name not in derivation.backward:
            out.append(ClaimReport(claim.of, claim.text, Verdict("unknown", "only backward.<name> claims are compared",
                                                                          rule="no-target")))
            continue
        mismatch = explicit_difference(derivation, claim.expr, derivation.backward[name])
        out.append(ClaimReport(claim.of, claim.text, Verdict("wrong" if mismatch else "numeric",
                                                             "compared entry by entry at small shapes", mismatch,
                                                             rule="differs" if mismatch else "explicit-entries")))
    return out


def verify_hand_derivation(d: HandDerivation) -> StepsReport:
    """Verify every chain of a standalone derivation: each step against the one before."""
    chains = []
    for i, chain in enumerate(d.chains):
        where = f"{d.source}: chains[{i}]"
        setting = chain_setting(d.world, d.relaxed, chain.constraints, chain.at, chain.tolerance, where, seed=i + 1)
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
        chains.append(verify_chain(chain.of, chain.steps, sides, None, setting))
    return StepsReport(d.name, d.source, [], chains)


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
    path = catalog.resolve(str(target))
    doc = parse_toml(read_text(path), str(path))
    if is_standalone(doc):
        return verify_hand_derivation(load_derivation(path))
    return verify_spec(catalog.load(str(target)))
