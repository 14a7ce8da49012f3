"""The bundled declarations (``derivations/``) and resolving a SPEC argument.

A SPEC is a path to a ``.toml`` file or the name of a bundled declaration
(``sigmoid``).  The bundled folder ships inside the wheel as
``symbackprop/derivations``; in a source checkout it is the top-level ``derivations/``.
"""
from __future__ import annotations

from pathlib import Path

from ..errors import SpecError
from .model import Spec
from .toml import load_spec


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
    path = Path(spec)
    if path.suffix == ".toml" or path.exists():
        if not path.is_file():
            raise SpecError(f"{spec}: no such declaration file")
        return path
    bundled = bundled_dir() / f"{spec}.toml"
    if bundled.is_file():
        return bundled
    raise SpecError(f"{spec}: not a .toml file or a bundled declaration (bundled: {', '.join(bundled_names())})")


def load(spec: str) -> Spec:
    """Load a SPEC argument (path or bundled name)."""
    path = resolve(spec)
    bundled = path.resolve().parent == bundled_dir().resolve()
    return load_spec(path, source=f"derivations/{path.name}" if bundled else None)


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
