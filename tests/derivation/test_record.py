"""A derivation as JSON and back: the cache's format, read by the safe parser only."""
import json

import pytest

import symbackprop
from symbackprop.derivation.record import RecordError, from_record, to_record
from symbackprop.lang.parser import ParseError, parse_expression
from symbackprop.spec.catalog import bundled_names


@pytest.mark.parametrize("name", bundled_names())
def test_every_bundled_derivation_reads_back_equal(name):
    spec = symbackprop.load(name)
    derivation = symbackprop.derive(spec)
    record = to_record(derivation)
    assert record is not None
    again = from_record(json.loads(json.dumps(record)), spec)  # through JSON text, as on disk
    assert again == derivation
    assert again.backward == derivation.backward  # the field users read, compared on its own


@pytest.mark.parametrize("payload", [
    "__import__('os').system('true')",
    "(lambda: 1)()",
    "x.__class__",
    "open('/etc/passwd')",
])
def test_a_record_holding_code_is_refused_not_run(payload):
    spec = symbackprop.load("sigmoid")
    record = to_record(symbackprop.derive(spec))
    (key,) = record["backward"]
    record["backward"][key] = payload
    with pytest.raises(RecordError):
        from_record(record, spec)


def test_a_record_of_another_format_is_refused():
    spec = symbackprop.load("exp")
    record = dict(to_record(symbackprop.derive(spec)), format=999)
    with pytest.raises(RecordError):
        from_record(record, spec)


def test_a_bare_name_is_a_where_condition_only_when_it_is_a_mask():
    with pytest.raises(ParseError):
        parse_expression("where(x, 1, 0)")
    relu = parse_expression("where(mask, dout, 0)", masks={"mask"})
    assert str(relu.args[0].cond) == "mask"
