"""Item sizes and request units as DynamoDB bills them (pipeline/store.py): the cost model and every batch's cost
record are priced from these. The rules are the DynamoDB Developer Guide's, "DynamoDB item sizes and formats",
https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/CapacityUnitCalculations.html:
- a string: the UTF-8 bytes of the attribute name plus the UTF-8 bytes of the value;
- a number: "Leading and trailing zeroes are trimmed", about 1 byte per two significant digits, plus 1 byte;
- a binary value: its raw bytes (not the base64 it travels as);
- null or a Boolean: 1 byte;
- a List or a Map: 3 bytes of overhead plus 1 byte per element, plus the elements (a map's keys are names).
And "DynamoDB read and write operations": a write costs 1 WRU per started 1 KB, a strongly consistent read 1 RRU
per started 4 KB, an eventually consistent read half that."""
from decimal import Decimal

import pytest
from boto3.dynamodb.types import Binary, TypeSerializer

from pipeline import store


@pytest.mark.parametrize(("value", "size"), [
    ("abc", 3), ("é", 2), ("", 0),                               # UTF-8 bytes
    (b"\x00" * 700, 700), (Binary(b"xyz"), 3),                  # raw bytes, not base64
    (True, 1), (None, 1),
    (7, 2), (12, 2), (123, 3), (-123, 3),                       # 1 byte per two significant digits, plus 1
    (1000, 2), (Decimal("1000"), 2), (1_764_500_000, 4),        # trailing zeroes trimmed: 1, 17645
    (Decimal("0.5"), 2), (Decimal("0.05"), 2), (Decimal("100.50"), 3),  # leading ones too: 5, 5, 1005
    (0, 2),
    ([], 3), ([1, "ab"], 3 + (1 + 2) + (1 + 2)),                # 3 + 1 per element + the elements
    ({}, 3), ({"k": "ab"}, 3 + (1 + 1 + 2)),                    # a map's keys count as names
])
def test_attribute_value_sizes(value, size):
    assert store.item_size({"name": value}) == len("name") + size


def test_the_typed_form_has_the_same_size():
    """raw_size measures what the hot path writes through the low-level client, typed: the same bytes."""
    item = {"user_id": "user-00001", "feature_set": "v1", "hot": b"\x01" * 613, "at": 1_764_500_000,
            "score": Decimal("0.512300"), "flags": [True, None, "x"], "m": {"a": 10, "b": b"zz"}}
    typed = {name: TypeSerializer().serialize(value) for name, value in item.items()}
    assert store.raw_size(typed) == store.item_size(item)


@pytest.mark.parametrize(("size", "wru"), [(0, 1), (1, 1), (1024, 1), (1025, 2), (2048, 2), (2049, 3)])
def test_a_write_costs_one_unit_per_started_kilobyte(size, wru):
    assert store.write_units(size) == wru


@pytest.mark.parametrize(("size", "strong", "eventual"), [
    (0, 1, 0.5), (4096, 1, 0.5), (4097, 2, 1.0), (12_288, 3, 1.5)])
def test_a_read_costs_one_unit_per_started_4_kb_and_half_if_eventually_consistent(size, strong, eventual):
    assert store.read_units(size) == strong
    assert store.read_units(size, consistent=False) == eventual
