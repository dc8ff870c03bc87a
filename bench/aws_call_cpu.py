"""Client CPU of one AWS call as process_stream makes it, against a local server that answers at once.

    python -m bench.aws_call_cpu [--calls 200] [--rounds 5]

Each process_stream batch makes a few calls whatever its size (journal PutObject, counters UpdateItem,
StartExecution, a BatchGetItem) and one BatchWriteItem per 25 users' states (bench/stream_handler.py
--breakdown). This measures what one such call costs the Lambda itself, in CPU time (``time.process_time``: user
and system, so the socket's kernel work counts), through the client the pipeline uses (pipeline/aws.py: botocore,
parameter validation off), and, for the DynamoDB calls, the same JSON body signed with botocore's SigV4 signer
and sent over one keep-alive ``http.client`` connection, then the bare HTTP exchange without signing. The server
(another process) answers every request with ``{}`` and does no work, so only the client's CPU is measured.
Medians of ``--rounds`` rounds of ``--calls`` calls, in ms per call.
"""
from __future__ import annotations

import argparse
import base64
import http.client
import http.server
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "functions")]

from bench.util import free_port, wait_for_port  # noqa: E402

HOT_ITEM_BYTES = 700       # a busy user's hot part (bench/features.py: 650-731 B)
POS_BYTES = 8 + 24 * 8     # "<shard>/<seq>" and the dedupe ring (pipeline/stream.py pack_position)
JOURNAL_BYTES = 60_000     # a 200-record batch's journal / execution input, about


class Answer(http.server.BaseHTTPRequestHandler):
    """Reads the request, answers 200 with ``{}`` (JSON services) or nothing (S3's PUT: botocore takes a body that
    is not XML for an error); HTTP/1.1 so that the client keeps its connection."""
    protocol_version = "HTTP/1.1"

    def _answer(self) -> None:
        if "chunked" in self.headers.get("Transfer-Encoding", ""):  # S3 PutObject with a checksum trailer
            while (size := int(self.rfile.readline().split(b";")[0], 16)):
                self.rfile.read(size + 2)
            while self.rfile.readline() not in (b"\r\n", b""):  # the trailer
                pass
        else:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = b"" if self.command == "PUT" else b"{}"
        self.send_response(200)
        self.send_header("Content-Type", "application/x-amz-json-1.0")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("x-amzn-RequestId", "bench")
        self.end_headers()
        self.wfile.write(body)

    do_POST = do_PUT = _answer

    def log_message(self, *args) -> None:
        pass


def serve(port: int) -> None:
    http.server.ThreadingHTTPServer(("127.0.0.1", port), Answer).serve_forever()


def cpu_ms(call: Callable[[], object], calls: int, rounds: int) -> float:
    call()
    samples = []
    for _ in range(rounds):
        started = time.process_time()
        for _ in range(calls):
            call()
        samples.append((time.process_time() - started) / calls * 1e3)
    return statistics.median(samples)


def hot_items(count: int = 25) -> list[dict]:
    return [{"user_id": {"S": f"user-{i:05d}"}, "feature_set": {"S": "v2"}, "hot": {"B": os.urandom(HOT_ITEM_BYTES)},
             "pos": {"B": os.urandom(POS_BYTES)}, "at": {"N": "1764500000"}} for i in range(count)]


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    port = free_port()
    server = subprocess.Popen([sys.executable, "-c", f"import bench.aws_call_cpu as b; b.serve({port})"],
                              cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    os.environ.update(AWS_ENDPOINT_URL=endpoint, AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench",
                      AWS_DEFAULT_REGION="us-east-1")
    try:
        wait_for_port(port)
        import boto3
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest

        from pipeline import aws

        dynamodb, s3, sfn = aws.client("dynamodb"), aws.client("s3"), aws.client("stepfunctions")
        update = {"TableName": "state", "Key": {"pk": {"S": "stream#shardId-000000000000"}},
                  "UpdateExpression": "ADD #c0 :v0 SET #mark = :mark", "ConditionExpression": "#mark = :expected",
                  "ExpressionAttributeNames": {"#c0": "events_processed_by_stream", "#mark": "counted_seq"},
                  "ExpressionAttributeValues": {":v0": {"N": "200"}, ":mark": {"S": "49650"},
                                                ":expected": {"S": "49450"}}}
        write = {"RequestItems": {"features": [{"PutRequest": {"Item": item}} for item in hot_items()]}}
        body = b"x" * JOURNAL_BYTES
        credentials = boto3.session.Session().get_credentials().get_frozen_credentials()  # what the clients sign with
        signer = SigV4Auth(credentials, "dynamodb", "us-east-1")
        connection = http.client.HTTPConnection("127.0.0.1", port)

        def blob(value):
            if isinstance(value, (bytes, bytearray)):
                return base64.b64encode(value).decode()
            raise TypeError(type(value))

        def signed(target: str, params: dict) -> Callable[[], object]:
            def call():
                data = json.dumps(params, default=blob, separators=(",", ":")).encode()
                request = AWSRequest("POST", endpoint + "/", data=data, headers={
                    "Content-Type": "application/x-amz-json-1.0", "X-Amz-Target": f"DynamoDB_20120810.{target}"})
                signer.add_auth(request)
                connection.request("POST", "/", body=data, headers=dict(request.headers.items()))
                return json.loads(connection.getresponse().read())
            return call

        def bare():
            connection.request("POST", "/", body=b"{}", headers={"Content-Type": "application/x-amz-json-1.0"})
            return connection.getresponse().read()

        rows = [
            ("UpdateItem (the counters)", "botocore", lambda: dynamodb.update_item(**update)),
            ("", "signed http.client", signed("UpdateItem", update)),
            ("BatchWriteItem (25 hot items)", "botocore", lambda: dynamodb.batch_write_item(**write)),
            ("", "signed http.client", signed("BatchWriteItem", write)),
            (f"PutObject ({JOURNAL_BYTES // 1000} KB journal)", "botocore",
             lambda: s3.put_object(Bucket="artifacts", Key="journal/x.json", Body=body)),
            (f"StartExecution ({JOURNAL_BYTES // 1000} KB input)", "botocore",
             lambda: sfn.start_execution(stateMachineArn="arn:aws:states:us-east-1:123456789012:stateMachine:x",
                                         name="x", input=body.decode())),
            ("HTTP exchange alone", "http.client", bare),
        ]
        result = {}
        print(f"client CPU per call, ms (median of {args.rounds} rounds of {args.calls} calls; the server does "
              "no work)")
        call_name = ""
        for label, client, call in rows:  # an empty label: the same call as the row above, another client
            call_name = label or call_name
            result[f"{call_name} / {client}"] = ms = cpu_ms(call, args.calls, args.rounds)
            print(f"  {label:36s} {client:20s} {ms:7.2f}")
        return result
    finally:
        server.terminate()


if __name__ == "__main__":
    main()
