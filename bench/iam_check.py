"""Cost of the local cloud's IAM check per AWS call (localcloud/iam.py ``Iam.check``), on the requests the pipeline
makes most: a 25-item BatchWriteItem (the features write) and a GetItem, signed by a role with the stack's kind of
policy (table-scoped statements, an S3 prefix, a conditioned PutMetricData). Median of repeated runs, microseconds.

    python -m bench.iam_check [--runs 7] [--calls 2000]
"""
from __future__ import annotations

import argparse
import io
import statistics
import sys
import time
import urllib.parse
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import boto3  # noqa: E402

from localcloud.iam import Iam  # noqa: E402

ACCOUNT, REGION = "123456789012", "us-east-1"


class _Sent(Exception):
    pass


def _environ(operation: str, **params) -> tuple[dict, bytes]:
    client = boto3.session.Session(aws_access_key_id="K", aws_secret_access_key="x", region_name=REGION) \
        .client("dynamodb", endpoint_url="http://127.0.0.1:9")
    captured = {}

    def before_send(request, **_):
        captured["request"] = request
        raise _Sent()

    client.meta.events.register("before-send", before_send)
    try:
        getattr(client, operation)(**params)
    except _Sent:
        pass
    request = captured["request"]
    body = request.body if isinstance(request.body, bytes) else request.body.encode()
    headers = {k: v.decode() if isinstance(v, bytes) else v for k, v in request.headers.items()}
    environ = {"REQUEST_METHOD": "POST", "PATH_INFO": urllib.parse.urlsplit(request.url).path, "QUERY_STRING": "",
               "CONTENT_LENGTH": str(len(body)), "CONTENT_TYPE": headers["Content-Type"],
               "HTTP_X_AMZ_TARGET": headers["X-Amz-Target"], "HTTP_AUTHORIZATION": headers["Authorization"]}
    return environ, body


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--calls", type=int, default=2000)
    args = parser.parse_args(argv)
    iam = Iam("enforce", region=REGION, account_id=ACCOUNT)
    role = f"arn:aws:iam::{ACCOUNT}:role/ProcessStreamRole"
    table = f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/"
    iam.policies[role] = [
        {"Effect": "Allow", "Action": ["logs:CreateLogStream", "logs:PutLogEvents"], "Resource": "arn:aws:logs:*"},
        {"Effect": "Allow", "Action": ["xray:PutTraceSegments"], "Resource": "*"},
        {"Effect": "Allow", "Action": ["dynamodb:GetItem", "dynamodb:BatchGetItem", "dynamodb:BatchWriteItem"],
         "Resource": table + "Features"},
        {"Effect": "Allow", "Action": ["dynamodb:GetItem", "dynamodb:UpdateItem"], "Resource": table + "State"},
        {"Effect": "Allow", "Action": ["s3:PutObject", "s3:GetObject"], "Resource": "arn:aws:s3:::b/journal/*"},
        {"Effect": "Allow", "Action": "cloudwatch:PutMetricData", "Resource": "*",
         "Condition": {"StringEquals": {"cloudwatch:namespace": "RealtimeInference"}}}]
    key = iam.credentials(role, "process").access_key_id
    items = [{"PutRequest": {"Item": {"user_id": {"S": f"u{n}"}, "feature_set": {"S": "v1"},
                                      "hot": {"B": b"x" * 600}}}} for n in range(25)]
    cases = {"BatchWriteItem (25 items)": _environ("batch_write_item", RequestItems={"Features": items}),
             "GetItem": _environ("get_item", TableName="State", Key={"pk": {"S": "config"}})}
    for name, (environ, body) in cases.items():
        environ["HTTP_AUTHORIZATION"] = environ["HTTP_AUTHORIZATION"].replace("Credential=K/", f"Credential={key}/")
        timings = []
        for _ in range(args.runs):
            started = time.perf_counter()
            for _ in range(args.calls):
                environ["wsgi.input"] = io.BytesIO(body)
                assert iam.check(environ) is None
            assert iam.checked and not iam.denials
            timings.append((time.perf_counter() - started) / args.calls * 1e6)
        print(f"{name}: median {statistics.median(timings):.1f} µs per call "
              f"(runs {', '.join(f'{t:.1f}' for t in timings)}; body {len(body)} bytes)")


if __name__ == "__main__":
    main()
