"""Settings read from the function's environment (set by the CDK stack, see docs/wiring.md)."""
from __future__ import annotations

import os
from dataclasses import dataclass


def _env(name: str, default: str | None = None) -> str:
    value = os.environ.get(name, default)
    if value is None:
        raise RuntimeError(f"environment variable {name} is not set (the CDK stack sets it; see docs/wiring.md)")
    return value


@dataclass(frozen=True)
class Settings:
    events_stream: str
    events_table: str
    predictions_table: str
    features_table: str
    cost_table: str
    state_table: str
    state_machine_arn: str
    endpoint_name: str
    artifacts_bucket: str
    event_source_mapping_id: str
    quarantine_queue_url: str
    stream_dlq_url: str
    batch_size: int
    batching_window_seconds: int
    min_batch_size: int
    max_batch_size: int
    invoke_chunk_size: int
    latency_slo_seconds: float
    model_version: str
    feature_set: str
    model_data_url: str
    model_variants: str = ""  # MODEL_VARIANTS: JSON [{name, weight, kind, model_version}] (A/B, pipeline/variants.py)

    @classmethod
    def from_env(cls) -> "Settings":
        return cls(
            events_stream=_env("EVENTS_STREAM_NAME", ""),
            events_table=_env("EVENTS_TABLE", ""),
            predictions_table=_env("PREDICTIONS_TABLE", ""),
            features_table=_env("FEATURES_TABLE", ""),
            cost_table=_env("COST_TABLE", ""),
            state_table=_env("STATE_TABLE", ""),
            state_machine_arn=_env("STATE_MACHINE_ARN", ""),
            endpoint_name=_env("SAGEMAKER_ENDPOINT_NAME", ""),
            artifacts_bucket=_env("ARTIFACTS_BUCKET", ""),
            event_source_mapping_id=_env("EVENT_SOURCE_MAPPING_ID", ""),
            quarantine_queue_url=_env("QUARANTINE_QUEUE_URL", ""),
            stream_dlq_url=_env("STREAM_DLQ_URL", ""),
            batch_size=int(_env("BATCH_SIZE", "100")),
            batching_window_seconds=int(_env("BATCHING_WINDOW_SECONDS", "1")),
            min_batch_size=int(_env("MIN_BATCH_SIZE", "10")),
            max_batch_size=int(_env("MAX_BATCH_SIZE", "500")),
            invoke_chunk_size=int(_env("INVOKE_CHUNK_SIZE", "100")),
            latency_slo_seconds=float(_env("LATENCY_SLO_SECONDS", "2")),
            model_version=_env("MODEL_VERSION", "xgb-1"),
            feature_set=_env("FEATURE_SET", "v1"),
            model_data_url=_env("MODEL_DATA_URL", ""),
            model_variants=_env("MODEL_VARIANTS", ""),
        )


def settings() -> Settings:
    """Current settings. Read on every call: cheap, and tests can change the environment between calls."""
    return Settings.from_env()
