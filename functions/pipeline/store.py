"""DynamoDB access, batched: every call costs milliseconds locally and money in the cloud."""
from __future__ import annotations

import json
import math
import time
from decimal import Decimal
from typing import Any, Iterable

from . import aws

BATCH_GET_LIMIT = 100


def to_item(value: Any) -> Any:
    """Python data -> DynamoDB resource types (floats become Decimal). DynamoDB has no NaN or infinity: a
    non-finite number is a bug upstream, reported with where it is."""
    try:
        return json.loads(json.dumps(value, allow_nan=False), parse_float=Decimal)
    except ValueError:
        raise ValueError(f"DynamoDB cannot store a non-finite number (at {_non_finite(value)})") from None


def _non_finite(value: Any, path: str = "item") -> str | None:
    if isinstance(value, float) and not math.isfinite(value):
        return f"{path} = {value}"
    children = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, (list, tuple)) else ()
    return next((found for key, child in children if (found := _non_finite(child, f"{path}[{key!r}]"))), None)


def from_item(value: Any) -> Any:
    """DynamoDB resource types -> plain JSON-able Python (Decimal -> int or float)."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {k: from_item(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [from_item(v) for v in value]
    if isinstance(value, set):
        return sorted(from_item(v) for v in value)
    return value


def batch_get(table_name: str, keys: Iterable[dict], attributes: Iterable[str] | None = None) -> list[dict]:
    """BatchGetItem in chunks of 100, retrying unprocessed keys. Returns the items found (any order).

    ``attributes``: read only these (plus the key attributes); the rest of a large item stays on the server.
    """
    unique = list({json.dumps(k, sort_keys=True): k for k in keys}.values())
    found: list[dict] = []
    dynamodb = aws.resource("dynamodb")
    projection = {}
    if attributes is not None and unique:
        names = sorted(set(attributes) | set(unique[0]))
        projection = {"ProjectionExpression": ", ".join(f"#p{i}" for i in range(len(names))),
                      "ExpressionAttributeNames": {f"#p{i}": name for i, name in enumerate(names)}}
    for start in range(0, len(unique), BATCH_GET_LIMIT):
        request = {table_name: {"Keys": unique[start:start + BATCH_GET_LIMIT], "ConsistentRead": True,
                                **projection}}
        for attempt in range(8):
            response = dynamodb.batch_get_item(RequestItems=request)
            found.extend(response["Responses"].get(table_name, []))
            request = response.get("UnprocessedKeys") or {}
            if not request:
                break
            time.sleep(min(0.05 * 2 ** attempt, 1.0))
        else:
            raise RuntimeError(f"BatchGetItem on {table_name} left keys unprocessed after retries")
    return [from_item(item) for item in found]


def batch_put(table_name: str, items: Iterable[dict], key_names: tuple[str, ...]) -> int:
    """BatchWriteItem (25 per call; boto3's batch_writer retries unprocessed items). Last write of a key wins."""
    count = 0
    with aws.table(table_name).batch_writer(overwrite_by_pkeys=list(key_names)) as writer:
        for item in items:
            writer.put_item(Item=to_item(item))
            count += 1
    return count


def add_counters(table_name: str, pk: str, counters: dict[str, float],
                 mark: tuple[str, Any, Any] | None = None) -> None:
    """Atomically add to numeric counters on one item (one UpdateItem).

    ``mark=(attribute, expected, new)``: also set ``attribute`` to ``new``, only if it still equals ``expected``
    (None: absent). That makes a batch's counts apply exactly once; a failed condition raises
    ConditionalCheckFailedException (the batch is retried and recounted from the new mark).
    """
    counters = {k: v for k, v in counters.items() if v}
    if not counters and mark is None:
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
    aws.table(table_name).update_item(Key={"pk": pk}, UpdateExpression=expression.strip(),
                                      ExpressionAttributeNames=names, ExpressionAttributeValues=values, **kwargs)


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
    return from_item(item) if item is not None else None


def put_item(table_name: str, item: dict) -> None:
    aws.table(table_name).put_item(Item=to_item(item))


def query(table_name: str, limit: int | None = None, **kwargs: Any) -> list[dict]:
    """Query with pagination; stops after ``limit`` items when given."""
    items: list[dict] = []
    table = aws.table(table_name)
    while True:
        if limit is not None:
            kwargs["Limit"] = max(1, limit - len(items))
        response = table.query(**kwargs)
        items.extend(response.get("Items", []))
        start = response.get("LastEvaluatedKey")
        if not start or (limit is not None and len(items) >= limit):
            break
        kwargs["ExclusiveStartKey"] = start
    return [from_item(item) for item in items]
