"""EventBridge schedules, run locally (moto stores rules but never fires them).

``rate(N unit)`` is exact. ``cron(min hour day-of-month month day-of-week year)`` is evaluated minute by minute in UTC
with ``*``, ``?``, lists, ranges, ``/`` steps and names (JAN, MON); ``L``, ``W`` and ``#`` are approximated (``L`` =
last day of the month, ``nW`` = day n, ``d#n`` = weekday d). ``time_scale`` speeds the clock up: with
``time_scale=60`` a ``rate(15 minutes)`` rule fires every 15 seconds.

Targets: Lambda functions (invoked with the target's Input / InputPath, or the "Scheduled Event" payload), state
machines (StartExecution) and SQS queues (SendMessage). Run-now: ``Scheduler.run(rule)`` invokes the targets
synchronously and returns the function result.
"""
from __future__ import annotations

import calendar
import json
import logging
import re
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

from .errors import FunctionError, LocalCloudError
from .specs import RuleInfo

log = logging.getLogger("localcloud.schedules")

_UNITS = {"minute": 60, "minutes": 60, "hour": 3600, "hours": 3600, "day": 86400, "days": 86400}
_MONTHS = {m: i for i, m in enumerate(["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV",
                                       "DEC"], start=1)}
_DAYS = {d: i for i, d in enumerate(["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"], start=1)}


def rate_seconds(expression: str) -> float | None:
    match = re.fullmatch(r"\s*rate\(\s*(\d+)\s+(\w+)\s*\)\s*", expression)
    if not match:
        return None
    unit = match.group(2).lower()
    if unit not in _UNITS:
        raise LocalCloudError(f"bad rate expression {expression!r}")
    return int(match.group(1)) * _UNITS[unit]


def _field(spec: str, low: int, high: int, names: dict[str, int] | None = None) -> set[int] | None:
    """Values a cron field allows (None = any)."""
    if spec in ("*", "?"):
        return None
    values: set[int] = set()
    for part in spec.split(","):
        step = 1
        if "/" in part:
            part, step_text = part.split("/", 1)
            step = int(step_text)
        if part in ("*", ""):
            start, end = low, high
        elif "-" in part:
            a, b = part.split("-", 1)
            start, end = _value(a, names), _value(b, names)
        else:
            start = _value(part, names)
            end = high if "/" in spec else start
        values.update(range(start, end + 1, step))
    return values


def _value(text: str, names: dict[str, int] | None) -> int:
    text = text.upper()
    if names and text in names:
        return names[text]
    return int(text)


class Cron:
    def __init__(self, expression: str):
        match = re.fullmatch(r"\s*cron\((.*)\)\s*", expression)
        if not match or len(match.group(1).split()) != 6:
            raise LocalCloudError(f"bad cron expression {expression!r} (6 fields expected)")
        minute, hour, dom, month, dow, year = match.group(1).split()
        self.minutes = _field(minute, 0, 59)
        self.hours = _field(hour, 0, 23)
        self.last_day = dom.upper() == "L"
        self.dom = None if self.last_day else _field(dom.upper().rstrip("W").replace("L", "") or "*", 1, 31)
        self.months = _field(month, 1, 12, _MONTHS)
        self.nth: tuple[int, int] | None = None
        if "#" in dow:
            day, nth = dow.split("#", 1)
            self.nth = (_value(day, _DAYS), int(nth))
            self.dow = None
        else:
            self.dow = _field(dow.upper().replace("L", "") or "*", 1, 7, _DAYS)
        self.years = _field(year, 1970, 2199)

    def matches(self, t: datetime) -> bool:
        aws_dow = (t.isoweekday() % 7) + 1  # SUN=1 .. SAT=7
        if self.minutes is not None and t.minute not in self.minutes:
            return False
        if self.hours is not None and t.hour not in self.hours:
            return False
        if self.months is not None and t.month not in self.months:
            return False
        if self.years is not None and t.year not in self.years:
            return False
        if self.last_day and t.day != calendar.monthrange(t.year, t.month)[1]:
            return False
        if self.dom is not None and t.day not in self.dom:
            return False
        if self.dow is not None and aws_dow not in self.dow:
            return False
        if self.nth is not None and (aws_dow != self.nth[0] or (t.day - 1) // 7 + 1 != self.nth[1]):
            return False
        return True

    def next_after(self, t: datetime) -> datetime:
        candidate = (t + timedelta(minutes=1)).replace(second=0, microsecond=0)
        for _ in range(60 * 24 * 366 * 2):
            if self.matches(candidate):
                return candidate
            candidate += timedelta(minutes=1)
        raise LocalCloudError("cron expression never fires in the next two years")


def scheduled_event(rule: RuleInfo, region: str, account_id: str, when: datetime | None = None) -> dict:
    when = when or datetime.now(timezone.utc)
    return {"version": "0", "id": str(uuid.uuid4()), "detail-type": "Scheduled Event", "source": "aws.events",
            "account": account_id, "time": when.strftime("%Y-%m-%dT%H:%M:%SZ"), "region": region,
            "resources": [rule.arn], "detail": {}}


class Scheduler:
    def __init__(self, rules: list[RuleInfo], *, host, clients: dict[str, Any], region: str, account_id: str,
                 time_scale: float = 1.0, enabled: bool = True):
        self.rules = [r for r in rules if r.schedule]
        self.host = host
        self.clients = clients
        self.region = region
        self.account_id = account_id
        self.time_scale = max(float(time_scale), 1e-9)
        self.enabled = enabled
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True, name="localcloud-scheduler")
        self.fired: dict[str, int] = {r.logical_id: 0 for r in self.rules}
        self.last_result: dict[str, Any] = {}

    def find(self, name: str) -> RuleInfo:
        """A rule by logical id, physical name, logical-id prefix, or the logical id / name of its target."""
        for rule in self.rules:
            if name in (rule.logical_id, rule.name, rule.arn):
                return rule
        candidates = [r for r in self.rules if r.logical_id.startswith(name)]
        if not candidates:
            candidates = [r for r in self.rules for t in r.targets if self._target_matches(t, name)]
        if len(candidates) == 1:
            return candidates[0]
        known = [r.logical_id for r in self.rules]
        if not candidates:
            raise LocalCloudError(f"no schedule {name!r} (schedules: {known})")
        raise LocalCloudError(f"{name!r} matches several schedules: {[r.logical_id for r in candidates]}")

    def _target_matches(self, target: dict, name: str) -> bool:
        arn = str(target.get("Arn", ""))
        if ":lambda:" in arn:
            try:
                spec = self.host.spec(arn)
            except LocalCloudError:
                return False
            return spec.logical_id.startswith(name) or spec.name == name
        return False

    # -- firing -------------------------------------------------------------------------------------------------
    def run(self, name: str) -> Any:
        """Fire a rule now; returns the Lambda result (a list when the rule has several targets)."""
        rule = self.find(name)
        results = [self._fire_target(rule, target) for target in rule.targets]
        self.fired[rule.logical_id] += 1
        result = results[0] if len(results) == 1 else results
        self.last_result[rule.logical_id] = result
        return result

    def _payload(self, rule: RuleInfo, target: dict) -> Any:
        event = scheduled_event(rule, self.region, self.account_id)
        if "Input" in target:
            return json.loads(target["Input"]) if isinstance(target["Input"], str) else target["Input"]
        if "InputPath" in target:
            value: Any = event
            for part in [p for p in target["InputPath"].lstrip("$").split(".") if p]:
                value = value.get(part) if isinstance(value, dict) else None
            return value
        if "InputTransformer" in target:
            log.warning("rule %s: InputTransformer is not applied locally; sending the scheduled event",
                        rule.logical_id)
        return event

    def _fire_target(self, rule: RuleInfo, target: dict) -> Any:
        arn = str(target.get("Arn", ""))
        payload = self._payload(rule, target)
        if ":lambda:" in arn:
            return self.host.invoke(arn, payload).raise_for_error()
        if ":states:" in arn:
            return self.clients["stepfunctions"].start_execution(stateMachineArn=arn, input=json.dumps(payload))
        if ":sqs:" in arn:
            sqs = self.clients["sqs"]
            url = sqs.get_queue_url(QueueName=arn.rsplit(":", 1)[1])["QueueUrl"]
            return sqs.send_message(QueueUrl=url, MessageBody=json.dumps(payload))
        raise LocalCloudError(f"rule {rule.logical_id}: target {arn} is not supported locally")

    def next_fire(self, rule: RuleInfo, virtual_now: datetime) -> datetime:
        seconds = rate_seconds(rule.schedule or "")
        if seconds is not None:
            return virtual_now + timedelta(seconds=seconds)
        return Cron(rule.schedule or "").next_after(virtual_now)

    def start(self) -> None:
        for rule in self.rules:  # fail early on expressions we cannot evaluate
            if rate_seconds(rule.schedule or "") is None:
                Cron(rule.schedule or "")
        if self.enabled and self.rules:
            self.thread.start()

    def _run(self) -> None:
        real_start = time.monotonic()
        virtual_start = datetime.now(timezone.utc)

        def virtual_now() -> datetime:
            return virtual_start + timedelta(seconds=(time.monotonic() - real_start) * self.time_scale)

        due = {r.logical_id: self.next_fire(r, virtual_start) for r in self.rules if r.enabled}
        while not self.stop_event.is_set() and due:
            now = virtual_now()
            logical_id, when = min(due.items(), key=lambda item: item[1])
            wait = (when - now).total_seconds() / self.time_scale
            if wait > 0:
                self.stop_event.wait(min(wait, 1.0))
                continue
            rule = next(r for r in self.rules if r.logical_id == logical_id)
            try:
                self.run(rule.logical_id)
                log.info("schedule %s fired", rule.logical_id)
            except (FunctionError, LocalCloudError) as exc:
                log.warning("schedule %s failed: %s", rule.logical_id, exc)
            except Exception as exc:  # noqa: BLE001
                log.warning("schedule %s failed: %s: %s", rule.logical_id, type(exc).__name__, exc)
            due[logical_id] = self.next_fire(rule, when)

    def stop(self) -> None:
        self.stop_event.set()
        if self.thread.is_alive():
            self.thread.join(5)
