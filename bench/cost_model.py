"""All-in modelled $ per 1M events on the reference workload (issue 10), for the storage design in the code and for
the previous one (one ledger item per event, every event of the retention kept in the user's state item).

    python -m bench.cost_model [--batch-sizes 100,500] [--batches 30]

Reference workload: 1,000 events/s, 20,000 users, the top 1 % of users send 30 % of the events, producers post 100
events per request, feature set v2, 2 shards, serverless endpoint (cdk.json defaults otherwise).

What is measured and what is modelled:
- DynamoDB request units and S3 requests of the current design are MEASURED: the real process_stream
  (``stream.process``) and store_predictions code run against moto in this process on batches drawn from the
  workload, with every user's state seeded at steady state (a light and a heavy user simulated for a week and a
  day, their stored bytes copied to every user of their class), and ``store.metered`` counts the units by item
  size as DynamoDB bills them.
- The previous design's units are MODELLED from its layout: per event a ledger read (1 RRU) and write (1 WRU) and a
  prediction (2 WRU with its index); per user and batch its state item read and rewritten whole (171 bytes per
  event per day of activity for v2, measured on the previous main: 171 KB at 1,000 events/day).
- DynamoDB is priced both ways: tables on demand (per request unit: the default) and provisioned with auto scaling
  at a 70 % target (per capacity-hour, ``costs.dynamodb_cost``: -c tableCapacity='{"mode":"provisioned"}'), which
  suits this steady reference rate.
- Everything else is priced by pipeline/costs.py from modelled usage: Lambda durations (``--handler-us-per-event``
  of process_stream CPU, as bench.stream_handler measures it with moto in another process, plus
  ASSUMED_CALL_SECONDS per AWS call), one Express execution per batch, SageMaker serverless
  compute at MODEL_SECONDS_PER_ROW, Kinesis PUT units and shard-hours, API Gateway requests.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "functions")]

RATE = 1000.0             # events/s
USERS = 20_000
HEAVY_SHARE_USERS = 0.01  # the top 1 % ...
HEAVY_SHARE_EVENTS = 0.30  # ... send 30 % of the events
EVENTS_PER_REQUEST = 100
SHARDS = 2
EVENT_BYTES = 260
ASSUMED_CALL_SECONDS = 0.008   # one DynamoDB/S3/Step Functions round trip inside AWS (assumption)
MODEL_SECONDS_PER_ROW = 40e-6  # container CSV parse + predict per row (DESIGN.md: 35 µs/row text/csv + 1.45 predict)
OLD_BYTES_PER_EVENT_PER_DAY = 171  # previous layout, v2 (DESIGN.md table: 171 KB at 1,000 events/user/day)
ITEM_LIMIT = 400 * 1024


def user_rates() -> tuple[float, float, int, int]:
    heavy = int(USERS * HEAVY_SHARE_USERS)
    light = USERS - heavy
    return RATE * HEAVY_SHARE_EVENTS / heavy, RATE * (1 - HEAVY_SHARE_EVENTS) / light, heavy, light


def steady_state(per_second: float, days: float, seed: int):
    """A user's stored state after ``days`` of Poisson activity (ends at time ``end``)."""
    from pipeline.events import Event
    from pipeline.features import FeatureState

    rng = random.Random(seed)
    # the simulation ends at hh:30 (a copied state then rolls no tile up during the short measurement: real users'
    # roll-ups fall at their own times and are added per user-hour, see measure_current)
    end = (time.time() // 3600) * 3600 + 1800
    state, ts, n = FeatureState("v2"), end - days * 86_400, 0
    while True:
        ts += rng.expovariate(per_second)
        if ts >= end:
            break
        n += 1
        kind = rng.choice(["view", "view", "click", "add_to_cart", "purchase"])
        state.observe(Event(event_id=f"s{n}", user_id="u", event_type=kind, timestamp=round(ts, 3),
                            amount=3.0 if kind == "purchase" else None, device_type="mobile"))
    state.mark_stored()
    return state


def draw_batches(batch_size: int, batches: int, heavy: int, light: int, start: float, seed: int = 3) -> list:
    """Batches of one shard: users drawn with the workload's skew, event times at the shard's rate."""
    rng = random.Random(seed)
    per_shard = RATE / SHARDS
    ts, out, n = start, [], 0
    for _ in range(batches):
        batch = []
        for _ in range(batch_size):
            ts += rng.expovariate(per_shard)
            user = f"h{rng.randrange(heavy)}" if rng.random() < HEAVY_SHARE_EVENTS else f"l{rng.randrange(light)}"
            kind = rng.choice(["view", "view", "click", "add_to_cart", "purchase"])
            batch.append({"event_id": f"ref-{n:08d}", "user_id": user, "event_type": kind,
                          "timestamp": round(ts, 3), "amount": 3.0 if kind == "purchase" else None,
                          "device_type": "mobile", "ingest_ts": ts})
            n += 1
        out.append(batch)
    return out


def measure_current(batch_size: int, batches: int, states: dict) -> dict:
    """Run the real write path on moto; return request units and requests per event."""
    from scripts.progress import tracked
    import boto3
    from moto import mock_aws

    heavy_rate, light_rate, heavy, light = user_rates()
    print(f"  seeding steady-state users: {heavy} heavy at {heavy_rate * 86400:,.0f}/day, {light} light at "
          f"{light_rate * 86400:,.0f}/day (simulating a week and a day of each) ...", flush=True)
    if not states:
        states.update(heavy=steady_state(heavy_rate, 7.05, seed=1), light=steady_state(light_rate, 7.05, seed=2))
    heavy_state, light_state = states["heavy"], states["light"]
    os.environ.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_DEFAULT_REGION="us-east-1",
                      FEATURES_TABLE="features", STATE_TABLE="state", EVENTS_TABLE="events",
                      PREDICTIONS_TABLE="predictions", ARTIFACTS_BUCKET="artifacts", FEATURE_SET="v2",
                      STATE_MACHINE_ARN="arn:aws:states:us-east-1:123456789012:stateMachine:inference",
                      POWERTOOLS_TRACE_DISABLED="true", POWERTOOLS_LOG_LEVEL="WARNING")
    for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE"):
        os.environ.pop(name, None)
    from pipeline import aws, flow, inference, store, stream
    from pipeline.settings import settings

    aws.client.cache_clear()
    aws.resource.cache_clear()
    with mock_aws():
        dynamodb = boto3.client("dynamodb")
        for name, keys, extra in (
                ("features", [("user_id", "S"), ("feature_set", "S")], {}), ("state", [("pk", "S")], {}),
                ("events", [("event_id", "S")], {}),
                ("predictions", [("event_id", "S")], {"GlobalSecondaryIndexes": [{
                    "IndexName": "by_user", "Projection": {"ProjectionType": "ALL"},
                    "KeySchema": [{"AttributeName": "user_id", "KeyType": "HASH"},
                                  {"AttributeName": "ts", "KeyType": "RANGE"}]}]})):
            attributes = [{"AttributeName": k, "AttributeType": t} for k, t in keys]
            if name == "predictions":
                attributes += [{"AttributeName": "user_id", "AttributeType": "S"},
                               {"AttributeName": "ts", "AttributeType": "N"}]
            dynamodb.create_table(TableName=name, BillingMode="PAY_PER_REQUEST", AttributeDefinitions=attributes,
                                  KeySchema=[{"AttributeName": k, "KeyType": t}
                                             for (k, _), t in zip(keys, ("HASH", "RANGE"))], **extra)
        boto3.client("s3").create_bucket(Bucket="artifacts")
        config = settings()
        drawn = draw_batches(batch_size, batches + 1, light=light, heavy=heavy,
                             start=max(heavy_state.last_seen, light_state.last_seen) + 1)
        users = {e["user_id"] for b in drawn for e in b}
        seeded = []
        for user in users:  # only the users the batches touch need a stored state
            source = heavy_state if user.startswith("h") else light_state
            seeded.append(stream.hot_key(user, "v2") | {"hot": source.to_bytes(), "at": 0, "pos": stream.pack_position(
                "", -1, [b"\0" * stream.ID_HASH_BYTES] * stream.DEDUPE_RING)})
            seeded.append(stream.cold_key(user, "v2") | {"cold": source.cold_bytes()})
        store.batch_put("features", seeded, ("user_id", "feature_set"))
        # the median sample at steady state: the 256 smallest user hashes of the whole population
        from pipeline import medians
        population = [f"h{i}" for i in range(heavy)] + [f"l{i}" for i in range(light)]
        smallest = sorted(population, key=medians.user_hash)[:medians.SAMPLE_USERS]
        store.put_item("state", medians.SAMPLE_KEY | {"version": 1, "users": json.dumps({
            medians.user_hash(u): {"u": u, "m": 0.5, "end": 0} for u in smallest})})
        captured = []
        stream.start_inference = lambda rows, *a, **k: captured.append(rows) or "arn"
        rru = wru = 0.0
        s3_puts = s3_gets = events = distinct = 0
        seq = 1000
        for number, batch in enumerate(tracked(drawn, f"batches of {batch_size} through process_stream")):
            from pipeline.events import validate_event
            records = []
            for raw in batch:
                event, _ = validate_event(raw)
                records.append(stream.StreamRecord(sequence=str(seq), shard_id="shardId-000000000000",
                                                   arrival=raw["ingest_ts"], size=EVENT_BYTES, event=event))
                seq += 1
            with store.metered() as meter:
                stream.process(records, config)
                rows = captured[-1]
                state = flow.parse(flow.Scored, {   # InvokeModel's output, as StorePredictions checks it
                    "batch_id": f"b{number}", "created_at": time.time(), "model_version": "m", "stages": [],
                    "predictions_s3_uri": None,
                    "predictions": [{"event_id": r["event_id"], "user_id": r["user_id"], "ts": r["ts"],
                                     "ingest_ts": r["ingest_ts"], "score": 0.5, "variant": "primary",
                                     "model_version": "m"} for r in rows]})
                inference.store_predictions(state, config)
            if number == 0:
                continue  # warm-up
            rru, wru = rru + meter.rru, wru + meter.wru
            s3_puts += 1
            events += len(batch)
            distinct += len({e["user_id"] for e in batch})
    # cold parts are rewritten when a user's hour rolls up: once per active user-hour, at the cold part's size
    cold_wru = [math.ceil(len(state.cold_bytes()) / 1024) for state in (light_state, heavy_state)]
    rollups = (1 - HEAVY_SHARE_EVENTS) * cold_wru[0] / (light_rate * 3600) \
        + HEAVY_SHARE_EVENTS * cold_wru[1] / (heavy_rate * 3600)
    wru += rollups * events
    return {"rru_per_event": rru / events, "wru_per_event": wru / events, "s3_puts_per_event": s3_puts / events,
            "cold_rollup_wru_per_event": rollups,
            "s3_gets_per_event": s3_gets / events,
            "users_per_batch": distinct / batches, "hot_bytes": [len(light_state.to_bytes()),
                                                               len(heavy_state.to_bytes())],
            "cold_bytes": [len(light_state.cold_bytes()), len(heavy_state.cold_bytes())]}


def model_previous(batch_size: int, users_per_batch: float) -> dict:
    """Request units per event of the previous layout (module doc), and whether its items fit at all."""
    heavy_rate, light_rate, _, _ = user_rates()
    sizes = [OLD_BYTES_PER_EVENT_PER_DAY * rate * 86_400 for rate in (light_rate, heavy_rate)]
    light_share = 1 - HEAVY_SHARE_EVENTS
    state_kb = light_share * sizes[0] / 1024 + HEAVY_SHARE_EVENTS * sizes[1] / 1024  # per touched user, weighted
    state_pairs = users_per_batch / batch_size
    return {"rru_per_event": 1 + state_pairs * math.ceil(state_kb / 4),
            "wru_per_event": 1 + 2 + state_pairs * math.ceil(state_kb) + 2 / batch_size,
            "s3_puts_per_event": 0.0, "s3_gets_per_event": 0.0, "state_bytes": sizes,
            "fits": all(s <= ITEM_LIMIT for s in sizes)}


def price(units: dict, batch_size: int, cpu_per_event: float, table_capacity: str = "on_demand") -> dict:
    """$ per 1M events, per cost line, for one design's units per event (tables on demand, or provisioned with
    auto scaling at the default 70 % target: cdk.json tableCapacity)."""
    from pipeline import costs

    batches = 1e6 / batch_size
    span = batch_size / (RATE / SHARDS)
    calls = 8  # AWS calls per batch in process_stream (reads, counters, S3, writes, StartExecution)
    stages = [{"stage": "process_stream", "seconds": calls * ASSUMED_CALL_SECONDS + cpu_per_event * batch_size,
               "memory_mb": 1024},
              {"stage": "invoke_model", "seconds": 2 * ASSUMED_CALL_SECONDS + batch_size * MODEL_SECONDS_PER_ROW,
               "memory_mb": 512},
              {"stage": "store_predictions", "seconds": 6 * ASSUMED_CALL_SECONDS, "memory_mb": 512},
              {"stage": "record_cost", "seconds": 3 * ASSUMED_CALL_SECONDS, "memory_mb": 256}]
    usage = costs.BatchUsage(
        events=batch_size, event_bytes=EVENT_BYTES * batch_size, lambda_stages=stages,
        sfn_seconds=sum(s["seconds"] for s in stages[1:]), model_seconds=batch_size * MODEL_SECONDS_PER_ROW,
        model_bytes=batch_size * 120, ddb_rru=units["rru_per_event"] * batch_size,
        ddb_wru=units["wru_per_event"] * batch_size, s3_puts=round(units["s3_puts_per_event"] * batch_size),
        s3_gets=round(units["s3_gets_per_event"] * batch_size), span_seconds=span,
        api_requests=batch_size / EVENTS_PER_REQUEST)
    cost = costs.batch_cost(usage, costs.Deployment(shards=SHARDS, endpoint_mode="serverless", variants=2,
                                                    table_capacity=table_capacity))
    # the API function: one invocation per request (100 events), ~30 ms at 512 MB (assumption)
    cost["lambda_api"] = usage.api_requests * costs.lambda_cost(0.030, 512)
    cost["total"] += cost["lambda_api"]
    return {line: value * batches for line, value in cost.items()}


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-sizes", default="100,500")
    parser.add_argument("--batches", type=int, default=30)
    parser.add_argument("--handler-us-per-event", type=float, default=370.0,
                        help="process_stream CPU per event (python -m bench.stream_handler --feature-set v2: "
                             "366-374 on 2026-11-30)")
    args = parser.parse_args(argv)
    states = {}
    results = []
    for batch_size in (int(b) for b in args.batch_sizes.split(",")):
        print(f"batch size {batch_size}: measuring the current write path on moto ...", flush=True)
        current = measure_current(batch_size, args.batches, states)
        previous = model_previous(batch_size, current["users_per_batch"])
        now_cost = price(current, batch_size, args.handler_us_per_event * 1e-6)
        old_cost = price(previous, batch_size, args.handler_us_per_event * 1e-6)
        print(f"  distinct users per batch {current['users_per_batch']:.0f}; stored state light/heavy user: "
              f"hot {current['hot_bytes']} B, cold {current['cold_bytes']} B "
              f"(previous layout: {previous['state_bytes'][0] / 1024:,.0f} KB / "
              f"{previous['state_bytes'][1] / 1024:,.0f}"
              f" KB per user{'' if previous['fits'] else ', over the 400 KB item limit: every batch would fail'})")
        print(f"  per event: current {current['rru_per_event']:.2f} RRU + {current['wru_per_event']:.2f} WRU "
              f"(of which cold roll-ups {current['cold_rollup_wru_per_event']:.3f}); "
              f"previous {previous['rru_per_event']:.1f} RRU + {previous['wru_per_event']:.1f} WRU")
        provisioned = price(current, batch_size, args.handler_us_per_event * 1e-6, "provisioned")
        lines = sorted(k for k in now_cost if k not in ("tunable", "attributed", "total"))
        print(f"  {'$ per 1M events':28} {'current':>10} {'previous':>10} {'current, provisioned tables':>28}")
        for line in lines:
            print(f"  {line:28} {now_cost[line]:>10.4f} {old_cost.get(line, 0.0):>10.4f} {provisioned[line]:>28.4f}")
        print(f"  {'total':28} {now_cost['total']:>10.4f} {old_cost['total']:>10.4f} {provisioned['total']:>28.4f}"
              f"   (previous / current = {old_cost['total'] / now_cost['total']:.1f}x)", flush=True)
        results.append({"batch_size": batch_size, "current": now_cost, "previous": old_cost,
                        "current_provisioned": provisioned, "units": {"current": current, "previous": previous}})
    return results


if __name__ == "__main__":
    main()
