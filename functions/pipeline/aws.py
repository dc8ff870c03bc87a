"""Lazily created, cached boto3 clients.

boto3 honours AWS_ENDPOINT_URL and AWS_ENDPOINT_URL_<SERVICE>, which is how the same code talks to AWS, to
LocalStack or to the embedded local cloud. Clients are created on first use, never at import time.
"""
from __future__ import annotations

import functools

import boto3
from botocore.config import Config

_CONFIG = Config(retries={"mode": "standard", "max_attempts": 4}, connect_timeout=5, read_timeout=30)


@functools.cache
def client(service: str):
    return boto3.session.Session().client(service, config=_CONFIG)


@functools.cache
def resource(service: str):
    return boto3.session.Session().resource(service, config=_CONFIG)


def table(name: str):
    return resource("dynamodb").Table(name)
