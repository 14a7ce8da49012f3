"""Layers written as a pair of functions, the style of course assignments:

.. code-block:: python

    def affine_forward(x, w, b):          # -> (out, cache)
        ...
    def affine_backward(dout, cache):     # -> (dx, dw, db)
        ...

:func:`function_pair` makes a layer class of the two, so that every probe of the checker
(wrong math, shapes, side effects on ``dout`` or the arguments, stale caches, overflow)
applies unchanged (a layer of several outputs, ``lstm_step_forward(x, prev_h, prev_c, Wx, Wh, b) ->
(next_h, next_c, cache)`` and ``lstm_step_backward(dnext_h, dnext_c, cache)``, takes one upstream
gradient per output): ``forward`` takes the declaration's inputs and constants and then its
parameters, in declared order (then, in index notation, a dict of the hyperparameters by name,
as ``conv_forward_naive(x, w, b, conv_param)`` takes ``{"stride": 1, "pad": 0}``), and keeps the
cache it returns; ``backward`` hands that
cache back and gives the inputs' gradients, the parameters' stored as ``d<name>``.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..errors import SymbackpropError
from ..lang.parser import is_identifier
from ..spec.model import Spec


def pair_names(name: str) -> tuple[str, str] | None:
    """``("f", "g")`` for ``"f,g"`` (the forward and the backward function); None for a class name.

    Raises
    ------
    SymbackpropError
        A comma-separated name that is not two identifiers.
    """
    if "," not in name:
        return None
    parts = tuple(p.strip() for p in name.split(","))
    if len(parts) != 2 or not all(is_identifier(p) for p in parts):
        raise SymbackpropError(f"{name!r}: expected FORWARD,BACKWARD (two function names)")
    return parts


def function_pair(forward: Callable[..., Any], backward: Callable[..., Any], spec: Spec,
                  name: str = "FunctionPair") -> type:
    """A layer class from ``forward(*inputs, *constants, *params) -> (out, cache)`` and
    ``backward(dout, cache) -> (d_input, ..., d_param, ...)``, for the checker."""
    params = [p.name for p in spec.params]
    inputs = len(spec.inputs)
    expected = ", ".join(f"d{n}" for n in (*spec.input_names, *params))

    hyper = [h.name for h in spec.hyper]
    outputs = [s.name for s in spec.outputs] or ["out"]  # the course's LSTM step: (next_h, next_c, cache)

    class FunctionPair:
        def __init__(self, *values: Any):
            self._params = values[:len(params)]
            if hyper:  # index notation: the hyperparameters as the course style's dict, conv_param
                self._params += ({n: v for n, v in zip(hyper, values[len(params):])},)
            for n, v in zip(params, values):
                setattr(self, n, v)
            self.cache = None

        def forward(self, *args: Any) -> Any:
            result = forward(*args, *self._params)
            if not isinstance(result, (tuple, list)) or len(result) != len(outputs) + 1:
                raise TypeError(f"{_name(forward)} returned {_count(result)}, expected ({', '.join(outputs)}, cache)")
            *out, self.cache = result
            return tuple(out) if spec.outputs else out[0]

        def backward(self, *douts: Any) -> Any:
            grads = backward(*douts, self.cache)
            grads = tuple(grads) if isinstance(grads, (tuple, list)) else (grads,)
            if len(grads) != inputs + len(params):
                raise TypeError(f"{_name(backward)} returned {_count(grads)}, expected ({expected})")
            for n, g in zip(params, grads[inputs:]):
                setattr(self, f"d{n}", g)
            return grads[0] if inputs == 1 else grads[:inputs]

    FunctionPair.__name__ = FunctionPair.__qualname__ = name
    return FunctionPair


def _name(fn: Callable) -> str:
    return str(getattr(fn, "__name__", "the function"))[:100]


def _count(value: Any) -> str:
    if isinstance(value, (tuple, list)):
        return f"{len(value)} value{'s' if len(value) != 1 else ''}"
    return "one value"
