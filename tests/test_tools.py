"""The system tools some tests run for real: skipped without them on a plain machine, with
the package to install; a failure in CI, where SYMBACKPROP_REQUIRE_TOOLS=1 (tests/conftest.py)."""
from pathlib import Path

CONFTEST = Path(__file__).with_name("conftest.py").read_text(encoding="utf-8")
SUITE = '''
import pytest

@pytest.mark.needs("dot")
def test_draws():
    pass

@pytest.mark.needs("latex", "dvipng")
def test_typesets():
    pass

def test_plain():
    pass
'''


def run_without_tools(pytester, monkeypatch, require: str | None):
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_suite=SUITE)
    monkeypatch.setenv("PATH", str(pytester.mkdir("empty-bin")))  # no dot, no latex on this PATH
    if require is None:
        monkeypatch.delenv("SYMBACKPROP_REQUIRE_TOOLS", raising=False)
    else:
        monkeypatch.setenv("SYMBACKPROP_REQUIRE_TOOLS", require)
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", "-rsfE")


def test_a_missing_tool_skips_with_the_package_to_install(pytester, monkeypatch):
    result = run_without_tools(pytester, monkeypatch, None)
    result.assert_outcomes(passed=1, skipped=2)
    text = result.stdout.str()
    assert "needs dot: apt-get install graphviz" in text
    assert "needs latex, dvipng: apt-get install texlive-latex-base dvipng" in text


def test_with_require_tools_a_missing_tool_fails_naming_it(pytester, monkeypatch):
    result = run_without_tools(pytester, monkeypatch, "1")
    result.assert_outcomes(passed=1, errors=2)  # a failure in set-up: the run fails
    assert "needs dot: apt-get install graphviz (SYMBACKPROP_REQUIRE_TOOLS=1" in result.stdout.str()
