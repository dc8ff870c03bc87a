"""The deployment contract between the stack and the runtime, in one place: the tables' keys, TTL and indexes, the
environment variable that carries each name or setting to a function, and the state table's item keys.

infra/stack.py builds the tables and the functions' environment from it (and refuses to synthesize an environment
that differs from it), pipeline/settings.py reads the environment through it, the unit tests' mocked account and
bench/stream_handler.py create their tables from it, and tests/infra/test_wiring_doc.py holds docs/wiring.md to it.
Plain data and no imports beyond the standard library: infra imports it from outside the Lambda package.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Index:
    name: str
    partition_key: str
    sort_key: str
    sort_key_type: str = "N"          # DynamoDB attribute type of the sort key


@dataclass(frozen=True)
class Table:
    env: str                          # the environment variable that carries the table's name
    partition_key: str                # string attributes (S)
    sort_key: str | None = None
    ttl: str | None = None            # the TTL attribute (epoch seconds)
    indexes: tuple[Index, ...] = ()


# CloudFormation logical id prefix (the stack's construct id) -> the table
TABLES: dict[str, Table] = {
    "EventsTable": Table("EVENTS_TABLE", "event_id", ttl="expires_at"),          # rejected records only
    "PredictionsTable": Table("PREDICTIONS_TABLE", "event_id", ttl="expires_at",
                              indexes=(Index("by_user", "user_id", "ts"),)),
    "FeaturesTable": Table("FEATURES_TABLE", "user_id", sort_key="feature_set"),  # hot and cold state items
    "CostTable": Table("COST_TABLE", "day", sort_key="batch_key"),               # one record per batch
    "StateTable": Table("STATE_TABLE", "pk"),                                    # the items of STATE_ITEMS
}

# StateTable's items (partition key ``pk``); "stream#<shard id>" is one item per shard
STATE_ITEMS = ("stats", "model", "config", "medians", "stream#")

# pipeline.settings.Settings field -> (environment variable, value when unset). The stack sets every one of them
# on every function, except the two of FUNCTION_SPECIFIC on the functions a dependency cycle does not forbid.
SETTINGS_ENV: dict[str, tuple[str, str]] = {
    "events_stream": ("EVENTS_STREAM_NAME", ""),
    **{name.removesuffix("Table").lower() + "_table": (table.env, "") for name, table in TABLES.items()},
    "state_machine_arn": ("STATE_MACHINE_ARN", ""),
    "endpoint_name": ("SAGEMAKER_ENDPOINT_NAME", ""),
    "artifacts_bucket": ("ARTIFACTS_BUCKET", ""),
    "event_source_mapping_id": ("EVENT_SOURCE_MAPPING_ID", ""),
    "quarantine_queue_url": ("QUARANTINE_QUEUE_URL", ""),
    "stream_dlq_url": ("STREAM_DLQ_URL", ""),
    "batch_size": ("BATCH_SIZE", "100"),
    "batching_window_seconds": ("BATCHING_WINDOW_SECONDS", "1"),
    "min_batch_size": ("MIN_BATCH_SIZE", "10"),
    "max_batch_size": ("MAX_BATCH_SIZE", "500"),
    "invoke_chunk_size": ("INVOKE_CHUNK_SIZE", "100"),
    "latency_slo_seconds": ("LATENCY_SLO_SECONDS", "2"),
    "model_version": ("MODEL_VERSION", "xgb-1"),
    "feature_set": ("FEATURE_SET", "v1"),
    "model_data_url": ("MODEL_DATA_URL", ""),
    "model_variants": ("MODEL_VARIANTS", ""),
}

# Set by the stack, read elsewhere than Settings: the cost model's deployment profile (pipeline/costs.py) and
# Powertools' own settings.
OTHER_ENV = ("COST_PROFILE", "POWERTOOLS_SERVICE_NAME", "POWERTOOLS_METRICS_NAMESPACE", "POWERTOOLS_LOG_LEVEL",
             "POWERTOOLS_TRACER_CAPTURE_RESPONSE")

# Values that would be dependency cycles on some functions (docs/wiring.md), set where they are not.
FUNCTION_SPECIFIC = ("STATE_MACHINE_ARN", "EVENT_SOURCE_MAPPING_ID")

# What every function's environment holds, whatever else it may have
COMMON_ENV = frozenset(var for var, _ in SETTINGS_ENV.values()) - set(FUNCTION_SPECIFIC) | set(OTHER_ENV)


def create_table_args(table: Table, name: str) -> dict:
    """boto3 CreateTable arguments for an on-demand copy of ``table`` named ``name`` (no TTL): the unit tests'
    mocked account and the benches, which run without the stack."""
    keys = [(table.partition_key, "S", "HASH")] + ([(table.sort_key, "S", "RANGE")] if table.sort_key else [])
    attributes = {attr: kind for attr, kind, _ in keys}
    indexes = []
    for index in table.indexes:
        attributes |= {index.partition_key: "S", index.sort_key: index.sort_key_type}
        indexes.append({"IndexName": index.name, "Projection": {"ProjectionType": "ALL"},
                        "KeySchema": [{"AttributeName": index.partition_key, "KeyType": "HASH"},
                                      {"AttributeName": index.sort_key, "KeyType": "RANGE"}]})
    return {"TableName": name, "BillingMode": "PAY_PER_REQUEST",
            "KeySchema": [{"AttributeName": attr, "KeyType": role} for attr, _, role in keys],
            "AttributeDefinitions": [{"AttributeName": a, "AttributeType": t} for a, t in attributes.items()],
            **({"GlobalSecondaryIndexes": indexes} if indexes else {})}
