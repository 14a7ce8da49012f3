"""Shared test set-up: a fixed hypothesis profile so runs are reproducible."""
import os
import tempfile

from hypothesis import HealthCheck, settings

settings.register_profile("ci", derandomize=True, deadline=None, database=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

# The command line caches derivations; the tests must neither read nor fill the user's cache.
os.environ["SYMBACKPROP_CACHE"] = tempfile.mkdtemp(prefix="symbackprop-test-cache-")
