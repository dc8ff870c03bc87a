"""Golden cost figures worked out by hand from the AWS price pages (us-east-1, on-demand, first tier), not read
from prices.json: a wrong price or a wrong rounding in the table or the code fails here.

- Lambda: $0.20 per 1M requests, $0.0000166667 per GB-second (x86), billed per 1 ms
  (https://aws.amazon.com/lambda/pricing/)
- Step Functions Express: $1.00 per 1M requests, $0.00001667 per GB-second, duration rounded up to 100 ms and
  memory billed in 64 MB chunks (https://aws.amazon.com/step-functions/pricing/)
- SageMaker Serverless Inference: $0.00002 per GB-second, $0.016 per GB of data processed
  (https://aws.amazon.com/sagemaker/pricing/); ml.m5.large real-time $0.115 per hour
- DynamoDB on-demand: $0.625 per 1M write request units, $0.125 per 1M read request units
  (https://aws.amazon.com/dynamodb/pricing/on-demand/)
- Kinesis Data Streams provisioned: $0.015 per shard-hour, $0.014 per 1M PUT payload units, a payload unit being
  each 25 KB chunk of a record, rounded up (https://aws.amazon.com/kinesis/data-streams/pricing/)
- API Gateway HTTP API: $1.00 per 1M requests (https://aws.amazon.com/api-gateway/pricing/)
- CloudWatch Logs: $0.50 per GB ingested (https://aws.amazon.com/cloudwatch/pricing/)
- S3 Standard: $0.005 per 1,000 PUT, $0.0004 per 1,000 GET (https://aws.amazon.com/s3/pricing/)
"""
import json

import pytest

from pipeline import costs

GOLDEN_PRICES = {
    "lambda_request": 0.20 / 1e6, "lambda_gb_second": 0.0000166667,
    "sfn_express_request": 1.00 / 1e6, "sfn_express_gb_second": 0.00001667,
    "sagemaker_serverless_gb_second": 0.00002, "sagemaker_data_processed_gb": 0.016,
    "sagemaker_instance_hour_ml.m5.large": 0.115,
    "dynamodb_write_request_unit": 0.625 / 1e6, "dynamodb_read_request_unit": 0.125 / 1e6,
    "kinesis_shard_hour": 0.015, "kinesis_put_payload_unit": 0.014 / 1e6,
    "apigateway_http_request": 1.00 / 1e6, "cloudwatch_logs_ingestion_gb": 0.50,
    "s3_put_request": 0.005 / 1000, "s3_get_request": 0.0004 / 1000,
}


@pytest.mark.parametrize("name", sorted(GOLDEN_PRICES))
def test_price_table_matches_the_aws_price_pages(name):
    assert costs.prices()[name] == pytest.approx(GOLDEN_PRICES[name], rel=1e-4)


def test_one_batch_priced_by_hand():
    usage = costs.BatchUsage(
        events=100, event_bytes=100 * 1000,
        lambda_stages=[{"stage": "process_stream", "seconds": 0.2, "memory_mb": 1024},
                       {"stage": "invoke_model", "seconds": 0.0004, "memory_mb": 512}],
        sfn_seconds=0.25, model_seconds=0.5, model_bytes=1_000_000, ddb_rru=10, ddb_wru=200,
        s3_puts=1, s3_gets=2, span_seconds=3600, api_requests=10)
    cost = costs.batch_cost(usage, costs.Deployment(shards=2, endpoint_memory_mb=2048))
    expected = {
        "lambda_process_stream": 0.0000002 + 0.2 * 1.0 * 0.0000166667,        # 200 ms x 1 GB
        "lambda_invoke_model": 0.0000002 + 0.001 * 0.5 * 0.0000166667,        # 0.4 ms billed as 1 ms
        "stepfunctions": 0.000001 + 0.3 * 0.0625 * 0.00001667,                # 250 ms billed as 300 ms, 64 MB
        "sagemaker_serverless": 0.5 * 2 * 0.00002 + 0.001 * 0.016,            # 0.5 s x 2 GB + 1 MB processed
        "dynamodb": 10 * 0.000000125 + 200 * 0.000000625,
        "s3_requests": 0.000005 + 2 * 0.0000004,
        "cloudwatch": 2 * 1500 / 1e9 * 0.50,                                   # 1,500 log bytes per invocation
        "kinesis_put": 100 * 0.000000014,                                      # 1 KB records: 1 unit each
        "kinesis_shard": 0.015,                                                # the batch covers a shard-hour
        "apigateway": 10 * 0.000001,
    }
    for line, usd in expected.items():
        assert cost[line] == pytest.approx(usd, rel=1e-4), line
    tunable = sum(usd for line, usd in expected.items() if line not in ("kinesis_put", "kinesis_shard", "apigateway"))
    attributed = expected["kinesis_put"] + expected["kinesis_shard"] + expected["apigateway"]
    assert cost["tunable"] == pytest.approx(tunable, rel=1e-6)
    assert cost["attributed"] == pytest.approx(attributed, rel=1e-6)
    assert cost["total"] == pytest.approx(tunable + attributed, rel=1e-6)
    assert set(cost) == set(expected) | {"tunable", "attributed", "total"}


@pytest.mark.parametrize("record_bytes, units", [(1, 1), (25 * 1024, 1), (25 * 1024 + 1, 2), (50 * 1024, 2),
                                                 (50 * 1024 + 1, 3)])
def test_kinesis_payload_units_are_25_kb_chunks_rounded_up(record_bytes, units):
    cost = costs.batch_cost(costs.BatchUsage(events=4, event_bytes=4 * record_bytes))
    assert cost["kinesis_put"] == pytest.approx(4 * units * 0.014 / 1e6)
    single = costs.batch_cost(costs.BatchUsage(events=1, event_bytes=record_bytes))
    assert single["kinesis_put"] == pytest.approx(units * 0.014 / 1e6)


@pytest.mark.parametrize("seconds, billed", [(0.0, 0.001), (0.001, 0.001), (0.0011, 0.002), (0.25, 0.25),
                                             (1.0, 1.0)])
def test_lambda_duration_is_billed_per_started_millisecond(seconds, billed):
    assert costs.lambda_cost(seconds, 2048) == pytest.approx(0.0000002 + billed * 2 * 0.0000166667, rel=1e-6)
    assert costs.lambda_cost(seconds, 128) == pytest.approx(0.0000002 + billed * 0.125 * 0.0000166667, rel=1e-6)


@pytest.mark.parametrize("seconds, billed", [(0.0, 0.1), (0.05, 0.1), (0.1, 0.1), (0.1001, 0.2), (1.0, 1.0)])
def test_express_duration_is_billed_per_started_100_ms(seconds, billed):
    cost = costs.batch_cost(costs.BatchUsage(events=1, event_bytes=10, sfn_seconds=seconds))
    assert cost["stepfunctions"] == pytest.approx(0.000001 + billed * 0.0625 * 0.00001667, rel=1e-6)


def test_a_stage_without_memory_is_priced_at_128_mb_and_log_bytes_can_be_measured():
    usage = costs.BatchUsage(events=1, event_bytes=10, lambda_stages=[{"stage": "api", "seconds": 0.1}],
                             log_bytes=2_000_000_000)
    cost = costs.batch_cost(usage)
    assert cost["lambda_api"] == pytest.approx(0.0000002 + 0.1 * 0.125 * 0.0000166667, rel=1e-6)
    assert cost["cloudwatch"] == pytest.approx(1.0, rel=1e-12)                # 2 GB (10^9 bytes each) at $0.50
    no_stage = costs.batch_cost(costs.BatchUsage(events=1, event_bytes=10))
    assert no_stage["cloudwatch"] == pytest.approx(1500 / 1e9 * 0.5)          # one invocation's estimate


def test_instance_mode_golden():
    usage = costs.BatchUsage(events=10, event_bytes=100, model_bytes=2_000_000_000, span_seconds=7200)
    deployment = costs.Deployment(shards=4, endpoint_mode="instance", instance_type="ml.m5.large",
                                  instance_count=3, variants=2)
    cost = costs.batch_cost(usage, deployment)
    assert cost["sagemaker_instance"] == pytest.approx(7200 / 4 / 3600 * 0.115 * 3 * 2)
    assert cost["sagemaker_serverless"] == pytest.approx(2 * 0.016, rel=1e-12)  # data processed still billed
    assert cost["attributed"] == pytest.approx(cost["kinesis_put"] + cost["kinesis_shard"] + cost["apigateway"]
                                               + cost["sagemaker_instance"])
    zero_shards = costs.batch_cost(usage, costs.Deployment(shards=0, endpoint_mode="instance"))
    assert zero_shards["sagemaker_instance"] == pytest.approx(7200 / 3600 * 0.115)


@pytest.mark.parametrize("events, first, last, window, span", [
    (1, 10.0, 10.0, 0, 1.0), (1, None, None, 5, 5.0), (2, 10.0, 10.0, 0, 1.0), (5, 10.0, 9.0, 0.5, 1.0),
    (11, 0.0, 10.0, 0, 11.0), (2, 0.0, 4.0, 30, 8.0), (3, None, 5.0, 0, 1.0)])
def test_span_is_events_over_the_arrival_rate_with_a_poll_or_window_floor(events, first, last, window, span):
    assert costs.span_seconds(events, first, last, window) == pytest.approx(span)


def test_deployment_from_the_stacks_cost_profile(monkeypatch):
    monkeypatch.delenv("COST_PROFILE", raising=False)
    assert costs.Deployment.from_env() == costs.Deployment()
    monkeypatch.setenv("COST_PROFILE", json.dumps({"shards": 4, "endpoint_mode": "instance", "unknown": 1}))
    assert costs.Deployment.from_env() == costs.Deployment(shards=4, endpoint_mode="instance")
    assert costs.Deployment() == costs.Deployment(2, "serverless", 2048, "ml.m5.large", 1, 1)
