"""Deriving an elementwise layer: a graph of scalar nodes, each applied elementwise.

A deep nest is split into hidden nodes first (:mod:`.nesting`) and derived node by node.
What ``forward`` keeps is then chosen for the whole split, memory first: the hidden values
(and their helpers) are recomputed in ``backward`` from the values the declaration names,
so a chain of 32 functions keeps its input alone, as the nest derived whole would, instead
of one array per function (checkpointing at the declared values).
"""
from __future__ import annotations

import sympy

from ..errors import SpecError
from ..numerics.domain import sample_points, tail_points
from ..numerics.kinks import book_convention
from ..spec.model import DOUT, Spec
from .accumulate import reverse_accumulate, simplest
from .model import Cached, Derivation, NodeDerivation
from .nesting import split_graph
from .search import derive_node


def derive_elementwise(spec: Spec) -> Derivation:
    """Derive an elementwise declaration: every node by :func:`~symbackprop.derivation.search.derive_node`,
    then reverse accumulation."""
    notes: set[str] = set()
    names = {s.name for s in spec.inputs} | {n.name for n, _ in spec.graph} | {DOUT.name}
    names |= {f"d{n}" for n in list(names)}
    graph, hidden, split = split_graph(spec.graph, names)
    points = sample_points(spec.inputs, graph, domains=spec.domains)
    tails = tail_points(spec.inputs, graph, domains=spec.domains)
    if len(points) < 3:
        raise SpecError(f"{spec.source or spec.name}: the forward pass is undefined almost everywhere "
                        "on the inputs' domain (declare e.g. [symbols] x = \"positive\")")
    graph_names = [n for n, _ in graph]
    nodes, cache_syms, recompute = [], set(), []
    for symbol, expr in graph:
        args = tuple(s for s in (*spec.inputs, *graph_names) if s in expr.free_symbols)
        node, cached, recomputed = derive_node(symbol, expr, args, points, tails, names, notes)
        nodes.append(node)
        cache_syms |= cached
        recompute += [node.helpers[a] for a in recomputed if a in node.helpers]
    steps, backward = reverse_accumulate(spec, nodes)
    if hidden:
        cache_syms, recompute = _checkpointed(spec, nodes, hidden | split, cache_syms, recompute, steps)
    cache = _cache_list(spec, nodes, cache_syms)
    local = {k: simplest(v.subs(DOUT, 1)) for k, v in backward.items()}
    raw_local = {s.name: book_convention(sympy.diff(spec.forward, s), notes) for s in spec.inputs}
    return Derivation(spec, nodes, cache, recompute, steps, local, backward, raw_local, sorted(notes))


def _checkpointed(spec: Spec, nodes: list[NodeDerivation], split: set[sympy.Symbol], cache_syms: set,
                  recompute: list[Cached], steps: list) -> tuple[set, list[Cached]]:
    """What ``forward`` keeps and ``backward`` recomputes when nodes were split.

    The values of the split's nodes (``split``: the hidden ones and the declared node they
    compute) and every helper of those nodes are recomputed in ``backward``, in forward
    order; what that recomputation and the backward statements read of the declared values
    is kept. Recomputations nothing reads are dropped.
    """
    recomputed: list[Cached] = []
    for node in nodes:
        if node.symbol not in split:
            recomputed += [c for c in recompute if c in node.helpers.values()]
            continue
        recomputed.append(Cached(node.symbol, node.expr))
        recomputed += [h for a, h in node.helpers.items() if a != node.symbol]
    needed = set().union(*(e.free_symbols for _, e in steps))
    kept_recompute: list[Cached] = []
    for c in reversed(recomputed):
        if c.symbol in needed:
            kept_recompute.insert(0, c)
            needed |= c.expr.free_symbols
    needed -= {c.symbol for c in kept_recompute}
    helpers = {a for node in nodes if node.symbol not in split for a in node.helpers}
    keep = {s for s in needed if s in spec.inputs or s in dict(spec.graph) or (s in helpers and s in cache_syms)}
    return keep, kept_recompute


def _cache_list(spec: Spec, nodes: list[NodeDerivation], cache_syms: set) -> list[Cached]:
    """Cached values in a stable order: inputs, graph values, then helpers."""
    order: list[Cached] = []
    for s in spec.inputs:
        if s in cache_syms:
            order.append(Cached(s, s))
    for symbol, expr in spec.graph:
        if symbol in cache_syms:
            order.append(Cached(symbol, expr))
    for node in nodes:
        for atom, helper in node.helpers.items():
            if atom in cache_syms:
                order.append(helper)
    return order
