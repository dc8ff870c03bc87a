"""Helpers for the local cloud's tests: small hand-written cloud assemblies (a fake cdk.out) built in tmp_path.

(A module with its own name, not conftest: several test directories have a conftest.py and ``from conftest import``
would pick whichever was imported first.)

These tests do not depend on the real stack: each module writes its own template, handler directories and assets
in the layout the CDK produces (manifest.json, <Stack>.template.json, <Stack>.assets.json, asset.<hash>/).
"""
from __future__ import annotations

import hashlib
import json
import time
import urllib.error
import urllib.request
from pathlib import Path

import boto3
from botocore.config import Config

ROOT = Path(__file__).resolve().parents[2]

BOOTSTRAP_BUCKET = "cdk-hnb659fds-assets-${AWS::AccountId}-${AWS::Region}"
XGBOOST_IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:1.7-1"


class FakeCdkOut:
    """Builds a cloud assembly the way `cdk synth` lays it out."""

    def __init__(self, root: Path, stack: str = "TestStack"):
        self.root = Path(root)
        self.stack = stack
        self.resources: dict[str, dict] = {}
        self.outputs: dict[str, dict] = {}
        self.conditions: dict[str, dict] = {}
        self.parameters: dict[str, dict] = {
            "BootstrapVersion": {"Type": "AWS::SSM::Parameter::Value<String>",
                                 "Default": "/cdk-bootstrap/hnb659fds/version"}}
        self.files: dict[str, dict] = {}
        self.images: dict[str, dict] = {}
        # The local cloud enforces IAM (localcloud/iam.py): a role no policy of the fake stack names may do anything,
        # so tests of other features need no grants. test_iam.py turns this off.
        self.allow_unpoliced_roles = True

    # -- assets -------------------------------------------------------------------------------------------------
    def code_asset(self, files: dict[str, str]) -> str:
        """A directory asset (Lambda code); returns the S3 key the template uses."""
        digest = hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()
        directory = self.root / f"asset.{digest}"
        for name, text in files.items():
            path = directory / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        self.files[digest] = {"displayName": f"code {digest[:8]}",
                              "source": {"path": f"asset.{digest}", "packaging": "zip"},
                              "destinations": {"current_account-current_region": {
                                  "bucketName": BOOTSTRAP_BUCKET, "objectKey": f"{digest}.zip"}}}
        return f"{digest}.zip"

    def file_asset(self, data: bytes, suffix: str = ".tar.gz") -> str:
        """A file asset (uploaded to the bootstrap bucket); returns its S3 key."""
        digest = hashlib.sha256(data).hexdigest()
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / f"asset.{digest}{suffix}").write_bytes(data)
        key = f"{digest}{Path(suffix).suffix}"  # the CDK keeps the last extension only: <hash>.gz
        self.files[digest] = {"displayName": "file", "source": {"path": f"asset.{digest}{suffix}", "packaging": "file"},
                              "destinations": {"current_account-current_region": {
                                  "bucketName": BOOTSTRAP_BUCKET, "objectKey": key}}}
        return key

    def image_asset(self, files: dict[str, str]) -> str:
        """A docker image asset (build context with a Dockerfile); returns the ImageUri the template uses."""
        digest = hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()
        directory = self.root / f"asset.{digest}"
        for name, text in files.items():
            path = directory / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        repository = "cdk-hnb659fds-container-assets-${AWS::AccountId}-${AWS::Region}"
        self.images[digest] = {"source": {"directory": f"asset.{digest}"}, "destinations": {
            "current_account-current_region": {"repositoryName": repository, "imageTag": digest}}}
        return f"${{AWS::AccountId}}.dkr.ecr.${{AWS::Region}}.${{AWS::URLSuffix}}/{repository}:{digest}"

    # -- resources ----------------------------------------------------------------------------------------------
    def add(self, logical_id: str, type_: str, properties: dict | None = None, **extra) -> str:
        self.resources[logical_id] = {"Type": type_, "Properties": properties or {}, **extra}
        return logical_id

    def function(self, logical_id: str, handler: str, code_key: str, environment: dict | None = None,
                 timeout: int = 10, memory: int = 128, **properties) -> str:
        role = self.add(f"{logical_id}ServiceRole", "AWS::IAM::Role", {
            "AssumeRolePolicyDocument": {"Version": "2012-10-17", "Statement": [{
                "Action": "sts:AssumeRole", "Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}}]}})
        props = {"Code": {"S3Bucket": {"Fn::Sub": BOOTSTRAP_BUCKET}, "S3Key": code_key}, "Handler": handler,
                 "Runtime": "python3.11", "Role": {"Fn::GetAtt": [role, "Arn"]}, "Timeout": timeout,
                 "MemorySize": memory, **properties}
        if environment:
            props["Environment"] = {"Variables": environment}
        return self.add(logical_id, "AWS::Lambda::Function", props, DependsOn=[role])

    def output(self, name: str, value) -> None:
        self.outputs[name] = {"Value": value}

    def write(self) -> Path:
        self.root.mkdir(parents=True, exist_ok=True)
        if self.allow_unpoliced_roles:
            named = {json.dumps(r) for r in self.resources.values() if r["Type"] == "AWS::IAM::Policy"}
            for logical_id in [k for k, r in self.resources.items() if r["Type"] == "AWS::IAM::Role"]:
                if not any(json.dumps({"Ref": logical_id}) in text for text in named):
                    self.add(f"{logical_id}AllowAll", "AWS::IAM::Policy", {
                        "PolicyName": f"{logical_id}AllowAll", "Roles": [{"Ref": logical_id}],
                        "PolicyDocument": {"Version": "2012-10-17",
                                           "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}})
        template = {"Parameters": self.parameters, "Resources": self.resources}
        if self.outputs:
            template["Outputs"] = self.outputs
        if self.conditions:
            template["Conditions"] = self.conditions
        (self.root / f"{self.stack}.template.json").write_text(json.dumps(template, indent=1))
        (self.root / f"{self.stack}.assets.json").write_text(json.dumps(
            {"version": "55.0.0", "files": self.files, "dockerImages": self.images}, indent=1))
        manifest = {"version": "55.0.0", "artifacts": {
            f"{self.stack}.assets": {"type": "cdk:asset-manifest", "properties": {"file": f"{self.stack}.assets.json"}},
            self.stack: {"type": "aws:cloudformation:stack", "environment": "aws://unknown-account/unknown-region",
                         "properties": {"templateFile": f"{self.stack}.template.json"},
                         "dependencies": [f"{self.stack}.assets"], "displayName": self.stack}}}
        (self.root / "manifest.json").write_text(json.dumps(manifest, indent=1))
        return self.root


def aws_client(cloud, service: str, retries: int = 1):
    session = boto3.session.Session(aws_access_key_id="test", aws_secret_access_key="test", region_name="us-east-1")
    return session.client(service, endpoint_url=cloud.endpoint_url,
                          config=Config(retries={"total_max_attempts": retries, "mode": "standard"}, read_timeout=60))


def wait_for(predicate, timeout: float = 20.0, interval: float = 0.05, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def http_call(cloud, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
    """One request to the cloud's HTTP API: (status, lower-cased headers, body), errors included."""
    request = urllib.request.Request(cloud.api_url + path, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, {k.lower(): v for k, v in response.headers.items()}, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, {k.lower(): v for k, v in exc.headers.items()}, exc.read()
