"""The derivation cache: hits skip the symbolic work; damaged or foreign entries are never trusted."""
import json

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


def test_a_forged_entry_without_the_secret_is_not_believed(cache):
    """An entry written by someone who cannot read the secret: well-formed JSON, no valid tag."""
    spec = symbackprop.load("log")
    cached_derivation(spec, cache)
    (entry,) = [p for p in cache.directory.iterdir() if p.name != "secret"]
    raw = entry.read_bytes()
    forged = raw[32:].replace(b"dout/x", b"dout*x")
    assert forged != raw[32:]
    entry.write_bytes(b"\0" * 32 + forged)
    again = cached_derivation(symbackprop.load("log"), cache)
    assert str(again.backward["x"]) == "dout/x"
    assert cache.misses == 2


def test_entries_are_json_text_never_pickles(cache):
    cached_derivation(symbackprop.load("sigmoid"), cache)
    cached_check(symbackprop.load("sigmoid"), cache, max_examples=3)
    for entry in cache.directory.iterdir():
        if entry.name != "secret":
            payload = entry.read_bytes()[32:]
            assert isinstance(json.loads(payload), dict)
            assert b"\x80" not in payload[:2]  # no pickle protocol header


def test_a_symlinked_secret_is_replaced_not_followed(cache, tmp_path):
    victim = tmp_path / "gradebook.json"
    victim.write_text("precious " * 100)
    cache.directory.mkdir(parents=True)
    (cache.directory / "secret").symlink_to(victim)
    cached_derivation(symbackprop.load("exp"), cache)
    assert victim.read_text() == "precious " * 100
    assert not (cache.directory / "secret").is_symlink()


def test_a_symlinked_entry_is_neither_read_nor_written_through(cache, tmp_path):
    spec = symbackprop.load("exp")
    cached_derivation(spec, cache)
    (entry,) = [p for p in cache.directory.iterdir() if p.name != "secret"]
    genuine = entry.read_bytes()
    victim = tmp_path / "victim"
    victim.write_bytes(genuine)  # a valid entry, but reached through a link
    entry.unlink()
    entry.symlink_to(victim)
    fresh = Cache(cache.directory)
    cached_derivation(symbackprop.load("exp"), fresh)
    assert fresh.misses == 1  # the link was not believed
    assert victim.read_bytes() == genuine  # nor written through
    assert not entry.is_symlink()  # replaced by a real entry, atomically


def test_a_folder_that_is_not_ours_disables_the_cache(tmp_path):
    target = tmp_path / "elsewhere"
    target.mkdir()
    (tmp_path / "link").symlink_to(target)
    cache = Cache(tmp_path / "link")
    cached_derivation(symbackprop.load("exp"), cache)
    assert list(target.iterdir()) == []


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
