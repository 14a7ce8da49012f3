"""Layers of several outputs (``outputs = ["next_h", "next_c"]``) as the checkers see them.

Such a layer's ``forward`` returns a tuple (``next_h, next_c``) and its ``backward`` takes one
upstream gradient per output (``backward(dnext_h, dnext_c)``, the course's LSTM step).  The
derivation takes the outputs' stack as the one output; :func:`stacked` makes the class under
test look the same, so that every probe (wrong math, shapes, side effects on ``dout``, stale
caches, dtypes) applies unchanged: ``forward`` returns ``np.stack(outputs)``, ``backward(dout)``
hands ``dout[0], dout[1], ...`` over (views: a write into one is a write into ``dout``).
"""
from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import numpy as np

from ..spec.model import Spec


def stacked(factory: Callable[..., Any], spec: Spec) -> Callable[..., Any]:
    """``factory`` itself for a layer of one output; else a factory of adapters of its layers."""
    if not spec.outputs:
        return factory
    names = [s.name for s in spec.outputs]

    class Stacked:
        def __init__(self, *args: Any, **kwargs: Any):
            object.__setattr__(self, "_layer", factory(*args, **kwargs))

        def forward(self, *args: Any) -> Any:
            out = self._layer.forward(*args)
            if not isinstance(out, (tuple, list)) or len(out) != len(names):
                got = f"{len(out)} values" if isinstance(out, (tuple, list)) else "one value"
                raise TypeError(f"forward returned {got}, expected ({', '.join(names)})")
            return np.stack([np.asarray(o) for o in out])

        def backward(self, dout: Any) -> Any:
            return self._layer.backward(*[dout[k] for k in range(len(names))])

        def __getattr__(self, name: str) -> Any:  # d<param>, the parameters, the caches
            return getattr(object.__getattribute__(self, "_layer"), name)

        def __setattr__(self, name: str, value: Any) -> None:
            setattr(self._layer, name, value)

    try:
        Stacked.__signature__ = inspect.signature(factory)  # type: ignore[attr-defined]
    except (TypeError, ValueError):
        pass
    Stacked.__name__ = Stacked.__qualname__ = getattr(factory, "__name__", "Stacked")
    return Stacked
