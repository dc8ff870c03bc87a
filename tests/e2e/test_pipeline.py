import json
import time

from e2ekit import wait_for


def _events(prefix: str, count: int, users: int = 5, **fields) -> list[dict]:
    now = time.time()
    return [{"event_id": f"{prefix}-{n}", "user_id": f"{prefix}-user-{n % users}",
             "event_type": "purchase" if n % 4 == 0 else "view", "timestamp": now - (count - n),
             "amount": 10.0 + n, "device_type": "mobile"} | fields for n in range(count)]


def _quarantined(resources) -> dict[str, dict]:
    sqs = resources["client"]("sqs")
    found, url = {}, resources["env"]["QUARANTINE_QUEUE_URL"]
    for _ in range(20):
        messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=0).get("Messages", [])
        new = [m for m in messages if m["MessageId"] not in found]
        if not new:
            break
        found.update({m["MessageId"]: json.loads(m["Body"]) for m in new})
    return {row["event_id"]: body for body in found.values() for row in body.get("rows", [])}


def test_events_in_through_the_api_and_predictions_out(api):
    events = _events("happy", 40)
    status, body = api.request("POST", "/events", {"events": events + [{"event_id": "broken"}]})
    assert status == 202 and body["accepted"] == 40 and body["rejected"][0]["index"] == 40
    wait_for(lambda: all(api.request("GET", f"/predictions/{e['event_id']}")[0] == 200 for e in events[-3:]),
             what="predictions")
    status, prediction = api.request("GET", "/predictions/happy-39")
    assert status == 200 and 0.0 <= prediction["score"] <= 1.0 and prediction["model_version"]
    status, features = api.request("GET", "/users/happy-user-0/features")
    assert status == 200 and features["features"]["events_24h"] >= 1
    status, median = api.request("GET", "/users/happy-user-0/median")
    assert status == 200 and median["count"] >= 1
    status, history = api.request("GET", "/users/happy-user-0/history")
    assert status == 200 and len(history["history"]) == 8
    status, stats = api.request("GET", "/stats")
    assert status == 200 and stats["events_predicted"] >= 40 and stats["batches"] >= 1
    assert api.request("GET", "/users/nobody/features") == (
        404, {"error": "user_not_found", "message": "no features for user 'nobody'"})


def test_model_throttling_is_retried_by_the_state_machine(cloud, api, resources):
    # one fault: InvokeModel retries once (two attempts fit the 5-minute Express budget, test_deploy_readiness.py)
    cloud.set_model_fault(error="ThrottlingException", count=1)
    events = _events("retry", 10)
    assert api.request("POST", "/events", {"events": events})[1]["accepted"] == 10
    # Users land on different shards, so the 10 events arrive in several batches: wait for every one.
    wait_for(lambda: all(api.request("GET", f"/predictions/{e['event_id']}")[0] == 200 for e in events),
             timeout=90, what="retried predictions")
    assert not set(_quarantined(resources)) & {e["event_id"] for e in events}


def test_a_batch_the_model_rejects_is_quarantined_not_lost(cloud, api, resources):
    cloud.set_model_fault(error="ModelError", count=1000)
    try:
        events = _events("poison", 6)
        assert api.request("POST", "/events", {"events": events})[1]["accepted"] == 6
        ids = {e["event_id"] for e in events}
        wait_for(lambda: ids <= set(_quarantined(resources)), timeout=90, what="quarantine")
    finally:
        cloud.clear_model_faults()
    quarantined = _quarantined(resources)["poison-0"]
    assert "ModelError" in json.dumps(quarantined["error"])
    assert all(api.request("GET", f"/predictions/{i}")[0] == 404 for i in ids)


def test_invalid_record_written_straight_to_kinesis_is_rejected_and_kept(api, resources):
    kinesis = resources["client"]("kinesis")
    kinesis.put_record(StreamName=resources["env"]["EVENTS_STREAM_NAME"], PartitionKey="direct",
                       Data=json.dumps({"event_id": "direct-bad", "user_id": "direct", "event_type": "fly",
                                        "timestamp": time.time()}).encode())
    table = resources["table"]("EVENTS_TABLE")

    def rejected():
        items = table.scan()["Items"]
        return [i for i in items if i.get("claimed_event_id") == "direct-bad"]

    [item] = wait_for(rejected, what="the rejected record in the events table")
    assert item["event_id"].startswith("rejected#shardId-")  # keyed by shard and sequence number
    assert any("event_type" in e for e in item["errors"])


def test_accounting_nothing_missing(cloud, api, resources):
    """accepted = processed + quarantined, across a burst with duplicates and invalid events."""
    events = _events("burst", 300, users=30)
    duplicates = events[:20]
    sent = []
    for start in range(0, len(events), 100):
        chunk = events[start:start + 100]
        status, body = api.request("POST", "/events", {"events": chunk + duplicates[:5]})
        assert status == 202 and not body.get("failed")
        sent += chunk
    ids = {e["event_id"] for e in sent}
    table = resources["table"]("PREDICTIONS_TABLE")

    def settled():
        predicted = set()
        kwargs = {"ProjectionExpression": "event_id"}
        while True:
            page = table.scan(**kwargs)
            predicted |= {i["event_id"] for i in page["Items"]}
            if "LastEvaluatedKey" not in page:
                break
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        quarantined = set(_quarantined(resources))
        return (predicted & ids, quarantined & ids) if (predicted | quarantined) >= ids else None

    predicted, quarantined = wait_for(settled, timeout=120, interval=1.0, what="every event settled")
    assert predicted | quarantined == ids and not predicted & quarantined
    assert len(predicted) == len(ids)  # no faults injected here: everything is scored
