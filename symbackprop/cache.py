"""An on-disk cache of derivations and check reports, safe against damaged or foreign entries.

Re-checking the same declarations (the catalog, or every student's submission against
one reference) repeats the same symbolic work; the cache keeps its results in the
user's cache folder: ``$SYMBACKPROP_CACHE``, else ``$XDG_CACHE_HOME/symbackprop``, else
``~/.cache/symbackprop``.

An entry is keyed by a SHA-256 of the declaration's content, the options, this
package's version and its source code.  It is a pickle, and unpickling runs code, so no entry is
unpickled unless it carries a valid HMAC-SHA256 tag made with a secret key that lives
in the cache folder (created once, readable by its owner only): a corrupted,
truncated or foreign file fails the tag and is recomputed, never trusted.
"""
from __future__ import annotations

import copy
import functools
import hashlib
import hmac
import os
import pickle
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import sympy

from . import derivation as derive_stage
from . import pipeline
from .files import write_atomic
from .version import __version__

T = TypeVar("T")
TAG_BYTES = 32


def cache_dir() -> Path:
    """Where entries live (see the module docstring)."""
    if os.environ.get("SYMBACKPROP_CACHE"):
        return Path(os.environ["SYMBACKPROP_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "symbackprop"


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
             tuple(spec.values.items()), repr(spec.expect), spec.claims, spec.chains, spec.source]
    return hashlib.sha256(sympy.srepr(parts).encode()).hexdigest()


class Cache:
    """Get-or-compute over the cache folder; ``enabled=False`` computes every time."""

    def __init__(self, directory: str | Path | None = None, enabled: bool = True):
        self.directory = Path(directory) if directory is not None else cache_dir()
        self.enabled = enabled
        self.hits = self.misses = 0

    def _key(self, kind: str, *parts: object) -> str:
        text = "\x1f".join([__version__, code_fingerprint(), kind, *map(str, parts)])
        return hashlib.sha256(text.encode()).hexdigest()

    def _secret(self) -> bytes:
        path = self.directory / "secret"
        try:
            data = path.read_bytes()
            if len(data) == 32:
                return data
        except OSError:
            pass
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        data = secrets.token_bytes(32)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        return data

    def _tag(self, key: str, payload: bytes) -> bytes:
        return hmac.new(self._secret(), key.encode() + payload, hashlib.sha256).digest()

    def load(self, key: str) -> tuple[bool, object]:
        """``(True, value)`` for a genuine entry; ``(False, None)`` for none or a bad one."""
        try:
            raw = (self.directory / key).read_bytes()
        except OSError:
            return False, None
        tag, payload = raw[:TAG_BYTES], raw[TAG_BYTES:]
        if len(tag) != TAG_BYTES or not hmac.compare_digest(tag, self._tag(key, payload)):
            return False, None
        try:
            return True, pickle.loads(payload)  # noqa: S301 - authenticated above
        except Exception:  # a genuine but unreadable entry (e.g. a changed class): recompute
            return False, None

    def store(self, key: str, value: object) -> None:
        try:
            payload = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
        except (pickle.PicklingError, TypeError, AttributeError, RecursionError):
            return  # not cacheable: fine, it was computed
        try:
            self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            write_atomic(self.directory / key, self._tag(key, payload) + payload, force=True)
        except OSError:
            pass  # a read-only or full disk only costs time

    def get(self, kind: str, parts: tuple, compute: Callable[[], T]) -> T:
        """The cached value for ``(kind, parts)``, or ``compute()``'s, stored for next time."""
        if not self.enabled:
            return compute()
        key = self._key(kind, *parts)
        found, value = self.load(key)
        if found:
            self.hits += 1
            return value
        self.misses += 1
        value = compute()
        self.store(key, value)
        return value


def cached_derivation(spec, cache: Cache):
    """The derivation of ``spec`` through the cache (then memoized for the spec as usual)."""
    derivation = cache.get("derive", (fingerprint(spec),), lambda: _portable(derive_stage.derive(spec)))
    derivation.spec = spec
    derive_stage.remember(spec, derivation)
    return derivation


def cached_check(spec, cache: Cache, **options):
    """:func:`symbackprop.pipeline.check` through the cache: a check is deterministic
    (derandomized hypothesis), so the same declaration, options and version give the same report."""
    return cache.get("check", (fingerprint(spec), sorted(options.items())),
                     lambda: pipeline.check(spec, **options))


def _portable(derivation):
    """A derivation without its back reference to the caller's spec (a copy is pickled)."""

    clone = copy.copy(derivation)
    clone.spec = copy.copy(derivation.spec)
    return clone
