"""One case judged by verify-layer's Python API: its failing kinds, the counterexamples'
arrays, or the exception it raised."""
from __future__ import annotations

from dataclasses import dataclass, field

from symbackprop.checker import verify_layer

from .cases import Case


@dataclass
class Verdict:
    kinds: tuple[str, ...] = ()  # failing kinds, sorted
    samples: list[dict] = field(default_factory=list)  # each failing finding's arrays, where given
    crash: str = ""  # the exception verify-layer raised, if it did


def judge(case: Case) -> Verdict:
    """verify-layer on ``case``; an exception is the verdict, not an error of the suite."""
    try:
        report = verify_layer(case.layer, case.against, name=case.id)
    except Exception as exc:  # noqa: BLE001  (a crash of the tool is what the tally counts)
        return Verdict(crash=f"{type(exc).__name__}: {exc}")
    failing = [f for f in report.findings if not f.informational]
    samples = [f.counterexample["values"] for f in failing if isinstance(f.counterexample, dict)
               and "values" in f.counterexample]
    return Verdict(tuple(sorted({f.kind for f in failing})), samples)
