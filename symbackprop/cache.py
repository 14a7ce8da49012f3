"""An on-disk cache of derivations and check reports: plain data, authenticated, never code.

Re-checking the same declarations repeats the same symbolic work; the cache keeps its
results in the user's cache folder: ``$SYMBACKPROP_CACHE``, else
``$XDG_CACHE_HOME/symbackprop``, else ``~/.cache/symbackprop``.

An entry is keyed by a SHA-256 of the declaration's content, the options, this package's
version and its source code.  It is JSON: a derivation as expression text that only the
safe parser reads back (:mod:`symbackprop.derivation.record`), a check report as its
``--json`` record; nothing in an entry can run.  Each entry carries an HMAC-SHA256 tag made
with a secret key kept in the cache folder (readable by its owner only), so that an
entry somebody else wrote, or a damaged one, is recomputed instead of believed.

The folder is handled as hostile ground: symbolic links and files that are not regular
are never read or written through (``O_NOFOLLOW``), entries are written atomically
beside their name, the secret is created with ``O_EXCL``.  Graded submissions never see
the folder (the grading sandbox hides it); code run as the same user without that
sandbox could still read the key, so graders run untrusted code sandboxed.
"""
from __future__ import annotations

import functools
import hashlib
import hmac
import json
import os
import secrets
import stat
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import sympy

from . import derivation as derive_stage
from . import pipeline
from .derivation.record import RecordError, from_record, to_record
from .files import cache_dir, private_folder, write_atomic
from .reports import CheckReport
from .version import __version__

T = TypeVar("T")
TAG_BYTES = 32
SECRET = "secret"
#: Entries larger than this are not read (a derivation record is a few kB).
MAX_ENTRY_BYTES = 16 << 20


@functools.lru_cache(maxsize=1)
def code_fingerprint() -> str:
    """A digest of this package's own source: a changed rule invalidates every entry,
    even between releases."""
    digest = hashlib.sha256()
    for path in sorted(Path(__file__).parent.rglob("*.py")):
        digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()


def fingerprint(spec) -> str:
    """A digest of everything a declaration says (not of where it was loaded from)."""
    parts = [spec.name, spec.section, spec.description, spec.inputs, spec.params, spec.constants,
             tuple(spec.shapes.items()), spec.assumptions, spec.graph, spec.predict,
             tuple(spec.values.items()), repr(spec.expect), spec.claims, spec.chains, spec.source,
             tuple(spec.intervals.items())]
    return hashlib.sha256(sympy.srepr(parts).encode()).hexdigest()


def _read_regular(path: Path) -> bytes | None:
    """The bytes of ``path`` if it is a regular file (never through a symbolic link)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_NONBLOCK", 0))
    except OSError:
        return None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_ENTRY_BYTES:
            return None
        with os.fdopen(fd, "rb", closefd=False) as f:
            return f.read(MAX_ENTRY_BYTES + 1)
    finally:
        os.close(fd)


class Cache:
    """Get-or-compute over the cache folder; ``enabled=False`` computes every time."""

    def __init__(self, directory: str | Path | None = None, enabled: bool = True):
        self.directory = Path(directory) if directory is not None else cache_dir()
        self.enabled = enabled
        self.hits = self.misses = 0
        self._key_bytes: bytes | None = None

    def _key(self, kind: str, *parts: object) -> str:
        text = "\x1f".join([__version__, code_fingerprint(), kind, *map(str, parts)])
        return hashlib.sha256(text.encode()).hexdigest()

    def _folder(self) -> Path | None:
        """The cache folder, created private; None when it is not a real folder of ours."""
        return private_folder(self.directory)

    def _secret(self) -> bytes | None:
        if self._key_bytes is None:
            folder = self._folder()
            if folder is None:
                return None
            path = folder / SECRET
            data = _read_regular(path)
            if data is None or len(data) != 32:
                data = secrets.token_bytes(32)
                try:
                    path.unlink(missing_ok=True)  # a symbolic link or a damaged key: removed, never followed
                    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
                    with os.fdopen(fd, "wb") as f:
                        f.write(data)
                except OSError:
                    return None
            self._key_bytes = data
        return self._key_bytes

    def _tag(self, secret: bytes, key: str, payload: bytes) -> bytes:
        return hmac.new(secret, key.encode() + payload, hashlib.sha256).digest()

    def load(self, key: str) -> tuple[bool, object]:
        """``(True, data)`` for a genuine entry; ``(False, None)`` for none or a bad one."""
        secret = self._secret()
        raw = _read_regular(self.directory / key) if secret is not None else None
        if raw is None or len(raw) <= TAG_BYTES:
            return False, None
        tag, payload = raw[:TAG_BYTES], raw[TAG_BYTES:]
        if not hmac.compare_digest(tag, self._tag(secret, key, payload)):
            return False, None
        try:
            return True, json.loads(payload.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            return False, None

    def store(self, key: str, data: object) -> None:
        secret = self._secret()
        if secret is None or data is None:
            return  # not cacheable: fine, it was computed
        payload = json.dumps(data, sort_keys=True, separators=(",", ":"), default=_plain).encode()
        try:
            write_atomic(self.directory / key, self._tag(secret, key, payload) + payload, force=True)
        except OSError:
            pass  # a read-only or full disk only costs time

    def get(self, kind: str, parts: tuple, compute: Callable[[], T], write: Callable[[T], object],
            read: Callable[[object], T]) -> T:
        """The cached value for ``(kind, parts)``, or ``compute()``'s, stored for next time.

        ``write`` turns a value into JSON-ready data (None: not cacheable), ``read`` the
        data back into a value (raising ``ValueError`` or ``RecordError`` on bad data).
        """
        if not self.enabled:
            return compute()
        key = self._key(kind, *parts)
        found, data = self.load(key)
        if found:
            try:
                value = read(data)
                self.hits += 1
                return value
            except (RecordError, ValueError, TypeError, KeyError):
                pass
        self.misses += 1
        value = compute()
        self.store(key, write(value))
        return value


def _plain(value: object) -> object:
    """Numbers a report may hold as numpy scalars, for JSON."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return str(value)


def cached_derivation(spec, cache: Cache):
    """The derivation of ``spec`` through the cache (then memoized for the spec as usual)."""
    derivation = cache.get("derive", (fingerprint(spec),), lambda: derive_stage.derive(spec),
                           to_record, lambda data: from_record(data, spec))
    derive_stage.remember(spec, derivation)
    return derivation


def cached_check(spec, cache: Cache, **options) -> CheckReport:
    """:func:`symbackprop.pipeline.check` through the cache: a check is deterministic
    (derandomized hypothesis), so the same declaration, options and version give the same report."""
    return cache.get("check", (fingerprint(spec), sorted(options.items())), lambda: pipeline.check(spec, **options),
                     CheckReport.to_json, CheckReport.from_json)
