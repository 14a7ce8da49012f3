r"""Numerical differentiation: the independent oracle every backward is checked against.

* **Complex step**: for a forward pass that is analytic and runs on complex input,
  :math:`f'(x) \approx \operatorname{Im} f(x + ih)/h` with :math:`h = 10^{-20}` has no
  subtractive cancellation: relative errors near machine precision.
* **Central differences**: :math:`f'(x) \approx (f(x + h) - f(x - h)) / 2h` with
  :math:`h = 10^{-6}\max(1, |x|)`: errors near :math:`10^{-10}` relative.

For elementwise layers the Jacobian is diagonal, so one perturbation of the whole
array gives every element's derivative at once.  :func:`directional_derivative`
gives :math:`J v` for any layer, the building block of random-projection checks.
"""
from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence

import numpy as np

COMPLEX_STEP = 1e-20
RELATIVE_STEP = 1e-6


def _call(forward: Callable, inputs: Sequence[np.ndarray]) -> np.ndarray:
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return np.asarray(forward(*inputs))


def complex_step_works(forward: Callable, inputs: Sequence[np.ndarray]) -> bool:
    """Does ``forward`` accept complex input and carry the imaginary part through?"""
    try:
        probe = [np.asarray(x, dtype=complex) + 1j * COMPLEX_STEP for x in inputs]
        out = _call(forward, probe)
    except (TypeError, ValueError, AttributeError):
        return False
    return np.iscomplexobj(out) and bool(np.all(np.isfinite(out)))


def directional_derivative(forward: Callable, inputs: Sequence[np.ndarray], index: int,
                           direction: np.ndarray, method: str = "central") -> np.ndarray:
    """``J_index @ direction``: how the output moves when input ``index`` moves along ``direction``.

    Parameters
    ----------
    forward : callable
        ``forward(*inputs) -> ndarray``; called only with fresh arrays.
    method : {"complex", "central"}
    """
    x = np.asarray(inputs[index], dtype=float)
    if method == "complex":
        moved = list(inputs)
        moved[index] = x + 1j * COMPLEX_STEP * direction
        return _call(forward, moved).imag / COMPLEX_STEP
    h = RELATIVE_STEP * max(1.0, float(np.max(np.abs(x), initial=0.0)))
    plus, minus = list(inputs), list(inputs)
    plus[index], minus[index] = x + h * direction, x - h * direction
    return (_call(forward, plus) - _call(forward, minus)) / (2 * h)


def elementwise_derivative(forward: Callable, inputs: Sequence[np.ndarray], index: int,
                           method: str = "central") -> tuple[np.ndarray, np.ndarray]:
    r"""Every element's :math:`\partial y_k / \partial x_k` of an elementwise layer, and its noise.

    Central differences use a step per element, :math:`h_k = 10^{-6}\max(1, |x_k|)`;
    rounding in :math:`f(x \pm h)` makes the quotient uncertain by about
    :math:`8\varepsilon\max|f(x \pm h)| / h_k`, returned as ``noise`` so that a checker
    does not blame the backward for the oracle's own error.  The complex step has no
    such noise.
    """
    x = np.asarray(inputs[index], dtype=float)
    if method == "complex":
        d = directional_derivative(forward, inputs, index, np.ones_like(x), "complex")
        return d, np.zeros_like(d)
    h = RELATIVE_STEP * np.maximum(1.0, np.abs(x))
    plus, minus = list(inputs), list(inputs)
    plus[index], minus[index] = x + h, x - h
    up, down = _call(forward, plus), _call(forward, minus)
    noise = 8 * np.finfo(float).eps * np.maximum(np.abs(up), np.abs(down)) / h
    return (up - down) / (2 * h), noise


def numerical_gradient(f: Callable[[], float], x: np.ndarray, h: float = 1e-4) -> np.ndarray:
    """The book's per-element central difference of a scalar function of ``x`` (changed in place
    and restored), as in its chapter 4; for checking whole networks element by element."""
    grad = np.zeros_like(x, dtype=float)
    it = np.nditer(x, flags=["multi_index"], op_flags=[["readwrite"]])
    for _ in it:
        i = it.multi_index
        saved = x[i]
        x[i] = saved + h
        up = f()
        x[i] = saved - h
        down = f()
        x[i] = saved
        grad[i] = (up - down) / (2 * h)
    return grad


def relative_error(got: np.ndarray, want: np.ndarray, noise: np.ndarray | float = 0.0,
                   floor: np.ndarray | float = 0.0) -> np.ndarray:
    r"""Elementwise error of ``got`` against the oracle ``want``:

    .. math:: \frac{\max(0, |a - b| - \text{noise})}{\max(|a|, |b|, \text{floor})}

    ``noise`` is the oracle's own uncertainty; ``floor`` the level below which values
    are judged absolutely (a checker passes :math:`10^{-6}` of the gradient's typical
    size: ``y*(1 - y)`` at ``x = 20`` is off by 1e-16 on a value of 2e-9, which no
    backpropagation can notice).
    """
    got, want = np.broadcast_arrays(np.asarray(got, dtype=float), np.asarray(want, dtype=float))
    excess = np.maximum(np.abs(got - want) - noise, 0.0)
    return excess / np.maximum(np.maximum(np.abs(got), np.abs(want)), np.maximum(floor, 1e-300))
