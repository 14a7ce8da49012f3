"""The façade: the only code that chains the stages (declare, derive, generate, check, verify).

>>> import sympy, symbackprop
>>> x = sympy.Symbol("x")
>>> sigmoid = symbackprop.layer(1 / (1 + sympy.exp(-x)), name="Sigmoid")
>>> symbackprop.derive(sigmoid).backward["x"]
dout*y*(1 - y)

Every stage below reads only the stages before it; these functions hand each stage's
result to the next.  What :func:`layer`, :func:`load_spec` and :func:`load` return is a
:class:`Layer`: a declaration (a :class:`~symbackprop.spec.model.Spec`, data) with
these functions as methods, ``layer.derive()``, ``layer.check()``.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from . import codegen
from . import derivation as derive_stage
from .checker import check_generated
from .derivation.model import Derivation
from .reports import CheckReport
from .spec import catalog
from .spec import model as spec_model
from .spec.model import Spec
from .spec.toml import load_spec as read_spec
from .verify import array_claims, verify_derivation


def derive(spec: Spec) -> Derivation:
    """Local derivatives, the backward pass and the cache of a declaration (memoized)."""
    return derive_stage.derive(spec)


def generate(obj: Spec | Derivation, backend: str = "numpy", name: str | None = None) -> str:
    """Source of the layer class: ``backend`` is a key of :data:`symbackprop.codegen.BACKENDS`
    (``"numpy"``, readable; ``"fused"``, numba kernels; ``"torch"``, an autograd.Function
    and an nn.Module)."""
    return codegen.generate(derive_stage.derivation_of(obj), name, backend)


def compile(obj: Spec | Derivation, backend: str = "numpy", name: str | None = None) -> type:  # noqa: A001
    """The generated layer class, compiled in memory (once per derivation and backend);
    for ``backend="torch"`` the ``nn.Module`` class, its op as ``.function``; for
    ``backend="torch-op"`` the same, ``.function`` calling the custom op ``.op``."""
    return codegen.compile_class(derive_stage.derivation_of(obj), name, backend)


def check(spec: Spec, *, max_examples: int = 25, backend: str = "numpy") -> CheckReport:
    """``symbackprop check`` of one declaration: derive, generate, check the class
    numerically, and verify the declaration's hand claims and chains."""
    start = time.perf_counter()
    derivation = derive_stage.derive(spec)
    report = check_generated(derivation, codegen.checkable_class(derivation, backend),
                             max_examples=max_examples)
    if spec.is_array:
        claims, chains = [c.to_json() for c in array_claims(derivation)], []
    else:
        found = verify_derivation(derivation)
        claims, chains = ([r.to_json() for r in records] for records in found)
    report.claims, report.chains = claims, chains
    report.problems += [f"claim {c['of']} is wrong" for c in claims if c["status"] == "wrong"]
    report.problems += [f"chain {c['of']}: step {c['first_wrong_step']} is wrong" for c in chains if not c["ok"]]
    report.settle()
    report.seconds = round(time.perf_counter() - start, 3)
    return report


class Layer(Spec):
    """A declaration with the pipeline's verbs: ``derive``, ``generate``, ``compile``, ``check``.

    It is a :class:`~symbackprop.spec.model.Spec` (every stage accepts it as one); the
    methods are this module's functions.
    """

    def derive(self) -> Derivation:
        """Local derivatives, the backward pass and the cache: :func:`derive`."""
        return derive(self)

    def generate(self, backend: str = "numpy", name: str | None = None) -> str:
        """Source of the layer class: :func:`generate`."""
        return generate(self, backend, name)

    def compile(self, backend: str = "numpy", name: str | None = None) -> type:  # noqa: A003
        """The generated layer class, compiled in memory: :func:`compile`."""
        return compile(self, backend, name)

    def check(self, **options: Any) -> CheckReport:
        """Check the generated class numerically: :func:`check`."""
        return check(self, **options)


def as_layer(spec: Spec) -> Layer:
    """``spec`` with the pipeline's verbs (the same data, not validated again)."""
    if isinstance(spec, Layer):
        return spec
    out = Layer.__new__(Layer)
    out.__dict__.update(spec.__dict__)
    return out


def layer(*args: Any, **kwargs: Any) -> Layer:
    """Declare a layer from SymPy expressions: :func:`symbackprop.spec.model.layer`."""
    return as_layer(spec_model.layer(*args, **kwargs))


def load_spec(path: str | Path, source: str | None = None) -> Layer:
    """Load a TOML declaration: :func:`symbackprop.spec.toml.load_spec`."""
    return as_layer(read_spec(path, source))


def load(target: str) -> Layer:
    """A bundled declaration by name (``"sigmoid"``), or a ``.toml`` file."""
    return as_layer(catalog.load(target))


layer.__doc__ = spec_model.layer.__doc__
