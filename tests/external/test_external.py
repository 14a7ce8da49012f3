"""The external-style suite: published hand-written layer code (tests/external/adapters.py)
judged by verify-layer against a declaration, with the verdict read from the code and the
math (tests/external/cases.py)."""
import pytest

from symbackprop.checker import verify_layer

from .cases import CASES


def failing_kinds(case) -> tuple[str, ...]:
    """The kinds of the failing findings verify-layer makes for a case, sorted."""
    report = verify_layer(case.layer, case.against, name=case.id)
    return tuple(sorted({f.kind for f in report.findings if not f.informational}))


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_verify_layer_agrees_with_the_reading(case):
    assert failing_kinds(case) == case.expected, f"{case.source}: {case.why or 'expected OK'}"


def test_every_case_is_judged_once():
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids))
