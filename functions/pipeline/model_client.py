"""Batch invocation of the SageMaker endpoint (XGBoost built-in container contract: text/csv in, scores out).

Errors are raised as the exception classes the state machine matches by name (docs/wiring.md):
ModelThrottledError and ModelUnavailableError are retried with backoff, ModelError is not.

One retry layer: the state machine's Retry on InvokeModel is the only one. boto3 makes exactly one attempt per
InvokeEndpoint call (``RUNTIME_CONFIG``: total_max_attempts=1), so a slow or failing model is not invoked again
behind the state machine's back (duplicate work, and attempts the 5-minute Express budget does not count). The read
timeout is just above InvokeEndpoint's own limit: a model container must answer within 60 s, and AWS advises a
socket timeout above that ("InvokeEndpoint", SageMaker Runtime API Reference,
https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_runtime_InvokeEndpoint.html). A read timeout or a
connection error becomes ModelUnavailableError, which the state machine retries (an uncaught botocore
HTTPClientError would skip the Retry and quarantine the batch).
"""
from __future__ import annotations

import time
from dataclasses import dataclass

from botocore.config import Config
from botocore.exceptions import ClientError, ConnectionError as BotoConnectionError, HTTPClientError

from . import aws

INVOKE_ENDPOINT_LIMIT_SECONDS = 60           # the model container's limit per request
READ_TIMEOUT_SECONDS = 65                    # just above it
CONNECT_TIMEOUT_SECONDS = 3
RUNTIME_CONFIG = Config(retries={"mode": "standard", "total_max_attempts": 1},
                        read_timeout=READ_TIMEOUT_SECONDS, connect_timeout=CONNECT_TIMEOUT_SECONDS)
aws.configure("sagemaker-runtime", RUNTIME_CONFIG)


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
        except (BotoConnectionError, HTTPClientError) as exc:
            # connect timeout, refused/closed connection, read timeout (ReadTimeoutError is an HTTPClientError):
            # the state machine retries ModelUnavailableError; boto3 itself made one attempt (RUNTIME_CONFIG)
            raise ModelUnavailableError(f"{type(exc).__name__}: {exc}") from exc
        calls += 1
        chunk_scores = parse_scores(response["Body"].read())
        if len(chunk_scores) != len(chunk):
            raise ModelError(f"endpoint returned {len(chunk_scores)} scores for {len(chunk)} rows")
        scores.extend(chunk_scores)
        variants.extend([response.get("InvokedProductionVariant", "")] * len(chunk))
    return Scored(scores, variants, time.perf_counter() - started, calls)
