"""symbackprop: declare a layer once as a SymPy expression; derive, generate, check.

>>> import sympy, symbackprop
>>> x = sympy.Symbol("x")
>>> sigmoid = symbackprop.layer(1 / (1 + sympy.exp(-x)), name="Sigmoid")
>>> sigmoid.derive().backward["x"]
dout*y*(1 - y)
"""
from .errors import (DerivationTimeout, GenerationError, OutputExistsError, ParseError,
                     SpecError, SymbackpropError)
from .spec import Spec, layer, load_spec

__version__ = "0.1.0"

__all__ = [
    "Spec", "layer", "load_spec", "SymbackpropError", "ParseError", "SpecError",
    "DerivationTimeout", "GenerationError", "OutputExistsError", "__version__",
]
