"""Helpers for a user's own test suite: check a hand-written layer against a declaration.

::

    from symbackprop.testing import assert_layer_matches, inputs_for
    from hypothesis import given

    def test_my_sigmoid():
        assert_layer_matches(my_layers.Sigmoid, "sigmoid")

    @given(inputs_for("sigmoid"))
    def test_my_sigmoid_on_drawn_inputs(xs):
        assert_layer_matches(my_layers.Sigmoid, "sigmoid", examples=[xs])

A failure raises :class:`AssertionError` listing every finding with its kind, input,
message and counterexample (see :mod:`symbackprop.layercheck`).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from .layercheck import LayerReport, input_domain, resolve_spec, verify_layer
from .spec import Spec

#: Element ranges drawn for each input domain (the bulk; the checker adds the tails).
RANGES = {"real": (-20.0, 20.0), "positive": (1e-2, 50.0), "negative": (-50.0, -1e-2)}


def assert_layer_matches(cls_or_factory: Callable[[], Any], spec: Spec | str, **options: Any) -> LayerReport:
    """Assert that a layer class agrees with a declaration; return the report.

    Parameters
    ----------
    cls_or_factory : callable
        The class (or a function returning a fresh layer).
    spec : Spec or str
        The declaration, or a bundled name / ``.toml`` path.
    **options
        Passed to :func:`symbackprop.layercheck.verify_layer`: ``examples`` (input
        tuples to compare values at), ``ignore`` (kinds to leave out), ``seed``.

    Raises
    ------
    AssertionError
        With every finding; informational ones (``kink-only``) never fail.
    """
    __tracebackhide__ = True  # pytest: show the findings, not this helper
    report = verify_layer(cls_or_factory, spec, **options)
    if not report.ok:
        lines = [report.text()]
        for f in report.findings:
            if not f.informational and f.counterexample:
                lines.append(f"  {f.kind}{' ' + f.input if f.input else ''} counterexample: {f.counterexample}")
        raise AssertionError("\n".join(lines))
    return report


def inputs_for(spec: Spec | str, *, shape: Sequence[int] | None = None,
               max_side: int = 5) -> st.SearchStrategy[tuple[np.ndarray, ...]]:
    """A hypothesis strategy for a declaration's inputs: one float64 array per input,
    all of one shape, elements in each input's domain (``positive`` inputs stay positive).

    Parameters
    ----------
    spec : Spec or str
        The declaration, or a bundled name / ``.toml`` path.
    shape : sequence of int, optional
        A fixed shape; by default shapes of one or two sides up to ``max_side`` are drawn.
    """
    spec = resolve_spec(spec)
    shapes = st.just(tuple(shape)) if shape is not None else st.one_of(
        st.tuples(st.integers(1, max_side)), st.tuples(st.integers(1, max_side), st.integers(1, max_side)))

    def draw_inputs(s: tuple) -> st.SearchStrategy[tuple[np.ndarray, ...]]:
        return st.tuples(*(arrays(np.float64, s, elements=st.floats(*RANGES[input_domain(spec, x)]))
                           for x in spec.inputs))

    return shapes.flatmap(draw_inputs)


def cases_for(spec: Spec | str, **kwargs: Any) -> st.SearchStrategy[tuple[tuple[np.ndarray, ...], np.ndarray]]:
    """Inputs (as :func:`inputs_for`) together with an upstream gradient ``dout`` of their shape."""

    def with_dout(xs: tuple[np.ndarray, ...]):
        dout = arrays(np.float64, xs[0].shape, elements=st.floats(-2.0, 2.0))
        return st.tuples(st.just(xs), dout)

    return inputs_for(spec, **kwargs).flatmap(with_dout)
