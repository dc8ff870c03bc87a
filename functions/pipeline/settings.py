"""Settings read from the function's environment (set by the CDK stack from pipeline/contract.py; docs/wiring.md)."""
from __future__ import annotations

import os
from dataclasses import dataclass, fields

from .contract import SETTINGS_ENV


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
        """Every field from its environment variable (pipeline/contract.py SETTINGS_ENV), converted to its type."""
        return cls(**{name: _TYPES[str(field.type)](_env(*SETTINGS_ENV[name])) for name, field in _FIELDS.items()})


_FIELDS = {f.name: f for f in fields(Settings)}
_TYPES = {"str": str, "int": int, "float": float}  # the annotations as strings (``from __future__ import annotations``)


def function_memory_mb() -> int:
    """The function's memory in MB, from AWS_LAMBDA_FUNCTION_MEMORY_SIZE (set by the Lambda runtime, "Defined runtime
    environment variables", https://docs.aws.amazon.com/lambda/latest/dg/configuration-envvars.html); 0 outside
    Lambda."""
    return int(os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE") or 0)


def settings() -> Settings:
    """Current settings. Read on every call: cheap, and tests can change the environment between calls."""
    return Settings.from_env()
