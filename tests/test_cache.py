"""The derivation cache: hits skip the symbolic work; damaged or foreign entries are never trusted."""
import pickle

import pytest

import symbackprop
from symbackprop.cache import Cache, cache_dir, cached_check, cached_derivation, fingerprint


@pytest.fixture
def cache(tmp_path):
    return Cache(tmp_path / "cache")


def test_a_hit_skips_the_derivation(cache, monkeypatch):
    first = cached_derivation(symbackprop.load("sigmoid"), cache)
    assert (cache.hits, cache.misses) == (0, 1)

    def fail(self):
        raise AssertionError("derived again")

    monkeypatch.setattr(type(symbackprop.load("sigmoid")), "derive", fail)
    again = cached_derivation(symbackprop.load("sigmoid"), cache)
    assert cache.hits == 1
    assert again.backward == first.backward and again.cache_names == first.cache_names
    assert symbackprop.compile(again)().forward(0.0) == 0.5  # usable: the class is generated again from it


def test_check_reports_are_cached_with_their_options(cache):
    spec = symbackprop.load("tanh")
    a = cached_check(spec, cache, max_examples=5)
    b = cached_check(symbackprop.load("tanh"), cache, max_examples=5)
    cached_check(symbackprop.load("tanh"), cache, max_examples=6)
    assert a.to_json() == b.to_json()
    assert (cache.hits, cache.misses) == (1, 2)


@pytest.mark.parametrize("damage", [
    lambda raw: raw[:40],                              # truncated
    lambda raw: raw[:-1] + bytes([raw[-1] ^ 1]),       # one bit flipped in the payload
    lambda raw: bytes(32) + raw[32:],                  # tag wiped
    lambda raw: b"",                                   # emptied
])
def test_a_damaged_entry_changes_nothing_but_the_time(cache, damage):
    spec = symbackprop.load("exp")
    want = cached_derivation(spec, cache).backward
    (entry,) = [p for p in cache.directory.iterdir() if p.name != "secret"]
    entry.write_bytes(damage(entry.read_bytes()))
    again = cached_derivation(symbackprop.load("exp"), cache)
    assert again.backward == want
    assert cache.misses == 2  # recomputed, not trusted


class Payload:
    """A pickle that would run code when loaded."""

    def __reduce__(self):
        return (exec, ("raise SystemExit('foreign pickle executed')",))


def test_a_foreign_entry_is_never_unpickled(cache):
    spec = symbackprop.load("log")
    cached_derivation(spec, cache)
    (entry,) = [p for p in cache.directory.iterdir() if p.name != "secret"]
    evil = pickle.dumps(Payload())
    entry.write_bytes(b"\0" * 32 + evil)  # no valid tag: made without the secret
    again = cached_derivation(symbackprop.load("log"), cache)
    assert str(again.backward["x"]) == "dout/x"


def test_the_secret_is_private(cache):
    cached_derivation(symbackprop.load("exp"), cache)
    assert (cache.directory / "secret").stat().st_mode & 0o077 == 0


def test_disabled_cache_writes_nothing(tmp_path):
    cache = Cache(tmp_path / "c", enabled=False)
    cached_derivation(symbackprop.load("exp"), cache)
    assert not (tmp_path / "c").exists()


def test_cache_location_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("SYMBACKPROP_CACHE", str(tmp_path / "a"))
    assert cache_dir() == tmp_path / "a"
    monkeypatch.delenv("SYMBACKPROP_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "symbackprop"


def test_fingerprint_tells_declarations_apart_and_is_stable():
    assert fingerprint(symbackprop.load("exp")) == fingerprint(symbackprop.load("exp"))
    assert fingerprint(symbackprop.load("exp")) != fingerprint(symbackprop.load("log"))


def test_the_command_line_uses_the_cache_and_can_skip_it(tmp_path, monkeypatch, capsys):
    from symbackprop.cli import main

    monkeypatch.setenv("SYMBACKPROP_CACHE", str(tmp_path / "cli"))
    assert main(["check", "sigmoid", "--examples", "3"]) == 0
    first = capsys.readouterr().out
    entries = sorted(p.name for p in (tmp_path / "cli").iterdir())
    assert len(entries) == 3  # the secret, the derivation, the check report
    assert main(["check", "sigmoid", "--examples", "3"]) == 0
    assert capsys.readouterr().out == first
    assert main(["check", "sigmoid", "--examples", "3", "--no-cache"]) == 0
    assert sorted(p.name for p in (tmp_path / "cli").iterdir()) == entries
