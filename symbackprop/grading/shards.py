"""``--shard K/N`` and ``symbackprop merge``: one batch graded on many machines.

The submissions of a batch are sorted (:func:`~symbackprop.grading.batch.expand`), so
every machine that expands the same patterns sees the same list; shard ``K`` of ``N``
grades the submissions ``K-1, K-1+N, K-1+2N, ...`` of it (round robin: each shard gets
a fair share of every folder).  Its ``--json`` document says which shard it is;
:func:`merge` joins the documents of shards ``1..N`` into exactly the document one
unsharded run writes (records in the same order, the same summary), for Kubernetes
indexed jobs, Slurm job arrays or GNU parallel.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

from ..errors import SymbackpropError
from .view import document

T = TypeVar("T")
SHARD = "shard"


def parse_shard(text: str) -> tuple[int, int]:
    """``"2/3"`` -> ``(2, 3)``; ``ValueError`` unless ``1 <= K <= N``."""
    k, slash, n = text.partition("/")
    if not (slash and k.isdigit() and n.isdigit() and 1 <= int(k) <= int(n) <= 1_000_000):
        raise ValueError(f"expected K/N with 1 <= K <= N, got {text!r}")
    return int(k), int(n)


def select(items: Sequence[T], index: int, count: int) -> list[T]:
    """Shard ``index`` of ``count`` (1-based) of the sorted ``items``."""
    return list(items[index - 1::count])


def about_shard(index: int, count: int, total: int) -> dict:
    """What a shard's document says of itself (``total``: submissions in the whole batch)."""
    return {SHARD: {"index": index, "count": count, "of": total}}


def merge(documents: Sequence[dict], names: Sequence[str]) -> dict:
    """The document of the unsharded run, from the documents of every shard.

    Parameters
    ----------
    documents : sequence of dict
        The ``--json`` documents of shards ``1/N`` to ``N/N``, in any order.
    names : sequence of str
        Where each came from, for error messages.

    Raises
    ------
    SymbackpropError
        A document that is not a shard, shards of different batches, a shard missing or
        given twice.
    """
    shards, about = {}, None
    for doc, name in zip(documents, names):
        shard = doc.get(SHARD) if isinstance(doc, dict) else None
        if not isinstance(shard, dict) or not isinstance(doc.get("results"), list):
            raise SymbackpropError(f"{name}: not a shard of a grading run (no 'shard' field)")
        mine = {k: v for k, v in doc.items() if k not in ("ok", "summary", "results")}
        mine[SHARD] = {k: v for k, v in shard.items() if k != "index"}
        if about is not None and mine != about:
            raise SymbackpropError(f"{name}: a shard of another batch (field 'shard' or 'command' differs)")
        about = mine
        if shard.get("index") in shards:
            raise SymbackpropError(f"{name}: shard {shard.get('index')} given twice")
        shards[shard.get("index")] = doc["results"]
    if about is None:
        raise SymbackpropError("merge: no shard files given")
    count, total = about[SHARD].get("count"), about[SHARD].get("of")
    missing = sorted(set(range(1, int(count) + 1)) - set(shards))
    if missing or len(shards) != count:
        raise SymbackpropError(f"merge: shard {missing[0] if missing else '?'} of {count} is missing")
    records = sorted((r for rs in shards.values() for r in rs), key=lambda r: (r["path"], r.get("class") or ""))
    if len(records) != total:
        raise SymbackpropError(f"merge: {len(records)} records, the batch had {total}")
    del about[SHARD]
    return document(records, 0, about)
