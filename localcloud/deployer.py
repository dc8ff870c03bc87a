"""Deploys a synthesized CloudFormation template into moto (through boto3, against the gateway).

Resources are created in dependency order (DependsOn + Ref/GetAtt/Sub references). Names are CloudFormation-like
(``<Stack>-<LogicalId>-<SUFFIX>``) unless the template names the resource. Each type has its provisioner
(provisioners.PROVISIONERS), which also fills the registries the other components run from: Lambda functions (code,
handler, resolved environment), Kinesis event source mappings, schedules, HTTP API routes and SageMaker endpoints.
Types it does not model (IAM policies, KMS, Logs, dashboards, CDK metadata, permissions ...) are skipped with
placeholder Ref/GetAtt values, logged at debug level.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from botocore.config import Config
from botocore.exceptions import ClientError

from .assembly import StackArtifact
from .errors import LocalCloudError
from .intrinsics import Resolver, TemplateError, pseudo_parameters, references
from .lambdahost import FunctionSpec
from .naming import physical_name
from .provisioners import PROVISIONERS
from .sagemaker import Variant
from .specs import HttpApiInfo, MappingInfo, Resource, RuleInfo

log = logging.getLogger("localcloud.deploy")

SKIPPED_TYPES = {
    "AWS::CDK::Metadata", "AWS::IAM::Policy", "AWS::IAM::ManagedPolicy", "AWS::IAM::InstanceProfile",
    "AWS::KMS::Key", "AWS::KMS::Alias", "AWS::Logs::LogGroup", "AWS::Logs::SubscriptionFilter",
    "AWS::Logs::MetricFilter", "AWS::CloudWatch::Dashboard", "AWS::Lambda::Permission", "AWS::Lambda::Version",
    "AWS::Lambda::Alias", "AWS::Lambda::EventInvokeConfig", "AWS::S3::BucketPolicy", "AWS::SQS::QueuePolicy",
    "AWS::SNS::TopicPolicy", "AWS::SNS::Subscription", "AWS::ApiGatewayV2::Deployment",
    "AWS::ApiGatewayV2::Authorizer", "AWS::CloudWatch::CompositeAlarm", "AWS::ApplicationAutoScaling::ScalableTarget",
    "AWS::ApplicationAutoScaling::ScalingPolicy", "AWS::XRay::Group", "AWS::XRay::SamplingRule",
}


class Deployer:
    def __init__(self, stack: StackArtifact, *, session, endpoint_url: str, region: str, account_id: str,
                 work_dir: Path, parameters: dict[str, Any] | None = None, api_url: str | None = None):
        self.stack = stack
        self.template = stack.template
        self.session = session
        self.endpoint_url = endpoint_url
        self.region = region
        self.account_id = account_id
        self.work_dir = Path(work_dir)
        self.api_url = api_url
        self._clients: dict[str, Any] = {}
        self.resources: dict[str, Resource] = {
            lid: Resource(lid, d.get("Type", ""), d) for lid, d in self.template.get("Resources", {}).items()}
        self.functions: dict[str, FunctionSpec] = {}
        self.mappings: list[MappingInfo] = []
        self.rules: list[RuleInfo] = []
        self.http_apis: dict[str, HttpApiInfo] = {}
        self.endpoints: list[tuple[str, str, list[Variant]]] = []   # (endpoint name, config name, variants)
        self.models: dict[str, dict] = {}                           # model name -> container definition
        self.endpoint_configs: dict[str, list[dict]] = {}           # config name -> production variants
        self.layers: dict[str, list[str]] = {}                      # layer ARN -> sys.path entries
        self.outputs: dict[str, Any] = {}
        self.skipped: list[str] = []
        self.seconds = 0.0
        pseudo = pseudo_parameters(region, account_id, stack.stack_name)
        self.resolver = Resolver(pseudo=pseudo, parameters={}, conditions=self.template.get("Conditions", {}),
                                 mappings=self.template.get("Mappings", {}), ref=self._ref, get_att=self._get_att)
        self.resolver.parameters = self._parameters(parameters or {})

    # -- boto3 --------------------------------------------------------------------------------------------------
    def client(self, service: str):
        if service not in self._clients:
            self._clients[service] = self.session.client(
                service, endpoint_url=self.endpoint_url,
                config=Config(retries={"max_attempts": 2, "mode": "standard"}, connect_timeout=10, read_timeout=60))
        return self._clients[service]

    # -- parameters / references --------------------------------------------------------------------------------
    def _parameters(self, overrides: dict[str, Any]) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for name, spec in self.template.get("Parameters", {}).items():
            if name in overrides:
                values[name] = overrides[name]
                continue
            default = spec.get("Default")
            if default is None:
                raise LocalCloudError(f"template parameter {name} has no default: pass parameters={{{name!r}: ...}}")
            if str(spec.get("Type", "")).startswith("AWS::SSM::Parameter::Value"):
                values[name] = self._ssm_parameter(str(default))
            elif str(spec.get("Type", "")).startswith("List<") or spec.get("Type") == "CommaDelimitedList":
                values[name] = [v.strip() for v in str(default).split(",")]
            else:
                values[name] = default
        return values

    def _ssm_parameter(self, name: str) -> str:
        try:
            return self.client("ssm").get_parameter(Name=name)["Parameter"]["Value"]
        except ClientError:
            return "30" if name.startswith("/cdk-bootstrap/") else name  # bootstrap version: any recent one

    def _ref(self, logical_id: str) -> Any:
        resource = self.resources.get(logical_id)
        if resource is None:
            raise TemplateError(f"Ref to unknown resource or parameter {logical_id!r}")
        if resource.status == "pending":
            raise TemplateError(f"{logical_id} is referenced before it exists (dependency order)")
        return resource.ref

    def _get_att(self, logical_id: str, attribute: str) -> Any:
        resource = self.resources.get(logical_id)
        if resource is None:
            raise TemplateError(f"Fn::GetAtt on unknown resource {logical_id!r}")
        if resource.status == "pending":
            raise TemplateError(f"{logical_id}.{attribute} is referenced before it exists (dependency order)")
        if attribute in resource.attributes:
            return resource.attributes[attribute]
        if resource.status == "created":
            raise TemplateError(f"{resource.type} {logical_id} has no attribute {attribute!r} in the local cloud "
                                f"(known: {sorted(resource.attributes)})")
        return self._placeholder_attribute(resource, attribute)

    def _placeholder_attribute(self, resource: Resource, attribute: str) -> str:
        service = resource.type.split("::")[1].lower() if resource.type.count("::") >= 2 else "custom"
        name = str(resource.ref)
        if attribute == "Arn" or attribute.endswith("Arn"):
            if service == "iam":
                return f"arn:aws:iam::{self.account_id}:{resource.type.split('::')[2].lower()}/{name}"
            return f"arn:aws:{service}:{self.region}:{self.account_id}:{resource.type.split('::')[-1].lower()}/{name}"
        return name

    # -- order --------------------------------------------------------------------------------------------------
    def order(self) -> list[str]:
        ids = frozenset(self.resources)
        deps: dict[str, set[str]] = {}
        for lid, resource in self.resources.items():
            definition = resource.definition
            found = references(definition.get("Properties", {}), ids)
            depends = definition.get("DependsOn", [])
            found |= set([depends] if isinstance(depends, str) else depends)
            found.discard(lid)
            missing = found - ids
            if missing:
                raise TemplateError(f"{lid} depends on unknown resources {sorted(missing)}")
            deps[lid] = found
        ordered: list[str] = []
        done: set[str] = set()
        remaining = list(self.resources)
        while remaining:
            ready = [lid for lid in remaining if deps[lid] <= done]
            if not ready:
                raise TemplateError(f"circular dependency between {sorted(remaining)}")
            for lid in ready:
                ordered.append(lid)
                done.add(lid)
            remaining = [lid for lid in remaining if lid not in done]
        return ordered

    # -- deploy -------------------------------------------------------------------------------------------------
    def deploy(self) -> None:
        started = time.perf_counter()
        self._publish_assets()
        for logical_id in self.order():
            resource = self.resources[logical_id]
            condition = resource.definition.get("Condition")
            if condition and not self.resolver.condition(condition):
                resource.status = "disabled"
                resource.note = f"condition {condition} is false"
                continue
            provisioner = PROVISIONERS.get(resource.type)
            if provisioner is None:  # SKIPPED_TYPES and any type the local cloud does not run
                self._skip(resource)
                continue
            properties = self.resolver.resolve(resource.definition.get("Properties", {})) or {}
            try:
                provisioner(self, resource, properties)
            except (ClientError, TemplateError, KeyError, ValueError) as exc:
                raise LocalCloudError(f"cannot create {resource.type} {logical_id}: {type(exc).__name__}: {exc}") \
                    from exc
            resource.status = "created"
        for name, output in self.template.get("Outputs", {}).items():
            if output.get("Condition") and not self.resolver.condition(output["Condition"]):
                continue
            self.outputs[name] = self._rewrite_urls(self.resolver.resolve(output.get("Value")))
        self.seconds = time.perf_counter() - started

    def _skip(self, resource: Resource) -> None:
        properties = resource.definition.get("Properties", {})
        name_keys = ("RoleName", "PolicyName", "LogGroupName", "ManagedPolicyName", "AliasName", "DashboardName")
        explicit = next((properties[k] for k in name_keys if isinstance(properties.get(k), str)), None)
        resource.ref = explicit or physical_name(self.stack.stack_name, resource.logical_id, resource.type)
        if resource.type == "AWS::IAM::ManagedPolicy":
            resource.ref = f"arn:aws:iam::{self.account_id}:policy/{resource.ref}"
        resource.status = "skipped"
        self.skipped.append(resource.logical_id)
        if resource.type.startswith("Custom::") or resource.type == "AWS::CloudFormation::CustomResource":
            log.warning("custom resource %s (%s) is not run by the local cloud", resource.logical_id, resource.type)
        elif resource.type in SKIPPED_TYPES:
            log.debug("skipped %s (%s)", resource.logical_id, resource.type)
        else:  # a type the stack did not use when the local cloud was written: say so once per resource
            log.info("skipped %s (%s): the local cloud has no provisioner for it", resource.logical_id, resource.type)

    def resource_name(self, resource: Resource, properties: dict, key: str, **kwargs) -> str:
        return properties.get(key) or physical_name(self.stack.stack_name, resource.logical_id, resource.type,
                                                    **kwargs)

    def _rewrite_urls(self, value: Any) -> Any:
        if not isinstance(value, str) or not self.api_url:
            return value
        for api in self.http_apis.values():
            remote = f"https://{api.api_id}.execute-api.{self.region}.amazonaws.com"
            if remote in value:
                return value.replace(remote, self.api_url.rstrip("/"))
        return value

    # -- assets -------------------------------------------------------------------------------------------------
    def _publish_assets(self) -> None:
        """The CDK bootstrap bucket with the stack's file assets, so S3 URLs in the template resolve."""
        s3 = self.client("s3")
        buckets: set[str] = set()
        for asset in self.stack.files.values():
            bucket = self.resolver.resolve({"Fn::Sub": asset.bucket_name})
            if bucket not in buckets:
                try:
                    s3.create_bucket(Bucket=bucket)
                except ClientError as exc:
                    if exc.response["Error"]["Code"] not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                        raise
                buckets.add(bucket)
            if asset.packaging == "file" and asset.path.is_file():
                s3.upload_file(str(asset.path), bucket, asset.object_key)
                log.debug("uploaded asset %s to s3://%s/%s", asset.path.name, bucket, asset.object_key)
