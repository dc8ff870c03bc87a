"""Judging the last change before choosing again: after a change made for cost, the next retrain compares the
measured cost per event under the new setting with the setting before at comparable arrival rates (at least
MIN_COMPARE batches each); if the new one is more than ROLLBACK_TOLERANCE dearer and the setting before held the
SLO (SLO_SHARE of its matched batches) it rolls back, records why, and keeps that size out of the candidates for
REJECT_SECONDS. ``decide`` = that check, then policy.choose."""
from __future__ import annotations

import math
import time
from typing import Any

from ..batch_config import BatchConfig
from ..settings import Settings
from .policy import Decision, choose
from .records import measured_cost

MIN_COMPARE = 20               # batches needed on each side before judging a change
ROLLBACK_TOLERANCE = 0.05      # roll back when the new setting's measured cost is > 5 % above the old one
REJECT_SECONDS = 24 * 3600     # a rolled-back size stays out of the candidates this long
EVALUATION_SECONDS = 3 * 3600  # a change that found no comparable load within this long is left as inconclusive
SLO_SHARE = 0.99               # the share of batches within the SLO a setting must have kept to be rolled back to


def _by_rate_bin(rows: list[dict]) -> dict[int, list[dict]]:
    """Records grouped by arrival rate, in bins x1.5 wide (no rate: bin -99)."""
    bins: dict[int, list[dict]] = {}
    for r in rows:
        rate = float(r.get("arrival_rate") or 0.0)
        bins.setdefault(int(math.floor(math.log(rate) / math.log(1.5))) if rate > 0 else -99, []).append(r)
    return bins


def slo_share(records: list[dict], slo: float) -> float:
    """The share of ``records`` whose oldest event's latency was within ``slo`` (1.0 for none)."""
    if not records:
        return 1.0
    return sum(float(r.get("latency_max", 0.0)) <= slo for r in records) / len(records)


def evaluate_change(records: list[dict], last_change: dict, now: float | None = None,
                    slo: float = math.inf) -> dict:
    """Compare the measured cost per event under the new setting with the setting before it, at comparable load:
    batches are grouped by arrival rate (bins x1.5 wide) and only bins both settings saw are compared, weighted
    by the new setting's events (a change that happened as the load fell would otherwise look dearer). A setting
    before that kept fewer than SLO_SHARE of its matched batches within ``slo`` is no baseline to roll back to:
    being cheaper by breaking the SLO is no merit, so the change is kept.
    Returns {"verdict": "pending"|"kept"|"rollback"|"inconclusive", ...figures}."""
    now = time.time() if now is None else now
    applied_at = float(last_change["applied_at"])
    new, old = int(last_change["batch_size"]), int(last_change["previous_batch_size"])
    after = [r for r in records if float(r["recorded_at"]) >= applied_at
             and int(r.get("configured_batch_size", -1)) == new]
    before = [r for r in records if float(r["recorded_at"]) < applied_at
              and int(r.get("configured_batch_size", -1)) == old]
    b_before, b_after = _by_rate_bin(before), _by_rate_bin(after)
    shared = sorted(set(b_before) & set(b_after))
    matched_before = [r for k in shared for r in b_before[k]]
    matched_after = [r for k in shared for r in b_after[k]]
    result: dict[str, Any] = {"batches_before": len(before), "batches_after": len(after),
                              "matched_before": len(matched_before), "matched_after": len(matched_after),
                              "from": old, "to": new}
    if len(matched_after) < MIN_COMPARE or len(matched_before) < MIN_COMPARE:
        if now - applied_at > EVALUATION_SECONDS:
            return result | {"verdict": "inconclusive"}
        return result | {"verdict": "pending"}
    weights = {k: sum(int(r["events"]) for r in b_after[k]) for k in shared}
    total = sum(weights.values())
    cost_before = sum(weights[k] * (measured_cost(b_before[k]) or 0.0) for k in shared) / total
    cost_after = sum(weights[k] * (measured_cost(b_after[k]) or 0.0) for k in shared) / total
    result |= {"cost_per_event_before": cost_before, "cost_per_event_after": cost_after,
               "change": cost_after / cost_before - 1 if cost_before else None,
               "slo_share_before": slo_share(matched_before, slo)}
    if (cost_before and cost_after > cost_before * (1 + ROLLBACK_TOLERANCE)
            and result["slo_share_before"] >= SLO_SHARE):
        return result | {"verdict": "rollback"}
    return result | {"verdict": "kept"}


def _while_pending(records: list[dict], settings: Settings, config: BatchConfig, now: float, state: dict,
                   rejected: dict, last_change: dict, verdict: dict) -> tuple[Decision, dict | None, dict]:
    """Too few batches to judge the last change yet: keep the current setting, unless it would break the SLO."""
    current, current_window = config.batch_size, config.batching_window_seconds
    decision, models = choose(records, settings, current, rejected=rejected, now=now, current_window=current_window)
    if decision.purpose == "slo" or decision.keep_holds_slo is False:
        # the load changed (the hour ahead differs): holding the SLO cannot wait for the verdict
        state["last_change"] = dict(last_change, evaluated=True, evaluation=verdict | {"verdict": "superseded"})
        return decision, models, state | {"rejected": rejected}
    decision = Decision(current, current_window, config.invoke_chunk_size if config.applied
                        else min(current, settings.invoke_chunk_size),
                        f"waiting for {MIN_COMPARE} batches under BatchSize {verdict['to']} and under "
                        f"{verdict['from']} before judging the last change (have {verdict['batches_after']}"
                        f" and {verdict['batches_before']})", len(records), status="waiting")
    return decision, None, state | {"rejected": rejected}


def _roll_back(records: list[dict], settings: Settings, config: BatchConfig, now: float, state: dict,
               rejected: dict, last_change: dict, verdict: dict) -> tuple[Decision, dict | None, dict]:
    """The last change measured dearer: reject its size for REJECT_SECONDS and restore the setting before it,
    unless that one would break the SLO now (then choose again without the rejected size)."""
    old = int(last_change["previous_batch_size"])
    rejected[str(int(last_change["batch_size"]))] = now + REJECT_SECONDS
    rollback: dict[str, Any] = {"at": now, **verdict,
                                "reason": (f"measured tunable cost per event rose {100 * verdict['change']:.1f}% "
                                           f"({verdict['cost_per_event_before']:.3e} -> "
                                           f"{verdict['cost_per_event_after']:.3e} USD over "
                                           f"{verdict['batches_before']} / {verdict['batches_after']} batches) "
                                           f"after BatchSize {verdict['from']} -> {verdict['to']}; rolled back")}
    state["rollbacks"] = (state.get("rollbacks") or [])[-9:] + [rollback]
    old_window = int(last_change.get("previous_window_seconds", config.batching_window_seconds))
    fresh, models = choose(records, settings, config.batch_size, rejected=rejected, now=now,
                           current_window=config.batching_window_seconds, keep=(old, old_window))
    if fresh.keep_holds_slo is False:
        # the load ahead differs from the one the old setting was judged on: restoring it would break the
        # SLO, so choose again (the dearer size stays rejected)
        fresh.reason = (rollback["reason"].replace("; rolled back", "") + f"; BatchSize {old} with a "
                        f"{old_window}s window is not predicted to hold the SLO now, so not restored; "
                        + fresh.reason)
        return fresh, models, state | {"rejected": rejected}
    decision = Decision(old, old_window, min(old, settings.invoke_chunk_size), rollback["reason"],
                        len(records), status="rollback")
    return decision, None, state | {"rejected": rejected}


def decide(records: list[dict], settings: Settings, config: BatchConfig, now: float
           ) -> tuple[Decision, dict | None, dict]:
    """Rollback check, then choose. Returns (decision, models, optimizer state to keep in the config item)."""
    state = dict(config.optimizer_state)
    rejected = {k: v for k, v in (state.get("rejected") or {}).items() if float(v) > now}
    last_change = state.get("last_change")
    if last_change and not last_change.get("evaluated"):
        if last_change.get("purpose") == "slo":
            # a move made to hold the SLO or keep up with the load is not undone for costing more
            verdict: dict[str, Any] = {"verdict": "kept", "reason": "made to hold the SLO: not judged on cost",
                                       "from": int(last_change["previous_batch_size"]),
                                       "to": int(last_change["batch_size"])}
        else:
            verdict = evaluate_change(records, last_change, now, settings.latency_slo_seconds)
        if verdict["verdict"] == "pending":
            return _while_pending(records, settings, config, now, state, rejected, last_change, verdict)
        last_change = dict(last_change, evaluated=True, evaluation=verdict)
        state["last_change"] = last_change
        state["last_evaluation"] = {"at": now, **verdict}
        if verdict["verdict"] == "rollback":
            return _roll_back(records, settings, config, now, state, rejected, last_change, verdict)
    decision, models = choose(records, settings, config.batch_size, rejected=rejected, now=now,
                              current_window=config.batching_window_seconds)
    return decision, models, state | {"rejected": rejected}


def record_change(state: dict, decision: Decision, current: int, current_window: int, now: float) -> dict:
    """The optimizer state after applying ``decision``: a new BatchSize chosen by the model becomes the change
    the next retrain judges (a rollback is not itself judged)."""
    if decision.status != "rollback" and decision.batch_size != current:
        state = state | {"last_change": {"applied_at": now, "batch_size": decision.batch_size,
                                         "previous_batch_size": current, "previous_window_seconds": current_window,
                                         "purpose": decision.purpose, "evaluated": False}}
    return state
