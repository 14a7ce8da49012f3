"""The tally of the external-style suite: ``python -m tests.external.tally``.

Every case, those of the test table and the known-wrong ones, judged by verify-layer and
compared with the reading: agreed, false alarm (a kind the reading does not expect, or a
counterexample outside the declared domain), miss (an expected kind not reported), crash.
"""
from __future__ import annotations

from .cases import CASES, KNOWN_WRONG, Case
from .judge import Verdict, judge

OUTCOMES = ("agreed", "false alarm", "miss", "crash")


def outcomes(case: Case, verdict: Verdict) -> list[str]:
    """What the verdict is, against the case's reading (a case may be both a false alarm and a miss)."""
    if verdict.crash:
        return ["crash"]
    out_of_domain = case.valid is not None and not all(case.valid(s) for s in verdict.samples)
    found = []
    if set(verdict.kinds) - set(case.expected) or out_of_domain:
        found.append("false alarm")
    if set(case.expected) - set(verdict.kinds):
        found.append("miss")
    return found or ["agreed"]


def line(case: Case, verdict: Verdict, found: list[str]) -> str:
    got = verdict.crash or (", ".join(verdict.kinds) or "OK")
    want = ", ".join(case.expected) or "OK"
    return f"{case.id:34} {' + '.join(found):22} expected {want:22} got {got}"


def main() -> None:
    counts = dict.fromkeys(OUTCOMES, 0)
    for case in CASES + KNOWN_WRONG:
        verdict = judge(case)
        found = outcomes(case, verdict)
        for outcome in found:
            counts[outcome] += 1
        print(line(case, verdict, found))
    cases = CASES + KNOWN_WRONG
    classes = len({id(c.layer) for c in cases})
    print(f"\n{len(cases)} cases ({classes} classes) judged: " + ", ".join(f"{counts[o]} {o}" for o in OUTCOMES))


if __name__ == "__main__":
    main()
