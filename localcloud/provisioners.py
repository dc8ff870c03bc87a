"""The provisioners: one function per resource type the local cloud creates (``PROVISIONERS``), called by the
deployer in dependency order with the resource's resolved properties. Each creates the resource in moto through
boto3, sets its Ref value and attributes on the ``Resource`` record and fills the deployer's registries the
emulators run from (functions, mappings, rules, HTTP APIs, endpoints; records in specs.py).
"""
from __future__ import annotations

import json
import logging
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from . import mototools
from .assembly import image_code_directory
from .errors import LocalCloudError
from .lambdahost import FunctionSpec
from .naming import physical_name
from .sagemaker import Variant
from .specs import HttpApiInfo, IntegrationInfo, MappingInfo, Resource, RouteInfo, RuleInfo

if TYPE_CHECKING:
    from .deployer import Deployer

log = logging.getLogger("localcloud.deploy")

DUMMY_ZIP = b"PK\x05\x06" + b"\0" * 18  # an empty zip archive: moto's control plane only stores it


# -- IAM ---------------------------------------------------------------------------------------------------------------
def create_IAM_Role(deployer: Deployer, resource: Resource, p: dict) -> None:
    name = deployer.resource_name(resource, p, "RoleName")
    role = deployer.client("iam").create_role(
        RoleName=name, Path=p.get("Path", "/"),
        AssumeRolePolicyDocument=json.dumps(p.get("AssumeRolePolicyDocument", {})))["Role"]
    resource.ref = name
    resource.attributes = {"Arn": role["Arn"], "RoleId": role["RoleId"]}


def _ensure_role(deployer: Deployer, role_arn: str) -> str:
    """moto's CreateFunction checks that the role exists; roles from outside the stack are created here."""
    name = role_arn.rsplit("/", 1)[-1]
    iam = deployer.client("iam")
    try:
        return iam.get_role(RoleName=name)["Role"]["Arn"]
    except ClientError:
        return iam.create_role(RoleName=name, AssumeRolePolicyDocument="{}")["Role"]["Arn"]


# -- storage and messaging ---------------------------------------------------------------------------------------------
def create_Kinesis_Stream(deployer: Deployer, resource: Resource, p: dict) -> None:
    name = deployer.resource_name(resource, p, "Name")
    kwargs: dict[str, Any] = {"StreamName": name}
    mode = (p.get("StreamModeDetails") or {}).get("StreamMode", "PROVISIONED")
    if mode == "ON_DEMAND":
        kwargs["StreamModeDetails"] = {"StreamMode": "ON_DEMAND"}
    else:
        kwargs["ShardCount"] = int(p.get("ShardCount", 1))
    kinesis = deployer.client("kinesis")
    kinesis.create_stream(**kwargs)
    summary = kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]
    resource.ref = name
    resource.attributes = {"Arn": summary["StreamARN"]}


def _table_kwargs(p: dict, global_table: bool) -> dict:
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


def _create_table(deployer: Deployer, resource: Resource, p: dict, global_table: bool) -> None:
    name = deployer.resource_name(resource, p, "TableName")
    dynamodb = deployer.client("dynamodb")
    table = dynamodb.create_table(TableName=name, **_table_kwargs(p, global_table))["TableDescription"]
    ttl = p.get("TimeToLiveSpecification")
    if ttl and ttl.get("Enabled"):
        dynamodb.update_time_to_live(TableName=name, TimeToLiveSpecification={
            "Enabled": True, "AttributeName": ttl["AttributeName"]})
    resource.ref = name
    resource.attributes = {"Arn": table["TableArn"], "StreamArn": table.get("LatestStreamArn", ""),
                           "TableId": table.get("TableId", "")}


def create_DynamoDB_Table(deployer: Deployer, resource: Resource, p: dict) -> None:
    _create_table(deployer, resource, p, global_table=False)


def create_DynamoDB_GlobalTable(deployer: Deployer, resource: Resource, p: dict) -> None:
    _create_table(deployer, resource, p, global_table=True)


def create_SQS_Queue(deployer: Deployer, resource: Resource, p: dict) -> None:
    fifo = bool(p.get("FifoQueue"))
    name = deployer.resource_name(resource, p, "QueueName", fifo=fifo)
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
    sqs = deployer.client("sqs")
    url = sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    resource.ref = url
    resource.attributes = {"Arn": arn, "QueueName": name, "QueueUrl": url}


def create_S3_Bucket(deployer: Deployer, resource: Resource, p: dict) -> None:
    name = deployer.resource_name(resource, p, "BucketName")
    s3 = deployer.client("s3")
    s3.create_bucket(Bucket=name)
    if (p.get("VersioningConfiguration") or {}).get("Status") == "Enabled":
        s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    resource.ref = name
    resource.attributes = {
        "Arn": f"arn:aws:s3:::{name}", "DomainName": f"{name}.s3.amazonaws.com",
        "RegionalDomainName": f"{name}.s3.{deployer.region}.amazonaws.com",
        "DualStackDomainName": f"{name}.s3.dualstack.{deployer.region}.amazonaws.com",
        "WebsiteURL": f"http://{name}.s3-website-{deployer.region}.amazonaws.com"}


def create_SNS_Topic(deployer: Deployer, resource: Resource, p: dict) -> None:
    name = deployer.resource_name(resource, p, "TopicName", fifo=bool(p.get("FifoTopic")))
    arn = deployer.client("sns").create_topic(Name=name)["TopicArn"]
    resource.ref = arn
    resource.attributes = {"TopicArn": arn, "TopicName": name}


def create_SSM_Parameter(deployer: Deployer, resource: Resource, p: dict) -> None:
    tail = physical_name(deployer.stack.stack_name, resource.logical_id, resource.type)[-12:]
    name = p.get("Name") or f"CFN-{resource.logical_id}-{tail}"
    deployer.client("ssm").put_parameter(Name=name, Value=str(p.get("Value", "")), Type=p.get("Type", "String"),
                                     Overwrite=True)
    resource.ref = name
    resource.attributes = {"Type": p.get("Type", "String"), "Value": str(p.get("Value", ""))}


# -- Lambda ------------------------------------------------------------------------------------------------------------
def create_Lambda_LayerVersion(deployer: Deployer, resource: Resource, p: dict) -> None:
    content = p.get("Content") or {}
    name = p.get("LayerName") or physical_name(deployer.stack.stack_name, resource.logical_id, resource.type)
    arn = f"arn:aws:lambda:{deployer.region}:{deployer.account_id}:layer:{name}:1"
    paths: list[str] = []
    asset = deployer.stack.file_asset_for_key(str(content.get("S3Key", "")))
    if asset is not None:
        directory = _code_directory(deployer, resource.logical_id, asset.path)
        paths = [str(directory / "python"), str(directory)]
    deployer.layers[arn] = paths
    resource.ref = arn
    resource.attributes = {"LayerVersionArn": arn}


def _code_directory(deployer: Deployer, logical_id: str, path: Path) -> Path:
    if path.is_dir():
        return path
    if path.suffix == ".zip" and path.is_file():
        target = deployer.work_dir / "code" / logical_id
        if not target.exists():
            with zipfile.ZipFile(path) as archive:
                archive.extractall(target)
        return target
    raise LocalCloudError(f"{logical_id}: code asset {path} is missing (run `make synth` again)")


def create_Lambda_Function(deployer: Deployer, resource: Resource, p: dict) -> None:
    name = deployer.resource_name(resource, p, "FunctionName")
    code = p.get("Code") or {}
    package_type = p.get("PackageType", "Zip")
    image_env: dict[str, str] = {}
    handler = p.get("Handler", "")
    if "ImageUri" in code:
        package_type = "Image"
        image = deployer.stack.image_asset_for_uri(code["ImageUri"])
        if image is None:
            raise LocalCloudError(f"{resource.logical_id}: image {code['ImageUri']} is not a docker image asset "
                                  "of this cloud assembly (the local cloud runs only images it finds in cdk.out)")
        code_dir, image_env, command = image_code_directory(image)
        image_config = p.get("ImageConfig") or {}
        handler = (image_config.get("Command") or command or [""])[0]
        if not handler:
            raise LocalCloudError(f"{resource.logical_id}: no handler (ImageConfig.Command or Dockerfile CMD)")
    elif "ZipFile" in code:
        code_dir = deployer.work_dir / "code" / resource.logical_id
        code_dir.mkdir(parents=True, exist_ok=True)
        (code_dir / "index.py").write_text(code["ZipFile"])
    else:
        asset = deployer.stack.file_asset_for_key(str(code.get("S3Key", "")))
        if asset is None:
            raise LocalCloudError(f"{resource.logical_id}: code s3://{code.get('S3Bucket')}/{code.get('S3Key')} "
                                  "is not a file asset of this cloud assembly")
        code_dir = _code_directory(deployer, resource.logical_id, asset.path)
    environment = {k: _env_str(v) for k, v in ((p.get("Environment") or {}).get("Variables") or {}).items()}
    role_arn = _ensure_role(deployer, p["Role"]) if p.get("Role") else _ensure_role(deployer,
        f"arn:aws:iam::{deployer.account_id}:role/localcloud-lambda")
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
    arn = deployer.client("lambda").create_function(**kwargs)["FunctionArn"]
    extra_paths: list[str] = []
    for layer in p.get("Layers") or []:
        extra_paths += deployer.layers.get(layer, [])
    deployer.functions[resource.logical_id] = FunctionSpec(
        logical_id=resource.logical_id, name=name, arn=arn, handler=handler, code_dir=Path(code_dir),
        environment=environment, timeout=timeout, memory_size=memory, runtime=runtime, role_arn=role_arn,
        package_type=package_type, extra_paths=extra_paths, image_environment=image_env,
        reserved_concurrency=p.get("ReservedConcurrentExecutions"))
    resource.ref = name
    resource.attributes = {"Arn": arn}


def create_Lambda_EventSourceMapping(deployer: Deployer, resource: Resource, p: dict) -> None:
    allowed = ("EventSourceArn", "FunctionName", "Enabled", "BatchSize", "MaximumBatchingWindowInSeconds",
               "StartingPosition", "StartingPositionTimestamp", "BisectBatchOnFunctionError",
               "MaximumRetryAttempts", "MaximumRecordAgeInSeconds", "DestinationConfig",
               "FunctionResponseTypes", "ParallelizationFactor", "TumblingWindowInSeconds", "FilterCriteria",
               "ScalingConfig")
    kwargs = {k: p[k] for k in allowed if k in p}
    if "StartingPositionTimestamp" in kwargs:
        kwargs["StartingPositionTimestamp"] = float(kwargs["StartingPositionTimestamp"])
    mapping = deployer.client("lambda").create_event_source_mapping(**kwargs)
    source_arn = p["EventSourceArn"]
    if ":kinesis:" in source_arn:
        mototools.detach_kinesis_mapping(source_arn)
    else:
        log.warning("%s: event source %s is registered in moto but not polled locally (Kinesis only)",
                    resource.logical_id, source_arn)
    function_name = mapping["FunctionArn"].split(":")[6]
    deployer.mappings.append(MappingInfo(resource.logical_id, mapping["UUID"], function_name, source_arn, dict(p)))
    resource.ref = mapping["UUID"]
    resource.attributes = {"Id": mapping["UUID"], "EventSourceMappingArn": mapping.get("EventSourceMappingArn", "")}


# -- orchestration -----------------------------------------------------------------------------------------------------
def create_StepFunctions_StateMachine(deployer: Deployer, resource: Resource, p: dict) -> None:
    name = deployer.resource_name(resource, p, "StateMachineName")
    if "DefinitionString" in p:
        definition = p["DefinitionString"]
    elif "Definition" in p:
        definition = json.dumps(p["Definition"])
    elif "DefinitionS3Location" in p:
        location = p["DefinitionS3Location"]
        asset = deployer.stack.file_asset_for_key(location.get("Key", ""))
        if asset is None:
            raise LocalCloudError(f"{resource.logical_id}: DefinitionS3Location is not a file asset")
        definition = asset.path.read_text()
    else:
        raise LocalCloudError(f"{resource.logical_id}: no state machine definition")
    for key, value in (p.get("DefinitionSubstitutions") or {}).items():
        definition = definition.replace("${" + key + "}", _env_str(value))
    role_arn = p.get("RoleArn") or f"arn:aws:iam::{deployer.account_id}:role/localcloud-states"
    machine = deployer.client("stepfunctions").create_state_machine(
        name=name, definition=definition, roleArn=role_arn, type=p.get("StateMachineType", "STANDARD"))
    resource.ref = machine["stateMachineArn"]
    resource.attributes = {"Arn": machine["stateMachineArn"], "Name": name,
                           "StateMachineRevisionId": machine["stateMachineArn"]}


def create_Events_Rule(deployer: Deployer, resource: Resource, p: dict) -> None:
    name = deployer.resource_name(resource, p, "Name")
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
    arn = deployer.client("events").put_rule(**kwargs)["RuleArn"]
    deployer.rules.append(RuleInfo(resource.logical_id, name, arn, p.get("ScheduleExpression"), p.get("EventPattern"),
                               p.get("State", "ENABLED") == "ENABLED", list(p.get("Targets") or [])))
    resource.ref = name
    resource.attributes = {"Arn": arn}


# -- HTTP API ----------------------------------------------------------------------------------------------------------
def create_ApiGatewayV2_Api(deployer: Deployer, resource: Resource, p: dict) -> None:
    name = p.get("Name") or physical_name(deployer.stack.stack_name, resource.logical_id, resource.type)
    protocol = p.get("ProtocolType", "HTTP")
    api = deployer.client("apigatewayv2").create_api(Name=name, ProtocolType=protocol)
    api_id = api["ApiId"]
    info = HttpApiInfo(resource.logical_id, api_id, name, protocol)
    deployer.http_apis[api_id] = info
    if p.get("Target"):  # quick create: a $default route to the target
        integration_id = f"qc{api_id}"
        info.integrations[integration_id] = IntegrationInfo(resource.logical_id, api_id, integration_id,
                                                            "AWS_PROXY", p["Target"], "2.0", 30000)
        info.routes.append(RouteInfo(resource.logical_id, api_id, p.get("RouteKey", "$default"), integration_id,
                                     "NONE"))
    resource.ref = api_id
    resource.attributes = {"ApiId": api_id, "ApiEndpoint": api.get("ApiEndpoint",
                           f"https://{api_id}.execute-api.{deployer.region}.amazonaws.com")}


def create_ApiGatewayV2_Stage(deployer: Deployer, resource: Resource, p: dict) -> None:
    api = deployer.http_apis.get(p.get("ApiId", ""))
    if api is not None:
        api.stage = p.get("StageName", "$default")
    resource.ref = p.get("StageName", "$default")


def create_ApiGatewayV2_Integration(deployer: Deployer, resource: Resource, p: dict) -> None:
    api_id = p["ApiId"]
    integration_id = None
    try:
        integration_id = deployer.client("apigatewayv2").create_integration(
            ApiId=api_id, IntegrationType=p.get("IntegrationType", "AWS_PROXY"),
            IntegrationUri=p.get("IntegrationUri", ""),
            PayloadFormatVersion=p.get("PayloadFormatVersion", "2.0"))["IntegrationId"]
    except ClientError as exc:
        log.debug("moto create_integration failed for %s: %s", resource.logical_id, exc)
    integration_id = integration_id or physical_name(deployer.stack.stack_name, resource.logical_id, "x")[-7:].lower()
    info = IntegrationInfo(resource.logical_id, api_id, integration_id, p.get("IntegrationType", "AWS_PROXY"),
                           p.get("IntegrationUri", ""), str(p.get("PayloadFormatVersion", "2.0")),
                           int(p.get("TimeoutInMillis", 30000)))
    if api_id in deployer.http_apis:
        deployer.http_apis[api_id].integrations[integration_id] = info
    resource.ref = integration_id
    resource.attributes = {"IntegrationId": integration_id}


def create_ApiGatewayV2_Route(deployer: Deployer, resource: Resource, p: dict) -> None:
    api_id = p["ApiId"]
    target = p.get("Target", "")
    integration_id = target.split("/", 1)[1] if target.startswith("integrations/") else None
    route_id = None
    try:
        kwargs = {"ApiId": api_id, "RouteKey": p["RouteKey"], "AuthorizationType": p.get("AuthorizationType",
                                                                                          "NONE")}
        if target:
            kwargs["Target"] = target
        route_id = deployer.client("apigatewayv2").create_route(**kwargs)["RouteId"]
    except ClientError as exc:
        log.debug("moto create_route failed for %s: %s", resource.logical_id, exc)
    if api_id in deployer.http_apis:
        deployer.http_apis[api_id].routes.append(RouteInfo(resource.logical_id, api_id, p["RouteKey"], integration_id,
                                                       p.get("AuthorizationType", "NONE")))
    resource.ref = route_id or physical_name(deployer.stack.stack_name, resource.logical_id, "x")[-7:].lower()


# -- SageMaker ---------------------------------------------------------------------------------------------------------
def _sagemaker_arn(deployer: Deployer, kind: str, name: str) -> str:
    return f"arn:aws:sagemaker:{deployer.region}:{deployer.account_id}:{kind}/{name.lower()}"


def create_SageMaker_Model(deployer: Deployer, resource: Resource, p: dict) -> None:
    name = deployer.resource_name(resource, p, "ModelName")
    container = p.get("PrimaryContainer") or (p.get("Containers") or [{}])[0]
    deployer.models[name] = container
    try:
        kwargs = {"ModelName": name, "ExecutionRoleArn": p.get("ExecutionRoleArn") or
                  f"arn:aws:iam::{deployer.account_id}:role/localcloud-sagemaker"}
        kwargs["PrimaryContainer"] = {k: v for k, v in container.items()
                                      if k in ("Image", "ModelDataUrl", "Environment", "Mode")}
        deployer.client("sagemaker").create_model(**kwargs)
    except ClientError as exc:
        log.debug("moto create_model failed for %s: %s", resource.logical_id, exc)
    resource.ref = _sagemaker_arn(deployer, "model", name)
    resource.attributes = {"ModelName": name}


def create_SageMaker_EndpointConfig(deployer: Deployer, resource: Resource, p: dict) -> None:
    name = deployer.resource_name(resource, p, "EndpointConfigName")
    variants = p.get("ProductionVariants") or []
    deployer.endpoint_configs[name] = variants
    try:
        api_variants = []
        for v in variants:
            entry = {k: v[k] for k in ("VariantName", "ModelName", "InitialInstanceCount", "InstanceType",
                                       "InitialVariantWeight", "ServerlessConfig") if k in v}
            api_variants.append(entry)
        deployer.client("sagemaker").create_endpoint_config(EndpointConfigName=name, ProductionVariants=api_variants)
    except ClientError as exc:
        log.debug("moto create_endpoint_config failed for %s: %s", resource.logical_id, exc)
    resource.ref = _sagemaker_arn(deployer, "endpoint-config", name)
    resource.attributes = {"EndpointConfigName": name}


def create_SageMaker_Endpoint(deployer: Deployer, resource: Resource, p: dict) -> None:
    name = deployer.resource_name(resource, p, "EndpointName")
    config_name = p["EndpointConfigName"]
    if config_name not in deployer.endpoint_configs:
        raise LocalCloudError(f"{resource.logical_id}: endpoint config {config_name} is not in the template")
    try:
        deployer.client("sagemaker").create_endpoint(EndpointName=name, EndpointConfigName=config_name)
    except ClientError as exc:
        log.debug("moto create_endpoint failed for %s: %s", resource.logical_id, exc)
    variants = []
    for v in deployer.endpoint_configs[config_name]:
        container = deployer.models.get(v.get("ModelName", ""))
        if container is None:
            raise LocalCloudError(f"{resource.logical_id}: model {v.get('ModelName')} is not in the template")
        variants.append(Variant(name=v.get("VariantName", "AllTraffic"),
                                weight=float(v.get("InitialVariantWeight", 1.0)), model_name=v["ModelName"],
                                image=str(container.get("Image", "")),
                                model_data_url=str(container.get("ModelDataUrl", "")),
                                environment={k: str(x) for k, x in (container.get("Environment") or {}).items()}))
    deployer.endpoints.append((name, config_name, variants))
    resource.ref = _sagemaker_arn(deployer, "endpoint", name)
    resource.attributes = {"EndpointName": name}


# -- CloudWatch --------------------------------------------------------------------------------------------------------
def create_CloudWatch_Alarm(deployer: Deployer, resource: Resource, p: dict) -> None:
    name = deployer.resource_name(resource, p, "AlarmName")
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
        deployer.client("cloudwatch").put_metric_alarm(AlarmName=name, **kwargs)
    except ClientError as exc:  # best effort: alarms are not evaluated locally anyway
        log.debug("moto put_metric_alarm failed for %s: %s", resource.logical_id, exc)
    resource.ref = name
    resource.attributes = {"Arn": f"arn:aws:cloudwatch:{deployer.region}:{deployer.account_id}:alarm:{name}"}


# The resource types the local cloud creates, each with the function that does it; every other type is skipped with a
# note (deployer.SKIPPED_TYPES are the ones known not to matter locally: policies are checked by localcloud/iam.py
# from the roles' inline statements, log groups and dashboards need no resource in moto, ...).
PROVISIONERS: dict[str, Callable[[Deployer, Resource, dict], None]] = {
    "AWS::IAM::Role": create_IAM_Role,
    "AWS::Kinesis::Stream": create_Kinesis_Stream,
    "AWS::DynamoDB::Table": create_DynamoDB_Table,
    "AWS::DynamoDB::GlobalTable": create_DynamoDB_GlobalTable,
    "AWS::SQS::Queue": create_SQS_Queue,
    "AWS::S3::Bucket": create_S3_Bucket,
    "AWS::SNS::Topic": create_SNS_Topic,
    "AWS::SSM::Parameter": create_SSM_Parameter,
    "AWS::Lambda::LayerVersion": create_Lambda_LayerVersion,
    "AWS::Lambda::Function": create_Lambda_Function,
    "AWS::Lambda::EventSourceMapping": create_Lambda_EventSourceMapping,
    "AWS::StepFunctions::StateMachine": create_StepFunctions_StateMachine,
    "AWS::Events::Rule": create_Events_Rule,
    "AWS::ApiGatewayV2::Api": create_ApiGatewayV2_Api,
    "AWS::ApiGatewayV2::Stage": create_ApiGatewayV2_Stage,
    "AWS::ApiGatewayV2::Integration": create_ApiGatewayV2_Integration,
    "AWS::ApiGatewayV2::Route": create_ApiGatewayV2_Route,
    "AWS::SageMaker::Model": create_SageMaker_Model,
    "AWS::SageMaker::EndpointConfig": create_SageMaker_EndpointConfig,
    "AWS::SageMaker::Endpoint": create_SageMaker_Endpoint,
    "AWS::CloudWatch::Alarm": create_CloudWatch_Alarm,
}


def _env_str(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return str(value)
