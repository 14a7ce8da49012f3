"""Code generation: one printer per backend, in a registry.

:data:`BACKENDS` maps a backend's name to the function that prints a module for a
derivation: ``"numpy"`` (readable numpy in the book's shape, numpy its only import) and
``"fused"`` (the same class with each pass's elementwise work as multi-threaded numba
kernels; needs ``pip install '.[fast]'``) and ``"torch"`` (a ``torch.autograd.Function``
saving exactly the cache, and an ``nn.Module``; ``pip install '.[torch]'``) and ``"jax"``
(a ``jax.custom_vjp`` function whose residuals are the cache; ``pip install '.[jax]'``) and
``"torch-op"`` (the torch op as a ``torch.library.custom_op`` with ``register_autograd``) and
``"array-api"`` (the numpy backend's class on any array-API array through array-api-compat;
``pip install '.[array-api]'``).  A new backend is one entry.
"""
from __future__ import annotations

import hashlib
import linecache
import sys
import types
import weakref
from collections.abc import Callable
from pathlib import Path

from .. import indexed
from ..derivation.model import Derivation
from ..errors import GenerationError
from ..files import cache_dir, private_folder, write_atomic
from . import array_api, fused, scaffold
from .adapters import FRAMEWORK_OF, FRAMEWORKS, missing
from . import jax as jax_backend
from . import torch as torch_backend
from . import torch_op as torch_op_backend
from .scaffold import class_name

Backend = Callable[[Derivation, "str | None"], str]

#: Backends by name: each prints the source of a module defining one layer class.
BACKENDS: dict[str, Backend] = {
    "numpy": lambda derivation, name: scaffold.module(derivation, name),
    "fused": lambda derivation, name: _fused_or_numpy(derivation, name),
    "torch": lambda derivation, name: torch_backend.module(derivation, name),
    "jax": lambda derivation, name: jax_backend.module(derivation, name),
    "torch-op": lambda derivation, name: torch_op_backend.module(derivation, name),
    "array-api": lambda derivation, name: array_api.module(derivation, name),
}

#: What a backend's module defines under the name :func:`compile_class` returns (default: the class name).
ENTRY = {"jax": jax_backend.function_name}


def _fused_or_numpy(derivation: Derivation, name: str | None) -> str:
    """The fused module; the numpy one, saying why, when a function has no numba kernel."""
    try:
        return scaffold.module(derivation, name, fused.parts(derivation))
    except fused.NoKernel as exc:
        head, _, rest = scaffold.module(derivation, name).partition("\n")
        return f"{head}\n# fused backend: {exc}; this is the numpy backend's class\n{rest}"


def generate(derivation: Derivation, name: str | None = None, backend: str = "numpy") -> str:
    """The source of a module defining the layer class of ``derivation``.

    Parameters
    ----------
    derivation : Derivation
    name : str, optional
        Class name; default from the declaration's name.
    backend : str
        A key of :data:`BACKENDS`.
    """
    if backend not in BACKENDS:
        raise GenerationError(f"unknown backend {backend!r} (choose from {', '.join(BACKENDS)})")
    if backend != "numpy" and uses_index_notation(derivation):
        raise GenerationError(f"the {backend} backend does not generate index notation (convolution, pooling) "
                              "yet: use --backend numpy")
    if backend != "numpy" and derivation.spec.outputs:
        raise GenerationError(f"the {backend} backend does not generate layers of several outputs yet: "
                              "use --backend numpy")
    return BACKENDS[backend](derivation, name)


def uses_index_notation(derivation: Derivation) -> bool:
    """Does the layer read arrays through index maps (:mod:`symbackprop.indexed`)?"""
    return any(e.atoms(*indexed.INDEX_ATOMS) for _, e in (*derivation.spec.graph, *derivation.steps))


_COMPILED: dict[tuple, tuple] = {}  # (id of a derivation, backend, name) -> (weak reference to it, its class)


def compile_class(derivation: Derivation, name: str | None = None, backend: str = "numpy") -> type:
    """The generated class, compiled in memory, once per derivation, backend and name.

    The fused backend's source is also written to the kernels folder (:func:`kernel_file`)
    so that numba caches the compiled kernels on disk, keyed by that source: a second
    process loads them instead of compiling again.
    """
    key = (id(derivation), backend, name)
    ref, cls = _COMPILED.get(key, (None, None))
    if ref is None or ref() is not derivation:
        source = generate(derivation, name, backend)
        cls_name = ENTRY.get(backend, class_name)(name or derivation.spec.name)
        on_disk = kernel_file(source) if backend == "fused" else None
        try:
            cls = _compile(source, cls_name, str(on_disk) if on_disk else f"<symbackprop:{cls_name}>")
        except ModuleNotFoundError as exc:
            if backend not in FRAMEWORKS or exc.name != FRAMEWORK_OF[backend]:
                raise
            raise missing(backend) from None
        _COMPILED[key] = (weakref.ref(derivation, lambda _: _COMPILED.pop(key, None)), cls)
    return cls


def checkable_class(derivation: Derivation, backend: str = "numpy") -> type:
    """The generated class as the checker calls it (the book's ``forward``/``backward`` on
    numpy arrays): the class itself, or for a framework backend a thin adapter around
    its op (:mod:`symbackprop.codegen.adapters`)."""
    cls = compile_class(derivation, backend=backend)
    if backend in ("torch", "torch-op"):
        from .adapters import torch_layer  # imports torch: only when asked for

        return torch_layer(cls, derivation)
    if backend == "jax":
        from .adapters import jax_layer  # imports jax: only when asked for

        return jax_layer(cls, derivation)
    return cls


def kernel_file(source: str) -> Path | None:
    """``<cache folder>/kernels/<sha256 of source>.py`` holding ``source`` (written once);
    None when the folder is not a private one of this user's.

    Only numba reads the file (its source stamp, and its compiled kernels in
    ``__pycache__`` beside it); the class itself is compiled from ``source`` in memory.
    """
    folder = private_folder(cache_dir() / "kernels")
    if folder is None:
        return None
    path = folder / f"k{hashlib.sha256(source.encode()).hexdigest()[:32]}.py"
    try:
        if not (path.is_file() and not path.is_symlink() and path.read_text(encoding="utf-8") == source):
            write_atomic(path, source, force=True)
    except (OSError, UnicodeDecodeError):
        return None
    return path


def _compile(source: str, cls_name: str, filename: str) -> type:
    """Run generated source (printed from our own SymPy trees, never from user text) in a
    fresh namespace; its lines are registered so that tracebacks show them.

    Source backed by a kernels file becomes a module of its own in ``sys.modules``
    (``symbackprop_kernels.k<hash>``): numba finds a cached kernel's globals by module name.
    """
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    if filename.startswith("<"):
        namespace: dict = {"__name__": "symbackprop_generated"}
    else:
        module = types.ModuleType(f"symbackprop_kernels.{Path(filename).stem}")
        module.__file__ = filename
        sys.modules[module.__name__] = module
        namespace = module.__dict__
    exec(compile(source, filename, "exec"), namespace)  # noqa: S102 - our generated source only
    cls = namespace[cls_name]
    cls.__symbackprop_source__ = source
    return cls


__all__ = ["BACKENDS", "checkable_class", "class_name", "compile_class", "generate"]
