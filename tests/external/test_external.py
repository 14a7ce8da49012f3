"""The external-style suite: published hand-written layer code (tests/external/adapters.py)
judged by verify-layer against a declaration, with the verdict read from the code and the
math (tests/external/cases.py)."""
import pytest

from .cases import CASES
from .judge import judge


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_verify_layer_agrees_with_the_reading(case):
    verdict = judge(case)
    assert not verdict.crash, verdict.crash
    assert verdict.kinds == case.expected, f"{case.source}: {case.why or 'expected OK'}"


def test_every_case_has_its_own_id():
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids))
