"""Lazily created, cached boto3 clients.

boto3 honours AWS_ENDPOINT_URL and AWS_ENDPOINT_URL_<SERVICE>, which is how the same code talks to AWS, to
LocalStack or to the embedded local cloud. Clients are created on first use, never at import time.
"""
from __future__ import annotations

import functools
import json
from urllib.parse import urlparse

import boto3
from botocore.config import Config

# parameter_validation=False: botocore's client-side schema check re-walks every request (a third of the handler's
# boto3 CPU on a 200-record batch, bench/stream_handler.py); the service validates anyway and answers with a
# ValidationException, and our requests are built by code covered by tests.
_CONFIG = Config(retries={"mode": "standard", "max_attempts": 4}, connect_timeout=5, read_timeout=30,
                 parameter_validation=False)


# Per-service settings merged over _CONFIG (pipeline/model_client.py registers sagemaker-runtime's: one attempt,
# InvokeEndpoint's timeouts), registered at import time of the module that owns the service's calls.
_SERVICE_CONFIG: dict[str, Config] = {}


def configure(service: str, config: Config) -> None:
    """Settings for ``service``'s client, merged over the defaults. Clients made before are dropped."""
    _SERVICE_CONFIG[service] = config
    client.cache_clear()


@functools.cache
def client(service: str):
    config = _CONFIG.merge(_SERVICE_CONFIG[service]) if service in _SERVICE_CONFIG else _CONFIG
    return boto3.session.Session().client(service, config=config)


@functools.cache
def resource(service: str):
    return boto3.session.Session().resource(service, config=_CONFIG)


def table(name: str):
    """A Table of the cached resource, itself cached: building one costs a model lookup and a class creation (about
    a BatchWriteItem's worth of CPU in bench/stream_handler.py), on every call."""
    dynamodb = resource("dynamodb")
    found = _tables.get(name)
    if found is None or found.meta.client is not dynamodb.meta.client:  # the resource was made anew (tests)
        found = _tables[name] = dynamodb.Table(name)
    return found


_tables: dict = {}


def put_json(bucket: str, key: str, value) -> str:
    """Write ``value`` as a compact JSON object; returns its s3:// URI."""
    return put_json_text(bucket, key, json.dumps(value, separators=(",", ":")))


def put_json_text(bucket: str, key: str, text: str) -> str:
    """Write JSON text already serialised; returns its s3:// URI."""
    client("s3").put_object(Bucket=bucket, Key=key, Body=text.encode())
    return f"s3://{bucket}/{key}"


def get_json(bucket: str, key: str, missing_ok: bool = False):
    """A JSON object read back; None when it is gone and ``missing_ok``."""
    s3 = client("s3")
    try:
        return json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    except s3.exceptions.NoSuchKey:
        if missing_ok:
            return None
        raise


def get_json_uri(uri: str):
    parsed = urlparse(uri)
    return get_json(parsed.netloc, parsed.path.lstrip("/"))
