"""Per-user streaming features (feature set "v1").

A user's state is the list of their events of the last 24 hours (sorted by event time) plus a few
lifetime figures. Each event's feature vector describes the window that ends at that event's own time, so
the same event gives the same features whether it arrives in order or not (within the retained window).
Training (model/train.py) and serving both call ``FeatureState.add``: one definition, no train/serve skew.
"""
from __future__ import annotations

import bisect
import json
from dataclasses import dataclass, field
from datetime import datetime, timezone

from .events import DEVICE_TYPES, EVENT_TYPES, PRIORITIES, Event

FEATURE_SET = "v1"
FEATURE_NAMES = (
    "events_1h",
    "events_24h",
    "purchases_24h",
    "views_24h",
    "amount_sum_24h",
    "amount_avg_24h",
    "seconds_since_prev",
    "hour_of_day",
    "is_weekend",
    "event_type_code",
    "amount",
    "device_code",
    "priority_code",
    "purchase_view_ratio_24h",
    "distinct_devices_24h",
)
HOUR = 3600.0
DAY = 24 * HOUR
ALLOWED_LATENESS_SECONDS = HOUR  # an event up to this much older than the user's newest still gets exact windows
RETENTION_SECONDS = DAY + ALLOWED_LATENESS_SECONDS
NO_PREVIOUS_EVENT = 7 * DAY  # seconds_since_prev for a user's first event
_PURCHASE = EVENT_TYPES.index("purchase")
_VIEW = EVENT_TYPES.index("view")


def _code(values: tuple[str, ...], value: str | None) -> int:
    return values.index(value) if value is not None else -1


@dataclass
class FeatureState:
    """What we keep per user. ``recent`` rows are (ts, event_type_code, amount, device_code)."""

    recent: list[tuple[float, int, float, int]] = field(default_factory=list)
    total_events: int = 0
    last_seen: float = 0.0

    def add(self, event: Event) -> list[float]:
        """Add one event and return its feature vector (ordered as FEATURE_NAMES)."""
        row = (event.timestamp, _code(EVENT_TYPES, event.event_type), event.amount or 0.0,
               _code(DEVICE_TYPES, event.device_type))
        times = [r[0] for r in self.recent]
        position = bisect.bisect_right(times, event.timestamp)
        previous_ts = times[position - 1] if position else None
        self.recent.insert(position, row)
        times.insert(position, event.timestamp)
        self.total_events += 1
        self.last_seen = max(self.last_seen, event.timestamp)

        end = position + 1  # window (ts - w, ts] ends just after this event
        start_24h = bisect.bisect_right(times, event.timestamp - DAY)
        start_1h = bisect.bisect_right(times, event.timestamp - HOUR)
        day = self.recent[start_24h:end]
        purchases = sum(1 for r in day if r[1] == _PURCHASE)
        views = sum(1 for r in day if r[1] == _VIEW)
        amounts = [r[2] for r in day if r[1] == _PURCHASE]
        when = datetime.fromtimestamp(event.timestamp, tz=timezone.utc)
        features = [
            float(end - start_1h),
            float(len(day)),
            float(purchases),
            float(views),
            float(sum(amounts)),
            float(sum(amounts) / len(amounts)) if amounts else 0.0,
            float(event.timestamp - previous_ts) if previous_ts is not None else NO_PREVIOUS_EVENT,
            float(when.hour),
            1.0 if when.weekday() >= 5 else 0.0,
            float(row[1]),
            float(row[2]),
            float(row[3]),
            float(_code(PRIORITIES, event.priority)),
            float(purchases / views) if views else float(purchases),
            float(len({r[3] for r in day if r[3] >= 0})),
        ]
        self._prune()
        return features

    def _prune(self) -> None:
        cutoff = self.last_seen - RETENTION_SECONDS
        times = [r[0] for r in self.recent]
        drop = bisect.bisect_left(times, cutoff)
        if drop:
            del self.recent[:drop]

    def to_json(self) -> str:
        return json.dumps({"recent": self.recent, "total_events": self.total_events,
                           "last_seen": self.last_seen}, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | None) -> "FeatureState":
        if not text:
            return cls()
        data = json.loads(text)
        return cls(recent=[tuple(r) for r in data["recent"]], total_events=data["total_events"],
                   last_seen=data["last_seen"])


def named(features: list[float]) -> dict[str, float]:
    return dict(zip(FEATURE_NAMES, features))
