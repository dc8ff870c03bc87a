"""Deploys a synthesized CloudFormation template into moto (through boto3, against the gateway).

Resources are created in dependency order (DependsOn + Ref/GetAtt/Sub references). Names are CloudFormation-like
(``<Stack>-<LogicalId>-<SUFFIX>``) unless the template names the resource. The deployer also fills the registries the
other components run from: Lambda functions (code, handler, resolved environment), Kinesis event source mappings,
schedules, HTTP API routes and SageMaker endpoints. Types it does not model (IAM policies, KMS, Logs, dashboards,
CDK metadata, permissions ...) are skipped with placeholder Ref/GetAtt values, logged at debug level.
"""
from __future__ import annotations

import json
import logging
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from botocore.config import Config
from botocore.exceptions import ClientError

from . import mototools
from .assembly import StackArtifact, image_code_directory
from .errors import LocalCloudError
from .intrinsics import Resolver, TemplateError, pseudo_parameters, references
from .lambdahost import FunctionSpec
from .naming import physical_name
from .sagemaker import Variant
from .specs import HttpApiInfo, IntegrationInfo, MappingInfo, Resource, RouteInfo, RuleInfo

log = logging.getLogger("localcloud.deploy")

DUMMY_ZIP = b"PK\x05\x06" + b"\0" * 18  # an empty zip archive: moto's control plane only stores it

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
        self._models: dict[str, dict] = {}                          # model name -> container definition
        self._endpoint_configs: dict[str, list[dict]] = {}          # config name -> production variants
        self._layers: dict[str, list[str]] = {}                     # layer ARN -> sys.path entries
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

    def _name(self, resource: Resource, properties: dict, key: str, **kwargs) -> str:
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

    # -- IAM ----------------------------------------------------------------------------------------------------
    def _create_IAM_Role(self, resource: Resource, p: dict) -> None:
        name = self._name(resource, p, "RoleName")
        role = self.client("iam").create_role(
            RoleName=name, Path=p.get("Path", "/"),
            AssumeRolePolicyDocument=json.dumps(p.get("AssumeRolePolicyDocument", {})))["Role"]
        resource.ref = name
        resource.attributes = {"Arn": role["Arn"], "RoleId": role["RoleId"]}

    def _ensure_role(self, role_arn: str) -> str:
        """moto's CreateFunction checks that the role exists; roles from outside the stack are created here."""
        name = role_arn.rsplit("/", 1)[-1]
        iam = self.client("iam")
        try:
            return iam.get_role(RoleName=name)["Role"]["Arn"]
        except ClientError:
            return iam.create_role(RoleName=name, AssumeRolePolicyDocument="{}")["Role"]["Arn"]

    # -- storage and messaging ----------------------------------------------------------------------------------
    def _create_Kinesis_Stream(self, resource: Resource, p: dict) -> None:
        name = self._name(resource, p, "Name")
        kwargs: dict[str, Any] = {"StreamName": name}
        mode = (p.get("StreamModeDetails") or {}).get("StreamMode", "PROVISIONED")
        if mode == "ON_DEMAND":
            kwargs["StreamModeDetails"] = {"StreamMode": "ON_DEMAND"}
        else:
            kwargs["ShardCount"] = int(p.get("ShardCount", 1))
        kinesis = self.client("kinesis")
        kinesis.create_stream(**kwargs)
        summary = kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]
        resource.ref = name
        resource.attributes = {"Arn": summary["StreamARN"]}

    def _table_kwargs(self, p: dict, global_table: bool) -> dict:
        kwargs: dict[str, Any] = {"KeySchema": p["KeySchema"], "AttributeDefinitions": p["AttributeDefinitions"]}
        billing = p.get("BillingMode", "PAY_PER_REQUEST" if global_table else "PROVISIONED")
        kwargs["BillingMode"] = billing
        if billing == "PROVISIONED":
            kwargs["ProvisionedThroughput"] = p.get("ProvisionedThroughput") or \
                {"ReadCapacityUnits": 5, "WriteCapacityUnits": 5}
        for key in ("GlobalSecondaryIndexes", "LocalSecondaryIndexes"):
            indexes = []
            for index in p.get(key, []):
                entry = {k: index[k] for k in ("IndexName", "KeySchema", "Projection") if k in index}
                if key == "GlobalSecondaryIndexes" and billing == "PROVISIONED":
                    entry["ProvisionedThroughput"] = index.get("ProvisionedThroughput") or \
                        {"ReadCapacityUnits": 5, "WriteCapacityUnits": 5}
                indexes.append(entry)
            if indexes:
                kwargs[key] = indexes
        stream = p.get("StreamSpecification")
        if stream and stream.get("StreamViewType"):
            kwargs["StreamSpecification"] = {"StreamEnabled": True, "StreamViewType": stream["StreamViewType"]}
        if p.get("TableClass"):
            kwargs["TableClass"] = p["TableClass"]
        return kwargs

    def _create_table(self, resource: Resource, p: dict, global_table: bool) -> None:
        name = self._name(resource, p, "TableName")
        dynamodb = self.client("dynamodb")
        table = dynamodb.create_table(TableName=name, **self._table_kwargs(p, global_table))["TableDescription"]
        ttl = p.get("TimeToLiveSpecification")
        if ttl and ttl.get("Enabled"):
            dynamodb.update_time_to_live(TableName=name, TimeToLiveSpecification={
                "Enabled": True, "AttributeName": ttl["AttributeName"]})
        resource.ref = name
        resource.attributes = {"Arn": table["TableArn"], "StreamArn": table.get("LatestStreamArn", ""),
                               "TableId": table.get("TableId", "")}

    def _create_DynamoDB_Table(self, resource: Resource, p: dict) -> None:
        self._create_table(resource, p, global_table=False)

    def _create_DynamoDB_GlobalTable(self, resource: Resource, p: dict) -> None:
        self._create_table(resource, p, global_table=True)

    def _create_SQS_Queue(self, resource: Resource, p: dict) -> None:
        fifo = bool(p.get("FifoQueue"))
        name = self._name(resource, p, "QueueName", fifo=fifo)
        attributes: dict[str, str] = {}
        for key in ("DelaySeconds", "MaximumMessageSize", "MessageRetentionPeriod", "ReceiveMessageWaitTimeSeconds",
                    "VisibilityTimeout", "ContentBasedDeduplication", "DeduplicationScope", "FifoThroughputLimit"):
            if key in p:
                value = p[key]
                attributes[key] = str(value).lower() if isinstance(value, bool) else str(value)
        if fifo:
            attributes["FifoQueue"] = "true"
        for key in ("RedrivePolicy", "RedriveAllowPolicy"):
            if key in p:
                attributes[key] = p[key] if isinstance(p[key], str) else json.dumps(p[key])
        sqs = self.client("sqs")
        url = sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        resource.ref = url
        resource.attributes = {"Arn": arn, "QueueName": name, "QueueUrl": url}

    def _create_S3_Bucket(self, resource: Resource, p: dict) -> None:
        name = self._name(resource, p, "BucketName")
        s3 = self.client("s3")
        s3.create_bucket(Bucket=name)
        if (p.get("VersioningConfiguration") or {}).get("Status") == "Enabled":
            s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
        resource.ref = name
        resource.attributes = {
            "Arn": f"arn:aws:s3:::{name}", "DomainName": f"{name}.s3.amazonaws.com",
            "RegionalDomainName": f"{name}.s3.{self.region}.amazonaws.com",
            "DualStackDomainName": f"{name}.s3.dualstack.{self.region}.amazonaws.com",
            "WebsiteURL": f"http://{name}.s3-website-{self.region}.amazonaws.com"}

    def _create_SNS_Topic(self, resource: Resource, p: dict) -> None:
        name = self._name(resource, p, "TopicName", fifo=bool(p.get("FifoTopic")))
        arn = self.client("sns").create_topic(Name=name)["TopicArn"]
        resource.ref = arn
        resource.attributes = {"TopicArn": arn, "TopicName": name}

    def _create_SSM_Parameter(self, resource: Resource, p: dict) -> None:
        tail = physical_name(self.stack.stack_name, resource.logical_id, resource.type)[-12:]
        name = p.get("Name") or f"CFN-{resource.logical_id}-{tail}"
        self.client("ssm").put_parameter(Name=name, Value=str(p.get("Value", "")), Type=p.get("Type", "String"),
                                         Overwrite=True)
        resource.ref = name
        resource.attributes = {"Type": p.get("Type", "String"), "Value": str(p.get("Value", ""))}

    # -- Lambda -------------------------------------------------------------------------------------------------
    def _create_Lambda_LayerVersion(self, resource: Resource, p: dict) -> None:
        content = p.get("Content") or {}
        name = p.get("LayerName") or physical_name(self.stack.stack_name, resource.logical_id, resource.type)
        arn = f"arn:aws:lambda:{self.region}:{self.account_id}:layer:{name}:1"
        paths: list[str] = []
        asset = self.stack.file_asset_for_key(str(content.get("S3Key", "")))
        if asset is not None:
            directory = self._code_directory(resource.logical_id, asset.path)
            paths = [str(directory / "python"), str(directory)]
        self._layers[arn] = paths
        resource.ref = arn
        resource.attributes = {"LayerVersionArn": arn}

    def _code_directory(self, logical_id: str, path: Path) -> Path:
        if path.is_dir():
            return path
        if path.suffix == ".zip" and path.is_file():
            target = self.work_dir / "code" / logical_id
            if not target.exists():
                with zipfile.ZipFile(path) as archive:
                    archive.extractall(target)
            return target
        raise LocalCloudError(f"{logical_id}: code asset {path} is missing (run `make synth` again)")

    def _create_Lambda_Function(self, resource: Resource, p: dict) -> None:
        name = self._name(resource, p, "FunctionName")
        code = p.get("Code") or {}
        package_type = p.get("PackageType", "Zip")
        image_env: dict[str, str] = {}
        handler = p.get("Handler", "")
        if "ImageUri" in code:
            package_type = "Image"
            image = self.stack.image_asset_for_uri(code["ImageUri"])
            if image is None:
                raise LocalCloudError(f"{resource.logical_id}: image {code['ImageUri']} is not a docker image asset "
                                      "of this cloud assembly (the local cloud runs only images it finds in cdk.out)")
            code_dir, image_env, command = image_code_directory(image)
            image_config = p.get("ImageConfig") or {}
            handler = (image_config.get("Command") or command or [""])[0]
            if not handler:
                raise LocalCloudError(f"{resource.logical_id}: no handler (ImageConfig.Command or Dockerfile CMD)")
        elif "ZipFile" in code:
            code_dir = self.work_dir / "code" / resource.logical_id
            code_dir.mkdir(parents=True, exist_ok=True)
            (code_dir / "index.py").write_text(code["ZipFile"])
        else:
            asset = self.stack.file_asset_for_key(str(code.get("S3Key", "")))
            if asset is None:
                raise LocalCloudError(f"{resource.logical_id}: code s3://{code.get('S3Bucket')}/{code.get('S3Key')} "
                                      "is not a file asset of this cloud assembly")
            code_dir = self._code_directory(resource.logical_id, asset.path)
        environment = {k: _env_str(v) for k, v in ((p.get("Environment") or {}).get("Variables") or {}).items()}
        role_arn = self._ensure_role(p["Role"]) if p.get("Role") else self._ensure_role(
            f"arn:aws:iam::{self.account_id}:role/localcloud-lambda")
        timeout = float(p.get("Timeout", 3))
        memory = int(p.get("MemorySize", 128))
        runtime = p.get("Runtime", "python3.11")
        kwargs: dict[str, Any] = {"FunctionName": name, "Role": role_arn, "Timeout": int(timeout),
                                  "MemorySize": memory, "Environment": {"Variables": environment},
                                  "Description": p.get("Description", ""), "Publish": False}
        if package_type == "Image":
            kwargs.update(PackageType="Image", Code={"ImageUri": code["ImageUri"]})
            if p.get("ImageConfig"):
                kwargs["ImageConfig"] = p["ImageConfig"]
        else:
            kwargs.update(Runtime=runtime, Handler=handler, Code={"ZipFile": DUMMY_ZIP})
        if p.get("Architectures"):
            kwargs["Architectures"] = p["Architectures"]
        arn = self.client("lambda").create_function(**kwargs)["FunctionArn"]
        extra_paths: list[str] = []
        for layer in p.get("Layers") or []:
            extra_paths += self._layers.get(layer, [])
        self.functions[resource.logical_id] = FunctionSpec(
            logical_id=resource.logical_id, name=name, arn=arn, handler=handler, code_dir=Path(code_dir),
            environment=environment, timeout=timeout, memory_size=memory, runtime=runtime, role_arn=role_arn,
            package_type=package_type, extra_paths=extra_paths, image_environment=image_env,
            reserved_concurrency=p.get("ReservedConcurrentExecutions"))
        resource.ref = name
        resource.attributes = {"Arn": arn}

    def _create_Lambda_EventSourceMapping(self, resource: Resource, p: dict) -> None:
        allowed = ("EventSourceArn", "FunctionName", "Enabled", "BatchSize", "MaximumBatchingWindowInSeconds",
                   "StartingPosition", "StartingPositionTimestamp", "BisectBatchOnFunctionError",
                   "MaximumRetryAttempts", "MaximumRecordAgeInSeconds", "DestinationConfig",
                   "FunctionResponseTypes", "ParallelizationFactor", "TumblingWindowInSeconds", "FilterCriteria",
                   "ScalingConfig")
        kwargs = {k: p[k] for k in allowed if k in p}
        if "StartingPositionTimestamp" in kwargs:
            kwargs["StartingPositionTimestamp"] = float(kwargs["StartingPositionTimestamp"])
        mapping = self.client("lambda").create_event_source_mapping(**kwargs)
        source_arn = p["EventSourceArn"]
        if ":kinesis:" in source_arn:
            mototools.detach_kinesis_mapping(source_arn)
        else:
            log.warning("%s: event source %s is registered in moto but not polled locally (Kinesis only)",
                        resource.logical_id, source_arn)
        function_name = mapping["FunctionArn"].split(":")[6]
        self.mappings.append(MappingInfo(resource.logical_id, mapping["UUID"], function_name, source_arn, dict(p)))
        resource.ref = mapping["UUID"]
        resource.attributes = {"Id": mapping["UUID"], "EventSourceMappingArn": mapping.get("EventSourceMappingArn", "")}

    # -- orchestration ------------------------------------------------------------------------------------------
    def _create_StepFunctions_StateMachine(self, resource: Resource, p: dict) -> None:
        name = self._name(resource, p, "StateMachineName")
        if "DefinitionString" in p:
            definition = p["DefinitionString"]
        elif "Definition" in p:
            definition = json.dumps(p["Definition"])
        elif "DefinitionS3Location" in p:
            location = p["DefinitionS3Location"]
            asset = self.stack.file_asset_for_key(location.get("Key", ""))
            if asset is None:
                raise LocalCloudError(f"{resource.logical_id}: DefinitionS3Location is not a file asset")
            definition = asset.path.read_text()
        else:
            raise LocalCloudError(f"{resource.logical_id}: no state machine definition")
        for key, value in (p.get("DefinitionSubstitutions") or {}).items():
            definition = definition.replace("${" + key + "}", _env_str(value))
        role_arn = p.get("RoleArn") or f"arn:aws:iam::{self.account_id}:role/localcloud-states"
        machine = self.client("stepfunctions").create_state_machine(
            name=name, definition=definition, roleArn=role_arn, type=p.get("StateMachineType", "STANDARD"))
        resource.ref = machine["stateMachineArn"]
        resource.attributes = {"Arn": machine["stateMachineArn"], "Name": name,
                               "StateMachineRevisionId": machine["stateMachineArn"]}

    def _create_Events_Rule(self, resource: Resource, p: dict) -> None:
        name = self._name(resource, p, "Name")
        kwargs: dict[str, Any] = {"Name": name, "State": p.get("State", "ENABLED")}
        if p.get("ScheduleExpression"):
            kwargs["ScheduleExpression"] = p["ScheduleExpression"]
        if p.get("EventPattern"):
            pattern = p["EventPattern"]
            kwargs["EventPattern"] = pattern if isinstance(pattern, str) else json.dumps(pattern)
        if p.get("Description"):
            kwargs["Description"] = p["Description"]
        if p.get("EventBusName") and p["EventBusName"] != "default":
            kwargs["EventBusName"] = p["EventBusName"]
        # Targets stay in the local registry: with a Lambda target on any rule, moto's PutEvents fails.
        arn = self.client("events").put_rule(**kwargs)["RuleArn"]
        self.rules.append(RuleInfo(resource.logical_id, name, arn, p.get("ScheduleExpression"), p.get("EventPattern"),
                                   p.get("State", "ENABLED") == "ENABLED", list(p.get("Targets") or [])))
        resource.ref = name
        resource.attributes = {"Arn": arn}

    # -- HTTP API -----------------------------------------------------------------------------------------------
    def _create_ApiGatewayV2_Api(self, resource: Resource, p: dict) -> None:
        name = p.get("Name") or physical_name(self.stack.stack_name, resource.logical_id, resource.type)
        protocol = p.get("ProtocolType", "HTTP")
        api = self.client("apigatewayv2").create_api(Name=name, ProtocolType=protocol)
        api_id = api["ApiId"]
        info = HttpApiInfo(resource.logical_id, api_id, name, protocol)
        self.http_apis[api_id] = info
        if p.get("Target"):  # quick create: a $default route to the target
            integration_id = f"qc{api_id}"
            info.integrations[integration_id] = IntegrationInfo(resource.logical_id, api_id, integration_id,
                                                                "AWS_PROXY", p["Target"], "2.0", 30000)
            info.routes.append(RouteInfo(resource.logical_id, api_id, p.get("RouteKey", "$default"), integration_id,
                                         "NONE"))
        resource.ref = api_id
        resource.attributes = {"ApiId": api_id, "ApiEndpoint": api.get("ApiEndpoint",
                               f"https://{api_id}.execute-api.{self.region}.amazonaws.com")}

    def _create_ApiGatewayV2_Stage(self, resource: Resource, p: dict) -> None:
        api = self.http_apis.get(p.get("ApiId", ""))
        if api is not None:
            api.stage = p.get("StageName", "$default")
        resource.ref = p.get("StageName", "$default")

    def _create_ApiGatewayV2_Integration(self, resource: Resource, p: dict) -> None:
        api_id = p["ApiId"]
        integration_id = None
        try:
            integration_id = self.client("apigatewayv2").create_integration(
                ApiId=api_id, IntegrationType=p.get("IntegrationType", "AWS_PROXY"),
                IntegrationUri=p.get("IntegrationUri", ""),
                PayloadFormatVersion=p.get("PayloadFormatVersion", "2.0"))["IntegrationId"]
        except ClientError as exc:
            log.debug("moto create_integration failed for %s: %s", resource.logical_id, exc)
        integration_id = integration_id or physical_name(self.stack.stack_name, resource.logical_id, "x")[-7:].lower()
        info = IntegrationInfo(resource.logical_id, api_id, integration_id, p.get("IntegrationType", "AWS_PROXY"),
                               p.get("IntegrationUri", ""), str(p.get("PayloadFormatVersion", "2.0")),
                               int(p.get("TimeoutInMillis", 30000)))
        if api_id in self.http_apis:
            self.http_apis[api_id].integrations[integration_id] = info
        resource.ref = integration_id
        resource.attributes = {"IntegrationId": integration_id}

    def _create_ApiGatewayV2_Route(self, resource: Resource, p: dict) -> None:
        api_id = p["ApiId"]
        target = p.get("Target", "")
        integration_id = target.split("/", 1)[1] if target.startswith("integrations/") else None
        route_id = None
        try:
            kwargs = {"ApiId": api_id, "RouteKey": p["RouteKey"], "AuthorizationType": p.get("AuthorizationType",
                                                                                              "NONE")}
            if target:
                kwargs["Target"] = target
            route_id = self.client("apigatewayv2").create_route(**kwargs)["RouteId"]
        except ClientError as exc:
            log.debug("moto create_route failed for %s: %s", resource.logical_id, exc)
        if api_id in self.http_apis:
            self.http_apis[api_id].routes.append(RouteInfo(resource.logical_id, api_id, p["RouteKey"], integration_id,
                                                           p.get("AuthorizationType", "NONE")))
        resource.ref = route_id or physical_name(self.stack.stack_name, resource.logical_id, "x")[-7:].lower()

    # -- SageMaker ----------------------------------------------------------------------------------------------
    def _sagemaker_arn(self, kind: str, name: str) -> str:
        return f"arn:aws:sagemaker:{self.region}:{self.account_id}:{kind}/{name.lower()}"

    def _create_SageMaker_Model(self, resource: Resource, p: dict) -> None:
        name = self._name(resource, p, "ModelName")
        container = p.get("PrimaryContainer") or (p.get("Containers") or [{}])[0]
        self._models[name] = container
        try:
            kwargs = {"ModelName": name, "ExecutionRoleArn": p.get("ExecutionRoleArn") or
                      f"arn:aws:iam::{self.account_id}:role/localcloud-sagemaker"}
            kwargs["PrimaryContainer"] = {k: v for k, v in container.items()
                                          if k in ("Image", "ModelDataUrl", "Environment", "Mode")}
            self.client("sagemaker").create_model(**kwargs)
        except ClientError as exc:
            log.debug("moto create_model failed for %s: %s", resource.logical_id, exc)
        resource.ref = self._sagemaker_arn("model", name)
        resource.attributes = {"ModelName": name}

    def _create_SageMaker_EndpointConfig(self, resource: Resource, p: dict) -> None:
        name = self._name(resource, p, "EndpointConfigName")
        variants = p.get("ProductionVariants") or []
        self._endpoint_configs[name] = variants
        try:
            api_variants = []
            for v in variants:
                entry = {k: v[k] for k in ("VariantName", "ModelName", "InitialInstanceCount", "InstanceType",
                                           "InitialVariantWeight", "ServerlessConfig") if k in v}
                api_variants.append(entry)
            self.client("sagemaker").create_endpoint_config(EndpointConfigName=name, ProductionVariants=api_variants)
        except ClientError as exc:
            log.debug("moto create_endpoint_config failed for %s: %s", resource.logical_id, exc)
        resource.ref = self._sagemaker_arn("endpoint-config", name)
        resource.attributes = {"EndpointConfigName": name}

    def _create_SageMaker_Endpoint(self, resource: Resource, p: dict) -> None:
        name = self._name(resource, p, "EndpointName")
        config_name = p["EndpointConfigName"]
        if config_name not in self._endpoint_configs:
            raise LocalCloudError(f"{resource.logical_id}: endpoint config {config_name} is not in the template")
        try:
            self.client("sagemaker").create_endpoint(EndpointName=name, EndpointConfigName=config_name)
        except ClientError as exc:
            log.debug("moto create_endpoint failed for %s: %s", resource.logical_id, exc)
        variants = []
        for v in self._endpoint_configs[config_name]:
            container = self._models.get(v.get("ModelName", ""))
            if container is None:
                raise LocalCloudError(f"{resource.logical_id}: model {v.get('ModelName')} is not in the template")
            variants.append(Variant(name=v.get("VariantName", "AllTraffic"),
                                    weight=float(v.get("InitialVariantWeight", 1.0)), model_name=v["ModelName"],
                                    image=str(container.get("Image", "")),
                                    model_data_url=str(container.get("ModelDataUrl", "")),
                                    environment={k: str(x) for k, x in (container.get("Environment") or {}).items()}))
        self.endpoints.append((name, config_name, variants))
        resource.ref = self._sagemaker_arn("endpoint", name)
        resource.attributes = {"EndpointName": name}

    # -- CloudWatch ---------------------------------------------------------------------------------------------
    def _create_CloudWatch_Alarm(self, resource: Resource, p: dict) -> None:
        name = self._name(resource, p, "AlarmName")
        keys = ("AlarmDescription", "ActionsEnabled", "OKActions", "AlarmActions", "InsufficientDataActions",
                "MetricName", "Namespace", "Statistic", "ExtendedStatistic", "Dimensions", "Period", "Unit",
                "EvaluationPeriods", "DatapointsToAlarm", "Threshold", "ComparisonOperator", "TreatMissingData",
                "EvaluateLowSampleCountPercentile", "Metrics", "ThresholdMetricId")
        kwargs = {k: p[k] for k in keys if k in p}
        for number in ("Period", "EvaluationPeriods", "DatapointsToAlarm"):
            if number in kwargs:
                kwargs[number] = int(kwargs[number])
        if "Threshold" in kwargs:
            kwargs["Threshold"] = float(kwargs["Threshold"])
        try:
            self.client("cloudwatch").put_metric_alarm(AlarmName=name, **kwargs)
        except ClientError as exc:  # best effort: alarms are not evaluated locally anyway
            log.debug("moto put_metric_alarm failed for %s: %s", resource.logical_id, exc)
        resource.ref = name
        resource.attributes = {"Arn": f"arn:aws:cloudwatch:{self.region}:{self.account_id}:alarm:{name}"}


# The resource types the local cloud creates, each with the method that does it; every other type is skipped with a
# note (SKIPPED_TYPES are the ones known not to matter locally: policies are checked by localcloud/iam.py from the
# roles' inline statements, log groups and dashboards need no resource in moto, ...).
PROVISIONERS: dict[str, Callable[[Deployer, Resource, dict], None]] = {
    "AWS::IAM::Role": Deployer._create_IAM_Role,
    "AWS::Kinesis::Stream": Deployer._create_Kinesis_Stream,
    "AWS::DynamoDB::Table": Deployer._create_DynamoDB_Table,
    "AWS::DynamoDB::GlobalTable": Deployer._create_DynamoDB_GlobalTable,
    "AWS::SQS::Queue": Deployer._create_SQS_Queue,
    "AWS::S3::Bucket": Deployer._create_S3_Bucket,
    "AWS::SNS::Topic": Deployer._create_SNS_Topic,
    "AWS::SSM::Parameter": Deployer._create_SSM_Parameter,
    "AWS::Lambda::LayerVersion": Deployer._create_Lambda_LayerVersion,
    "AWS::Lambda::Function": Deployer._create_Lambda_Function,
    "AWS::Lambda::EventSourceMapping": Deployer._create_Lambda_EventSourceMapping,
    "AWS::StepFunctions::StateMachine": Deployer._create_StepFunctions_StateMachine,
    "AWS::Events::Rule": Deployer._create_Events_Rule,
    "AWS::ApiGatewayV2::Api": Deployer._create_ApiGatewayV2_Api,
    "AWS::ApiGatewayV2::Stage": Deployer._create_ApiGatewayV2_Stage,
    "AWS::ApiGatewayV2::Integration": Deployer._create_ApiGatewayV2_Integration,
    "AWS::ApiGatewayV2::Route": Deployer._create_ApiGatewayV2_Route,
    "AWS::SageMaker::Model": Deployer._create_SageMaker_Model,
    "AWS::SageMaker::EndpointConfig": Deployer._create_SageMaker_EndpointConfig,
    "AWS::SageMaker::Endpoint": Deployer._create_SageMaker_Endpoint,
    "AWS::CloudWatch::Alarm": Deployer._create_CloudWatch_Alarm,
}


def _env_str(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return str(value)
