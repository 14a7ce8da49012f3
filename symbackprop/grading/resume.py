"""Finishing a batch that a crash or Ctrl-C cut short: ``--resume`` reads back the records file.

``-o FILE`` appends each finished record to ``FILE.records.jsonl`` (``{"index": i, ...}``,
one JSON line each).  Run the same command again with ``--resume`` and the records found
there are kept; only the other submissions are graded, and ``FILE`` comes out as one
uninterrupted run would have written it (timings apart).  A record is kept only if it
names the same submission (path and class) at the same index of the same task list; a
line cut short by the crash is graded again.  The file is JSON read by ``json``: nothing
in it can run.
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace

from ..errors import SymbackpropError
from .batch import Batch, Result, isolated
from .worker import Task

#: Fields of a record and their types (``class`` only for a layer).
FIELDS = {"path": str, "ok": bool, "findings": list, "seconds": (int, float), "output": str, "isolation": str}


def finished(path: str, tasks: Sequence[Task]) -> dict[int, Result]:
    """The records of ``path`` that belong to ``tasks``, by index; {} when there is no file.

    Raises
    ------
    SymbackpropError
        A record of another batch (its index or submission differs): resuming would mix two runs.
    """
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as exc:
        raise SymbackpropError(f"{path}: cannot read the records ({type(exc).__name__})") from None
    out: dict[int, Result] = {}
    for number, line in enumerate(lines, 1):
        record = _record(line)
        if record is None:
            continue  # cut short by the crash: graded again
        index, task = record["index"], None
        if isinstance(index, int) and not isinstance(index, bool) and 0 <= index < len(tasks):
            task = tasks[index]
        if task is None or record["path"] != task.path or record.get("class") != task.name:
            raise SymbackpropError(f"{path}:{number}: a record of another batch (index {index!r}, "
                                   f"{record['path']!r}); give the same submissions, or remove the file")
        out[index] = Result(record["path"], record["ok"], record["findings"], float(record["seconds"]),
                            record["output"], record.get("class"), record["isolation"])
    return out


def _record(line: str) -> dict | None:
    """One well-formed record, or None."""
    try:
        record = json.loads(line)
    except (ValueError, RecursionError):
        return None
    if not isinstance(record, dict) or "index" not in record:
        return None
    if any(not isinstance(record.get(k), t) for k, t in FIELDS.items()):
        return None
    if not all(isinstance(f, dict) and isinstance(f.get("kind"), str) for f in record["findings"]):
        return None
    if "class" in record and not isinstance(record["class"], str):
        return None
    return record


def remaining(tasks: Sequence[Task], done: dict[int, Result], isolation: str | None) -> tuple[list[int], list[Task]]:
    """The indices and tasks still to grade, isolated as the whole batch would be: each
    sandbox still hides every submission's folder, the finished ones' included."""
    whole = isolated(tasks, isolation) if done else list(tasks)
    indices = [i for i in range(len(tasks)) if i not in done]
    return indices, [whole[i] for i in indices]


def joined(batch: Batch, done: dict[int, Result], graded: dict[int, Result]) -> Batch:
    """``batch`` (of the remaining tasks) with the records kept before, in task order;
    ``graded`` holds this run's results by their index in the whole batch."""
    if not done:
        return batch
    results = {**done, **graded}
    return replace(batch, results=[results[i] for i in sorted(results)])
