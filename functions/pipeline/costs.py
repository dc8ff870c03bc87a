"""Per-batch cost model, priced from prices.json (us-east-1 list prices; each line names its source, the date it
was checked and how: see the file's note).

One batch = one Kinesis -> process_stream invocation, one Express execution (InvokeModel -> StorePredictions ->
RecordCost). ``batch_cost`` prices what that batch used. Each line says whether a batch setting can change it:

- tunable (the optimizer minimises these per event): Lambda requests and GB-s of the four batch functions,
  Step Functions Express request + GB-s, SageMaker serverless GB-s and data processed, DynamoDB request units,
  CloudWatch Logs ingestion (EMF metrics and log lines of the four invocations).
- attributed (paid whatever the batch size is, spread over batches so $/event is complete): Kinesis PUT payload
  units and API Gateway requests (one per ingest request), and time-based capacity: Kinesis shard-hours and, in
  instance mode, SageMaker instance-hours.

Shard-hours (and instance-hours) are attributed by time: a batch pays for the stream time it covers on its shard,
``span_seconds`` = its events / the shard's arrival rate measured from the events' ingest timestamps (for a
single-event batch, the poll interval or batching window, whichever is longer). Consecutive batches of a shard
then add up to the shard's wall-clock time, so the attributed shard cost sums to the bill. Instance-hours are
shared by the shards the same way (span / shard count). Neither changes with the batch size at a given arrival
rate, which is why they are not in the optimizer's target.

DynamoDB is priced by request units as the functions meter them (pipeline/store.py ``metered``): 1 WRU per
started 1 KB of each item written (twice for a prediction: the table and its by_user index), 1 RRU per started
4 KB of each item read strongly consistent, half that eventually consistent; on-demand tables pay per unit,
provisioned tables per unit-hour of capacity (``dynamodb_cost``). S3 requests of the batch journal and
of large payloads are priced per request.

Not modelled: free tiers, volume tiers, data transfer out, the API function's own duration (not measured per
batch), S3 storage of the journal (days of retention), CloudWatch custom metric-months and alarms (monthly fixed
costs).
"""
from __future__ import annotations

import functools
import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

KINESIS_PAYLOAD_UNIT_BYTES = 25 * 1024
SFN_MEMORY_CHUNK_GB = 64 / 1024            # Express: memory billed in 64 MB chunks; our payloads stay < 64 MB
SFN_BILLING_INCREMENT_S = 0.1              # Express: duration rounded up to 100 ms
LAMBDA_BILLING_INCREMENT_S = 0.001         # Lambda: 1 ms
SHARD_POLL_INTERVAL_S = 1.0                # Lambda polls an idle shard once per second
LOG_BYTES_PER_INVOCATION = 1500            # START/END/REPORT + one Powertools log line + one EMF blob (estimate)
TUNABLE = ("lambda", "stepfunctions", "sagemaker_serverless", "dynamodb", "cloudwatch", "s3_requests")
ATTRIBUTED = ("kinesis_put", "kinesis_shard", "apigateway", "sagemaker_instance")


@functools.cache
def price_table() -> dict:
    return json.loads((Path(__file__).parent / "prices.json").read_text())


def prices() -> dict[str, float]:
    return {name: item["usd"] for name, item in price_table()["items"].items()}


@dataclass(frozen=True)
class Deployment:
    """What the stack deployed that the cost model needs (env COST_PROFILE, set by the stack from cdk.json)."""
    shards: int = 2
    endpoint_mode: str = "serverless"          # or "instance"
    endpoint_memory_mb: int = 2048
    instance_type: str = "ml.m5.large"
    instance_count: int = 1                    # per variant
    variants: int = 1
    table_capacity: str = "on_demand"          # or "provisioned" (auto scaled: tableCapacity in cdk.json)
    table_target_utilization: float = 0.7      # provisioned: auto scaling's target consumed / provisioned

    @classmethod
    def from_env(cls) -> "Deployment":
        raw = os.environ.get("COST_PROFILE")
        if not raw:
            return cls()
        data = json.loads(raw)
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


@dataclass
class BatchUsage:
    """What one batch used. Durations are measured by the functions; counts come from the batch."""
    events: int
    event_bytes: int
    lambda_stages: Sequence[Mapping[str, Any]] = field(default_factory=list)   # [{"stage", "seconds", "memory_mb"}]
    sfn_seconds: float = 0.0
    model_seconds: float = 0.0
    model_bytes: int = 0
    ddb_rru: float = 0.0                       # read request units (pipeline/store.py meters them)
    ddb_wru: float = 0.0                       # write request units
    s3_puts: int = 0
    s3_gets: int = 0
    span_seconds: float = 0.0                  # stream time the batch covers on its shard (see module doc)
    api_requests: int = 0                      # ingest requests that carried the batch's events
    log_bytes: int | None = None               # None: LOG_BYTES_PER_INVOCATION per Lambda invocation


def lambda_cost(seconds: float, memory_mb: int) -> float:
    p = prices()
    billed = math.ceil(max(seconds, LAMBDA_BILLING_INCREMENT_S) / LAMBDA_BILLING_INCREMENT_S - 1e-9) \
        * LAMBDA_BILLING_INCREMENT_S
    return p["lambda_request"] + billed * (memory_mb / 1024) * p["lambda_gb_second"]


def dynamodb_cost(rru: float, wru: float, deployment: Deployment) -> float:
    """$ of ``rru`` read and ``wru`` write units. On demand: per request unit. Provisioned with target tracking: a
    unit consumed per second needs 1/target units provisioned for that second, billed by the unit-hour, so one
    consumed unit costs hour_price / 3600 / target. The min-capacity floor paid while idle is a fixed monthly cost
    and, like metric-months, not charged per batch."""
    p = prices()
    if deployment.table_capacity == "provisioned":
        per_unit_second = 1 / 3600 / deployment.table_target_utilization
        return (rru * p["dynamodb_read_capacity_unit_hour"] + wru * p["dynamodb_write_capacity_unit_hour"]) \
            * per_unit_second
    return rru * p["dynamodb_read_request_unit"] + wru * p["dynamodb_write_request_unit"]


def batch_cost(usage: BatchUsage, deployment: Deployment | None = None) -> dict[str, float]:
    """$ per cost line for one batch, plus "tunable", "attributed" and "total"."""
    d = deployment or Deployment()
    p = prices()
    cost: dict[str, float] = {}
    for s in usage.lambda_stages:
        cost[f"lambda_{s['stage']}"] = lambda_cost(s["seconds"], s.get("memory_mb") or 128)
    billed_sfn = math.ceil(max(usage.sfn_seconds, 1e-3) / SFN_BILLING_INCREMENT_S - 1e-9) * SFN_BILLING_INCREMENT_S
    cost["stepfunctions"] = p["sfn_express_request"] + billed_sfn * SFN_MEMORY_CHUNK_GB * p["sfn_express_gb_second"]
    data_gb = usage.model_bytes / 1e9
    if d.endpoint_mode == "serverless":
        cost["sagemaker_serverless"] = (usage.model_seconds * d.endpoint_memory_mb / 1024
                                        * p["sagemaker_serverless_gb_second"]
                                        + data_gb * p["sagemaker_data_processed_gb"])
    else:
        hour_price = p.get(f"sagemaker_instance_hour_{d.instance_type}")
        if hour_price is None:
            raise KeyError(f"prices.json has no instance-hour price for {d.instance_type}; add "
                           f"'sagemaker_instance_hour_{d.instance_type}' with its source")
        cost["sagemaker_serverless"] = data_gb * p["sagemaker_data_processed_gb"]   # data processed still applies
        cost["sagemaker_instance"] = (usage.span_seconds / max(d.shards, 1) / 3600
                                      * hour_price * d.instance_count * d.variants)
    cost["dynamodb"] = dynamodb_cost(usage.ddb_rru, usage.ddb_wru, d)
    cost["s3_requests"] = usage.s3_puts * p["s3_put_request"] + usage.s3_gets * p["s3_get_request"]
    log_bytes = usage.log_bytes if usage.log_bytes is not None \
        else LOG_BYTES_PER_INVOCATION * max(len(usage.lambda_stages), 1)
    cost["cloudwatch"] = log_bytes / 1e9 * p["cloudwatch_logs_ingestion_gb"]
    units = max(1, math.ceil((usage.event_bytes / max(usage.events, 1)) / KINESIS_PAYLOAD_UNIT_BYTES))
    cost["kinesis_put"] = usage.events * units * p["kinesis_put_payload_unit"]
    cost["kinesis_shard"] = usage.span_seconds / 3600 * p["kinesis_shard_hour"]
    cost["apigateway"] = usage.api_requests * p["apigateway_http_request"]
    cost["tunable"] = sum(v for k, v in cost.items() if k.startswith(TUNABLE))
    cost["attributed"] = sum(v for k, v in cost.items() if k.startswith(ATTRIBUTED))
    cost["total"] = cost["tunable"] + cost["attributed"]
    return cost


def span_seconds(events: int, first_ts: float | None, last_ts: float | None, window_seconds: float) -> float:
    """Stream time a batch covers on its shard: events / arrival rate, the rate measured from the first and last
    ingest timestamps; a batch whose events arrived together covers one poll interval or its batching window."""
    floor = max(float(window_seconds), SHARD_POLL_INTERVAL_S)
    if events < 2 or first_ts is None or last_ts is None or last_ts <= first_ts:
        return floor
    rate = (events - 1) / (last_ts - first_ts)
    return events / rate
