"""Writing output files safely: atomically, and never over an existing file unless asked."""
from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

from .errors import OutputExistsError, SymbackpropError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_atomic(path: str | Path, data: str | bytes, *, force: bool = False) -> Path:
    """Write ``data`` to ``path`` through a temporary file in the same folder, then rename.

    A reader never sees a half-written file, and an interrupted run leaves none behind.

    Raises
    ------
    OutputExistsError
        ``path`` exists and ``force`` is False.
    """
    path = Path(path)
    if path.exists() and not force:
        raise OutputExistsError(f"{path}: exists; pass --force to overwrite")
    if not path.parent.is_dir():
        raise SymbackpropError(f"{path}: folder {path.parent} does not exist")
    raw = data.encode("utf-8") if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; a written file gets the usual mode
        with os.fdopen(fd, "wb") as f:
            f.write(raw)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def cache_dir() -> Path:
    """The user's cache folder: ``$SYMBACKPROP_CACHE``, else ``$XDG_CACHE_HOME/symbackprop``,
    else ``~/.cache/symbackprop`` (here, light to import: ``--help`` needs it)."""
    if os.environ.get("SYMBACKPROP_CACHE"):
        return Path(os.environ["SYMBACKPROP_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "symbackprop"


def private_folder(path: Path) -> Path | None:
    """``path`` created if need be (mode 0700); None unless it is a real folder (not a
    symbolic link) owned by this user: what is read back from it is then ours."""
    try:
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        info = os.lstat(path)
    except OSError:
        return None
    if not stat.S_ISDIR(info.st_mode) or (hasattr(os, "getuid") and info.st_uid != os.getuid()):
        return None
    return path
