"""Batch invocation of the SageMaker endpoint (XGBoost built-in container contract: text/csv in, scores out).

Errors are raised as the exception classes the state machine matches by name (docs/wiring.md):
ModelThrottledError and ModelUnavailableError are retried with backoff, ModelError is not.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

from botocore.exceptions import ClientError, ConnectionError as BotoConnectionError

from . import aws


class ModelThrottledError(Exception):
    """The endpoint throttled the request (retry with backoff)."""


class ModelUnavailableError(Exception):
    """The endpoint could not be reached or failed on its side (retry with backoff)."""


class ModelError(Exception):
    """The model container rejected the input (not retried: the batch is quarantined)."""


THROTTLING_CODES = {"ThrottlingException", "TooManyRequestsException", "Throttling"}
UNAVAILABLE_CODES = {"ServiceUnavailable", "InternalFailure", "InternalServerError", "ModelNotReadyException"}


def to_csv(rows: list[list[float]]) -> bytes:
    return "\n".join(",".join(repr(float(v)) for v in row) for row in rows).encode()


def parse_scores(body: bytes) -> list[float]:
    """The container answers one score per row, newline- or comma-separated depending on its version."""
    text = body.decode().strip()
    return [float(v) for v in text.replace("\n", ",").split(",") if v.strip()]


@dataclass
class Scored:
    scores: list[float]
    variants: list[str]
    seconds: float
    calls: int


def invoke(endpoint_name: str, rows: list[list[float]], chunk_size: int, target_variant: str | None = None) -> Scored:
    """Score rows in chunks of ``chunk_size`` (one InvokeEndpoint call per chunk), on ``target_variant`` if given
    (TargetVariant), else on the variant the endpoint picks by its weights."""
    if chunk_size < 1:
        raise ValueError("chunk_size must be >= 1")
    runtime = aws.client("sagemaker-runtime")
    scores: list[float] = []
    variants: list[str] = []
    started = time.perf_counter()
    calls = 0
    target = {"TargetVariant": target_variant} if target_variant else {}
    for start in range(0, len(rows), chunk_size):
        chunk = rows[start:start + chunk_size]
        try:
            response = runtime.invoke_endpoint(EndpointName=endpoint_name, ContentType="text/csv",
                                               Accept="text/csv", Body=to_csv(chunk), **target)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
            message = f"{code}: {exc.response.get('Error', {}).get('Message', '')}"
            if code in THROTTLING_CODES or status == 429:
                raise ModelThrottledError(message) from exc
            if code in UNAVAILABLE_CODES or status >= 500:
                raise ModelUnavailableError(message) from exc
            raise ModelError(message) from exc
        except BotoConnectionError as exc:
            raise ModelUnavailableError(str(exc)) from exc
        calls += 1
        chunk_scores = parse_scores(response["Body"].read())
        if len(chunk_scores) != len(chunk):
            raise ModelError(f"endpoint returned {len(chunk_scores)} scores for {len(chunk)} rows")
        scores.extend(chunk_scores)
        variants.extend([response.get("InvokedProductionVariant", "")] * len(chunk))
    return Scored(scores, variants, time.perf_counter() - started, calls)
