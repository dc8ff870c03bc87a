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
seen (bit mask), its first and last event time, and for hourly tiles the session gaps inside it.

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
from dataclasses import dataclass
from functools import lru_cache, reduce
from itertools import accumulate, islice, repeat
from math import exp
from operator import add, ge, mul, or_, sub

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

# Tile columns (fine and hourly tiles share the first nine; hourly tiles add the session columns).
N, PURCHASES, VIEWS, CLICKS, AMOUNT, POINTS, DEVICES, FIRST, LAST = range(9)
GAPS, TAIL_N, TAIL_FIRST = 9, 10, 11
_FINE_COLUMNS = 9
_COUNTS = (N, PURCHASES, VIEWS, CLICKS, POINTS)                    # integers: running sums are exact
_NO_TILE = (0, 0, 0, 0, 0, 0, 0)  # (events, purchases, views, clicks, amount, points, devices) of no tile
_HOURLY_COLUMNS = 12
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


@dataclass
class Observation:
    features: list[float]
    late: bool


class _Tier:
    """Tiles of one resolution as parallel columns sorted by tile index (a few dozen to ~200 tiles).

    A tier of closed tiles (the hourly tier: tiles are only appended and dropped, never changed) also keeps running
    sums of its count columns and of its session gaps, so that a window's counts are two lookups whatever its
    length."""

    __slots__ = ("keys", "cols", "tile_ms", "_cached", "_counted", "_running", "_apart", "_sessions", "part", "known")

    def __init__(self, columns: int, tile_ms: int, closed: bool = False, sessions: bool = True):
        self.keys: list[int] = []
        self.cols: list[list] = [[] for _ in range(columns)]
        self.tile_ms = tile_ms
        self._cached: dict | None = None   # session walks, until the tier changes
        self.part: tuple | None = None     # FeatureState._hourly_part's, until the tier changes
        self.known: tuple | None = None    # (lo, hi, sums): the fine tier's last window over closed tiles, likewise
        # sessions=False (a v1 state: no session features): no running sums of session gaps to keep up
        self._counted = (_COUNTS + (GAPS,) if sessions else _COUNTS) if closed else ()
        self._sessions = sessions
        self._running: dict[int, list[int]] | None = None  # column -> sum over the tiles before each position
        self._apart: list[int] = []   # with _running: session gaps between consecutive tiles, summed up to each

    def __len__(self) -> int:
        return len(self.keys)

    def insert(self, position: int, key: int, row: list) -> None:
        """A new tile; one added after the others leaves what is cached about them valid."""
        if position < len(self.keys):
            self.invalidate()
            self._running = None
            self.keys.insert(position, key)
            for col, value in zip(self.cols, row, strict=True):
                col.insert(position, value)
            return
        if self._running is not None:
            for column, running in self._running.items():
                running.append(running[-1] + row[column])
            if self._sessions:
                apart = self._apart
                apart.append(apart[-1] + (row[FIRST] - self.cols[LAST][-1] >= _GAP_MS) if apart else 0)
        self.keys.append(key)
        for col, value in zip(self.cols, row, strict=True):
            col.append(value)

    def drop_first(self, count: int) -> None:
        del self.keys[:count]
        for column in self.cols:
            del column[:count]
        if self._running is not None:
            for running in self._running.values():
                del running[:count]   # the sums stay offset by the dropped tiles: windows are differences
            del self._apart[:count]
        self.invalidate()

    def pop_first(self) -> list:
        """Drop the first tile and return its row: drop_first(1) and a read of the row in one pass (for the fine
        tier, which keeps no running sums)."""
        del self.keys[0]
        self.invalidate()
        return [column.pop(0) for column in self.cols]

    def load(self, keys: list[int], cols: list[list]) -> None:
        self.keys, self.cols, self._running = keys, cols, None
        self.invalidate()

    def sums(self, lo: int, hi: int) -> tuple:
        """(events, purchases, views, clicks, amount, points, devices) over the fine tiles [lo, hi), devices
        OR-ed. (The hourly tier's windows are differences of its running sums: FeatureState._hourly_part.)"""
        if lo >= hi:
            return _NO_TILE
        if hi - lo == 1:  # one tile (a sparse user's): its own values, nothing to add
            c = self.cols
            return (c[N][lo], c[PURCHASES][lo], c[VIEWS][lo], c[CLICKS][lo], c[AMOUNT][lo], c[POINTS][lo],
                    c[DEVICES][lo])
        return self._fine_sums(lo, hi)

    def _fine_sums(self, lo: int, hi: int) -> tuple:
        """``sums`` of two tiles or more. The last window over closed tiles (not the newest) is kept
        until the tier changes: the next new tile's window is usually the same tiles and the one before it (a busy
        user's day window gains a tile every 5 minutes), so it adds the tiles after it, in tile order as ``sum``
        over the whole window would (``sum`` and ``reduce`` go on from the kept sums)."""
        c = self.cols
        known = self.known
        start, (n, p, v, k, amount, points, devices) = (
            (known[1], known[2]) if known is not None and known[0] == lo and known[1] <= hi else (lo, _NO_TILE))
        found = (sum(c[N][start:hi], n), sum(c[PURCHASES][start:hi], p), sum(c[VIEWS][start:hi], v),
                 sum(c[CLICKS][start:hi], k), sum(c[AMOUNT][start:hi], amount), sum(c[POINTS][start:hi], points),
                 reduce(or_, c[DEVICES][start:hi], devices))
        if hi < len(self.keys):   # closed tiles only: a change to one of them (not the newest) calls invalidate
            self.known = (lo, hi, found)
        return found

    def running(self) -> dict[int, list[int]]:
        """Column -> the sum of that column over the tiles before each position (count columns of a closed tier);
        also rebuilds ``_apart``, the session gaps between consecutive tiles summed up to each position."""
        if self._running is None:
            cols = self.cols
            self._running = {column: list(accumulate(cols[column], initial=0)) for column in self._counted}
            first, last = cols[FIRST], cols[LAST]
            # (first[k] - last[k - 1] >= _GAP_MS for k >= 1) as C loops: a sparse user's state is read for each event
            apart = map(ge, map(sub, islice(first, 1, None), last), repeat(_GAP_MS))
            self._apart = list(accumulate(apart, initial=0)) if first and self._sessions else []
        return self._running

    def walk_down(self, top: int, lo: int) -> tuple[int, int, bool, int]:
        """From fine tile ``top`` down: (events and first time of the session that tile ``top`` is in, whether that
        session reaches tile 0, session gaps between the tiles lo..top)."""
        if top < 4:   # a few tiles (a sparse user's, whose fine tier changes at every event): cheaper uncached
            return self._walk(top, lo)
        chain_n, chain_first, reaches_first, gaps = self._chain(top)
        return chain_n, chain_first, reaches_first, gaps - self._chain(lo)[3] if lo < top else 0

    def _walk(self, top: int, lo: int) -> tuple[int, int, bool, int]:
        """``walk_down`` by a plain walk from tile ``top`` down, nothing cached."""
        first, last, n = self.cols[FIRST], self.cols[LAST], self.cols[N]
        chain_n, chain_first, in_session, gaps = n[top], first[top], True, 0
        for j in range(top, 0, -1):
            if first[j] - last[j - 1] >= _GAP_MS:
                in_session = False
                gaps += j > lo
            elif in_session:
                chain_n, chain_first = chain_n + n[j - 1], first[j - 1]
        return chain_n, chain_first, in_session, gaps

    def _chain(self, top: int) -> tuple[int, int, bool, int]:
        """(events and first time of the session that tile ``top`` is in, whether it reaches tile 0, session gaps
        between tiles 0..top), each tile's from the one below it: a new tile costs one step. Cached like ``sums``."""
        cache = self._cache()
        found: tuple[int, int, bool, int] | None = cache.get(("chain", top))
        if found is None:
            first, last, n = self.cols[FIRST], self.cols[LAST], self.cols[N]
            i = top
            while i > 0 and ("chain", i - 1) not in cache:
                i -= 1
            found = cache[("chain", i - 1)] if i > 0 else None
            for j in range(i, top + 1):
                if found is None:
                    found = (n[0], first[0], True, 0)
                elif first[j] - last[j - 1] >= _GAP_MS:
                    found = (n[j], first[j], False, found[3] + 1)
                else:
                    found = (found[0] + n[j], found[1], found[2], found[3])
                cache[("chain", j)] = found
        assert found is not None  # range(i, top + 1) is never empty: i <= top
        return found

    def session_back(self) -> tuple[int, int | None]:
        """(events, first time) of the session that the newest hourly tile's last event belongs to."""
        key = ("session", len(self.keys))
        cache = self._cache()
        found = cache.get(key)
        if found is None:
            cols, j = self.cols, len(self.keys) - 1
            count, first = 0, None
            while j >= 0:
                if cols[GAPS][j]:
                    count, first = count + cols[TAIL_N][j], cols[TAIL_FIRST][j]
                    break
                count, first = count + cols[N][j], cols[FIRST][j]
                if j == 0 or cols[FIRST][j] - cols[LAST][j - 1] >= _GAP_MS:
                    break
                j -= 1
            found = cache[key] = (count, first)
        return found

    def gaps_from(self, lo: int) -> int:
        """Session gaps inside the hourly tiles from ``lo`` to the newest and between them (running sums: the
        hourly tier is closed)."""
        gaps, apart = self.running()[GAPS], self._apart
        return gaps[-1] - gaps[lo] + apart[-1] - apart[lo]

    def _cache(self) -> dict:
        if self._cached is None:
            self._cached = {}
        return self._cached

    def invalidate(self) -> None:
        self._cached = self.part = self.known = None


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
        self.fine = _Tier(_FINE_COLUMNS, _FINE_MS)
        self.hourly = _Tier(_HOURLY_COLUMNS, _HOUR_MS, closed=True, sessions=self._v2)
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
            sums = self._window_sums(end, bisect_right(self.fine.keys, end))  # the tiles as they are, uncached
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
        own = self._apply(ts_ms, end, type_code, device, purchase_amount)
        cols = self.fine.cols
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
        if ts_ms > self.last_seen_ms:
            # what rolls up or expires moves by whole tiles of the newest event time
            newer_tile = end != self.last_seen_ms // _FINE_MS
            self.last_seen_ms = ts_ms
            if newer_tile:
                self._roll_up()
        self.latest = features
        return Observation(features, False)

    def _forget(self) -> None:
        """A tile other than the newest fine tile changed: what was computed from the tiles is stale."""
        self._base = self._session = None
        self.fine.invalidate()

    # -- the tiles ------------------------------------------------------------------------------------------
    def _apply(self, ts_ms: int, key: int, type_code: int, device: int, purchase_amount: float) -> int:
        """Add the event to its fine tile; returns the tile's position."""
        fine = self.fine
        keys = fine.keys
        position = len(keys) - 1
        if position < 0 or keys[position] != key:  # not the newest tile (the usual case)
            position = bisect_left(keys, key)
            if position == len(keys) and fine._running is None:
                # a new newest tile (a sparse user's every event), column by column: _Tier.insert's append without
                # its loop (no running sums to extend; what is cached about the other tiles stays valid)
                keys.append(key)
                n, purchases, views, clicks, amounts, points, devices, first, last = fine.cols
                n.append(1)
                purchases.append(int(type_code == _PURCHASE))
                views.append(int(type_code == _VIEW))
                clicks.append(int(type_code == _CLICK))
                amounts.append(0.0 + purchase_amount)
                points.append(_POINTS[type_code])
                devices.append(1 << device if device >= 0 else 0)
                first.append(ts_ms)
                last.append(ts_ms)
                return position
            if position == len(keys) or keys[position] != key:   # a new tile, holding just this event
                fine.insert(position, key, [
                    1, int(type_code == _PURCHASE), int(type_code == _VIEW), int(type_code == _CLICK),
                    0.0 + purchase_amount, _POINTS[type_code], 1 << device if device >= 0 else 0, ts_ms, ts_ms])
                if position != len(keys) - 1:
                    self._forget()
                return position
            if position != len(keys) - 1:
                self._forget()
        cols = fine.cols
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
        return position

    def _roll_up(self) -> None:
        """Fine tiles that no on-time event can reach any more become hourly tiles (whole hours at a time);
        hourly tiles past the retention are dropped."""
        fine, hourly = self.fine, self.hourly
        keep_from = (self.last_seen_ms - _FINE_KEEP_MS) // _FINE_MS
        keys = fine.keys
        changed = False
        while keys and (keys[0] // _PER_HOUR + 1) * _PER_HOUR <= keep_from:
            hour = keys[0] // _PER_HOUR
            count = bisect_left(keys, (hour + 1) * _PER_HOUR)
            if count == 1:   # one tile (a sparse user's hour): moved as it is, no gap inside
                row = fine.pop_first()
                row += (0, row[N], row[FIRST])
            else:
                row = _hour_row(fine.cols, count)
                fine.drop_first(count)
            hourly.insert(len(hourly.keys), hour, row)
            changed = True
        hkeys = hourly.keys
        oldest = (self.last_seen_ms - self._retention_ms) // _HOUR_MS
        if hkeys and hkeys[0] < oldest:
            hourly.drop_first(bisect_left(hkeys, oldest))
            changed = True
        if changed:   # one _forget for the lot
            self.cold_changed = True
            self._forget()

    # -- the vector -----------------------------------------------------------------------------------------
    def _window_sums(self, end: int, upto: int) -> tuple:
        """The windows of an event in fine tile ``end``, summed over their tiles but the fine tiles from position
        ``upto`` on (the event's own tile when it is in the tiles, added per event by ``_vector``):
        (events, purchases, views, clicks, points, devices over 24 h, the 24 h amount over fine and over hourly
        tiles, events over 1 h; for v2 also events, purchases over 7 d, the 7 d amount over fine and over hourly
        tiles, events over 6 h). Amounts are kept apart so that they add up in the same order whatever is cached."""
        fine, hourly = self.fine, self.hourly
        keys, hkeys, fine_n = fine.keys, hourly.keys, fine.cols[N]
        hour = end // _PER_HOUR * _PER_HOUR   # windows of an hourly resolution start on the hour (a fine index)
        # Each window: its fine tiles [bisect_left(keys, start), upto) plus its whole hourly tiles up to the event's
        # hour (all of them for an on-time event: no bisect then), summed by _hourly_part
        top = end // _PER_HOUR
        hhi = len(hkeys) if not hkeys or hkeys[-1] <= top else bisect_right(hkeys, top)
        hn, hp, hv, hc, h_amount, h_points, h_devices, *week = self._hourly_part(top - 24, hhi)
        day_lo = bisect_left(keys, hour - 24 * _PER_HOUR)
        n, p, v, c, amount, points, devices = day_fine = fine.sums(day_lo, upto)
        start_1h = end - _PER_HOUR
        n_1h = _fine_count(fine_n, bisect_left(keys, start_1h), upto, day_lo, n)
        if hhi and hkeys[hhi - 1] * _PER_HOUR >= start_1h:   # the 1 h window reaches the hourly tiles (late events)
            running_n = hourly.running()[N]
            n_1h += running_n[hhi] - running_n[bisect_left(hkeys, -(-start_1h // _PER_HOUR))]
        sums = (n + hn, p + hp, v + hv, c + hc, points + h_points, devices | h_devices, amount, h_amount, n_1h)
        if not self._v2:
            return sums
        h_n7, h_p7, h_amount_7d, h_n6 = week
        n_6h = _fine_count(fine_n, bisect_left(keys, hour - 6 * _PER_HOUR), upto, day_lo, n) + h_n6
        week_lo = bisect_left(keys, hour - 7 * 24 * _PER_HOUR)
        week_fine = day_fine if week_lo == day_lo else fine.sums(week_lo, upto)   # the same tiles, usually
        return sums + (week_fine[N] + h_n7, week_fine[PURCHASES] + h_p7, week_fine[AMOUNT], h_amount_7d, n_6h)

    def _hourly_part(self, day: int, hhi: int) -> tuple:
        """The hourly tiles' part of the windows that start on the hour ``day`` + 24 - w and end before tile
        ``hhi``: (events, purchases, views, clicks, amount, points, devices over 24 h; for v2 also events,
        purchases and the amount over 7 d, events over 6 h). Counts are differences of running sums, amounts added
        in tile order (as the tiles were rolled up). The same for every event of an hour: kept until the hourly
        tier changes, or the hour does."""
        hourly = self.hourly
        part = hourly.part
        if part is not None and part[0] == day and part[1] == hhi:
            return part[2]
        hkeys, c = hourly.keys, hourly.cols
        running = hourly.running()
        n, p, v, k, pts = running[N], running[PURCHASES], running[VIEWS], running[CLICKS], running[POINTS]
        lo = bisect_left(hkeys, day)
        found: tuple = (n[hhi] - n[lo], p[hhi] - p[lo], v[hhi] - v[lo], k[hhi] - k[lo], sum(c[AMOUNT][lo:hhi]),
                        pts[hhi] - pts[lo], reduce(or_, c[DEVICES][lo:hhi], 0))
        if self._v2:
            week = bisect_left(hkeys, day - 6 * 24)
            found += (n[hhi] - n[week], p[hhi] - p[week], sum(c[AMOUNT][week:hhi]),
                      n[hhi] - n[bisect_left(hkeys, day + 18)])
        hourly.part = (day, hhi, found)
        return found

    def _vector(self, event: Event, ts_ms: int, type_code: int, device: int, amount: float, sums: tuple,
                tile: tuple, since_prev: float, session: tuple | None) -> list[float]:
        """The event's feature vector from ``_window_sums`` and the event's tile."""
        n_24h, p_24h, v_24h, c_24h, points_24h, devices_24h, amount_24h, h_amount_24h, n_1h = sums[:9]
        t_n, t_p, t_v, t_c, t_amount, t_points, t_devices = tile
        events_24h = n_24h + t_n
        purchases = p_24h + t_p
        views = v_24h + t_v
        amount_sum = amount_24h + t_amount + h_amount_24h
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
        n_7d, p_7d, amount_7d, h_amount_7d, n_6h = sums[9:]
        week_purchases = p_7d + t_p
        week_amount = amount_7d + t_amount + h_amount_7d
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
        """What the session features of an event in fine tile ``end`` (at position ``own``) take from the other
        tiles: (events of its session before its tile, the session's first time or None when it starts in its
        tile, session gaps in the 24 h window). Depends on the own tile only through its first time.

        One backward pass over the fine tiles below the event's tile; hourly tiles only when the window or the
        session reaches them."""
        fine, hourly = self.fine, self.hourly
        first, last = fine.cols[FIRST], fine.cols[LAST]
        start = end // _PER_HOUR * _PER_HOUR - 24 * _PER_HOUR   # the 24 h window's first tile: floor(ts - 24 h, 1 h)
        lo = bisect_left(fine.keys, start)
        chain_n, chain_first, in_session, gaps = 0, None, True, 0
        if own > 0:
            apart = first[own] - last[own - 1] >= _GAP_MS
            below_n, below_first, below_in_session, below_gaps = fine.walk_down(own - 1, lo)
            gaps = below_gaps + (apart and own - 1 >= lo)
            if apart:
                in_session = False
            else:
                chain_n, chain_first, in_session = below_n, below_first, below_in_session
        h_last = hourly.cols[LAST]
        top = len(hourly.keys) - 1
        if in_session and top >= 0 and first[0] - h_last[top] < _GAP_MS:  # the session reaches the hourly tiles
            back_n, back_first = hourly.session_back()
            chain_n, chain_first = chain_n + back_n, back_first
        hlo = bisect_left(hourly.keys, -(-start // _PER_HOUR))
        if top >= hlo:  # the 24 h window reaches the hourly tiles
            if lo <= own:
                gaps += first[lo] - h_last[top] >= _GAP_MS
            gaps += hourly.gaps_from(hlo)
        return chain_n, chain_first, gaps

    # -- storage ----------------------------------------------------------------------------------------------
    def to_bytes(self) -> bytes:
        """The hot part (counters, newest vector, fine tiles), compact: it is rewritten on every batch."""
        fine = self.fine
        header = _HOT_HEADER.pack(_FORMAT, _SET_CODES[self.feature_set], self.last_seen_ms, self.total_events,
                                  self.late_events, len(fine.keys), len(self.latest), self.cold_version)
        return zlib.compress(header + array("d", self.latest).tobytes() + _pack(fine), _HOT_LEVEL)

    def cold_bytes(self) -> bytes:
        """The cold part: the hourly tiles (changes about once an hour)."""
        return zlib.compress(_COLD_HEADER.pack(_FORMAT, _SET_CODES[self.feature_set], self.cold_version,
                                               len(self.hourly.keys)) + _pack(self.hourly), _COLD_LEVEL)

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
        (fmt, code, state.last_seen_ms, state.total_events, state.late_events, tiles, width,
         state.cold_version) = _HOT_HEADER.unpack_from(data)
        _check(fmt, code, feature_set)
        latest = array("d")
        latest.frombytes(data[size:size + 8 * width])
        state.latest = latest.tolist()
        _unpack(state.fine, data[size + 8 * width:], tiles)
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
        fmt, code, version, tiles = _COLD_HEADER.unpack_from(data)
        _check(fmt, code, self.feature_set)
        if version != self.cold_version:
            raise StaleColdState(f"cold tiles version {version}, the hot state needs {self.cold_version}")
        _unpack(self.hourly, data[_COLD_HEADER.size:], tiles)
        self._forget()

    def mark_stored(self) -> bool:
        """Call before storing: returns whether the cold part changed (and so must be written), bumping its
        version so a reader can tell a stale copy of it."""
        changed, self.cold_changed = self.cold_changed, False
        if changed:
            self.cold_version += 1
        return changed


def _fine_count(fine_n: list[int], lo: int, upto: int, day_lo: int, day_n: int) -> int:
    """Events in the fine tiles [lo, upto): none, or the day window's count when the window starts at the same
    tile (the usual case for the 6 h window, and for a sparse user's 1 h window none), else their sum."""
    if lo >= upto:
        return 0
    return day_n if lo == day_lo else sum(fine_n[lo:upto])


def _with_late_event(sums: tuple, type_code: int, device: int, purchase_amount: float) -> tuple:
    """``_window_sums`` with a late event (not in the tiles) counted in every window; its amount is added after
    the hourly part, the order of an on-time event's own tile."""
    purchase, view, click = int(type_code == _PURCHASE), int(type_code == _VIEW), int(type_code == _CLICK)
    n, p, v, c, points, devices, amount, h_amount, n_1h, *v2 = sums
    day = (n + 1, p + purchase, v + view, c + click, points + _POINTS[type_code],
           devices | (1 << device if device >= 0 else 0), amount + h_amount + purchase_amount, 0, n_1h + 1)
    if not v2:
        return day
    n_7d, p_7d, amount_7d, h_amount_7d, n_6h = v2
    return day + (n_7d + 1, p_7d + purchase, amount_7d + h_amount_7d + purchase_amount, 0, n_6h + 1)


def _hour_row(cols: list[list], count: int) -> list:
    """The hourly tile of the first ``count`` fine tiles (one hour, count > 1: _roll_up moves a single tile as it
    is): their sums, first and last time, the session gaps between them, and the events and first time of the
    session the last one ends."""
    c = [column[:count] for column in cols]
    gaps, tail_n, tail_first = 0, c[N][0], c[FIRST][0]
    for i in range(1, count):
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


def _pack(tier: _Tier) -> bytes:
    """Columns one after the other: the first tile index then deltas, counts as int32, amounts as float64, times
    as int32 offsets in their tile (zlib then squeezes the runs of small numbers). One struct call for the lot."""
    keys = tier.keys
    if not keys:
        return b""
    base = list(map(mul, keys, repeat(tier.tile_ms, len(keys))))   # map over C operators: runs on every batch
    values = [keys[0], *map(sub, keys, [keys[0], *keys])]
    for c, column in enumerate(tier.cols):
        values += map(sub, column, base) if c in _TIMES else column
    return _layout(len(tier.cols), len(keys)).pack(*values)


def _unpack(tier: _Tier, data: bytes, tiles: int) -> None:
    """The columns ``_pack`` wrote, read by one struct call (a state is read on every batch)."""
    if not tiles:
        return
    values = _layout(len(tier.cols), tiles).unpack_from(data)
    keys = list(accumulate(values[1:1 + tiles], initial=values[0]))[1:]
    base = list(map(mul, keys, repeat(tier.tile_ms, tiles)))
    cols = []
    for c, start in enumerate(range(1 + tiles, len(values), tiles)):
        run = values[start:start + tiles]
        cols.append(list(map(add, run, base)) if c in _TIMES else list(run))
    tier.load(keys, cols)


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
