"""The optimizer's training data: the cost records read from the cost table (newest of every 10-minute slot of the
history), the sample the models are fitted on, and the per-record targets (tunable cost per event, processing
latency)."""
from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

import numpy as np
from boto3.dynamodb.conditions import Key

from .. import store
from ..settings import Settings

MIN_RECORDS = 30               # fewer records (or a slot group with fewer) is too little to learn from
HISTORY_DAYS = 7
RECORDS_PER_HOUR = 150         # newest records read per hour of history ...
SLOT_SECONDS = 600             # ... spread over its 10-minute slots (25 each): the load varies within an hour
MAX_TRAIN_RECORDS = 5000       # newest records used for training
RECENT_RECORDS = 100           # the workload now = medians over the newest records


def load_cost_records(settings: Settings, days: int = HISTORY_DAYS, per_hour: int = RECORDS_PER_HOUR,
                      now: float | None = None) -> list[dict]:
    """The newest ``per_hour`` cost records of every hour of the last ``days`` days, spread over the hour's
    SLOT_SECONDS slots, oldest first: a busy hour writes thousands of records, and the newest 20,000 would all come
    from the last minutes of one setting; the newest of an hour alone would show its last seconds, not how its load
    varies. One Query per slot on the day partition (sort key = ISO time#batch id)."""
    now = time.time() if now is None else now
    records: list[dict] = []
    slots = 3600 // SLOT_SECONDS
    end = datetime.fromtimestamp(now, tz=timezone.utc).replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    for back in range(days * 24 * slots, 0, -1):
        start = end - timedelta(seconds=back * SLOT_SECONDS)
        stop = start + timedelta(seconds=SLOT_SECONDS)
        records += store.query(settings.cost_table, limit=max(1, per_hour // slots), ScanIndexForward=False,
                               KeyConditionExpression=Key("day").eq(start.strftime("%Y-%m-%d"))
                               & Key("batch_key").between(start.isoformat(), stop.isoformat()))
    return sorted(records, key=lambda r: float(r["recorded_at"]))


def training_sample(records: list[dict], limit: int = MAX_TRAIN_RECORDS, seed: int = 0) -> list[dict]:
    """The newest RECENT_RECORDS, and an even sample of the older ones (so the model keeps the settings and
    hours it saw before, not only the last few minutes of one setting). Oldest first."""
    if len(records) <= limit:
        return records
    rng = np.random.default_rng(seed)
    older = records[:-RECENT_RECORDS]
    keep = np.sort(rng.choice(len(older), size=limit - RECENT_RECORDS, replace=False))
    return [older[i] for i in keep] + records[-RECENT_RECORDS:]


def target_cost(r: dict) -> float:
    """The cost per event a batch setting can change (costs.py's tunable lines; older records: the whole cost)."""
    return float(r.get("tunable_cost_per_event_usd", r["cost_per_event_usd"]))


def wait_seconds(r: dict) -> float:
    """What the batch's oldest event waited before process_stream started (in the record since this version;
    0 for older records, which makes their processing latency the whole latency: conservative)."""
    return max(0.0, float(r.get("wait_seconds") or 0.0))


def arrived_at(r: dict) -> float:
    """When the batch's oldest event arrived: recorded_at minus its latency (recorded_at for a record without)."""
    return float(r["recorded_at"]) - max(0.0, float(r.get("latency_max") or 0.0))


def processing_seconds(r: dict) -> float:
    return max(0.0, float(r["latency_max"]) - wait_seconds(r))


def measured_cost(records: list[dict]) -> float | None:
    """The measured tunable cost per event over ``records`` (weighted by their events); None without events."""
    events = sum(int(r["events"]) for r in records)
    if not events:
        return None
    return sum(target_cost(r) * int(r["events"]) for r in records) / events
