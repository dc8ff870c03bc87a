"""The fault matrix (issue 12) and redrive (issue 13), end to end on the local cloud.

Each case injects one fault through the local cloud's fault API (localcloud/faults.py), sends a workload through
the HTTP API (scripts/loadgen.py: 2 % invalid, 2 % client duplicates), waits until every accepted event has
settled, clears the fault, runs scripts/redrive.py where events were set aside, and then applies `make run`'s
accounting (scripts/demo.py ``account``): every accepted event has a prediction, is in a quarantined batch or in
the stream DLQ; none unaccounted; none in two places; the predictions counter equals the predictions stored.

AWS behaviour relied on: BatchWriteItem is not atomic as a whole and returns what it did not write in
UnprocessedItems, to be retried with backoff (https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/
API_BatchWriteItem.html); a Kinesis mapping's on-failure record names the batch, not its records (below).

One stack for the whole module, synthesized from cdk.json with two overrides through the CDK context (the CLI's
``-c``): its own stack name, and ProcessStreamFunction's timeout at 8 s so the timeout case takes seconds, not the
deployed 120 s.
"""
import json
import os
import subprocess
import sys
import time

import pytest
from e2ekit import MODEL, ROOT, TORCH_MODEL

from localcloud.faults import KINDS
from scripts import demo, loadgen
from scripts.client import local_client

STREAM_TIMEOUT_SECONDS = 8
CONTEXT = {"stackName": "FaultMatrix",
           "functions": {"ProcessStreamFunction": {"timeoutSeconds": STREAM_TIMEOUT_SECONDS}}}


@pytest.fixture(scope="module")
def matrix(request, tmp_path_factory):
    """(cloud, demo.Pipeline, API client) for a stack of its own."""
    from localcloud import LocalCloud

    if not (MODEL.exists() and TORCH_MODEL.exists()):
        request.getfixturevalue("cdk_out")  # trains them

    out = tmp_path_factory.mktemp("matrix-cdk.out")
    env = dict(os.environ, CDK_OUTDIR=str(out), CDK_CONTEXT_JSON=json.dumps(CONTEXT),
               JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION="20")
    subprocess.run([sys.executable, "app.py"], cwd=ROOT, env=env, check=True, capture_output=True)
    with LocalCloud(cdk_out=str(out), state_dir=str(tmp_path_factory.mktemp("matrix-state")), api_port=0,
                    run_schedules=False) as cloud:
        cloud.deploy()
        yield cloud, demo.Pipeline(cloud), local_client(cloud.api_url)


@pytest.fixture(autouse=True)
def no_faults_left(matrix):
    yield
    matrix[0].clear_faults()


def settle(cloud, pipeline, accepted: set[str], timeout: float = 90) -> demo.Accounting:
    """Wait until every accepted event is predicted, quarantined or in the DLQ and the cloud is idle."""
    deadline = time.monotonic() + timeout
    while True:
        if cloud.wait_idle(max(0.0, deadline - time.monotonic())) or time.monotonic() > deadline:
            # the full accounting scans the tables: only once nothing is in flight
            accounting = demo.account(pipeline, accepted)
            if accounting.unaccounted <= 0 or time.monotonic() > deadline:
                return accounting
        time.sleep(0.5)


def redrive(cloud) -> str:
    result = subprocess.run([sys.executable, "scripts/redrive.py", "--endpoint-url", cloud.endpoint_url],
                            cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def workload(seed: int, events: int = 60):
    """The demo's load generator, small: ``events`` events of 20 users, 2 % invalid, 2 % client duplicates."""
    def send(api) -> set[str]:
        load = loadgen.run(api, events, rate=500, seed=seed, per_request=20, users=20, history_hours=0)
        assert load.failed == 0 and load.accepted_ids, load.request_errors
        return load.accepted_ids
    return send


def run_case(matrix, fault: str, send, *, expect: str = "absorbed", **params):
    """Inject ``fault``, run the workload ``send``, clear the fault, redrive if anything was set aside, check the
    accounting; (accounting before the redrive, after it)."""
    cloud, pipeline, api = matrix
    hits = cloud.faults.hits(fault)
    cloud.inject_fault(fault, **params)
    started = time.monotonic()
    accepted = send(api)
    before = settle(cloud, pipeline, accepted)
    print(f"{fault}: settled in {time.monotonic() - started:.1f} s")
    cloud.clear_faults()
    # the SageMaker stand-in keeps its own error faults (their effect is checked below: batches set aside)
    assert cloud.faults.hits(fault) > hits or KINDS[fault].action == "sagemaker", f"{fault} never fired"
    set_aside = before.quarantined | before.dlq
    if expect == "set aside":
        assert set_aside, f"{fault}: expected batches in the quarantine queue or the DLQ"
        redrive(cloud)
    else:
        assert not set_aside, f"{fault}: {len(set_aside)} events set aside, expected the retries to absorb it"
    after = settle(cloud, pipeline, accepted)
    assert after.unaccounted == 0 and not after.overlap and after.double_counted == 0, vars(after)
    assert after.predicted == accepted   # and, once redriven, every one of them scored
    return before, after


# fault, parameters, what the pipeline does with it
CASES = [
    ("sagemaker-timeout", {"seconds": 1}, "absorbed"),          # dropped call: ModelUnavailableError, retried
    ("dynamodb-throttle", {"count": 3, "table": "FeaturesTable"}, "absorbed"),   # botocore's retries
    ("dynamodb-unprocessed", {"count": 2, "table": "FeaturesTable"}, "absorbed"),   # store.batch_put_raw retries
    ("dynamodb-unprocessed", {"count": 2, "table": "PredictionsTable"}, "absorbed"),  # boto3's batch_writer
    ("counters-conflict", {"count": 1}, "absorbed"),           # batch fails, the mapping retries it
    ("kinesis-partial-put", {"count": 1}, "absorbed"),         # half written twice: deduplicated
    ("crash-before-state", {"count": 1}, "absorbed"),          # retried: the counters' mark says what was counted
    ("crash-in-batch-write", {"count": 1}, "absorbed"),        # retried: half the users scored from the journal
    ("stream-timeout", {"count": 1}, "absorbed"),              # retried; the held write lands late
    ("sagemaker-throttle", {"count": 1000}, "set aside"),      # outlasts the state machine's retry: quarantined
    # outlasts botocore's retries in StorePredictions (not a retried error there): quarantined, redriven from the
    # batch journal (the state holds predictions, not features)
    ("dynamodb-throttle", {"count": 10_000, "table": "PredictionsTable", "function": "StorePredictions"},
     "set aside"),
]


@pytest.mark.slow
@pytest.mark.parametrize("seed,fault,params,expect", [(100 + i, *case) for i, case in enumerate(CASES)],
                         ids=[f"{c[0]}{'-' + c[1]['table'] if 'table' in c[1] else ''}" for c in CASES])
def test_fault_loses_nothing(matrix, seed, fault, params, expect):
    run_case(matrix, fault, workload(seed), expect=expect, **params)


@pytest.mark.slow
def test_model_down_then_redrive_scores_every_event_once(matrix):
    """Issue 13: batches quarantined while the model is down are redriven once it is back; every event is scored
    exactly once (a prediction each, the predictions counter up by exactly the events)."""
    cloud, pipeline, _api = matrix
    counted = pipeline.counter("events_predicted")
    before, after = run_case(matrix, "sagemaker-error", workload(300), expect="set aside",
                             error="ServiceUnavailable", count=10_000)
    assert before.predicted == set() and before.quarantined == after.predicted
    assert pipeline.counter("events_predicted") - counted == len(after.predicted)
    assert redrive(cloud).splitlines()[-1] == "0 replayed (0 events), 0 not replayed"  # nothing left to replay


def long_ids(prefix: str, events: int = 1000):
    """One user, ids of 128 characters: batches of 500 rows are past process_stream's 200 KB inline limit, so
    the execution input is the batch journal on S3 (pipeline/stream.py inference_input)."""
    def send(api) -> set[str]:
        user, now, accepted = prefix + "u" * 120, time.time(), set()
        for start in range(0, events, 500):
            batch = [{"event_id": f"{prefix}-{n:05d}-" + "e" * 118, "user_id": user, "event_type": "view",
                      "timestamp": now, "amount": 1.0} for n in range(start, start + 500)]
            body = loadgen.post_events(api, batch).json()
            assert body["accepted"] == 500, body
            accepted |= {e["event_id"] for e in batch}
        return accepted
    return send


@pytest.mark.slow
def test_large_batches_through_s3_and_an_s3_failure_on_that_path(matrix):
    cloud, _pipeline, _api = matrix
    mappings = cloud.client("lambda")
    uuid = cloud.outputs["EventSourceMappingId"]
    mappings.update_event_source_mapping(UUID=uuid, BatchSize=1000)
    try:
        before, _after = run_case(matrix, "s3-error", long_ids("big"), expect="set aside", count=10_000,
                                  key_prefix="journal/", operation="GetObject", function="InvokeModel")
    finally:
        mappings.update_event_source_mapping(UUID=uuid, BatchSize=100)
    # the fault can only fire on the S3 path: InvokeModel reads a journal only for an input passed by reference
    assert any(h["name"] == "s3-error" and h["function"].startswith("InvokeModel") for h in cloud.faults.history)


def one_user(prefix: str, events: int = 3):
    def send(api) -> set[str]:
        now = time.time()
        batch = [{"event_id": f"{prefix}-{n}", "user_id": f"{prefix}-user", "event_type": "view",
                  "timestamp": now - events + n} for n in range(events)]
        assert loadgen.post_events(api, batch).json()["accepted"] == events
        return {e["event_id"] for e in batch}
    return send


@pytest.mark.slow
def test_records_that_exhaust_the_mapping_retries_go_to_the_dlq_and_are_redriven(matrix):
    """The stream counters' update fails on every attempt: the mapping bisects the batch down to single records,
    retries each MaximumRetryAttempts times, then sends an on-failure record (shard and sequence range, not the
    records: https://docs.aws.amazon.com/lambda/latest/dg/kinesis-on-failure-destination.html) to the DLQ. The
    redrive reads the range back from the stream and hands it to process_stream."""
    before, after = run_case(matrix, "counters-conflict", one_user("dlq"), expect="set aside", count=10_000)
    assert before.dlq and not before.quarantined and not after.dlq
