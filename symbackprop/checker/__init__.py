"""Checking layer classes against their declarations: generated code and hand-written alike.

* :func:`check_generated`: the generated class of a declaration, against numerical
  differentiation, mpmath in the tails, float32, and the worked numbers;
* :func:`verify_layer`: any class, generated or hand-written, with the findings of
  :data:`~symbackprop.reports.KINDS` (wrong math, shapes, precision, side effects, stale
  caches, kinks, exceptions); :func:`check_generated` runs it too.

References always come from the declaration (mpmath, or its forward in float64 with
array atoms by their definitions, differentiated numerically), never from generated code.
"""
from __future__ import annotations

import functools
import time
import warnings
from collections.abc import Callable, Iterable
from typing import Any

from ..derivation.model import Derivation
from ..errors import SymbackpropError
from ..reports import KINDS, CheckReport, LayerReport
from ..spec import catalog
from ..spec.model import Spec
from .arrays import check_array_spec
from .elementwise import check_elementwise
from .layer import ElementwiseReference, ElementwiseVerifier, load_class
from .layer_arrays import verify_array_layer
from .outputs import stacked


def _quiet(fn: Callable) -> Callable:
    """The probes feed layers overflowing and undefined inputs on purpose, and report what
    matters as findings: numpy's RuntimeWarnings about them are not for the user's terminal.
    (A probe that turns warnings into findings sets its own filter inside.)"""
    @functools.wraps(fn)
    def quiet(*args, **kwargs):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return fn(*args, **kwargs)

    return quiet


@_quiet
def check_generated(derivation: Derivation, cls: type, *, max_examples: int = 25) -> CheckReport:
    """Check the generated class ``cls`` of ``derivation`` numerically (array layers with
    half the examples: each costs several forward passes per value), then with every probe
    of :func:`verify_layer` (its findings in ``report.findings``; ``ok`` is false when one
    of them is not informational)."""
    start = time.perf_counter()
    try:
        if derivation.spec.is_array:
            report = check_array_spec(derivation, stacked(cls, derivation.spec), max_examples=max(3, max_examples // 2))
        else:
            report = check_elementwise(derivation, cls, max_examples=max_examples)
        report.findings = [f.to_json() for f in verify_layer(cls, derivation.spec).findings]
    except (SymbackpropError, MemoryError, RecursionError):
        raise  # the tool's own errors and limits: the command reports them
    except Exception as exc:  # the generated class failed to run: a verdict, never a traceback
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        report = CheckReport(derivation.spec.name, False, float("inf"), "-", tails_max_error=None, problems=[
            f"running the generated class raised {type(exc).__name__}{': ' + message if message else ''}"],
            seconds=round(time.perf_counter() - start, 3))
    report.settle()
    return report


@_quiet
def verify_layer(cls_or_factory: Callable[..., Any], spec: Spec | str, *, seed: int = 0,
                 examples: Iterable[Any] = (), ignore: Iterable[str] = (),
                 name: str | None = None, current: Callable[[Any], Any] | None = None) -> LayerReport:
    """Check a hand-written layer class against a declaration.

    Parameters
    ----------
    cls_or_factory : callable
        The class, or any function returning a fresh layer (with ``forward`` and
        ``backward``); called once per check.  For an array declaration it is called the
        book's way, with the declared parameters positionally (``Affine(W, b)``); a network
        (``predict`` declared) may instead take the sizes (``TwoLayerNet(input_size,
        hidden_size, output_size)``), see :mod:`symbackprop.checker.layer_arrays`.
    spec : Spec or str
        The declaration, or a bundled name / ``.toml`` path.
    seed : int
        Seed of the random inputs (the check is deterministic for a given seed).
    examples : iterable of input tuples
        More inputs to compare values at (e.g. drawn by :func:`symbackprop.testing.inputs_for`):
        for an array declaration, the arrays ``forward`` takes (inputs, then constants such
        as ``t``), or a dict by name that may also give parameters.
    ignore : iterable of str
        Kinds of findings to leave out of the report.
    name : str, optional
        How the report names the layer.
    current : callable, optional
        ``current(obj) -> object``: the contents ``obj`` has *now*, where ``obj`` is an
        object a layer method returned (or was given) by an earlier call.  The probes for
        stale caches, buffers overwritten by the next call, and writes into inputs, ``dout``
        or parameters read every such object through it, once the later call has run.
        Default: the object itself.  A grader whose layer lives in another process passes
        a proxy class and a ``current`` that fetches the object's contents from there.

    Returns
    -------
    LayerReport
        ``ok`` unless a finding other than ``kink-only`` was made.

    Raises
    ------
    SymbackpropError
        For an unknown kind in ``ignore``, or examples that do not fit the declaration.
    """
    start = time.perf_counter()
    spec = catalog.declaration(spec)
    unknown = sorted(set(ignore) - set(KINDS))
    if unknown:
        raise SymbackpropError(f"ignore: unknown kind {unknown[0]!r} (known: {', '.join(KINDS)})")
    if spec.is_array:
        findings, notes = verify_array_layer(stacked(cls_or_factory, spec), spec, seed=seed, examples=examples,
                                             current=current)
    else:
        reference = ElementwiseReference(spec)
        findings, notes = ElementwiseVerifier(cls_or_factory, spec, reference, seed, examples, current).run(), []
    findings = [f for f in findings if f.kind not in set(ignore)]
    label = name or getattr(cls_or_factory, "__qualname__", None) or repr(cls_or_factory)
    against = f"{spec.name} ({spec.source})" if spec.source else spec.name
    return LayerReport(label, against, findings, round(time.perf_counter() - start, 3), notes)


__all__ = ["check_generated", "load_class", "verify_layer"]
