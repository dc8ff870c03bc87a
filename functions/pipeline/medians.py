"""The median of the users' rolling median scores, kept up to date per batch so GET /stats reads one item.

Exact up to ``SAMPLE_USERS`` users; past that, over a uniform sample of them: the ``SAMPLE_USERS`` users with the
smallest hash of their id (a bottom-k sketch: every user is equally likely to be in it, and a user in it stays in
it until users with smaller hashes arrive). The sample lives on one STATE_TABLE item ("medians"): per sampled user
their current rolling median and the end of its window, as one JSON string attribute (a map of 256 entries costs
the same units and far more (de)serialization work, in DynamoDB's clients and in moto). store_predictions updates it for the sampled users of each
batch (one Query per sampled user for their scores of the last ``WINDOW_SECONDS``), with optimistic concurrency
(the two shards' executions may update it at once).
"""
from __future__ import annotations

import hashlib
import json
import statistics
from concurrent.futures import ThreadPoolExecutor

from boto3.dynamodb.conditions import Key
from botocore.exceptions import ClientError

from . import store
from .settings import Settings

SAMPLE_USERS = 256
WINDOW_SECONDS = 300
SAMPLE_KEY = {"pk": "medians"}
_ATTEMPTS = 5


def user_hash(user_id: str) -> str:
    return hashlib.sha256(user_id.encode()).hexdigest()[:12]


def rolling_median(settings: Settings, user_id: str, window_seconds: float = WINDOW_SECONDS) -> tuple | None:
    """(median, window end, count) of the user's scores over (latest - window, latest], event time."""
    latest = store.query(settings.predictions_table, limit=1, IndexName="by_user",
                         KeyConditionExpression=Key("user_id").eq(user_id), ScanIndexForward=False)
    if not latest:
        return None
    end = latest[0]["ts"]
    items = store.query(settings.predictions_table, IndexName="by_user", ProjectionExpression="ts, score",
                        KeyConditionExpression=Key("user_id").eq(user_id)
                        & Key("ts").between(store.to_item(end - window_seconds + 1e-6), store.to_item(end)))
    scores = [i["score"] for i in items]
    return statistics.median(scores), end, len(scores)


def update_sample(settings: Settings, users: set[str]) -> int:
    """Refresh the sampled users among ``users``; returns how many were refreshed."""
    for _ in range(_ATTEMPTS):
        item = store.get_item(settings.state_table, SAMPLE_KEY) or {}
        sample: dict = json.loads(item.get("users", "{}"))
        hashes = {u: user_hash(u) for u in users}
        cutoff = max(sample) if len(sample) >= SAMPLE_USERS else None
        chosen = [u for u, h in hashes.items() if h in sample or cutoff is None or h < cutoff]
        if not chosen:
            return 0
        with ThreadPoolExecutor(max_workers=min(8, len(chosen))) as pool:
            medians = dict(zip(chosen, pool.map(lambda u: rolling_median(settings, u), chosen)))
        for user, found in medians.items():
            if found is not None:
                sample[hashes[user]] = {"u": user, "m": round(found[0], 6), "end": found[1]}
        for h in sorted(sample)[SAMPLE_USERS:]:
            del sample[h]
        version = item.get("version", 0)
        condition = {"ConditionExpression": "attribute_not_exists(pk) OR version = :v",
                     "ExpressionAttributeValues": {":v": version}}
        try:
            store.put_item(settings.state_table, SAMPLE_KEY | {
                "users": json.dumps(sample, separators=(",", ":"), sort_keys=True), "version": version + 1},
                **condition)
            return len(chosen)
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise
    raise RuntimeError("the median sample kept changing under concurrent updates")


def median_of_medians(settings: Settings) -> tuple[float | None, bool]:
    """(median of the sampled users' rolling medians, whether it is over a sample rather than every user)."""
    item = store.get_item(settings.state_table, SAMPLE_KEY) or {}
    medians = [entry["m"] for entry in json.loads(item.get("users", "{}")).values()]
    return (statistics.median(medians) if medians else None), len(medians) >= SAMPLE_USERS
