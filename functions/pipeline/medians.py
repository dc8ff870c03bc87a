"""The median of the users' rolling median scores, kept up to date per batch so GET /stats reads one item.

Exact up to ``SAMPLE_USERS`` users; past that, over a uniform sample of them: the ``SAMPLE_USERS`` users with the
smallest hash of their id (a bottom-k sketch: every user is equally likely to be in it, and a user in it stays in
it until users with smaller hashes arrive). The sample lives on one STATE_TABLE item ("medians"), as one JSON string
attribute (a map of 256 entries costs the same units and far more (de)serialization work, in DynamoDB's clients and
in moto): per sampled user the scores of their last ``WINDOW_SECONDS`` of event time (at most ``MAX_SCORES``, the
newest), their median and the window's end. store_predictions folds each batch's predictions of sampled users in:
no query per user, and a redelivered batch changes nothing (scores are kept by event id). Optimistic concurrency:
the two shards' executions may update it at once.
"""
from __future__ import annotations

import hashlib
import json
import statistics
from collections.abc import Mapping, Sequence
from typing import Any

from botocore.exceptions import ClientError

from . import store
from .settings import Settings

SAMPLE_USERS = 256
WINDOW_SECONDS = 300
MAX_SCORES = 32          # per sampled user: a user with more events in the window keeps their newest 32
SAMPLE_KEY = {"pk": "medians"}
_ATTEMPTS = 5


def user_hash(user_id: str) -> str:
    return hashlib.sha256(user_id.encode()).hexdigest()[:12]


def _event_key(event_id: str) -> str:
    return hashlib.blake2b(event_id.encode(), digest_size=6).hexdigest()


def fold(entry: dict | None, user_id: str, predictions: Sequence[Mapping[str, Any]]) -> dict:
    """A sampled user's entry with ``predictions`` added: scores of (end - WINDOW_SECONDS, end], newest
    MAX_SCORES, by event id (a prediction seen again replaces itself)."""
    scores = {key: (ts, score) for ts, score, key in (entry or {}).get("w", [])}
    for p in predictions:
        scores[_event_key(p["event_id"])] = (p["ts"], p["score"])
    end = max(ts for ts, _ in scores.values())
    window = sorted(((ts, score, key) for key, (ts, score) in scores.items() if ts > end - WINDOW_SECONDS),
                    key=lambda row: (row[0], row[2]))[-MAX_SCORES:]
    return {"u": user_id, "end": end, "m": round(statistics.median(score for _, score, _ in window), 6),
            "w": [list(row) for row in window]}


def update_sample(settings: Settings, predictions: Sequence[Mapping[str, Any]]) -> int:
    """Fold a batch's predictions of sampled users into the sample; returns how many users were updated."""
    by_user: dict[str, list[Mapping[str, Any]]] = {}
    for p in predictions:
        by_user.setdefault(p["user_id"], []).append(p)
    hashes = {u: user_hash(u) for u in by_user}
    for _ in range(_ATTEMPTS):
        item = store.get_item(settings.state_table, SAMPLE_KEY) or {}
        sample: dict = json.loads(item.get("users", "{}"))
        cutoff = max(sample) if len(sample) >= SAMPLE_USERS else None
        chosen = [u for u, h in hashes.items() if h in sample or cutoff is None or h < cutoff]
        if not chosen:
            return 0
        for user in chosen:
            sample[hashes[user]] = fold(sample.get(hashes[user]), user, by_user[user])
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
