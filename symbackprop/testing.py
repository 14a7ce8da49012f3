"""Helpers for a user's own test suite: check a hand-written layer against a declaration.

::

    from symbackprop.testing import assert_layer_matches, inputs_for
    from hypothesis import given

    def test_my_sigmoid():
        assert_layer_matches(my_layers.Sigmoid, "sigmoid")

    @given(inputs_for("sigmoid"))
    def test_my_sigmoid_on_drawn_inputs(xs):
        assert_layer_matches(my_layers.Sigmoid, "sigmoid", examples=[xs])

Array layers and networks work the same way; the class is built the book's way
(``Affine(W, b)`` with random parameters) and drawn examples are the arrays ``forward``
takes::

    def test_my_affine():
        assert_layer_matches(my_layers.Affine, "affine")

    @given(inputs_for("softmax_with_loss"))        # (x, t): t one-hot rows
    def test_my_loss_on_drawn_batches(xt):
        assert_layer_matches(my_layers.SoftmaxWithLoss, "softmax_with_loss", examples=[xt])

A failure raises :class:`AssertionError` listing every finding with its kind, input,
message and counterexample (see :mod:`symbackprop.layercheck`).
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from .checker import verify_layer
from .numerics.domain import domain_of
from .reports import LayerReport
from .spec.catalog import declaration
from .spec.model import Spec

#: Element ranges of array inputs: ordinary values, as the checker's own (scores of 20 are
#: not ordinary: there the book's ``log(y + 1e-7)`` is off by far more than rounding).
ARRAY_RANGES = {"real": (-3.0, 3.0), "positive": (0.1, 2.0), "negative": (-2.0, -0.1)}


def assert_layer_matches(cls_or_factory: Callable[[], Any], spec: Spec | str, **options: Any) -> LayerReport:
    """Assert that a layer class agrees with a declaration; return the report.

    Parameters
    ----------
    cls_or_factory : callable
        The class (or a function returning a fresh layer).
    spec : Spec or str
        The declaration, or a bundled name / ``.toml`` path.
    **options
        Passed to :func:`symbackprop.checker.verify_layer`: ``examples`` (input
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


def inputs_for(spec: Spec | str, *, shape: Sequence[int] | None = None, max_side: int = 5,
               sizes: Mapping[str, int] | None = None) -> st.SearchStrategy[tuple[np.ndarray, ...]]:
    """A hypothesis strategy for a declaration's inputs.

    Elementwise: one float64 array per input, all of one shape, elements in each input's
    domain (``positive`` inputs stay positive).  Array declarations: the arrays ``forward``
    takes (inputs, then constants such as ``t``) at drawn dimension sizes, elements of
    ordinary size (:data:`ARRAY_RANGES`), one-hot rows where the declaration assumes them.

    Parameters
    ----------
    spec : Spec or str
        The declaration, or a bundled name / ``.toml`` path.
    shape : sequence of int, optional
        Elementwise only: a fixed shape; by default shapes of one or two sides up to
        ``max_side`` are drawn.
    max_side : int
        The largest side (elementwise) or dimension size (arrays) drawn.
    sizes : mapping of str to int, optional
        Arrays only: fixed sizes of some dimensions (``{"N": 1}``); the others are drawn.
    """
    spec = declaration(spec)
    if spec.is_array:
        return array_cases(spec, sizes=sizes, max_side=max_side).map(lambda case: case[0])
    shapes = st.just(tuple(shape)) if shape is not None else st.one_of(
        st.tuples(st.integers(1, max_side)), st.tuples(st.integers(1, max_side), st.integers(1, max_side)))

    def draw_inputs(s: tuple) -> st.SearchStrategy[tuple[np.ndarray, ...]]:
        return st.tuples(*(arrays(np.float64, s, elements=_inside(domain_of(x, spec.domains)))
                           for x in spec.inputs))

    return shapes.flatmap(draw_inputs)


def _inside(domain) -> st.SearchStrategy[float]:
    """Floats of the domain's search interval that the domain contains (0 left out of a nonzero one)."""
    return st.floats(*domain.search).filter(domain.contains)


def cases_for(spec: Spec | str, **kwargs: Any) -> st.SearchStrategy[tuple[tuple[np.ndarray, ...], Any]]:
    """Inputs (as :func:`inputs_for`) together with an upstream gradient ``dout`` of the
    output's shape (a float for a loss)."""
    spec = declaration(spec)
    if spec.is_array:
        return array_cases(spec, **kwargs)

    def with_dout(xs: tuple[np.ndarray, ...]):
        dout = arrays(np.float64, xs[0].shape, elements=st.floats(-2.0, 2.0))
        return st.tuples(st.just(xs), dout)

    return inputs_for(spec, **kwargs).flatmap(with_dout)


@st.composite
def array_cases(draw: Callable, spec: Spec, *, sizes: Mapping[str, int] | None = None,
                max_side: int = 5) -> tuple[tuple[np.ndarray, ...], Any]:
    """The arrays ``forward`` of an array declaration takes, and a ``dout``, at drawn sizes."""
    fixed = dict(sizes or {})
    chosen = {d: fixed[d.name] if d.name in fixed else draw(st.integers(1, max_side), label=d.name)
              for d in spec.dims}
    chosen = spec.fitted_sizes(chosen)  # index notation: the hyperparameters' defaults, windows that fit

    def shape_of(symbol) -> tuple[int, ...]:
        return tuple(spec.size_of(d, chosen) for d in spec.shapes[symbol])

    onehot = {t: axis for kind, t, axis in spec.assumptions if kind == "onehot"}
    out = []
    for s in (*spec.inputs, *spec.constants):
        shape = shape_of(s)
        if s in onehot:
            axis = onehot[s]
            labels = draw(arrays(np.int64, shape[:axis] + shape[axis + 1:], elements=st.integers(0, shape[axis] - 1)))
            out.append(np.moveaxis(np.eye(shape[axis])[labels], -1, axis))
        else:
            out.append(draw(arrays(np.float64, shape, elements=st.floats(*ARRAY_RANGES.get(domain_of(s).kind, ARRAY_RANGES['real'])))))
    out_shape = shape_of(spec.output)
    dout = draw(arrays(np.float64, out_shape, elements=st.floats(-2.0, 2.0))) if out_shape \
        else draw(st.floats(0.5, 2.0))
    return tuple(out), dout
