"""DynamoDB access, batched: every call costs milliseconds locally and money in the cloud.

Every call is metered in request units as DynamoDB bills them (``metered``): a write costs 1 WRU per started
1 KB of the item (UpdateItem: the item as stored after the update, see ``add_counters``), a strongly consistent
read 1 RRU per started 4 KB, an eventually consistent read half that. The cost record of each batch is priced
from these units (pipeline/costs.py).
"""
from __future__ import annotations

import contextlib
import contextvars
import json
import math
import time
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Iterable, Iterator, Mapping

from boto3.dynamodb.types import Binary, TypeDeserializer

from . import aws

BATCH_GET_LIMIT = 100
WRITE_UNIT_BYTES = 1024
READ_UNIT_BYTES = 4096


@dataclass
class Meter:
    """Request units used while it is current (see ``metered``)."""
    rru: float = 0.0
    wru: float = 0.0


_meters: contextvars.ContextVar[tuple[Meter, ...]] = contextvars.ContextVar("meters", default=())


@contextlib.contextmanager
def metered() -> Iterator[Meter]:
    """Count the request units of the DynamoDB calls made inside the block (blocks nest: an outer meter counts
    what the inner ones count too)."""
    meter = Meter()
    token = _meters.set(_meters.get() + (meter,))
    try:
        yield meter
    finally:
        _meters.reset(token)


def _charge(rru: float = 0.0, wru: float = 0.0) -> None:
    for meter in _meters.get():
        meter.rru += rru
        meter.wru += wru


def item_size(item: dict) -> int:
    """An item's size as DynamoDB counts it: attribute names plus values (strings and binary by length, numbers
    about one byte per two significant digits plus one, 1 byte for booleans and null, 3 bytes per list or map plus
    1 per element) (DynamoDB Developer Guide, "DynamoDB item sizes and formats"; tests/unit/test_store.py)."""
    return sum(len(name.encode()) + _value_size(value) for name, value in item.items())


def _value_size(value: Any) -> int:
    if isinstance(value, str):
        return len(value.encode())
    if isinstance(value, (bytes, bytearray)):
        return len(value)
    if isinstance(value, Binary):
        return len(value.value)
    if isinstance(value, bool) or value is None:
        return 1
    if isinstance(value, (int, float, Decimal)):
        return _number_size(str(value))
    if isinstance(value, dict):
        return 3 + sum(1 + len(k.encode()) + _value_size(v) for k, v in value.items())
    if isinstance(value, (list, tuple, set)):
        return 3 + sum(1 + _value_size(v) for v in value)
    return len(str(value))


def _number_size(text: str) -> int:
    """A number's size: 1 byte per two significant digits, leading and trailing zeroes trimmed, plus 1 byte
    (DynamoDB Developer Guide, "DynamoDB item sizes and formats"). ``text``: as written, e.g. "-0.050" or "1E+3"."""
    mantissa = text.lower().partition("e")[0]
    digits = len(mantissa.lstrip("+-").replace(".", "").strip("0")) or 1
    return (digits + 1) // 2 + 1


def write_units(size: int) -> int:
    """WRU to write an item of ``size`` bytes: one per started 1 KB."""
    return max(1, math.ceil(size / WRITE_UNIT_BYTES))


def read_units(size: int, consistent: bool = True) -> float:
    """RRU to read ``size`` bytes (an item, or what a Query read): one per started 4 KB, half if eventually
    consistent."""
    units = max(1, math.ceil(size / READ_UNIT_BYTES))
    return units if consistent else units / 2


def to_item(value: Any) -> Any:
    """Python data -> DynamoDB resource types (floats become Decimal, top-level bytes stay binary). DynamoDB has
    no NaN or infinity: a non-finite number is a bug upstream, reported with where it is."""
    binary = {}
    if isinstance(value, dict):
        binary = {k: v for k, v in value.items() if isinstance(v, (bytes, bytearray))}
        if binary:
            value = {k: v for k, v in value.items() if k not in binary}
    try:
        converted = json.loads(json.dumps(value, allow_nan=False), parse_float=Decimal)
    except ValueError:
        raise ValueError(f"DynamoDB cannot store a non-finite number (at {_non_finite(value)})") from None
    return converted | binary if binary else converted


def _non_finite(value: Any, path: str = "item") -> str | None:
    if isinstance(value, float) and not math.isfinite(value):
        return f"{path} = {value}"
    children = (value.items() if isinstance(value, dict)
                else enumerate(value) if isinstance(value, (list, tuple)) else ())
    return next((found for key, child in children if (found := _non_finite(child, f"{path}[{key!r}]"))), None)


def from_item(value: Any) -> Any:
    """DynamoDB resource types -> plain Python (Decimal -> int or float, Binary -> bytes)."""
    if isinstance(value, Binary):
        return value.value
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {k: from_item(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [from_item(v) for v in value]
    if isinstance(value, set):
        return sorted(from_item(v) for v in value)
    return value


def _projection(attributes: Iterable[str] | None, key: dict | None) -> dict:
    if attributes is None or key is None:
        return {}
    names = sorted(set(attributes) | set(key))
    return {"ProjectionExpression": ", ".join(f"#p{i}" for i in range(len(names))),
            "ExpressionAttributeNames": {f"#p{i}": name for i, name in enumerate(names)}}


@dataclass
class Read:
    """Keys of one table for ``_batch_get``: ``projection`` holds ProjectionExpression and its names (or nothing
    for whole items), ``size`` measures an item as returned (for the read units)."""
    table: str
    keys: list[dict]
    projection: dict
    consistent: bool
    size: Any


def _batch_get(service, reads: list[Read]) -> list[list[dict]]:
    """BatchGetItem on a client or resource of the keys of several tables, 100 keys per call across the tables
    (DynamoDB API Reference, BatchGetItem: "up to 100 items" from "one or more tables"), retrying unprocessed keys
    with backoff; charges the read units of what it found. Returns each read's items (any order)."""
    if len({read.table for read in reads}) != len(reads):
        raise ValueError("one Read per table: a BatchGetItem names each table once")
    found: dict[str, list[dict]] = {read.table: [] for read in reads}
    by_table = {read.table: read for read in reads}
    pending = [(read.table, key) for read in reads for key in read.keys]
    for start in range(0, len(pending), BATCH_GET_LIMIT):
        chunk: dict[str, list[dict]] = {}
        for table_name, key in pending[start:start + BATCH_GET_LIMIT]:
            chunk.setdefault(table_name, []).append(key)
        request = {name: {"Keys": keys, "ConsistentRead": by_table[name].consistent, **by_table[name].projection}
                   for name, keys in chunk.items()}
        for attempt in range(8):
            response = service.batch_get_item(RequestItems=request)
            for name, items in response["Responses"].items():
                found[name].extend(items)
                read = by_table[name]
                _charge(rru=sum(read_units(read.size(i), read.consistent) for i in items))
            request = response.get("UnprocessedKeys") or {}
            if not request:
                break
            time.sleep(min(0.05 * 2 ** attempt, 1.0))
        else:
            raise RuntimeError(f"BatchGetItem on {', '.join(request)} left keys unprocessed after retries")
    return [found[read.table] for read in reads]


def batch_get(table_name: str, keys: Iterable[dict], attributes: Iterable[str] | None = None,
              consistent: bool = True) -> list[dict]:
    """BatchGetItem (chunks of 100, unprocessed keys retried). Returns the items found (any order).

    ``attributes``: read only these (plus the key attributes). Units are charged on the whole item size, as
    DynamoDB does (a projection saves bandwidth, not units); this meters the projected size, a lower bound.
    """
    unique = list({json.dumps(k, sort_keys=True): k for k in keys}.values())
    if not unique:
        return []
    [found] = _batch_get(aws.resource("dynamodb"), [Read(table_name, unique, _projection(attributes, unique[0]),
                                                         consistent, item_size)])
    return [from_item(item) for item in found]


def raw_size(item: dict) -> int:
    """``item_size`` of an item in the low-level form ({"S": ...}, {"B": ...}, {"N": ...}, {"L": [...]}, ...);
    strings counted in characters (the keys and attributes written through it are ASCII)."""
    return sum(len(name) + _raw_value_size(typed) for name, typed in item.items())


def _raw_value_size(typed: dict) -> int:
    [(kind, value)] = typed.items()
    if kind in ("S", "B"):
        return len(value)
    if kind == "N":
        return _number_size(value)
    if kind == "M":
        return 3 + sum(1 + len(k) + _raw_value_size(v) for k, v in value.items())
    if kind == "L":
        return 3 + sum(1 + _raw_value_size(v) for v in value)
    if kind in ("SS", "BS"):
        return sum(len(v) for v in value)
    if kind == "NS":
        return sum(map(_number_size, value))
    return 1  # BOOL, NULL


_deserializer = TypeDeserializer()


def from_raw(item: dict) -> dict:
    """A typed (low-level) item as plain Python, as ``from_item`` gives it."""
    return from_item({name: _deserializer.deserialize(typed) for name, typed in item.items()})


def raw_read(table_name: str, keys: list[dict], attributes: Iterable[str] | None = None,
             consistent: bool = True) -> Read:
    """A read for ``batch_get_raw``: typed keys, and exactly ``attributes`` (None: whole items, typed)."""
    projection = {} if attributes is None else {
        "ProjectionExpression": ", ".join(f"#p{i}" for i, _ in enumerate(attributes)),
        "ExpressionAttributeNames": {f"#p{i}": name for i, name in enumerate(attributes)}}
    return Read(table_name, keys, projection, consistent, raw_size)


def batch_get_raw(*reads: Read) -> list[list[dict]]:
    """BatchGetItem through the low-level client (``raw_read``s of distinct tables, in as few calls as 100 keys a
    call allow), keys and items in DynamoDB's typed form: for the per-batch hot path, where the resource layer's
    type conversion of every value costs more CPU than the rest of the batch. Each read's items, any order."""
    asked = [read for read in reads if read.keys]
    items = _batch_get(aws.client("dynamodb"), asked) if asked else []
    found = dict(zip((read.table for read in asked), items, strict=True))
    return [found.get(read.table, []) for read in reads]


def batch_put_raw(table_name: str, items: list[dict]) -> int:
    """BatchWriteItem of typed items, 25 per call, retrying unprocessed items with backoff."""
    dynamodb = aws.client("dynamodb")
    for start in range(0, len(items), 25):
        request = {table_name: [{"PutRequest": {"Item": item}} for item in items[start:start + 25]]}
        for attempt in range(8):
            request = dynamodb.batch_write_item(RequestItems=request).get("UnprocessedItems") or {}
            if not request:
                break
            time.sleep(min(0.05 * 2 ** attempt, 1.0))
        else:
            raise RuntimeError(f"BatchWriteItem on {table_name} left items unprocessed after retries")
    _charge(wru=sum(write_units(raw_size(i)) for i in items))
    return len(items)


def batch_put(table_name: str, items: Iterable[dict], key_names: tuple[str, ...], index_copies: int = 0) -> int:
    """BatchWriteItem (25 per call; boto3's batch_writer retries unprocessed items). Last write of a key wins.
    ``index_copies``: global secondary indexes that project the whole item (each write is billed there too)."""
    count = 0
    units = 0
    with aws.table(table_name).batch_writer(overwrite_by_pkeys=list(key_names)) as writer:
        for item in items:
            converted = to_item(item)
            writer.put_item(Item=converted)
            units += write_units(item_size(converted))
            count += 1
    _charge(wru=units * (1 + index_copies))
    return count


def add_counters(table_name: str, pk: str, counters: Mapping[str, float],
                 mark: tuple[str, Any, Any] | None = None, set_values: dict[str, Any] | None = None,
                 size_after: int | None = None) -> None:
    """Atomically add to numeric counters on one item (one UpdateItem).

    ``mark=(attribute, expected, new)``: also set ``attribute`` to ``new``, only if it still equals ``expected``
    (None: absent). That makes a batch's counts apply exactly once; a failed condition raises
    ConditionalCheckFailedException (the batch is retried and recounted from the new mark).
    ``set_values``: other attributes set in the same update.
    ``size_after``: the item's size after the update, when the caller knows it (it read the item and ``mark``
    proves nobody wrote it since): units are charged on it without asking DynamoDB to return the item.
    """
    counters = {k: v for k, v in counters.items() if v}
    if not counters and mark is None and not set_values:
        return
    names = {f"#c{i}": name for i, name in enumerate(counters)}
    values = {f":v{i}": to_item(value) for i, value in enumerate(counters.values())}
    expression = ("ADD " + ", ".join(f"#c{i} :v{i}" for i in range(len(counters)))) if counters else ""
    kwargs: dict[str, Any] = {}
    if mark is not None:
        attribute, expected, new = mark
        names["#mark"] = attribute
        values[":mark"] = to_item(new)
        expression += " SET #mark = :mark"
        if expected is None:
            kwargs["ConditionExpression"] = "attribute_not_exists(#mark)"
        else:
            values[":expected"] = to_item(expected)
            kwargs["ConditionExpression"] = "#mark = :expected"
    for i, (name, value) in enumerate((set_values or {}).items()):
        names[f"#s{i}"] = name
        values[f":s{i}"] = to_item(value)
        expression += (", " if " SET " in f" {expression}" else " SET ") + f"#s{i} = :s{i}"
    response = aws.table(table_name).update_item(
        Key={"pk": pk}, UpdateExpression=expression.strip(), ExpressionAttributeNames=names,
        ExpressionAttributeValues=values, ReturnValues="ALL_NEW" if size_after is None else "NONE", **kwargs)
    if size_after is None:
        size_after = item_size(response.get("Attributes", {}))
    _charge(wru=write_units(size_after))  # the larger of before and after: after, here


def scan_all(table_name: str, **kwargs: Any) -> list[dict]:
    """Every item of a (small) table."""
    items: list[dict] = []
    table = aws.table(table_name)
    while True:
        response = table.scan(**kwargs)
        items.extend(response.get("Items", []))
        if "LastEvaluatedKey" not in response:
            return [from_item(item) for item in items]
        kwargs["ExclusiveStartKey"] = response["LastEvaluatedKey"]


def get_item(table_name: str, key: dict) -> dict | None:
    item = aws.table(table_name).get_item(Key=key, ConsistentRead=True).get("Item")
    _charge(rru=read_units(item_size(item or {})))
    return from_item(item) if item is not None else None


def put_item(table_name: str, item: dict, **kwargs: Any) -> None:
    converted = to_item(item)
    aws.table(table_name).put_item(Item=converted, **kwargs)
    _charge(wru=write_units(item_size(converted)))


def query_page(table_name: str, limit: int, start_key: dict | None = None,
               **kwargs: Any) -> tuple[list[dict], dict | None]:
    """One Query call: up to ``limit`` items (fewer when the page reaches 1 MB) and the key to continue from (None:
    the end; a key may also lead to an empty last page, as DynamoDB documents)."""
    if start_key:
        kwargs["ExclusiveStartKey"] = to_item(start_key)
    response = aws.table(table_name).query(Limit=limit, **kwargs)
    items = response.get("Items", [])
    _charge(rru=read_units(sum(item_size(i) for i in items), bool(kwargs.get("ConsistentRead"))))
    last = response.get("LastEvaluatedKey")
    return [from_item(item) for item in items], from_item(last) if last else None


def query(table_name: str, limit: int | None = None, **kwargs: Any) -> list[dict]:
    """Query with pagination; stops after ``limit`` items when given."""
    items: list[dict] = []
    table = aws.table(table_name)
    while True:
        if limit is not None:
            kwargs["Limit"] = max(1, limit - len(items))
        response = table.query(**kwargs)
        items.extend(response.get("Items", []))
        # a Query is billed on the total size it read, rounded up to 4 KB (eventually consistent: half)
        size = sum(item_size(i) for i in response.get("Items", []))
        _charge(rru=read_units(size, bool(kwargs.get("ConsistentRead"))))
        start = response.get("LastEvaluatedKey")
        if not start or (limit is not None and len(items) >= limit):
            break
        kwargs["ExclusiveStartKey"] = start
    return [from_item(item) for item in items]
