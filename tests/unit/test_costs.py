"""The cost model: every price line has a source and a check status; lines add up; attribution by time sums to
the bill."""
import json
import time

import pytest
from boto3.dynamodb.conditions import Key

from pipeline import costs


def test_every_price_line_names_its_source_date_and_how_it_was_checked():
    table = costs.price_table()
    assert table["region"] == "us-east-1" and table["checked"]
    for name, item in table["items"].items():
        assert item["usd"] > 0 and item["source"].startswith("https://"), name
        assert item["as_of"] and item["verified"] in ("aws-doc", "aws-page-structure", "third-party", "unverified")


def _usage(events=100, **kw):
    stages = [{"stage": "process_stream", "seconds": 0.25, "memory_mb": 1024},
              {"stage": "invoke_model", "seconds": 0.05, "memory_mb": 512}]
    return costs.BatchUsage(events=events, event_bytes=250 * events, lambda_stages=stages, sfn_seconds=0.35,
                            model_seconds=0.03, model_bytes=300 * events, ddb_rru=events + 20,
                            ddb_wru=2 * events + 5, span_seconds=2.0, api_requests=10, **kw)


def test_batch_cost_prices_each_line_from_the_table():
    p = costs.prices()
    cost = costs.batch_cost(_usage())
    assert cost["lambda_process_stream"] == pytest.approx(p["lambda_request"] + 0.25 * 1.0 * p["lambda_gb_second"])
    assert cost["stepfunctions"] == pytest.approx(p["sfn_express_request"] + 0.4 * (64 / 1024)
                                                  * p["sfn_express_gb_second"])     # 0.35 s billed as 0.4 s
    assert cost["kinesis_put"] == pytest.approx(100 * p["kinesis_put_payload_unit"])
    assert cost["kinesis_shard"] == pytest.approx(2.0 / 3600 * p["kinesis_shard_hour"])
    assert cost["apigateway"] == pytest.approx(10 * p["apigateway_http_request"])
    assert cost["dynamodb"] == pytest.approx(120 * p["dynamodb_read_request_unit"]
                                             + 205 * p["dynamodb_write_request_unit"])
    assert cost["sagemaker_serverless"] == pytest.approx(0.03 * 2 * p["sagemaker_serverless_gb_second"]
                                                         + 30_000 / 1e9 * p["sagemaker_data_processed_gb"])
    assert cost["total"] == pytest.approx(cost["tunable"] + cost["attributed"])
    lines = {k: v for k, v in cost.items() if k not in ("tunable", "attributed", "total")}
    assert cost["total"] == pytest.approx(sum(lines.values()))


def test_provisioned_tables_price_consumed_units_by_capacity_hour_at_the_target(monkeypatch):
    """Golden figures from the AWS pricing pages (us-east-1, https://aws.amazon.com/dynamodb/pricing/): on demand
    $0.625 per million WRU and $0.125 per million RRU; provisioned $0.00065 per WCU-hour and $0.00013 per RCU-hour.
    At 70 % target utilization, 1M units consumed over time need 1M / 0.7 unit-seconds of capacity."""
    on_demand = costs.dynamodb_cost(1e6, 1e6, costs.Deployment())
    assert on_demand == pytest.approx(0.125 + 0.625)
    provisioned = costs.Deployment(table_capacity="provisioned", table_target_utilization=0.7)
    assert costs.dynamodb_cost(0, 1e6, provisioned) == pytest.approx(0.00065 * 1e6 / 3600 / 0.7)   # $0.258
    assert costs.dynamodb_cost(1e6, 0, provisioned) == pytest.approx(0.00013 * 1e6 / 3600 / 0.7)   # $0.0516
    full = costs.Deployment(table_capacity="provisioned", table_target_utilization=0.9)
    assert costs.dynamodb_cost(0, 1e6, full) < costs.dynamodb_cost(0, 1e6, provisioned)
    assert costs.batch_cost(_usage(), provisioned)["dynamodb"] == pytest.approx(
        costs.dynamodb_cost(120, 205, provisioned))
    monkeypatch.setenv("COST_PROFILE", '{"shards": 2, "table_capacity": "provisioned", '
                                       '"table_target_utilization": 0.5}')
    assert costs.Deployment.from_env() == costs.Deployment(table_capacity="provisioned", table_target_utilization=0.5)


def test_instance_mode_attributes_instance_hours_by_time():
    deployment = costs.Deployment(shards=2, endpoint_mode="instance", instance_type="ml.m5.large",
                                  instance_count=1, variants=2)
    cost = costs.batch_cost(_usage(), deployment)
    # 2 s of one of two shards = 1 s of the endpoint, which has two variants of one instance
    assert cost["sagemaker_instance"] == pytest.approx(1.0 / 3600 * 0.115 * 2)
    with pytest.raises(KeyError, match="no instance-hour price"):
        costs.batch_cost(_usage(), costs.Deployment(endpoint_mode="instance", instance_type="ml.p5.48xlarge"))


def test_shard_hours_attributed_by_span_add_up_to_the_shards_time():
    """An hour of one shard at 20 events/s, cut into batches of 50: the batches' shard lines sum to one
    shard-hour, whatever the batch size."""
    rate, hour = 20.0, 3600.0
    for size in (10, 50, 400):
        total, t = 0.0, 0.0
        while t < hour:
            first, last = t, t + (size - 1) / rate
            total += costs.span_seconds(size, first, last, window_seconds=1) / 3600 * costs.prices()["kinesis_shard_hour"]
            t += size / rate
        assert total == pytest.approx(costs.prices()["kinesis_shard_hour"], rel=0.02), size


def test_larger_batches_cost_less_per_event_in_the_per_batch_lines():
    small = costs.batch_cost(_usage(events=10))
    large = costs.batch_cost(_usage(events=500))
    assert large["stepfunctions"] / 500 < small["stepfunctions"] / 10


def test_record_cost_writes_one_record_per_batch_and_emf_metrics(aws, lambda_context, capsys):
    from pipeline import store
    from record_cost import handler

    now = time.time()
    state = {"batch_id": "b1", "created_at": now - 0.2, "events": 4, "latency_p50": 0.5, "latency_max": 0.9,
             "ingest_first": now - 1.2, "ingest_last": now - 0.9, "api_requests": 2,
             "stages": [{"stage": "process_stream", "seconds": 0.05, "memory_mb": 1024, "events": 4, "bytes": 1000,
                         "ddb_rru": 6, "ddb_wru": 7},
                        {"stage": "invoke_model", "seconds": 0.02, "memory_mb": 512, "chunk_size": 4, "calls": 1,
                         "model_seconds": 0.01, "model_bytes": 600},
                        {"stage": "store_predictions", "seconds": 0.03, "memory_mb": 512, "ddb_wru": 5}]}
    store.put_item("state", {"pk": "config", "batch_size": 150, "batching_window_seconds": 0})
    out = handler.handler(state, lambda_context)
    [record] = store.query("cost", KeyConditionExpression=Key("day").eq(
        time.strftime("%Y-%m-%d", time.gmtime(now))))
    assert out["batch_id"] == "b1" and record["events"] == 4 and record["bytes"] == 1000
    assert (record["configured_batch_size"], record["configured_window_seconds"]) == (150, 0)
    assert record["span_seconds"] == pytest.approx(4 / (3 / 0.3), rel=1e-3)      # 4 events at 10 events/s
    assert record["arrival_rate"] == pytest.approx(10.0, rel=1e-3)
    # execution started 0.2 s ago after 0.05 s of process_stream; the oldest event was ingested 1.2 s ago
    assert record["wait_seconds"] == pytest.approx(1.2 - 0.2 - 0.05, abs=1e-3)
    assert record["cost_usd"]["apigateway"] == pytest.approx(2 * costs.prices()["apigateway_http_request"])
    assert record["cost_per_event_usd"] == pytest.approx(record["cost_usd"]["total"] / 4)
    assert 0 < record["tunable_cost_per_event_usd"] < record["cost_per_event_usd"]
    assert set(record["stage_seconds"]) == {"process_stream", "invoke_model", "store_predictions", "record_cost"}
    emf = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    names = {m["Name"] for blob in emf for d in blob["_aws"]["CloudWatchMetrics"] for m in d["Metrics"]}
    assert {"CostPerThousandEvents", "TunableCostPerThousandEvents", "ConfiguredBatchSize", "BatchEvents",
            "BatchLatencyMax"} <= names
