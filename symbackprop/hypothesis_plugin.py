"""The hypothesis extension hook (entry point group ``hypothesis`` in ``pyproject.toml``).

Hypothesis calls :func:`setup_hook` when it is imported; afterwards ``st.from_type(Spec)``
draws the bundled declarations (the other strategies are functions of
:mod:`symbackprop.testing`: ``inputs_for``, ``cases_for``).  The hook imports the ``Spec``
class, which needs SymPy (about 0.4 s, once per process); ``HYPOTHESIS_NO_PLUGINS=1``
turns every such hook off.
"""
from __future__ import annotations


def setup_hook() -> None:
    """Register ``st.from_type(Spec)``: the bundled declarations, loaded when drawn."""
    from hypothesis import strategies as st

    from .spec.model import Spec

    def bundled() -> st.SearchStrategy:
        from .spec.catalog import bundled_names, declaration

        return st.sampled_from(bundled_names()).map(declaration)

    st.register_type_strategy(Spec, st.deferred(bundled))
