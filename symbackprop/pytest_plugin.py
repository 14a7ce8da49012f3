"""The pytest plugin (entry point ``pytest11`` in ``pyproject.toml``; see also
:mod:`symbackprop.hypothesis_plugin`).

 a marker names the declaration a test checks against, and the
fixture ``layer_check`` checks a layer class against it::

    import pytest
    import my_layers

    @pytest.mark.symbackprop("sigmoid")
    def test_my_sigmoid(layer_check):
        layer_check(my_layers.Sigmoid)

    @pytest.mark.symbackprop("softmax_with_loss", ignore=["precision"])
    def test_my_loss(layer_check):
        report = layer_check(my_layers.SoftmaxWithLoss)   # the report, for more asserts

``layer_check(cls, spec=None, **options)`` is :func:`symbackprop.testing.assert_layer_matches`
with the marker's declaration and options as defaults; the fixture ``declaration`` is the
marker's declaration itself (a :class:`~symbackprop.spec.model.Spec`).

Loading this module costs pytest nothing: SymPy and the checker are imported by the
fixtures, when a test asks for one.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

MARKER = "symbackprop"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", f"{MARKER}(spec, **options): the declaration (bundled name, .toml path or Spec) that "
        "the fixtures layer_check and declaration use; options (examples, ignore, seed) for layer_check")


def _marker(request: pytest.FixtureRequest) -> pytest.Mark | None:
    return request.node.get_closest_marker(MARKER)


@pytest.fixture
def declaration(request: pytest.FixtureRequest):
    """The declaration named by the test's ``@pytest.mark.symbackprop(spec)``, loaded."""
    from .spec.catalog import declaration as load

    mark = _marker(request)
    if mark is None or not mark.args:
        raise pytest.UsageError(f"{request.node.nodeid}: the fixture 'declaration' needs "
                                f"@pytest.mark.{MARKER}(\"name or path.toml\")")
    return load(mark.args[0])


@pytest.fixture
def layer_check(request: pytest.FixtureRequest) -> Callable[..., Any]:
    """``layer_check(cls, spec=None, **options)``: assert that ``cls`` agrees with the
    declaration (the marker's unless ``spec`` is given); returns the report."""
    from .testing import assert_layer_matches

    mark = _marker(request)
    defaults = dict(mark.kwargs) if mark is not None else {}
    marked = mark.args[0] if mark is not None and mark.args else None

    def check(cls_or_factory: Callable[[], Any], spec: Any = None, **options: Any):
        __tracebackhide__ = True
        chosen = spec if spec is not None else marked
        if chosen is None:
            raise pytest.UsageError(f"{request.node.nodeid}: layer_check needs a declaration: "
                                    f"layer_check(cls, \"sigmoid\") or @pytest.mark.{MARKER}(\"sigmoid\")")
        return assert_layer_matches(cls_or_factory, chosen, **{**defaults, **options})

    return check
