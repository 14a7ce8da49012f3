"""``--format gradescope``: a graded submission as Gradescope's ``results.json``.

Gradescope runs the course's ``run_autograder`` once per submission, in a container of
its own, and reads ``/autograder/results/results.json`` (schema:
https://gradescope-autograders.readthedocs.io/en/latest/specs/).  One *test* per check:
each kind of finding the command looks for is a test worth one point, passed when the
submission got no finding of that kind, and a test ``runs`` (the submission imported,
ran within its limits without raising, and was what the grader asked for: failed on
``exception``, ``invalid``, ``timeout``, ``memory``, ``crash``); a submission that did not
run to the end fails every test, for what was not checked cannot have passed.
Each test's ``visibility`` is chosen per kind (``--visibility wrong-math=after_due_date``),
so that counterexamples can stay hidden until after the deadline.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TypeVar

from ..errors import SymbackpropError
from ..reports import INFORMATIONAL, KINDS
from .batch import Result

#: Gradescope's visibility values.
VISIBILITIES = ("hidden", "after_due_date", "after_published", "visible")
#: The checks (kinds of findings) of each command, in report order.
CHECKS = {"verify-layer": tuple(k for k in KINDS if k not in INFORMATIONAL and k != "exception"),
          "verify-steps": ("wrong-claim", "wrong-step")}
#: Kinds that mean the submission did not run to the end.
DID_NOT_RUN = ("exception", "invalid", "timeout", "memory", "crash")
RUNS = "runs"
T = TypeVar("T")


def parse_visibility(items: Sequence[str]) -> dict[str, str]:
    """``["after_due_date", "wrong-math=hidden"]`` -> ``{"*": "after_due_date", "wrong-math": "hidden"}``.

    Raises
    ------
    SymbackpropError
        An unknown kind or visibility.
    """
    known = {RUNS, *DID_NOT_RUN, *(k for kinds in CHECKS.values() for k in kinds)}
    out = {"*": "visible"}
    for item in items:
        kind, _, value = item.rpartition("=")
        if value not in VISIBILITIES:
            raise SymbackpropError(f"--visibility {item}: expected one of {', '.join(VISIBILITIES)}")
        if kind and kind not in known:
            raise SymbackpropError(f"--visibility {item}: unknown kind {kind!r} (known: {', '.join(sorted(known))})")
        out[kind or "*"] = value
    return out


def results_json(result: Result, command: str, visibility: Mapping[str, str] | None = None) -> dict:
    """Gradescope's ``results.json`` for one graded submission (a :class:`Result`)."""
    visibility = visibility or {"*": "visible"}
    ran = not any(f["kind"] in DID_NOT_RUN for f in result.findings)
    tests = [_test(RUNS, result, [f for f in result.findings if f["kind"] in DID_NOT_RUN], True, visibility)]
    tests += [_test(kind, result, [f for f in result.findings if f["kind"] == kind], ran, visibility)
              for kind in CHECKS[command]]
    score = float(sum(t["score"] for t in tests))
    return {"score": score, "execution_time": result.seconds, "output": _summary(result, score, len(tests)),
            "stdout_visibility": "hidden", "tests": tests}


def _test(kind: str, result: Result, findings: list[dict], ran: bool, visibility: Mapping[str, str]) -> dict:
    passed = ran and not findings
    if findings:
        output = "\n".join(f"{f['input']}: {f['message']}" if f.get("input") else f["message"] for f in findings)
    else:
        output = "passed" if passed else "not checked: the submission did not run to the end"
    return {"name": kind, "score": 1.0 if passed else 0.0, "max_score": 1.0, "status": "passed" if passed else "failed",
            "output": output, "visibility": visibility.get(kind, visibility["*"])}


def _summary(result: Result, score: float, total: int) -> str:
    verdict = "all checks passed" if result.ok else "failed: " + ", ".join(result.kinds)
    return f"{result.path}{':' + result.name if result.name else ''}: {verdict} ({score:g} of {total})"


def only_result(items: Sequence[T]) -> T:
    """The one submission (task or result) a ``results.json`` is about: Gradescope grades
    each submission in a container of its own."""
    if len(items) != 1:
        raise SymbackpropError(f"--format gradescope grades one submission per results.json, got {len(items)}")
    return items[0]
