"""Framework ops seen as the book's layer classes, so that the checker runs on them.

The checker calls ``cls(*params)``, ``forward(*inputs, *constants)`` and ``backward(dout)``
with numpy arrays (:mod:`symbackprop.checker`).  :func:`jax_layer` wraps a generated
``custom_vjp`` function with ``jax.vjp``; :func:`torch_layer` wraps a generated
``nn.Module`` class (of the torch or the torch-op backend) that way: every array becomes a tensor of the same dtype (sharing its
memory, so that a parameter changed by the caller is seen), ``forward`` runs the
generated ``Function.apply`` (or the function calling the custom op) under autograd, and ``backward`` asks torch's autograd for
the gradients, :math:`\\bar{x} = \\text{dout}^\\top \\partial y/\\partial x`, which calls the
generated backward: what is checked is the op as torch runs it, not a re-implementation.
"""
from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from ..derivation.model import Derivation
from ..errors import GenerationError
from .scaffold import class_name

#: Backends whose generated code imports a framework, with the hint shown when it is missing.
FRAMEWORKS = {"torch": "pip install 'symbackprop[torch]'", "jax": "pip install 'symbackprop[jax]'",
              "torch-op": "pip install 'symbackprop[torch]'", "array-api": "pip install 'symbackprop[array-api]'"}

#: The framework (the module its code imports) of each framework backend.
FRAMEWORK_OF = {"torch": "torch", "jax": "jax", "torch-op": "torch", "array-api": "array_api_compat"}


def missing(backend: str) -> GenerationError:
    """The one-line error for a framework backend whose framework is not installed."""
    return GenerationError(f"the {backend} backend needs {FRAMEWORK_OF[backend]}: {FRAMEWORKS[backend]}")


def _torch():
    try:
        import torch
    except ImportError:
        raise missing("torch") from None
    return torch


def _tensor(torch, value: Any, grad: bool = False):
    """``value`` as a tensor of its own dtype, sharing memory with a numpy array where it can."""
    array = np.asarray(value)
    if any(s < 0 for s in array.strides):
        array = array.copy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # a read-only array: torch only reads it
        tensor = torch.as_tensor(array)
    return tensor.requires_grad_(True) if grad and tensor.is_floating_point() else tensor


def torch_layer(module_cls: type, derivation: Derivation) -> type:
    """A book-shaped class (numpy in, numpy out) around the generated torch module class."""
    torch = _torch()
    spec = derivation.spec
    n_inputs, params = len(spec.inputs), [p.name for p in spec.params]
    function = module_cls.function  # an autograd.Function (torch), or the function calling a custom op (torch-op)
    apply = getattr(function, "apply", function)

    class TorchLayer:
        __doc__ = f"The torch op {function.__name__} with numpy arrays in and out (for the checker)."

        def __init__(self, *values):
            for name, value in zip(params, values):
                setattr(self, name, value)
                setattr(self, f"d{name}", None)
            self._out, self._wrt = None, []

        def forward(self, *arguments):
            inputs = [_tensor(torch, a, grad=True) for a in arguments[:n_inputs]]
            weights = [_tensor(torch, getattr(self, p), grad=True) for p in params]
            with torch.enable_grad():
                out = apply(*inputs, *weights, *(_tensor(torch, a) for a in arguments[n_inputs:]))
            self._out, self._wrt = out, [*inputs, *weights]
            return out.detach().numpy()

        def backward(self, dout=1.0):
            d = torch.broadcast_to(_tensor(torch, dout).to(self._out.dtype), self._out.shape)
            wrt = [w for w in self._wrt if w.requires_grad]
            found = iter(torch.autograd.grad(self._out, wrt, d, retain_graph=True, allow_unused=True))
            grads = [_numpy(torch, next(found), w) if w.requires_grad else np.zeros_like(w.numpy())
                     for w in self._wrt]
            for name, g in zip(params, grads[n_inputs:]):
                setattr(self, f"d{name}", g)
            return grads[0] if n_inputs == 1 else tuple(grads[:n_inputs])

    TorchLayer.__name__ = TorchLayer.__qualname__ = module_cls.__name__
    TorchLayer.__symbackprop_source__ = getattr(module_cls, "__symbackprop_source__", None)
    return TorchLayer


def _numpy(torch, grad, like) -> np.ndarray:
    return (torch.zeros_like(like) if grad is None else grad).detach().numpy()


def jax_layer(function, derivation: Derivation) -> type:
    """A book-shaped class (numpy in, numpy out) around the generated ``custom_vjp`` function:
    ``forward`` runs ``jax.vjp`` (the generated forward rule), ``backward`` its pullback (the
    generated backward rule), in 64-bit mode for the call only (the checker's float64)."""
    try:
        import jax
    except ImportError:
        raise missing("jax") from None
    spec = derivation.spec
    n_inputs, params = len(spec.inputs), [p.name for p in spec.params]

    class JaxLayer:
        __doc__ = "The jax custom_vjp function with numpy arrays in and out (for the checker)."

        def __init__(self, *values):
            for name, value in zip(params, values):
                setattr(self, name, value)
                setattr(self, f"d{name}", None)
            self._pullback = self._dtype = None

        def forward(self, *arguments):
            constants = [np.asarray(a) for a in arguments[n_inputs:]]
            wrt = [np.asarray(a) for a in (*arguments[:n_inputs], *(getattr(self, p) for p in params))]
            with jax.enable_x64(True):
                out, self._pullback = jax.vjp(lambda *a: function(*a, *constants), *wrt)
            self._dtype = out.dtype
            return np.array(out)

        def backward(self, dout=1.0):
            with jax.enable_x64(True):
                grads = [np.array(g) for g in self._pullback(np.asarray(dout, dtype=self._dtype))]
            for name, g in zip(params, grads[n_inputs:]):
                setattr(self, f"d{name}", g)
            return grads[0] if n_inputs == 1 else tuple(grads[:n_inputs])

    JaxLayer.__name__ = JaxLayer.__qualname__ = class_name(spec.name)
    return JaxLayer
