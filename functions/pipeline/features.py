"""Per-user streaming features, versioned as named feature sets, kept as bounded time tiles.

- ``v1`` (15 features): 1 h / 24 h windows, the event itself, time since the previous event.
- ``v2`` (v1 + 10): adds 6 h and 7 d windows, gap-based sessions and an engagement score. A v2 vector starts
  with the v1 vector, and each set has its own state (the features table is keyed by user and feature set).

Both sets are at revision ``FEATURE_REVISION`` 2, "tiled" (README "Features"): a user's state is a fixed set of
time tiles, not a list of events, so its size and the work per event do not grow with the user's activity.

State: pre-aggregated tiles (Chronon's sawtooth windows, Tecton's and Feast's tiled aggregations).
- fine tiles of 5 minutes for the recent hours (the "hot" part, rewritten on every batch), rolled up into
- hourly tiles for the rest of the retention (the "cold" part, rewritten about once an hour).
A tile holds counts (events, purchases, views, clicks), the purchase amount sum, engagement points, the devices
seen (bit mask), its first and last event time, and for hourly tiles the session gaps inside it. In memory the two
kinds are one timeline (``_Tiles``) with prefix sums of the counts and of the session breaks, so a window's counts
are two lookups and an hour holding a single 5-minute tile (a sparse user's) rolls up without moving anything.

Semantics (event time; timestamps are kept to the millisecond, pipeline/events.py):
- Window w of an event at time ts covers the tiles from ``floor(ts - w, r)`` up to and including the event's own
  5-minute tile, with r = 5 minutes for the 1 h window and 1 hour for the 6 h, 24 h and 7 d windows. So a window
  starts at tile resolution (it is between w and w + r long: a sawtooth) and, for an event that arrives out of
  order, also counts the events of its own 5-minute tile that are later than it. For events in order (the usual
  case) the window end is exact.
- Every window counts the user's on-time events that arrived before the event, and the event itself.
- Allowed lateness: an event older than ``ALLOWED_LATENESS_SECONDS`` relative to the newest event time seen for
  the user is LATE. It is still scored (on the tiles as they are, its own event counted, as a session of its own)
  and reported, but it does not change the state.
- seconds_since_prev: ts minus the newest event time seen before it, when that is earlier and within the set's
  longest window (24 h for v1, 7 d for v2); 0 for an event that arrives after a newer one (out of order);
  7 days for a user's first event or after a longer gap.
- Sessions: consecutive events (by event time) less than ``SESSION_GAP_SECONDS`` apart form a session. A 5-minute
  tile can hold no gap that long, so session boundaries are found exactly between tiles, and inside hourly tiles
  when they are rolled up. session_events / session_seconds describe the session of the event's own tile (all of
  its events), over the tiles up to it; sessions_24h counts the sessions in the 24 h window.
- Engagement score (0-100, over 24 h): 100 * (1 - exp(-points / 50)) with points = 1 per view, 2 per click,
  5 per add_to_cart, 10 per purchase, 0 for login/logout.
Training (model/train.py) and serving both call ``FeatureState.observe``: one definition, no train/serve skew.
"""
from __future__ import annotations

import struct
import zlib
from array import array
from bisect import bisect_left, bisect_right
from collections import deque
from dataclasses import dataclass
from functools import lru_cache, reduce
from itertools import accumulate, islice, repeat
from math import exp
from operator import add, floordiv, ge, mul, or_, sub

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
FEATURE_REVISION = 2  # 1: exact windows over every event kept; 2: tiled windows (this module). Models record it.

HOUR = 3600.0
DAY = 24 * HOUR
WEEK = 7 * DAY
ALLOWED_LATENESS_SECONDS = HOUR
LONGEST_WINDOW = {"v1": DAY, "v2": WEEK}
SESSION_GAP_SECONDS = 30 * 60
NO_PREVIOUS_EVENT = 7 * DAY  # seconds_since_prev for a user's first event
ENGAGEMENT_POINTS = {"view": 1, "click": 2, "add_to_cart": 5, "purchase": 10, "login": 0, "logout": 0}
ENGAGEMENT_SCALE = 50.0

FINE_SECONDS = 300            # 5-minute tiles for the recent hours
HOURLY_SECONDS = 3600         # hourly tiles for the rest of the retention
# (window seconds, resolution seconds) of each window
WINDOW_1H, WINDOW_6H, WINDOW_24H, WINDOW_7D = (3600, 300), (6 * 3600, 3600), (24 * 3600, 3600), (7 * 24 * 3600, 3600)

_MS = 1000
_FINE_MS = FINE_SECONDS * _MS
_HOUR_MS = HOURLY_SECONDS * _MS
_PER_HOUR = HOURLY_SECONDS // FINE_SECONDS
_LATE_MS = int(ALLOWED_LATENESS_SECONDS * _MS)
_GAP_MS = SESSION_GAP_SECONDS * _MS
# Fine tiles are kept while an on-time event's 1 h window can reach them: an on-time event is at most the
# lateness older than the newest event, and its 1 h window starts up to 1 h + 5 min before it.
_FINE_KEEP_MS = _LATE_MS + WINDOW_1H[0] * _MS
_PURCHASE = EVENT_TYPES.index("purchase")
_VIEW = EVENT_TYPES.index("view")
_CLICK = EVENT_TYPES.index("click")
_POINTS = tuple(ENGAGEMENT_POINTS[t] for t in EVENT_TYPES)
_TYPE_CODES = {name: code for code, name in enumerate(EVENT_TYPES)}
_DEVICE_CODES = {name: code for code, name in enumerate(DEVICE_TYPES)} | {None: -1}
_PRIORITY_CODES = {name: float(code) for code, name in enumerate(PRIORITIES)} | {None: -1.0}  # as in the vector
_SET_CODES = {"v1": 1, "v2": 2}
_FORMAT = 1  # binary layout version of to_bytes / cold_bytes
# zlib levels (any level reads back the same way): the hot part, rewritten on every batch, at level 1 (28-49 % less
# CPU than level 6, up to 10 % larger, still under 1 KB); the cold part, rewritten about once an hour, at level 6
# (level 1 would cost a busy v2 user one more 1 KB write unit each time). docs/performance.md has the figures.
_HOT_LEVEL, _COLD_LEVEL = 1, 6
_HOT_HEADER = struct.Struct("<BBqIIHBI")   # format, set, last seen ms, events, late, fine tiles, vector width, cold v.
_COLD_HEADER = struct.Struct("<BBIH")      # format, set, cold version, hourly tiles

# Tile columns. Every tile has all twelve; the session columns are an hourly tile's: a 5-minute tile holds no session
# gap (GAPS 0), and its tail columns are set when it rolls up.
N, PURCHASES, VIEWS, CLICKS, AMOUNT, POINTS, DEVICES, FIRST, LAST = range(9)
GAPS, TAIL_N, TAIL_FIRST = 9, 10, 11
_FINE_COLUMNS = 9     # what the hot part stores of a 5-minute tile
_HOURLY_COLUMNS = 12
_COUNTS = (N, PURCHASES, VIEWS, CLICKS, POINTS)   # integers: window counts are exact differences of prefix sums
_BREAKS = -1          # the prefix sums of session breaks (see _Tiles)
_NO_TILE = (0, 0, 0, 0, 0, 0, 0)  # (events, purchases, views, clicks, amount, points, devices) of no tile
_TIMES = (FIRST, LAST, TAIL_FIRST)   # stored as offsets in their tile


class FeatureSetError(ValueError):
    """A feature set name or vector that does not match the declared feature set."""


def feature_names(feature_set: str) -> tuple[str, ...]:
    try:
        return FEATURE_SETS[feature_set]
    except KeyError:
        raise FeatureSetError(f"unknown feature set {feature_set!r}; known: {', '.join(FEATURE_SETS)}") from None


def retention_seconds(feature_set: str) -> float:
    """How far back (event time, from the newest event) a user's tiles reach: the longest window, its tile
    resolution and the allowed lateness."""
    feature_names(feature_set)
    return LONGEST_WINDOW[feature_set] + HOURLY_SECONDS + ALLOWED_LATENESS_SECONDS


@dataclass(slots=True)
class Observation:
    features: list[float]
    late: bool


class _Tiles:
    """A user's tiles in time order as parallel columns: the hourly tiles (the cold part), then the 5-minute tiles
    (the hot part). A tile's key is its start as a 5-minute tile index (an hourly tile's: its hour's first), so one
    bisect finds where a window starts, whatever its resolution.

    Window counts are differences of prefix sums (``prefix``), kept up to date as far as the first tile that changed:
    an event in order changes only the newest tile, so a window costs a few subtractions at any activity. The prefix
    sums also count session breaks: a tile's breaks are the gaps inside it (GAPS) and the gap before it, if any."""

    __slots__ = ("keys", "cols", "cold", "_sessions", "_sums", "_counted", "_breaks")

    def __init__(self, sessions: bool):
        self.keys: list[int] = []
        self.cols: list[list] = [[] for _ in range(_HOURLY_COLUMNS)]
        self.cold = 0   # tiles [0, cold) are hourly tiles
        self._sessions = sessions   # a v1 state (no session features) counts no breaks
        # column -> sums over the tiles before each position, as far as they are up to date (lists of one length);
        # None until first asked for (a state read back only to be stored again never builds them)
        self._sums: dict[int, list[int]] | None = None
        self._counted: list[tuple[list, list[int]]] = []   # (column, its sums) of the counts
        self._breaks: list[int] | None = None                # the sums of session breaks

    def __len__(self) -> int:
        return len(self.keys)

    def changed(self, position: int) -> None:
        """Tile ``position`` changed or was inserted: the prefix sums after it are stale."""
        sums = self._sums
        if sums is not None and len(sums[N]) > position + 1:
            for running in sums.values():
                del running[position + 1:]

    def prefix(self, upto: int) -> dict[int, list[int]]:
        """Column -> the sums of that column over the tiles before each position, up to date to ``upto``."""
        sums = self._sums
        if sums is None:
            return self._build(upto)
        valid = len(sums[N])
        if upto < valid:
            return sums
        breaks = self._breaks
        if upto == valid:   # one tile more (a tile that an event in order has closed): plain additions
            j = valid - 1
            for column, running in self._counted:
                running.append(running[-1] + column[j])
            if breaks is not None:
                cols = self.cols
                breaks.append(breaks[-1] + cols[GAPS][j] + (j > 0 and cols[FIRST][j] - cols[LAST][j - 1] >= _GAP_MS))
            return sums
        for column, running in self._counted:
            running += islice(accumulate(column[valid - 1:upto], initial=running[-1]), 1, None)
        if breaks is not None:
            breaks += islice(accumulate(self._tile_breaks(valid - 1, upto), initial=breaks[-1]), 1, None)
        return sums

    def _build(self, upto: int) -> dict[int, list[int]]:
        cols = self.cols
        sums = self._sums = {column: list(accumulate(cols[column][:upto], initial=0)) for column in _COUNTS}
        self._counted = [(cols[column], sums[column]) for column in _COUNTS]
        if self._sessions:
            sums[_BREAKS] = self._breaks = list(accumulate(self._tile_breaks(0, upto), initial=0))
        return sums

    def _tile_breaks(self, start: int, stop: int) -> list[int]:
        """Session breaks of the tiles [start, stop): the gaps inside each, and 1 for a gap before it."""
        first, last = self.cols[FIRST], self.cols[LAST]
        before = list(map(ge, map(sub, first[max(start, 1):stop], last[max(start, 1) - 1:stop - 1]),
                          repeat(_GAP_MS)))
        if start == 0:
            before.insert(0, False)   # nothing before the first tile
        return list(map(add, self.cols[GAPS][start:stop], before))

    def append(self, key: int, row: list) -> None:
        self.keys.append(key)
        deque(map(list.append, self.cols, row), 0)   # col.append(value) for each column, as a C loop

    def insert(self, position: int, key: int, row: list) -> None:
        self.keys.insert(position, key)
        for column, value in zip(self.cols, row, strict=True):
            column.insert(position, value)
        self.changed(position)

    def merge(self, start: int, stop: int, key: int) -> None:
        """The tiles [start, stop) (5-minute tiles of one hour) become one hourly tile with the given key."""
        row = _hour_row(self.cols, start, stop)
        self.keys[start:stop] = [key]
        for column, value in zip(self.cols, row, strict=True):
            column[start:stop] = [value]
        # the merged tile holds the same counts and breaks (the gaps between its 5-minute tiles are its gaps inside):
        # the sums up to the tiles after it are unchanged, those inside it go (all past start + 1 if none was after)
        for running in (self._sums or {}).values():
            del running[start + 1:stop]

    def drop_first(self, count: int) -> None:
        """Drop the first ``count`` tiles (hourly tiles past the retention)."""
        del self.keys[:count]
        for column in self.cols:
            del column[:count]
        self.cold -= count
        sums = self._sums
        if sums is not None and len(sums[N]) > count:   # the sums stay offset by the dropped tiles: windows are
            for running in sums.values():               # differences
                del running[:count]
        else:
            self._sums = None

    def load(self, keys: list[int], cols: list[list], cold: int) -> None:
        self.keys, self.cols, self.cold, self._sums = keys, cols, cold, None


class FeatureState:
    """What we keep per user and feature set: bounded tiles, a few counters and the newest vector.

    Per event, everything a vector needs from tiles other than the event's own 5-minute tile (the window sums, the
    session below it) is computed once per tile and reused by the next events of that tile (``_base``,
    ``_session``) until a tile before it changes (an out-of-order event, a roll-up): an event in order costs a
    few additions whatever the user's activity."""

    def __init__(self, feature_set: str = FEATURE_SET):
        self._names = feature_names(feature_set)
        self.feature_set = feature_set
        self._v2 = feature_set == "v2"
        self._longest_ms = int(LONGEST_WINDOW[feature_set] * _MS)
        self._retention_ms = int(retention_seconds(feature_set) * _MS)
        self.tiles = _Tiles(sessions=self._v2)
        self.total_events = 0
        self.late_events = 0
        self.last_seen_ms = -1
        self.latest: list[float] = []       # the vector of the newest (by arrival) on-time event
        self.cold_version = 0               # bumped whenever the hourly tiles change (they are stored apart)
        self.cold_changed = False
        self._base: tuple | None = None     # (fine tile, window sums without that tile): see _window_sums
        self._session: tuple | None = None  # (fine tile, its first time, the session below it): see _session_below

    @property
    def last_seen(self) -> float:
        return self.last_seen_ms / _MS if self.last_seen_ms >= 0 else 0.0

    @property
    def hours(self) -> list[int]:
        """The hourly tiles' hours (since the epoch)."""
        return [key // _PER_HOUR for key in self.tiles.keys[:self.tiles.cold]]

    @property
    def fine_keys(self) -> list[int]:
        """The 5-minute tiles' indexes (since the epoch)."""
        return self.tiles.keys[self.tiles.cold:]

    def add(self, event: Event) -> list[float]:
        """Add one event and return its feature vector (ordered as the feature set's names)."""
        return self.observe(event).features

    def observe(self, event: Event) -> Observation:
        ts_ms = round(event.timestamp * _MS)   # ms, rounded (round gives an int)
        end = ts_ms // _FINE_MS   # the event's 5-minute tile
        type_code = _TYPE_CODES[event.event_type]
        device = _DEVICE_CODES[event.device_type]
        amount = event.amount or 0.0
        purchase_amount = amount if type_code == _PURCHASE else 0.0
        if self.total_events and ts_ms < self.last_seen_ms - _LATE_MS:
            self.late_events += 1
            sums = self._window_sums(end, bisect_right(self.tiles.keys, end))  # the tiles as they are, uncached
            sums = _with_late_event(sums, type_code, device, purchase_amount)
            features = self._vector(event, ts_ms, type_code, device, amount, sums, _NO_TILE, 0.0,
                                    (1, 0, 1))   # seconds_since_prev 0; a session of its own
            return Observation(features, True)
        if not self.total_events:
            since_prev = NO_PREVIOUS_EVENT
        elif ts_ms < self.last_seen_ms:
            since_prev = 0.0
        else:
            gap = ts_ms - self.last_seen_ms
            since_prev = gap / _MS if gap < self._longest_ms else NO_PREVIOUS_EVENT
        if ts_ms > self.last_seen_ms:
            # what rolls up or expires moves by whole tiles of the newest event time (before the event's windows
            # are read: they hold the same events either way)
            newer_tile = end != self.last_seen_ms // _FINE_MS
            self.last_seen_ms = ts_ms
            if newer_tile:
                self._roll_up()
        own = self._apply(ts_ms, end, type_code, device, purchase_amount)
        cols = self.tiles.cols
        tile = (cols[N][own], cols[PURCHASES][own], cols[VIEWS][own], cols[CLICKS][own], cols[AMOUNT][own],
                cols[POINTS][own], cols[DEVICES][own])
        base = self._base
        if base is None or base[0] != end:
            base = self._base = (end, self._window_sums(end, own))
        session = None
        if self._v2:
            first = cols[FIRST][own]
            below = self._session
            if below is None or below[0] != end or below[1] != first:
                below = self._session = (end, first) + self._session_below(end, own)
            _, _, below_n, chain_first, gaps = below
            session = (tile[N] + below_n, cols[LAST][own] - (first if chain_first is None else chain_first), 1 + gaps)
        features = self._vector(event, ts_ms, type_code, device, amount, base[1], tile, since_prev, session)
        self.total_events += 1
        self.latest = features
        return Observation(features, False)

    def _forget(self) -> None:
        """A tile other than the newest changed: what was computed from the tiles is stale."""
        self._base = self._session = None

    # -- the tiles ------------------------------------------------------------------------------------------
    def _apply(self, ts_ms: int, key: int, type_code: int, device: int, purchase_amount: float) -> int:
        """Add the event to its 5-minute tile; returns the tile's position."""
        tiles = self.tiles
        keys = tiles.keys
        position = len(keys) - 1
        if position < tiles.cold or keys[position] != key:  # not the newest tile (the usual case)
            position = bisect_left(keys, key, tiles.cold)   # an on-time event is never in a rolled-up hour
            if position == len(keys) or keys[position] != key:   # a new tile, holding just this event
                row = [1, int(type_code == _PURCHASE), int(type_code == _VIEW), int(type_code == _CLICK),
                       0.0 + purchase_amount, _POINTS[type_code], 1 << device if device >= 0 else 0, ts_ms, ts_ms,
                       0, 0, 0]
                if position == len(keys):   # the newest (a sparse user's every event)
                    tiles.append(key, row)
                else:
                    tiles.insert(position, key, row)
                    self._forget()
                return position
            if position != len(keys) - 1:
                self._forget()
        cols = tiles.cols
        cols[N][position] += 1
        if type_code == _PURCHASE:
            cols[PURCHASES][position] += 1
            cols[AMOUNT][position] += purchase_amount
        elif type_code == _VIEW:
            cols[VIEWS][position] += 1
        elif type_code == _CLICK:
            cols[CLICKS][position] += 1
        cols[POINTS][position] += _POINTS[type_code]
        if device >= 0:
            cols[DEVICES][position] |= 1 << device
        if ts_ms < cols[FIRST][position]:
            cols[FIRST][position] = ts_ms
        if ts_ms > cols[LAST][position]:
            cols[LAST][position] = ts_ms
        tiles.changed(position)
        return position

    def _roll_up(self) -> None:
        """5-minute tiles that no on-time event can reach any more become hourly tiles (whole hours at a time);
        hourly tiles past the retention are dropped."""
        tiles = self.tiles
        keys, cols, cold = tiles.keys, tiles.cols, tiles.cold
        keep_from = (self.last_seen_ms - _FINE_KEEP_MS) // _FINE_MS
        changed = False
        while cold < len(keys) and (keys[cold] // _PER_HOUR + 1) * _PER_HOUR <= keep_from:
            hour = keys[cold] // _PER_HOUR * _PER_HOUR
            stop = bisect_left(keys, hour + _PER_HOUR, cold)
            if stop - cold > 1:
                tiles.merge(cold, stop, hour)
            else:   # one tile (a sparse user's hour) stays as it is: no gap inside, its one session its tail
                keys[cold] = hour
                cols[TAIL_N][cold], cols[TAIL_FIRST][cold] = cols[N][cold], cols[FIRST][cold]
            cold += 1
            changed = True
        tiles.cold = cold
        oldest = (self.last_seen_ms - self._retention_ms) // _HOUR_MS * _PER_HOUR
        if keys and keys[0] < oldest:
            tiles.drop_first(bisect_left(keys, oldest))
            changed = True
        if changed:   # one _forget for the lot
            self.cold_changed = True
            self._forget()

    # -- the vector -----------------------------------------------------------------------------------------
    def _window_sums(self, end: int, upto: int) -> tuple:
        """The windows of an event in 5-minute tile ``end``, summed over the tiles before position ``upto`` (the
        event's own tile when it is in the tiles, added per event by ``_vector``): (events, purchases, views,
        clicks, points, devices, amount over 24 h, events over 1 h; for v2 also events, purchases and the amount
        over 7 d, events over 6 h). Counts are differences of prefix sums; amounts are added in tile order."""
        tiles = self.tiles
        keys, cols = tiles.keys, tiles.cols
        sums = tiles.prefix(upto)
        n, p, v, c, points = sums[N], sums[PURCHASES], sums[VIEWS], sums[CLICKS], sums[POINTS]
        hour = end // _PER_HOUR * _PER_HOUR   # windows of an hourly resolution start on the hour (a fine index)
        lo = bisect_left(keys, hour - 24 * _PER_HOUR, 0, upto)
        events = n[upto]
        day = (events - n[lo], p[upto] - p[lo], v[upto] - v[lo], c[upto] - c[lo], points[upto] - points[lo],
               reduce(or_, cols[DEVICES][lo:upto], 0), sum(cols[AMOUNT][lo:upto]),
               events - n[bisect_left(keys, end - _PER_HOUR, lo, upto)])
        if not self._v2:
            return day
        week = bisect_left(keys, hour - 7 * 24 * _PER_HOUR, 0, lo)
        return day + (events - n[week], p[upto] - p[week], sum(cols[AMOUNT][week:upto]),
                      events - n[bisect_left(keys, hour - 6 * _PER_HOUR, lo, upto)])

    def _vector(self, event: Event, ts_ms: int, type_code: int, device: int, amount: float, sums: tuple,
                tile: tuple, since_prev: float, session: tuple | None) -> list[float]:
        """The event's feature vector from ``_window_sums`` and the event's tile."""
        n_24h, p_24h, v_24h, c_24h, points_24h, devices_24h, amount_24h, n_1h = sums[:8]
        t_n, t_p, t_v, t_c, t_amount, t_points, t_devices = tile
        events_24h = n_24h + t_n
        purchases = p_24h + t_p
        views = v_24h + t_v
        amount_sum = amount_24h + t_amount
        devices = devices_24h | t_devices
        days = ts_ms // 86_400_000
        vector = [
            float(n_1h + t_n),
            float(events_24h),
            float(purchases),
            float(views),
            float(amount_sum),
            amount_sum / purchases if purchases else 0.0,   # a quotient and since_prev are floats: no float() call
            since_prev,
            float(ts_ms // _HOUR_MS % 24),
            1.0 if (days + 3) % 7 >= 5 else 0.0,   # 1970-01-01 was a Thursday (weekday 3)
            float(type_code),
            float(amount),
            float(device),
            _PRIORITY_CODES[event.priority],
            purchases / views if views else float(purchases),
            float(devices.bit_count()),
        ]
        if not self._v2:
            return vector
        n_7d, p_7d, amount_7d, n_6h = sums[8:]
        week_purchases = p_7d + t_p
        week_amount = amount_7d + t_amount
        assert session is not None  # the v2 sets have one (lookup)
        session_events, session_ms, sessions = session
        vector += [
            float(n_6h + t_n),
            float(n_7d + t_n),
            float(week_purchases),
            float(week_amount),
            week_amount / week_purchases if week_purchases else 0.0,
            float(c_24h + t_c),
            float(session_events),
            session_ms / _MS,
            float(sessions),
            100.0 * (1.0 - exp(-(points_24h + t_points) / ENGAGEMENT_SCALE)),
        ]
        return vector

    def _session_below(self, end: int, own: int) -> tuple[int, int | None, int]:
        """What the session features of an event in 5-minute tile ``end`` (at position ``own``) take from the other
        tiles: (events of its session before its tile, the session's first time or None when it starts in its
        tile, session gaps in the 24 h window). Depends on the own tile only through its first time.

        The session goes back to the newest break before the own tile: the prefix sums of breaks find it with one
        bisect (they are flat from there on); in an hourly tile with gaps inside, it starts at the tile's tail."""
        tiles = self.tiles
        cols = tiles.cols
        first = cols[FIRST]
        sums = tiles.prefix(own)
        n, breaks = sums[N], sums[_BREAKS]
        apart = own > 0 and first[own] - cols[LAST][own - 1] >= _GAP_MS   # a break just before the own tile
        lo = bisect_left(tiles.keys, end // _PER_HOUR * _PER_HOUR - 24 * _PER_HOUR, 0, own)  # the 24 h window's first
        # gaps between the window's tiles and inside them: every break of the tiles after lo, lo's own gaps (not the
        # gap before it: that is outside the window) and the break before the own tile
        gaps = breaks[own] - breaks[lo + 1] + cols[GAPS][lo] + apart if lo < own else 0
        if apart or not own:
            return 0, None, gaps
        newest = bisect_left(breaks, breaks[own], 0, own) - 1   # the newest tile with a break, or -1
        if newest < 0:
            return n[own] - n[0], first[0], gaps
        if cols[GAPS][newest]:
            return cols[TAIL_N][newest] + n[own] - n[newest + 1], cols[TAIL_FIRST][newest], gaps
        return n[own] - n[newest], first[newest], gaps

    # -- storage ----------------------------------------------------------------------------------------------
    def to_bytes(self) -> bytes:
        """The hot part (counters, newest vector, 5-minute tiles), compact: it is rewritten on every batch."""
        tiles = self.tiles
        size = len(tiles.keys)
        header = _HOT_HEADER.pack(_FORMAT, _SET_CODES[self.feature_set], self.last_seen_ms, self.total_events,
                                  self.late_events, size - tiles.cold, len(self.latest), self.cold_version)
        return zlib.compress(header + array("d", self.latest).tobytes()
                             + _pack(tiles.keys, tiles.cols[:_FINE_COLUMNS], tiles.cold, size), _HOT_LEVEL)

    def cold_bytes(self) -> bytes:
        """The cold part: the hourly tiles (changes about once an hour)."""
        tiles = self.tiles
        return zlib.compress(_COLD_HEADER.pack(_FORMAT, _SET_CODES[self.feature_set], self.cold_version, tiles.cold)
                             + _pack(tiles.keys, tiles.cols, 0, tiles.cold, _PER_HOUR), _COLD_LEVEL)

    @classmethod
    def from_bytes(cls, hot: bytes | None, cold: bytes | None = None, feature_set: str = FEATURE_SET,
                   hot_only: bool = False) -> "FeatureState":
        """A state read back. ``hot_only``: without the hourly tiles (enough for the counters and the newest
        vector; ``attach_cold`` adds them later)."""
        state = cls(feature_set)
        if not hot:
            return state
        data = zlib.decompress(hot)
        size = _HOT_HEADER.size
        (fmt, code, state.last_seen_ms, state.total_events, state.late_events, count, width,
         state.cold_version) = _HOT_HEADER.unpack_from(data)
        _check(fmt, code, feature_set)
        latest = array("d")
        latest.frombytes(data[size:size + 8 * width])
        state.latest = latest.tolist()
        keys, cols = _unpack(data[size + 8 * width:], count, _FINE_COLUMNS)
        cols += [[0] * count, [0] * count, [0] * count]   # GAPS 0 (a 5-minute tile has none); tails set at roll-up
        state.tiles.load(keys, cols, 0)
        if not hot_only:
            state.attach_cold(cold)
        return state

    def attach_cold(self, cold: bytes | None) -> None:
        """Add the hourly tiles the hot part names (its cold version); a stale copy raises StaleColdState."""
        if not self.cold_version:
            return
        if not cold:
            raise StaleColdState(f"the hot state names cold tiles version {self.cold_version} but none were read")
        data = zlib.decompress(cold)
        fmt, code, version, count = _COLD_HEADER.unpack_from(data)
        _check(fmt, code, self.feature_set)
        if version != self.cold_version:
            raise StaleColdState(f"cold tiles version {version}, the hot state needs {self.cold_version}")
        keys, cols = _unpack(data[_COLD_HEADER.size:], count, _HOURLY_COLUMNS, _PER_HOUR)
        tiles = self.tiles
        keys += tiles.keys
        for hourly, fine in zip(cols, tiles.cols, strict=True):
            hourly += fine
        tiles.load(keys, cols, count)
        self._forget()

    def mark_stored(self) -> bool:
        """Call before storing: returns whether the cold part changed (and so must be written), bumping its
        version so a reader can tell a stale copy of it."""
        changed, self.cold_changed = self.cold_changed, False
        if changed:
            self.cold_version += 1
        return changed


def _with_late_event(sums: tuple, type_code: int, device: int, purchase_amount: float) -> tuple:
    """``_window_sums`` with a late event (not in the tiles) counted in every window."""
    purchase, view, click = int(type_code == _PURCHASE), int(type_code == _VIEW), int(type_code == _CLICK)
    n, p, v, c, points, devices, amount, n_1h, *v2 = sums
    day = (n + 1, p + purchase, v + view, c + click, points + _POINTS[type_code],
           devices | (1 << device if device >= 0 else 0), amount + purchase_amount, n_1h + 1)
    if not v2:
        return day
    n_7d, p_7d, amount_7d, n_6h = v2
    return day + (n_7d + 1, p_7d + purchase, amount_7d + purchase_amount, n_6h + 1)


def _hour_row(cols: list[list], start: int, stop: int) -> list:
    """The hourly tile of the 5-minute tiles [start, stop) (one hour, two tiles or more): their sums, first and last
    time, the session gaps between them, and the events and first time of the session the last one ends."""
    c = [column[start:stop] for column in cols]
    gaps, tail_n, tail_first = 0, c[N][0], c[FIRST][0]
    for i in range(1, stop - start):
        if c[FIRST][i] - c[LAST][i - 1] >= _GAP_MS:
            gaps, tail_n, tail_first = gaps + 1, c[N][i], c[FIRST][i]
        else:
            tail_n += c[N][i]
    return [sum(c[N]), sum(c[PURCHASES]), sum(c[VIEWS]), sum(c[CLICKS]), sum(c[AMOUNT]), sum(c[POINTS]),
            reduce(or_, c[DEVICES]), c[FIRST][0], c[LAST][-1], gaps, tail_n, tail_first]


class StaleColdState(ValueError):
    """An eventually consistent read returned an older cold part than the hot part names: read it again."""


_SET_NAMES = {code: name for name, code in _SET_CODES.items()}


def _check(fmt: int, code: int, feature_set: str) -> None:
    if fmt != _FORMAT:
        raise ValueError(f"stored state has format {fmt}; this code reads {_FORMAT}")
    if _SET_NAMES.get(code) != feature_set:
        raise FeatureSetError(f"stored state is for feature set {_SET_NAMES.get(code, code)!r}, not {feature_set!r}")


def _pack(keys: list[int], cols: list[list], start: int, stop: int, per_key: int = 1) -> bytes:
    """The tiles [start, stop), columns one after the other: the first tile index then deltas (a key divided by
    ``per_key``: an hourly tile's index is its hour), counts as int32, amounts as float64, times as int32 offsets in
    their tile (zlib then squeezes the runs of small numbers). One struct call for the lot, C loops for the rest."""
    if start == stop:
        return b""
    part = keys[start:stop]
    base = list(map(mul, part, repeat(_FINE_MS, len(part))))   # each tile's start in ms
    stored = part if per_key == 1 else list(map(floordiv, part, repeat(per_key, len(part))))
    values = [stored[0], *map(sub, stored, [stored[0], *stored])]
    for c, column in enumerate(cols):
        run = column[start:stop]   # a copy, but list += list is a C copy (an islice would go element by element)
        values += map(sub, run, base) if c in _TIMES else run
    return _layout(len(cols), len(part)).pack(*values)


def _unpack(data: bytes, tiles: int, columns: int, per_key: int = 1) -> tuple[list[int], list[list]]:
    """The tile keys and columns ``_pack`` wrote, read by one struct call (a state is read on every batch)."""
    if not tiles:
        return [], [[] for _ in range(columns)]
    values = _layout(columns, tiles).unpack_from(data)
    keys = list(accumulate(values[1:1 + tiles], initial=values[0]))[1:]
    if per_key != 1:
        keys = list(map(mul, keys, repeat(per_key, tiles)))
    base = list(map(mul, keys, repeat(_FINE_MS, tiles)))
    cols = []
    for c, start in enumerate(range(1 + tiles, len(values), tiles)):
        run = values[start:start + tiles]
        cols.append(list(map(add, run, base)) if c in _TIMES else list(run))
    return keys, cols


@lru_cache(maxsize=1024)
def _layout(columns: int, tiles: int) -> struct.Struct:
    """The stored columns of ``tiles`` tiles, in native byte order and standard sizes as array.tobytes wrote them
    up to commit d944b30: the first tile index, deltas and the columns before AMOUNT, the amounts, the rest."""
    return struct.Struct(f"=q{tiles * (1 + AMOUNT)}i{tiles}d{tiles * (columns - AMOUNT - 1)}i")


def named(features: list[float], feature_set: str | None = None) -> dict[str, float]:
    """A vector as {name: value}; the feature set is inferred from the length when not given."""
    if feature_set is None:
        feature_set = next((s for s, names in FEATURE_SETS.items() if len(names) == len(features)), None)
        if feature_set is None:
            raise FeatureSetError(f"no feature set has {len(features)} features")
    names = feature_names(feature_set)
    if len(names) != len(features):
        raise FeatureSetError(f"feature set {feature_set!r} has {len(names)} features, got {len(features)}")
    return dict(zip(names, features, strict=True))
