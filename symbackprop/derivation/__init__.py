"""Derivation: exact local derivatives, their cheapest forms in cached values, and the
backward pass by reverse accumulation (elementwise and array layers alike).

:func:`derive` is memoized per declaration object: every stage that asks for the
derivation of the same :class:`~symbackprop.spec.model.Spec` gets the same one.
"""
from __future__ import annotations

import weakref

from ..spec.model import Spec
from .arrays import derive_arrays
from .elementwise import derive_elementwise
from .model import Cached, Derivation, NodeDerivation
from .operations import Operations
from .operations_arrays import array_operations
from .operations_elementwise import elementwise_operations

_DERIVED: dict[int, Derivation] = {}
_OPERATIONS: dict[int, tuple[weakref.ref, Operations]] = {}


def derive(spec: Spec) -> Derivation:
    """The derivation of ``spec`` (computed once per declaration object)."""
    found = _DERIVED.get(id(spec))
    if found is None or found.spec is not spec:
        found = derive_arrays(spec) if spec.is_array else derive_elementwise(spec)
        remember(spec, found)
    return found


def derivation_of(obj: Spec | Derivation) -> Derivation:
    """``obj`` itself if it is a derivation, else the derivation of the declaration."""
    return obj if isinstance(obj, Derivation) else derive(obj)


def operations_of(obj: Spec | Derivation) -> Operations:
    """The forward pass one operation at a time and the backward over those nodes
    (:mod:`.operations`): what explanations draw and write; computed once per derivation
    (one read from the cache included)."""
    derivation = derivation_of(obj)
    ref, found = _OPERATIONS.get(id(derivation), (None, None))
    if ref is None or ref() is not derivation:
        split = array_operations if derivation.spec.is_array else elementwise_operations
        found = split(derivation)
        _OPERATIONS[id(derivation)] = (weakref.ref(derivation), found)
        weakref.finalize(derivation, _OPERATIONS.pop, id(derivation), None)
    return found


def remember(spec: Spec, derivation: Derivation) -> None:
    """Make ``derivation`` the one :func:`derive` returns for ``spec`` (a cached one, say)."""
    _DERIVED[id(spec)] = derivation
    weakref.finalize(spec, _DERIVED.pop, id(spec), None)


__all__ = ["Cached", "Derivation", "NodeDerivation", "derivation_of", "derive", "operations_of", "remember"]
