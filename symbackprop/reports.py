"""The JSON vocabulary as data: finding kinds, step statuses, and the report records.

Every command's ``--json`` output is built from the records here (DESIGN.md, "Command
line"): fields may be added, never renamed.  The records hold data and their own
rendering; they never call another stage.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

from .escape import shown

#: Kinds of finding about a layer class (``verify-layer``; ``check`` of generated code).
KINDS = ("wrong-math", "shape", "precision", "side-effect", "stale-cache", "kink-only", "exception")
#: Kinds that inform without failing the check.
INFORMATIONAL = frozenset({"kink-only"})
#: The four outcomes of a comparison of hand work, from best to worst; ``given`` marks the
#: first step of a chain that has nothing before it (a standalone chain's starting expression).
STATUSES = ("proved", "numeric", "conditional", "wrong")
GIVEN = "given"
#: The rule that decided a comparison (``Verdict.rule``), with the sentence that states it
#: (docs/verifying.md, "Which rule applied").  Measure is the declared domain's: a step may
#: lose points and curves (``conditional``), never a region (``wrong``).
RULES = {
    "given": "the starting expression: nothing to compare with",
    "identity": "shown equal symbolically, both sides defined at the same points",
    "explicit-entries": "equal entry by entry at small explicit shapes, at random points",
    "random-points": "equal at random points of the declared domain (40 digits), not proved",
    "few-points": "equal where both sides are defined, but defined at too few sampled points to say more",
    "excluded-set": "equal except on a set of measure zero (points, curves) where one side is undefined; the set is named",
    "kink": "equal except at a kink, where the sides take different values",
    "assumption": "equal on the declared domain, using a declared assumption or constraint, which is named",
    "differs": "different at a point of the declared domain: the counterexample",
    "lost-region": "one side undefined on a region (positive measure) of the declared domain where the other "
                   "is defined: a point of it, and the assumption that would make the step hold",
    "nowhere-defined": "neither side is defined anywhere on the declared domain",
    "exact-numbers": "equal numbers in exact arithmetic",
    "numbers-within-tolerance": "numbers equal within the written or stated tolerance",
    "numbers-differ": "numbers that differ by more than the tolerance",
    "undefined-at-point": "a side is undefined at the chain's point 'at'",
    "no-target": "nothing derived to compare with",
}


def failing_kinds(findings: list[dict]) -> list[str]:
    """The kinds of the failing (not informational) findings of JSON records, each once, in order."""
    return list(dict.fromkeys(f["kind"] for f in findings if f["kind"] not in INFORMATIONAL))


# -- checks of declarations ------------------------------------------------------------------
@dataclass
class CheckReport:
    """The outcome of ``symbackprop check`` of one declaration; ``to_json()`` gives its ``--json`` record."""

    name: str
    ok: bool
    backward_max_rel_error: float
    method: str
    where: dict | None = None
    tails_max_error: float | None = 0.0  # None: not measured (array layers)
    claims: list[dict] = field(default_factory=list)
    chains: list[dict] = field(default_factory=list)
    expect: list[dict] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0
    #: networks: per parameter, mean |backprop - numerical| by method (the book's 5.7.3)
    parameters: dict = field(default_factory=dict)
    #: what ``verify-layer`` finds in the generated class (:meth:`Finding.to_json` records)
    findings: list[dict] = field(default_factory=list)

    @property
    def failing(self) -> list[dict]:
        """The findings that fail the check (all but the informational kinds)."""
        return [f for f in self.findings if f["kind"] not in INFORMATIONAL]

    def settle(self) -> None:
        """``ok``: no problem and no failing finding."""
        self.ok = not self.problems and not self.failing

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, record: dict) -> "CheckReport":
        """The report a :meth:`to_json` record describes (``ValueError`` for any other data)."""
        names = {f.name for f in fields(cls)}
        if not isinstance(record, dict) or set(record) != names:
            raise ValueError("not a check report record")
        return cls(**record)


# -- findings about layer classes ----------------------------------------------------------------
@dataclass
class Finding:
    """One problem (or, for ``kink-only``, one remark) about a layer class."""

    kind: str
    input: str | None
    message: str
    max_rel_error: float | None = None
    counterexample: dict | None = None
    topics: set = field(default_factory=set, repr=False, compare=False)

    @property
    def informational(self) -> bool:
        return self.kind in INFORMATIONAL

    def to_json(self) -> dict:
        return {"kind": self.kind, "input": self.input, "message": self.message,
                "max_rel_error": self.max_rel_error, "counterexample": self.counterexample}


@dataclass
class LayerReport:
    """The outcome of :func:`verify_layer`; ``ok`` ignores informational findings.

    ``notes`` are remarks that are not findings: a loss layer whose ``backward(dout=1)``
    ignores ``dout`` (the book's convention for the last layer), what was not checked.
    """

    layer: str
    against: str
    findings: list[Finding] = field(default_factory=list)
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not any(not f.informational for f in self.findings)

    def to_json(self) -> dict:
        """The ``verify-layer --json`` record (DESIGN.md; extra fields added, none renamed)."""
        return {"ok": self.ok, "layer": self.layer, "against": self.against,
                "findings": [f.to_json() for f in self.findings], "seconds": self.seconds,
                "notes": list(self.notes)}

    def text(self) -> str:
        problems = [f for f in self.findings if not f.informational]
        head = "OK" if self.ok else f"{len(problems)} finding{'s' if len(problems) != 1 else ''}"
        lines = [f"{shown(self.layer)} against {shown(self.against)}: {head}  ({self.seconds:.2f} s)"]
        for f in self.findings:
            where = f" {shown(f.input)}" if f.input else ""
            lines.append(f"  {f.kind}{where}: {shown(f.message)}")
        lines += [f"  note: {shown(n)}" for n in self.notes]
        return "\n".join(lines)


# -- hand work: claims and chains --------------------------------------------------------------------
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
    rule : str or None
        The key of :data:`RULES` that decided the status (several, joined by ``+``, when
        a conditional rests on more than one condition).
    """

    status: str
    explanation: str = ""
    counterexample: dict | None = None
    condition: str | None = None
    tolerance: float | None = None
    rule: str | None = None

    def to_json(self) -> dict:
        out = {"status": self.status, "counterexample": self.counterexample,
               "condition": self.condition, "explanation": self.explanation, "rule": self.rule}
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
        origin = f"  ({shown(self.source)})" if self.source else ""
        lines = [f"{shown(self.name)}{origin}"]
        for c in self.claims:
            lines += _entry(f"claim {shown(c.of)} = {shown(c.text)}", c.verdict, "  ")
        for chain in self.chains:
            state = "ok" if chain.ok else f"WRONG at step {chain.first_wrong_step}"
            lines.append(f"  chain {chain.of}: {state}")
            for s in chain.steps:
                lines += _entry(f"[{s.index}] {shown(s.text)}", s.verdict, "    ")
        lines += [f"  note: {shown(n)}" for n in self.notes]
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
    if verdict.rule and verdict.status != GIVEN:
        label += f" [{verdict.rule}]"
    out = [f"{indent}{head:<58} {label}"]
    if verdict.explanation and verdict.status not in ("proved", GIVEN):
        out.append(f"{indent}    {shown(verdict.explanation)}")
    return out
