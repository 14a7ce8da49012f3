"""The bundled declarations (``derivations/``) and resolving a SPEC argument.

A SPEC is a path to a ``.toml`` file or the name of a bundled declaration
(``sigmoid``, also written ``bundled:sigmoid``, which is how a bundled one is shown
whatever the working folder or the installation).  The bundled folder ships inside the wheel as
``symbackprop/derivations``; in a source checkout it is the top-level ``derivations/``.
"""
from __future__ import annotations

from pathlib import Path

from ..errors import SpecError
from .model import Spec
from .toml import load_spec


BUNDLED = "bundled:"  # how a bundled declaration is named and shown


def bundled_dir() -> Path:
    """The folder of bundled declarations (installed copy first, then the checkout's)."""
    here = Path(__file__).resolve().parent.parent
    for candidate in (here / "derivations", here.parent / "derivations"):
        if candidate.is_dir():
            return candidate
    raise SpecError("the bundled derivations/ folder is missing from this installation")


def bundled_names() -> list[str]:
    """Names of the bundled declarations, sorted."""
    return sorted(p.stem for p in bundled_dir().glob("*.toml"))


def resolve(spec: str) -> Path:
    """The file a SPEC argument names.

    Raises
    ------
    SpecError
        When it is neither an existing ``.toml`` file nor a bundled name.
    """
    if spec.startswith(BUNDLED):
        return _bundled(spec[len(BUNDLED):], spec)
    path = Path(spec)
    if path.suffix == ".toml" or path.exists():
        if not path.is_file():
            raise SpecError(f"{spec}: no such declaration file")
        return path
    return _bundled(spec, spec)


def _bundled(name: str, spec: str) -> Path:
    bundled = bundled_dir() / f"{name}.toml"
    if name in bundled_names():
        return bundled
    raise SpecError(f"{spec}: not a .toml file or a bundled declaration (bundled: {', '.join(bundled_names())})")


def load(spec: str) -> Spec:
    """Load a SPEC argument (path or bundled name)."""
    path = resolve(spec)
    bundled = path.resolve().parent == bundled_dir().resolve()
    return load_spec(path, source=f"{BUNDLED}{path.stem}" if bundled else None)


def load_all() -> list[Spec]:
    """Every bundled declaration."""
    return [load(name) for name in bundled_names()]


_LOADED: dict[tuple, Spec] = {}


def declaration(target: Spec | str) -> Spec:
    """A :class:`Spec`, or a SPEC argument (bundled name or ``.toml`` path) loaded once per
    file version (so that a batch checking many classes against it derives it once)."""
    if isinstance(target, Spec):
        return target
    path = resolve(str(target)).resolve()
    key = (str(path), path.stat().st_mtime_ns)
    if key not in _LOADED:
        _LOADED[key] = load(str(target))
    return _LOADED[key]
