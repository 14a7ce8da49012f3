"""How a grading batch looks: the progress bar, the records as text and JSON, the summary table.

Everything here is a pure function of a :class:`~symbackprop.grading.batch.Batch` (plus the
clock, for the progress bar), so that the JSON of two runs on the same submissions is
byte-identical apart from ``seconds``.
"""
from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from typing import TextIO

from ..escape import shown
from ..reports import INFORMATIONAL, KINDS, failing_kinds
from .batch import Batch, Result

#: Order of the kinds in the summary: the checkers' own, then the batch's.
KIND_ORDER = (*[k for k in KINDS if k not in INFORMATIONAL], "wrong-claim", "wrong-step", "invalid",
              "timeout", "memory", "crash")
_NOTES = {"timeout": "timed out", "crash": "crashed", "memory": "out of memory"}


def kind_counts(records: Sequence[dict]) -> dict[str, int]:
    """Submissions per failing kind (a submission counts once under each of its kinds)."""
    counts = Counter(k for r in records for k in failing_kinds(r["findings"]))
    order = [k for k in KIND_ORDER if k in counts] + sorted(set(counts) - set(KIND_ORDER))
    return {k: counts[k] for k in order}


def summary_of(records: Sequence[dict], pending: int) -> dict:
    """The counts of the ``--json`` document (no timings: they would vary between runs)."""
    passed = sum(r["ok"] for r in records)
    return {"submissions": len(records) + pending, "graded": len(records),
            "passed": passed, "failed": len(records) - passed, "kinds": kind_counts(records)}


def summary(batch: Batch) -> dict:
    return summary_of([r.to_json() for r in batch.results], len(batch.pending))


def document(records: Sequence[dict], pending: int, about: dict, interrupted: bool = False) -> dict:
    """The ``--json`` document: ``ok``, what was checked (``about``), ``summary``, ``results``."""
    ok = not interrupted and all(r["ok"] for r in records)
    return {"ok": ok, **about, "summary": summary_of(records, pending), "results": list(records)}


def to_json(batch: Batch, **about: object) -> dict:
    return document([r.to_json() for r in batch.results], len(batch.pending), about, batch.interrupted)


def label(result: Result) -> str:
    return shown(f"{result.path}:{result.name}" if result.name else result.path)


def record_text(result: Result) -> str:
    """One submission: a head line, then one line per finding."""
    verdict = "ok" if result.ok else "FAILED: " + ", ".join(result.kinds)
    lines = [f"{label(result)}  {verdict}  ({result.seconds:.2f} s)"]
    for f in result.findings:
        where = f" {shown(f['input'])}" if f.get("input") else ""
        lines.append(f"    {shown(f['kind'])}{where}: {shown(f['message'])}")
    return "\n".join(lines)


def to_text(batch: Batch) -> str:
    return "".join(record_text(r) + "\n" for r in batch.results)


def summary_table(batch: Batch) -> str:
    """The table printed on stderr at the end: passed, failed by kind, timed out, crashed."""
    n = len(batch.results)
    rate = f"{n / batch.seconds:.1f} per second" if batch.seconds > 0 else "-"
    head = (f"graded {n} submission{'s' if n != 1 else ''} in {batch.seconds:.1f} s ({rate}, "
            f"{batch.jobs} job{'s' if batch.jobs != 1 else ''})")
    counts = summary(batch)
    lines = [head, f"  {'passed':<16}{counts['passed']:>5}", f"  {'failed':<16}{counts['failed']:>5}"]
    for kind, count in counts["kinds"].items():
        note = f"  ({_NOTES[kind]})" if kind in _NOTES else ""
        lines.append(f"    {kind:<14}{count:>5}{note}")
    if batch.interrupted:
        lines.append(f"  {'not graded':<16}{len(batch.pending):>5}  (interrupted)")
    return "\n".join(lines)


def interrupted_text(batch: Batch) -> str:
    """What finished before Ctrl-C, for stderr (stdout and output files get nothing)."""
    total = len(batch.results) + len(batch.pending)
    lines = [f"interrupted: {len(batch.results)} of {total} submissions graded; no output written. What finished:"]
    lines += [f"  {label(r)}  {'ok' if r.ok else 'FAILED: ' + ', '.join(r.kinds)}" for r in batch.results]
    return "\n".join(lines)


class Progress:
    """A one-line progress bar, redrawn at most every 0.1 s, on a terminal only.

    Parameters
    ----------
    total : int
        Submissions in the batch.
    stream : text stream
        Where to draw (stderr); nothing is drawn unless it is a terminal.
    """

    WIDTH = 24

    def __init__(self, total: int, stream: TextIO):
        self.total, self.stream = total, stream
        self.enabled = bool(getattr(stream, "isatty", lambda: False)())
        self.start = time.monotonic()
        self.drawn = 0.0

    def update(self, finished: Sequence[Result], running: int) -> None:
        now = time.monotonic()
        if not self.enabled or (now - self.drawn < 0.1 and len(finished) < self.total):
            return
        self.drawn = now
        done = len(finished)
        filled = self.WIDTH * done // max(self.total, 1)
        passed = sum(r.ok for r in finished)
        self.stream.write(f"\r\x1b[K[{'#' * filled}{'.' * (self.WIDTH - filled)}] {done}/{self.total}  "
                          f"passed {passed}  failed {done - passed}  running {running}  {now - self.start:.1f} s")
        self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
