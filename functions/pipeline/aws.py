"""Lazily created, cached boto3 clients.

boto3 honours AWS_ENDPOINT_URL and AWS_ENDPOINT_URL_<SERVICE>, which is how the same code talks to AWS, to
LocalStack or to the embedded local cloud. Clients are created on first use, never at import time.
"""
from __future__ import annotations

import functools

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
    return resource("dynamodb").Table(name)
