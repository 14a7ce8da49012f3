"""The jax backend: a derivation as a ``jax.custom_vjp`` function.

The generated module imports ``jax`` (and ``jax.numpy`` as ``jnp``) and ``math`` only.
``<name>(*inputs, *params, *constants)`` is a ``custom_vjp`` function; its forward rule
``_<name>_forward`` returns the output and, as residuals, exactly the derivation's cache
(the output ``y`` for sigmoid, a boolean mask for ReLU, nothing for add) plus the
parameters and sizes the backward reads; ``_<name>_backward(residuals, dout)`` returns
the derived cotangents, :math:`\\bar{x} = \\text{dout}\\cdot y(1 - y)` for sigmoid, and
``None`` for constants.  Every statement is a jax operation on arrays whose shapes are
static, so the function is jit-compatible, and differentiable again: jax differentiates
the backward rule and the residuals the forward rule computed (second derivatives by
reverse mode, ``check_grads(order=2)``, even where the cache holds intermediates).  Constants are Python numbers, which take the
dtype of the arrays they meet (jax's weak types).

An elementwise layer keeps its input instead of its output where the torch backends do
(:func:`symbackprop.codegen.torch.input_cache`: the same bytes, and a backward that is one
known kernel in the input): softplus's ``dout*sigmoid(x)`` is one logistic where
``-expm1(-y)*dout`` is an ``expm1`` and two products, which XLA's CPU code runs slower
(forward + backward 1.22x -> 0.97x ``jit(vjp)`` of the composed forward in float32; measured).
"""
from __future__ import annotations

import keyword
import re

import sympy

from ..derivation.model import Derivation
from ..errors import GenerationError
from ..lang.functions import SPECIAL
from . import frameworks, scaffold
from .torch import input_cache
from .numpy import NumpyLayerPrinter
from .scaffold import INDENT

#: Names the generated module gives its own meaning.
RESERVED = frozenset({"jax", "jnp", "math", "residuals"})


class JaxPrinter(NumpyLayerPrinter):
    """Prints expressions of a derivation as ``jax.numpy`` (and ``jax.scipy.special``) code."""

    constants = "math"

    def _np(self, name: str) -> str:
        if name.startswith(SPECIAL):
            return f"jax.scipy.special.{name[len(SPECIAL):]}"
        return f"jnp.{name}"

    def _print_polygamma(self, e):
        n, x = e.args
        return f"jax.scipy.special.polygamma({int(n)}, {self._print(x)})"

    def _print_LogSumExp(self, e):
        return (f"jax.scipy.special.logsumexp({self._print(e.args[0])}, axis={self._axis(e.args[1])}, "
                f"keepdims={e.keepdims})")

    def _print_Softmax(self, e):
        return f"jax.nn.softmax({self._print(e.args[0])}, axis={int(e.args[1])})"

    def _print_LogSoftmax(self, e):
        return f"jax.nn.log_softmax({self._print(e.args[0])}, axis={int(e.args[1])})"

    def _print_Add(self, e, order=None):
        """``1 - 1/(1 + exp(u))`` as ``jax.nn.sigmoid(u)``: the same value without the
        cancellation that makes the difference 0 where ``u`` is very negative (``sigmoid(-50)``
        is 1.9e-22, not 0), in one operation."""
        u = _logistic_complement(e)
        return f"jax.nn.sigmoid({self._print(u)})" if u is not None else super()._print_Add(e, order)

    def _spread(self, array: str, shape: str) -> str:
        return f"jnp.broadcast_to({array}, {shape})"

    def _filled(self, shape: str, value) -> str:
        """None for zero (a custom_vjp's symbolic zero cotangent: the sizes in ``shape`` are
        traced residuals under ``jit``, no shape)."""
        if value == 0:
            return "None"
        return f"jnp.full({shape}, {self._print(sympy.Float(value))}, dtype=dout.dtype)"


def _logistic_complement(e: sympy.Add) -> sympy.Expr | None:
    """``u`` where ``e`` is ``1 - 1/(1 + exp(u))``, else None."""
    if len(e.args) != 2 or sympy.S.One not in e.args:
        return None
    (rest,) = [a for a in e.args if a != 1]
    term = -rest
    if isinstance(term, sympy.Pow) and term.exp == -1 and isinstance(term.base, sympy.Add) and len(term.base.args) == 2 \
            and sympy.S.One in term.base.args:
        (power,) = [a for a in term.base.args if a != 1]
        if isinstance(power, sympy.exp):
            return power.args[0]
    return None


def function_name(name: str) -> str:
    """``"Softmax with loss"`` -> ``softmax_with_loss``: the generated function's name."""
    words = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", scaffold.class_name(name)).lower()
    return f"{words}_" if keyword.iskeyword(words) or words in RESERVED else words


def op(derivation: Derivation) -> frameworks.Op:
    """The layer's op with jax statements (raises GenerationError for what it cannot do)."""
    frameworks.check_names(derivation, RESERVED, "jax")
    derivation = input_cache(derivation)
    return frameworks.build(derivation, JaxPrinter, "jnp.eye({size}, dtype={like}.dtype)", "jnp.zeros_like")


def module(derivation: Derivation, name: str | None = None) -> str:
    """The source of a module defining the ``custom_vjp`` function ``<name>`` and its rules.

    Parameters
    ----------
    derivation : Derivation
    name : str, optional
        Name (made snake case); default from the declaration's name.
    """
    derivation = input_cache(derivation)
    the_op = op(derivation)
    fname = function_name(name or derivation.spec.name)
    if any(fname == n or f"_{fname}_" in n for n in scaffold.names_of(derivation)):
        raise GenerationError(f"'{fname}' names the generated function: rename the declaration")
    doc = scaffold._docstring(derivation)
    arguments = ", ".join(the_op.arguments)
    residuals = [*the_op.saved, *the_op.dims]
    packed = f"({', '.join(residuals)},)" if residuals else "()"
    forward = [*the_op.forward, f"return {the_op.output}, {packed}"]
    unpack = [f"{', '.join(residuals)}, = residuals"] if residuals else []
    unpack += [f"{d} = jnp.asarray({d}, dtype=dout.dtype)  # a size: of dout's dtype, as a Python int would be"
               for d in the_op.dims]
    backward = [*unpack, *the_op.backward, f"return ({', '.join(the_op.gradients)},)"]
    lines = ['"""Generated by symbackprop: do not edit; regenerate from the declaration."""',
             "import math", "", "import jax", "import jax.numpy as jnp", "", "",
             "@jax.custom_vjp", f"def {fname}({arguments}):", *frameworks.indented(doc, 1),
             f"{INDENT}return _{fname}_forward({arguments})[0]", "", "",
             f"def _{fname}_forward({arguments}):", *frameworks.indented(forward, 1), "", "",
             f"def _{fname}_backward(residuals, dout):", *frameworks.indented(backward, 1), "", "",
             f"{fname}.defvjp(_{fname}_forward, _{fname}_backward)"]
    return "\n".join(lines) + "\n"


__all__ = ["JaxPrinter", "RESERVED", "function_name", "module", "op"]
