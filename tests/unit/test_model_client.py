"""One retry layer for the model call: boto3 makes exactly one InvokeEndpoint attempt, and a read timeout or a
connection error becomes ModelUnavailableError, which the state machine's Retry on InvokeModel retries
(statemachines/inference.asl.json). InvokeEndpoint: the model container must answer within 60 s, so the read timeout
is just above it (SageMaker Runtime API Reference, "InvokeEndpoint",
https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_runtime_InvokeEndpoint.html)."""
import json
from pathlib import Path

import boto3
import pytest
from botocore.exceptions import ConnectTimeoutError, EndpointConnectionError, ReadTimeoutError

from pipeline import aws as pipeline_aws
from pipeline import model_client

ASL = Path(__file__).resolve().parents[2] / "statemachines" / "inference.asl.json"


def _failing(client, error: Exception) -> list:
    """Make every HTTP send of InvokeEndpoint fail with ``error`` (at the transport, where botocore's retry handler
    would see it); returns the list of attempts."""
    attempts = []

    def send(request, **kwargs):
        attempts.append(request.url)
        raise error

    client.meta.events.register("before-send.sagemaker-runtime.InvokeEndpoint", send)
    return attempts


ERRORS = {
    "read timeout": ReadTimeoutError(endpoint_url="https://runtime.sagemaker.us-east-1.amazonaws.com/endpoints/e"),
    "connect timeout": ConnectTimeoutError(endpoint_url="https://runtime.sagemaker.us-east-1.amazonaws.com"),
    "connection refused": EndpointConnectionError(endpoint_url="https://runtime.sagemaker.us-east-1.amazonaws.com"),
}


@pytest.mark.parametrize("name", list(ERRORS))
def test_transport_errors_become_model_unavailable_after_one_attempt(aws, name):
    runtime = pipeline_aws.client("sagemaker-runtime")
    attempts = _failing(runtime, ERRORS[name])
    with pytest.raises(model_client.ModelUnavailableError, match=type(ERRORS[name]).__name__):
        model_client.invoke("endpoint-a", [[1.0, 2.0]], chunk_size=10)
    assert len(attempts) == 1                     # boto3 did not retry: the state machine is the retry layer


def test_the_error_is_one_the_state_machine_retries():
    [retrier] = json.loads(ASL.read_text())["States"]["InvokeModel"]["Retry"]
    assert "ModelUnavailableError" in retrier["ErrorEquals"] and retrier["MaxAttempts"] >= 1


def test_runtime_client_settings(aws):
    config = pipeline_aws.client("sagemaker-runtime").meta.config
    assert config.retries["total_max_attempts"] == 1
    assert model_client.INVOKE_ENDPOINT_LIMIT_SECONDS < config.read_timeout == model_client.READ_TIMEOUT_SECONDS <= 70
    assert config.connect_timeout == model_client.CONNECT_TIMEOUT_SECONDS
    # the other services keep the shared defaults (standard retries: max_attempts 4 retries, 5 attempts)
    assert pipeline_aws.client("dynamodb").meta.config.retries == {"mode": "standard", "total_max_attempts": 5}


def test_the_previous_client_invoked_the_model_five_times(aws):
    """Evidence: the previous client (standard mode, max_attempts 4 = 4 retries, read_timeout 30 s) retried a read
    timeout itself: 5 InvokeEndpoint attempts per state machine attempt, and the last ReadTimeoutError (an
    HTTPClientError, not ModelUnavailableError) skipped the state machine's Retry."""
    previous = boto3.session.Session().client("sagemaker-runtime", config=pipeline_aws._CONFIG)
    attempts = _failing(previous, ERRORS["read timeout"])
    with pytest.raises(ReadTimeoutError):
        previous.invoke_endpoint(EndpointName="e", ContentType="text/csv", Body=b"1.0")
    assert len(attempts) == 5
