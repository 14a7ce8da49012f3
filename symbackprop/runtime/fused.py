"""What generated fused layers import at run time: buffers, operands, kernels (numba only).

A module generated with ``--backend fused`` imports this module as ``_fused``: it needs
numpy and numba, never SymPy or the rest of symbackprop, so a saved layer runs wherever
numba does.  Arrays that a kernel writes are kept between calls (:func:`buffer`) and
reused when nobody else holds them any more; a result the caller still holds is never
overwritten (the reference count decides).  Each :class:`Kernel` runs serially or on
every core, whichever took less time in its last calls.
"""
from __future__ import annotations

import os
import sys
import time
import types
from collections import deque

import numpy as np

from .vecmath import CONTRACT as _CONTRACT

try:  # the optional dependency: pip install '.[fast]'
    import numba as nb
    from numba.np.ufunc.parallel import _launch_threads

    # generated kernels call these as _fused.exp_ and so on
    from .vecmath import exp_, expm1_, log1p_, log_, maximum_, minimum_, row_max, row_sum, softplus_, tanh_  # noqa: F401
except ImportError:  # pragma: no cover - tested in a subprocess that hides numba
    nb = None

#: Arrays with at least this many elements are processed on every core; smaller ones serially
#: (starting the threads costs more than a small loop).
PARALLEL_MIN = 1 << 17
INSTALL_HINT = "the fused backend needs numba: pip install '.[fast]' (or pip install numba)"


class NumbaMissing(ImportError):
    """numba is not installed (the fused backend's optional dependency)."""


def require() -> None:
    """Raise :class:`NumbaMissing` with the install hint when numba is missing."""
    if nb is None:
        raise NumbaMissing(INSTALL_HINT)


def _refcount(a) -> int:
    return sys.getrefcount(a)


def _calibrate() -> int:
    store = {"a": np.empty(1)}
    a = store.get("a")
    return _refcount(a)


#: The reference count of a buffer that only its layer's store holds, seen from :func:`buffer`.
_FREE_REFS = _calibrate()


def buffer(store: dict, name: str, shape: tuple, dtype) -> np.ndarray:
    """An uninitialized array for a kernel to write: the one kept under ``name`` from the
    previous call when its shape and dtype match and nobody else holds it, else a new one.

    Parameters
    ----------
    store : dict
        The layer's own buffers (``self._buffers``).
    name : str
        Which result.
    shape : tuple of int
    dtype : numpy dtype
    """
    a = store.get(name)
    if a is not None and a.shape == shape and a.dtype == dtype and _refcount(a) <= _FREE_REFS:
        return a
    a = np.empty(shape, dtype)
    store[name] = a
    return a


def scratch(store: dict, slots: int, cols: int, dtype=np.float64) -> np.ndarray:
    """Per-thread work rows of a row kernel: ``(threads, slots, cols)`` of the kernel's dtype, kept
    (their sums are accumulated in float64 all the same: ``row_sum``).  The float64 default
    serves files generated before the dtype was passed."""
    return buffer(store, "_scratch", (nb.config.NUMBA_NUM_THREADS, max(slots, 1), cols), dtype)


_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


def float_dtype(*values) -> np.dtype:
    """The dtype a kernel writes: numpy's result type of the array operands (Python numbers
    and 0-d arrays do not widen it, integers and booleans compute in float64)."""
    first = values[0]
    if type(first) is np.ndarray and first.dtype in _FLOATS and all(  # the common case, fast
            type(v) is np.ndarray and v.dtype == first.dtype for v in values[1:]):
        return first.dtype
    arrays = [v for v in values if isinstance(v, np.ndarray) and v.ndim and v.dtype != np.bool_]
    kinds = [np.asarray(v).dtype for v in (arrays or values)]
    dtype = np.result_type(*kinds) if kinds else np.dtype(np.float64)
    if dtype.kind in "biu":
        return np.dtype(np.float64)
    if dtype not in _FLOATS:
        raise TypeError(f"the fused backend computes in float32 or float64, not {dtype}; "
                        "use the numpy backend for other types")
    return dtype


def domain(*values) -> tuple[tuple, np.dtype]:
    """The broadcast shape of ``values`` and the dtype a kernel over them writes."""
    shapes = [np.shape(v) for v in values]
    shape = shapes[0] if all(s == shapes[0] for s in shapes) else np.broadcast_shapes(*shapes)
    return shape, float_dtype(*values)


def operands(*values) -> tuple[list[np.ndarray], tuple, np.dtype]:
    """Elementwise inputs as C-contiguous arrays of one shape (broadcast if needed) and of
    one float dtype, with that shape and dtype."""
    shape, dtype = domain(*values)
    return [operand(v, shape, dtype) for v in values], shape, dtype


def operand(value, shape: tuple, dtype=None) -> np.ndarray:
    """``value`` as a C-contiguous array of ``shape``; converted to ``dtype`` only when it is
    not already float32 or float64 (a float64 upstream gradient stays float64, as in numpy)."""
    a = np.asarray(value)
    if a.dtype not in _FLOATS:
        if a.dtype.kind == "c":
            float_dtype(a)  # raises TypeError
        a = a.astype(dtype or np.float64)
    if a.shape != shape:
        a = np.broadcast_to(a, shape)
    return a if a.flags.c_contiguous else a.copy(order="C")  # (np.ascontiguousarray makes 0-d 1-d)


_LIKE: dict = {}


def like(dtype) -> np.ndarray:
    """An empty array of ``dtype``: a kernel's last argument, whose ``dtype.type`` its constants
    take (an array, because numba reads a scalar type argument about 15 times more slowly)."""
    found = _LIKE.get(dtype)
    if found is None:
        found = _LIKE[dtype] = np.empty(0, dtype)
    return found


def result(a: np.ndarray):
    """What a method returns: a numpy scalar for 0-d input, as numpy does, else the array."""
    return a[()] if a.ndim == 0 else a


def _variant(fn, which: str):
    """``fn`` under its own qualified name: numba's on-disk cache is indexed by that name
    and the bytecode, not by the compile options, so the serial and the parallel loop
    of one function would otherwise load each other's machine code."""
    copy = types.FunctionType(fn.__code__, fn.__globals__, fn.__name__, fn.__defaults__, fn.__closure__)
    copy.__qualname__ = f"{fn.__qualname__}__{which}"
    copy.__doc__ = fn.__doc__
    return copy


class Kernel:
    """One loop, compiled lazily twice: serially for small arrays, over all cores for large ones.

    For large arrays the faster of the two is learned from the calls themselves: each
    variant's time per element is the *least* of its last ``KEEP`` calls (a thread that was
    not scheduled in time only ever adds to a call, so the minimum is what the loop costs),
    and the slower variant is tried again every ``RETRY`` calls.  On a machine whose other
    cores stay busy, the parallel loop keeps waiting for its threads and the serial loop wins.

    Parameters
    ----------
    fn : function
        Plain Python with ``nb.prange`` loops; numba compiles it per argument types.
    """

    RETRY = 32
    KEEP = 8

    def __init__(self, fn):
        require()
        cache = os.path.isfile(fn.__code__.co_filename)  # a file on disk (generated, or the kernels folder)
        if "get_thread_id" in fn.__code__.co_names:
            # The loop resolves get_thread_id through numba's threading layer, which compiling
            # starts and loading from the cache does not: without it a second process's serial
            # loop called a null address (SIGSEGV).
            _launch_threads()
        options = {"error_model": "numpy", "cache": cache, "fastmath": _CONTRACT}
        self.serial = nb.njit(**options)(_variant(fn, "serial"))
        self.parallel = nb.njit(parallel=True, **options)(_variant(fn, "parallel"))
        self.__doc__ = fn.__doc__
        self.calls = 0
        self.seconds = {True: deque(maxlen=self.KEEP), False: deque(maxlen=self.KEEP)}  # seconds per element
        self.compiled: set[bool] = set()

    def __call__(self, size: int, *args):
        if size < PARALLEL_MIN:
            return self.serial(*args)
        self.calls += 1
        variant = self._choose()
        start = time.perf_counter()
        result = (self.parallel if variant else self.serial)(*args)
        per_element = (time.perf_counter() - start) / size
        if variant in self.compiled:  # the first call of each compiles: not a sample
            self.seconds[variant].append(per_element)
        self.compiled.add(variant)
        return result

    def _choose(self) -> bool:
        """True: the parallel loop."""
        if self.calls <= 4:  # both, twice each (the first call of each compiles)
            return self.calls % 2 == 1
        parallel, serial = (min(self.seconds[v], default=0.0) for v in (True, False))
        faster = parallel <= serial
        return (not faster) if self.calls % self.RETRY == 0 else faster


def is_complex(*values) -> bool:
    """Is any of ``values`` complex (then the numpy code runs, not the kernels)?"""
    return any(np.iscomplexobj(v) for v in values)
