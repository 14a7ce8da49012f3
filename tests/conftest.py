"""Shared test set-up: a fixed hypothesis profile so runs are reproducible, a private cache,
and the system tools some tests run for real.

A test marked ``@pytest.mark.needs("dot")`` runs Graphviz's ``dot`` itself.  Where the tool
is missing it is skipped with the package to install, unless ``SYMBACKPROP_REQUIRE_TOOLS=1``
(which ``.ci/run`` sets): then it fails, so that nothing is silently skipped in CI.
"""
import os
import shutil
import tempfile

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile("ci", derandomize=True, deadline=None, database=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

# The command line caches derivations; the tests must neither read nor fill the user's cache.
os.environ["SYMBACKPROP_CACHE"] = tempfile.mkdtemp(prefix="symbackprop-test-cache-")
pytest_plugins = ["pytester"]

#: Each system tool a test may need, and the Debian package that installs it.
TOOLS = {"dot": "graphviz", "latex": "texlive-latex-base", "dvipng": "dvipng", "bwrap": "bubblewrap"}
REQUIRE_TOOLS = os.environ.get("SYMBACKPROP_REQUIRE_TOOLS") == "1"


def pytest_configure(config):
    config.addinivalue_line("markers", "needs(*tools): system tools the test runs for real "
                            f"(any of {', '.join(TOOLS)}); skipped without them unless SYMBACKPROP_REQUIRE_TOOLS=1")


def missing_tools(tools) -> list[str]:
    unknown = [t for t in tools if t not in TOOLS]
    if unknown:
        raise pytest.UsageError(f"needs({', '.join(unknown)}): not a known tool ({', '.join(TOOLS)})")
    return [t for t in tools if shutil.which(t) is None]


def pytest_runtest_setup(item):
    tools = [t for mark in item.iter_markers("needs") for t in mark.args]
    missing = missing_tools(tools)
    if missing:
        packages = " ".join(dict.fromkeys(TOOLS[t] for t in missing))
        reason = f"needs {', '.join(missing)}: apt-get install {packages}"
        if REQUIRE_TOOLS:
            pytest.fail(f"{reason} (SYMBACKPROP_REQUIRE_TOOLS=1: a missing tool fails)", pytrace=False)
        pytest.skip(reason)
