"""The pytest plugin and the hypothesis hook, as an installed user gets them (entry points).

Each test suite below runs in its own pytest process (``runpytest_subprocess``), so the
plugin is found through its ``pytest11`` entry point, not imported by this file.  The
oracle is the book's own classes (right) and the shipped slips of examples/my_layers.py
(wrong: SigmoidSlip's backward is ``dout*y``).
"""
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

SUITE = f'''
import sys
import pytest
sys.path.insert(0, {str(EXAMPLES)!r})
import book_layers, my_layers


@pytest.mark.symbackprop("sigmoid")
def test_right(layer_check):
    report = layer_check(book_layers.Sigmoid)
    assert report.ok


@pytest.mark.symbackprop("sigmoid")
def test_slip(layer_check):
    layer_check(my_layers.SigmoidSlip)


@pytest.mark.symbackprop("softmax_with_loss", ignore=["wrong-math", "precision"])
def test_options_come_from_the_marker(layer_check):
    layer_check(my_layers.SoftmaxWithLossNoMean)   # forgot / batch_size: wrong math, ignored here
    with pytest.raises(AssertionError, match="wrong-math"):
        layer_check(my_layers.SoftmaxWithLossNoMean, ignore=[])   # an option given in the call wins


def test_a_declaration_given_directly(layer_check):
    layer_check(book_layers.Affine, "affine")


@pytest.mark.symbackprop("softmax_with_loss")
def test_the_declaration_fixture(declaration):
    assert declaration.name == "SoftmaxWithLoss" and declaration.is_array


def test_no_declaration_at_all(layer_check):
    layer_check(book_layers.Sigmoid)
'''


@pytest.fixture
def outcome(pytester):
    pytester.makepyfile(test_user=SUITE)
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", "-q", "-rA")


def test_the_marker_and_fixture_pass_a_right_class_and_fail_a_slip(outcome):
    outcome.assert_outcomes(passed=4, failed=2)
    text = outcome.stdout.str()
    assert "PASSED test_user.py::test_right" in text and "FAILED test_user.py::test_slip" in text
    assert "wrong-math" in text  # the finding is in the failure message


def test_options_of_the_marker_reach_the_check(outcome):
    assert "PASSED test_user.py::test_options_come_from_the_marker" in outcome.stdout.str()


def test_a_missing_declaration_is_a_usage_error_naming_the_marker(outcome):
    text = outcome.stdout.str()
    assert "ERROR test_user.py::test_no_declaration_at_all" not in text  # an error inside the test, not setup
    assert "layer_check needs a declaration" in text and "@pytest.mark.symbackprop" in text


def test_the_marker_is_registered(pytester):
    result = pytester.runpytest_subprocess("--markers")
    assert "@pytest.mark.symbackprop(spec, **options)" in result.stdout.str()


def test_hypothesis_draws_declarations_by_type():
    code = ("from hypothesis import given, settings, strategies as st\n"
            "from symbackprop.spec.model import Spec\n"
            "seen = set()\n"
            "@settings(max_examples=40, database=None, derandomize=True)\n"
            "@given(st.from_type(Spec))\n"
            "def collect(spec):\n"
            "    assert isinstance(spec, Spec)\n"
            "    seen.add(spec.name)\n"
            "collect()\n"
            "print(len(seen), 'Sigmoid' in seen or len(seen))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    count = int(out.stdout.split()[0])
    assert count >= 5  # several bundled declarations, not one repeated
