"""Deriving an elementwise layer: a graph of scalar nodes, each applied elementwise."""
from __future__ import annotations

import sympy

from ..errors import SpecError
from ..numerics.domain import sample_points, tail_points
from ..numerics.kinks import book_convention
from ..spec.model import DOUT, Spec
from .accumulate import reverse_accumulate, simplest
from .model import Cached, Derivation, NodeDerivation
from .search import derive_node


def derive_elementwise(spec: Spec) -> Derivation:
    """Derive an elementwise declaration: every node by :func:`~symbackprop.derivation.search.derive_node`,
    then reverse accumulation."""
    notes: set[str] = set()
    names = {s.name for s in spec.inputs} | {n.name for n, _ in spec.graph} | {DOUT.name}
    names |= {f"d{n}" for n in list(names)}
    points = sample_points(spec.inputs, spec.graph, domains=spec.domains)
    tails = tail_points(spec.inputs, spec.graph, domains=spec.domains)
    if len(points) < 3:
        raise SpecError(f"{spec.source or spec.name}: the forward pass is undefined almost everywhere "
                        "on the inputs' domain (declare e.g. [symbols] x = \"positive\")")
    graph_names = [n for n, _ in spec.graph]
    nodes, cache_syms, recompute = [], set(), []
    for symbol, expr in spec.graph:
        args = tuple(s for s in (*spec.inputs, *graph_names) if s in expr.free_symbols)
        node, cached, recomputed = derive_node(symbol, expr, args, points, tails, names, notes)
        nodes.append(node)
        cache_syms |= cached
        recompute += [node.helpers[a] for a in recomputed if a in node.helpers]
    cache = _cache_list(spec, nodes, cache_syms)
    steps, backward = reverse_accumulate(spec, nodes)
    local = {k: simplest(v.subs(DOUT, 1)) for k, v in backward.items()}
    raw_local = {s.name: book_convention(sympy.diff(spec.forward, s), notes) for s in spec.inputs}
    return Derivation(spec, nodes, cache, recompute, steps, local, backward, raw_local, sorted(notes))


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
