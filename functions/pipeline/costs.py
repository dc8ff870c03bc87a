"""Per-batch cost model, priced from prices.json (us-east-1 list prices, each with its source and date)."""
from __future__ import annotations

import functools
import json
import math
from pathlib import Path

KINESIS_PAYLOAD_UNIT_BYTES = 25 * 1024
SFN_MIN_MEMORY_GB = 64 / 1024
SFN_BILLING_INCREMENT_S = 0.1
SAGEMAKER_MEMORY_GB = 2.0  # serverless endpoint memory (cdk.json); the cost record names what it assumed


@functools.cache
def prices() -> dict[str, float]:
    data = json.loads((Path(__file__).parent / "prices.json").read_text())
    return {name: item["usd"] for name, item in data["items"].items()}


def lambda_cost(seconds: float, memory_mb: int) -> float:
    p = prices()
    billed = math.ceil(max(seconds, 0.001) * 1000) / 1000  # 1 ms granularity
    return p["lambda_request"] + billed * (memory_mb / 1024) * p["lambda_gb_second"]


def batch_cost(stages: list[dict], events: int, event_bytes: int, sfn_seconds: float,
               model_seconds: float, model_bytes: int, ddb_reads: int, ddb_writes: int) -> dict[str, float]:
    """$ per stage for one batch. ``stages``: [{"stage", "seconds", "memory_mb"}] of the Lambda invocations."""
    p = prices()
    cost = {f"lambda_{s['stage']}": lambda_cost(s["seconds"], s.get("memory_mb") or 128) for s in stages}
    per_record_units = max(1, math.ceil((event_bytes / max(events, 1)) / KINESIS_PAYLOAD_UNIT_BYTES))
    cost["kinesis"] = events * per_record_units * p["kinesis_put_payload_unit"]
    billed_sfn = math.ceil(max(sfn_seconds, 0.001) / SFN_BILLING_INCREMENT_S) * SFN_BILLING_INCREMENT_S
    cost["stepfunctions"] = p["sfn_express_request"] + billed_sfn * SFN_MIN_MEMORY_GB * p["sfn_express_gb_second"]
    cost["sagemaker"] = (model_seconds * SAGEMAKER_MEMORY_GB * p["sagemaker_serverless_gb_second"]
                         + model_bytes / 1e9 * p["sagemaker_data_processed_gb"])
    cost["dynamodb"] = ddb_reads * p["dynamodb_read_request_unit"] + ddb_writes * p["dynamodb_write_request_unit"]
    cost["cloudwatch"] = p["cloudwatch_put_metric_request"]  # one EMF flush per batch
    cost["total"] = sum(cost.values())
    return cost
