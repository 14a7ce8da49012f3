"""What generated code imports at run time: numpy and numba only, never SymPy or the rest
of the package (``from symbackprop.runtime import fused as _fused``)."""
