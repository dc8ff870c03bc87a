"""Per-user streaming features, versioned as named feature sets.

- ``v1`` (15 features): 1 h / 24 h windows, the event itself, time since the previous event.
- ``v2`` (v1 + 10): adds 6 h and 7 d windows, gap-based sessions and an engagement score. v1 keeps working:
  a v2 vector starts with the v1 vector, and each set has its own state (the features table is keyed by
  user and feature set), so a model trained on v1 is served v1 while a v2 model is rolled out.

Semantics (event time, README "Event time"):
- A user's state holds their events of the retention window (the longest window + the allowed lateness),
  sorted by event time. An event's feature vector describes the windows that END AT THE EVENT'S OWN TIME,
  (ts - w, ts], over the user's events that arrived before it or with it. An out-of-order event lands in the
  right place: later events see it in their windows by its event time.
- Allowed lateness: an event older than ``ALLOWED_LATENESS_SECONDS`` relative to the newest event time seen for
  the user is LATE. It is still scored (on the windows as they are) and reported (counted, flagged in the
  ledger and the prediction), but it does not change the state, so it never makes other events' windows
  depend on how late it came.
- seconds_since_prev: to the previous event by event time, if it is within the set's longest window (24 h for
  v1, 7 d for v2); otherwise, and for a user's first event, 7 days.
- Sessions: consecutive events (by event time) less than ``SESSION_GAP_SECONDS`` apart form a session.
- Engagement score (0-100, over 24 h): 100 * (1 - exp(-points / 50)) with points = 1 per view, 2 per click,
  5 per add_to_cart, 10 per purchase, 0 for login/logout. 50 points (e.g. 5 purchases) give 63.
Training (model/train.py) and serving both call ``FeatureState.observe``: one definition, no train/serve skew.
"""
from __future__ import annotations

import bisect
import json
import math
from dataclasses import dataclass, field
from datetime import datetime, timezone

from .events import DEVICE_TYPES, EVENT_TYPES, PRIORITIES, Event

V1_NAMES = (
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
V2_EXTRA_NAMES = (
    "events_6h",
    "events_7d",
    "purchases_7d",
    "amount_sum_7d",
    "amount_avg_7d",
    "clicks_24h",
    "session_events",
    "session_seconds",
    "sessions_24h",
    "engagement_score_24h",
)
FEATURE_SETS: dict[str, tuple[str, ...]] = {"v1": V1_NAMES, "v2": V1_NAMES + V2_EXTRA_NAMES}
FEATURE_SET = "v1"  # the default set (cdk.json "featureSet" chooses the deployed one)
FEATURE_NAMES = FEATURE_SETS[FEATURE_SET]

HOUR = 3600.0
DAY = 24 * HOUR
WEEK = 7 * DAY
ALLOWED_LATENESS_SECONDS = HOUR
LONGEST_WINDOW = {"v1": DAY, "v2": WEEK}
SESSION_GAP_SECONDS = 30 * 60
NO_PREVIOUS_EVENT = 7 * DAY  # seconds_since_prev for a user's first event
ENGAGEMENT_POINTS = {"view": 1.0, "click": 2.0, "add_to_cart": 5.0, "purchase": 10.0, "login": 0.0, "logout": 0.0}
ENGAGEMENT_SCALE = 50.0
_PURCHASE = EVENT_TYPES.index("purchase")
_VIEW = EVENT_TYPES.index("view")
_CLICK = EVENT_TYPES.index("click")
_POINTS = tuple(ENGAGEMENT_POINTS[t] for t in EVENT_TYPES)


class FeatureSetError(ValueError):
    """A feature set name or vector that does not match the declared feature set."""


def feature_names(feature_set: str) -> tuple[str, ...]:
    try:
        return FEATURE_SETS[feature_set]
    except KeyError:
        raise FeatureSetError(f"unknown feature set {feature_set!r}; known: {', '.join(FEATURE_SETS)}") from None


def retention_seconds(feature_set: str) -> float:
    feature_names(feature_set)
    return LONGEST_WINDOW[feature_set] + ALLOWED_LATENESS_SECONDS


def _code(values: tuple[str, ...], value: str | None) -> int:
    return values.index(value) if value is not None else -1


@dataclass
class Observation:
    features: list[float]
    late: bool


@dataclass
class FeatureState:
    """What we keep per user and feature set. ``recent`` rows are (ts, event_type_code, amount, device_code)."""

    feature_set: str = FEATURE_SET
    recent: list[tuple[float, int, float, int]] = field(default_factory=list)
    total_events: int = 0
    late_events: int = 0
    last_seen: float = 0.0
    latest: list[float] = field(default_factory=list)  # the vector of the newest (by arrival) on-time event

    def __post_init__(self) -> None:
        self._names = feature_names(self.feature_set)
        self._retention = retention_seconds(self.feature_set)
        self._window = LONGEST_WINDOW[self.feature_set]

    def add(self, event: Event) -> list[float]:
        """Add one event and return its feature vector (ordered as the feature set's names)."""
        return self.observe(event).features

    def observe(self, event: Event) -> Observation:
        row = (event.timestamp, _code(EVENT_TYPES, event.event_type), event.amount or 0.0,
               _code(DEVICE_TYPES, event.device_type))
        late = self.total_events > 0 and event.timestamp < self.last_seen - ALLOWED_LATENESS_SECONDS
        times = [r[0] for r in self.recent]
        position = bisect.bisect_right(times, event.timestamp)
        rows = self.recent[:position] + [row]  # the events at or before this one, by event time
        times = times[:position] + [event.timestamp]
        features = self._vector(event, row, rows, times)
        if late:
            self.late_events += 1
        else:
            self.recent.insert(position, row)
            self.total_events += 1
            self.last_seen = max(self.last_seen, event.timestamp)
            self.latest = features
            self._prune()
        return Observation(features, late)

    def _vector(self, event: Event, row: tuple, rows: list[tuple], times: list[float]) -> list[float]:
        ts = event.timestamp
        end = len(rows)
        start_24h = bisect.bisect_right(times, ts - DAY)
        start_1h = bisect.bisect_right(times, ts - HOUR)
        day = rows[start_24h:end]
        purchases = sum(1 for r in day if r[1] == _PURCHASE)
        views = sum(1 for r in day if r[1] == _VIEW)
        amounts = [r[2] for r in day if r[1] == _PURCHASE]
        when = datetime.fromtimestamp(ts, tz=timezone.utc)
        previous_ts = times[-2] if end > 1 else None
        vector = [
            float(end - start_1h),
            float(len(day)),
            float(purchases),
            float(views),
            float(sum(amounts)),
            float(sum(amounts) / len(amounts)) if amounts else 0.0,
            float(ts - previous_ts) if previous_ts is not None and ts - previous_ts < self._window
            else NO_PREVIOUS_EVENT,
            float(when.hour),
            1.0 if when.weekday() >= 5 else 0.0,
            float(row[1]),
            float(row[2]),
            float(row[3]),
            float(_code(PRIORITIES, event.priority)),
            float(purchases / views) if views else float(purchases),
            float(len({r[3] for r in day if r[3] >= 0})),
        ]
        if self.feature_set == "v1":
            return vector
        start_6h = bisect.bisect_right(times, ts - 6 * HOUR)
        week = rows[bisect.bisect_right(times, ts - WEEK):end]
        week_amounts = [r[2] for r in week if r[1] == _PURCHASE]
        session_start = end - 1
        while session_start > 0 and times[session_start] - times[session_start - 1] < SESSION_GAP_SECONDS:
            session_start -= 1
        day_times = times[start_24h:end]
        sessions = 1 + sum(1 for a, b in zip(day_times, day_times[1:]) if b - a >= SESSION_GAP_SECONDS)
        points = sum(_POINTS[r[1]] for r in day if r[1] >= 0)
        vector += [
            float(end - start_6h),
            float(len(week)),
            float(len(week_amounts)),
            float(sum(week_amounts)),
            float(sum(week_amounts) / len(week_amounts)) if week_amounts else 0.0,
            float(sum(1 for r in day if r[1] == _CLICK)),
            float(end - session_start),
            float(ts - times[session_start]),
            float(sessions),
            100.0 * (1.0 - math.exp(-points / ENGAGEMENT_SCALE)),
        ]
        return vector

    def _prune(self) -> None:
        cutoff = self.last_seen - self._retention
        drop = bisect.bisect_left([r[0] for r in self.recent], cutoff)
        if drop:
            del self.recent[:drop]

    def to_json(self) -> str:
        return json.dumps({"feature_set": self.feature_set, "recent": self.recent, "total_events": self.total_events,
                           "late_events": self.late_events, "last_seen": self.last_seen, "latest": self.latest},
                          separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | None, feature_set: str = FEATURE_SET) -> "FeatureState":
        if not text:
            return cls(feature_set=feature_set)
        data = json.loads(text)
        stored_set = data.get("feature_set", "v1")
        if stored_set != feature_set:
            raise FeatureSetError(f"stored state is for feature set {stored_set!r}, not {feature_set!r}")
        return cls(feature_set=stored_set, recent=[tuple(r) for r in data["recent"]],
                   total_events=data["total_events"], late_events=data.get("late_events", 0),
                   last_seen=data["last_seen"], latest=data.get("latest", []))


def named(features: list[float], feature_set: str | None = None) -> dict[str, float]:
    """A vector as {name: value}; the feature set is inferred from the length when not given."""
    if feature_set is None:
        feature_set = next((s for s, names in FEATURE_SETS.items() if len(names) == len(features)), None)
        if feature_set is None:
            raise FeatureSetError(f"no feature set has {len(features)} features")
    names = feature_names(feature_set)
    if len(names) != len(features):
        raise FeatureSetError(f"feature set {feature_set!r} has {len(names)} features, got {len(features)}")
    return dict(zip(names, features))
