"""Declarations: the :class:`Spec` of a layer, read from TOML or built from SymPy; standalone
hand derivations; the bundled catalog."""
from .model import DOUT, Chain, Claim, Spec, layer
from .toml import load_spec, spec_from_toml

__all__ = ["DOUT", "Chain", "Claim", "Spec", "layer", "load_spec", "spec_from_toml"]
