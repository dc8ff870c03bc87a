"""cdk-nag (AwsSolutions pack) acknowledgements, each with the specific reason the finding is accepted.

cdk-nag 3.x runs as a CDK policy-validation plugin
(app.py: ``Validations.of(app).add_plugins(AwsSolutionsChecks(app))``) and fails synthesis on any unacknowledged
finding. Acknowledgements are per finding: wildcard findings name the
exact resource (``AwsSolutions-IAM5[Resource::...]``), so a new wildcard in a policy fails synthesis until it is
reviewed here. ``acknowledge_stack`` returns what it acknowledged (kept as ``stack.acknowledgements``), so tests can
check that every acknowledgement still matches a real finding.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

from aws_cdk import Acknowledgment, CfnElement, Stack, Validations
from constructs import IConstruct

if TYPE_CHECKING:
    from .stack import RealtimeInferenceStack


@dataclass(frozen=True)
class Ack:
    path: str          # construct path the acknowledgement is attached to
    rule: str          # e.g. "AwsSolutions-L1" or "AwsSolutions-IAM5[Resource::*]"
    reason: str


XRAY = ("X-Ray tracing (Tracing.ACTIVE): xray:PutTraceSegments and xray:PutTelemetryRecords do not support "
        "resource-level permissions, so their statement must use Resource '*'")


class _Acknowledger:
    def __init__(self) -> None:
        self.acks: list[Ack] = []

    def __call__(self, construct: IConstruct, rule: str, reason: str) -> None:
        Validations.of(construct).acknowledge(Acknowledgment(id=rule, reason=reason))
        self.acks.append(Ack(construct.node.path, rule, reason))


def _arn_token(stack: Stack, construct: IConstruct) -> str:
    """How cdk-nag renders Fn::GetAtt [<logical id>, Arn] in a finding id."""
    logical_id = stack.resolve(stack.get_logical_id(cast(CfnElement, construct.node.default_child)))
    return f"<{logical_id}.Arn>"


def acknowledge_stack(stack: "RealtimeInferenceStack") -> list[Ack]:
    acknowledge = _Acknowledger()
    _lambda_runtime(stack, acknowledge)
    _function_roles(stack, acknowledge)
    _artifact_prefixes(stack, acknowledge)
    _model_role(stack, acknowledge)
    _state_machine(stack, acknowledge)
    _dead_letter_queues(stack, acknowledge)
    return acknowledge.acks


def _lambda_runtime(stack: "RealtimeInferenceStack", acknowledge: _Acknowledger) -> None:
    # Lambda: python3.12, pinned with the ML image and the Powertools layer (infra/runtime.py).
    for function_id in ("ApiFunction", "ProcessStreamFunction", "InvokeModelFunction", "StorePredictionsFunction",
                        "RecordCostFunction"):
        acknowledge(stack.functions[function_id], "AwsSolutions-L1",
                    "python3.12 (Amazon Linux 2023, supported by Lambda until 2028) on purpose: the runtime, the "
                    "ML container image (public.ecr.aws/lambda/python:3.12), the public Powertools layer "
                    "(AWSLambdaPowertoolsPythonV3-python312-x86_64 of the pinned release) and the PyTorch serving "
                    "image (py312) are pinned together in infra/runtime.py, and tests/infra checks that every ML "
                    "requirement has a binary wheel for that Python; moving to a newer runtime is a deliberate "
                    "upgrade of all of them at once")


def _function_roles(stack: "RealtimeInferenceStack", acknowledge: _Acknowledger) -> None:
    # IAM5 Resource::* on the function roles: X-Ray only (everything else is scoped to a resource ARN).
    for function_id, role in stack.roles.items():
        reason = f"{function_id}: {XRAY}"
        if function_id == "MonitorDriftFunction":
            reason += (". Also cloudwatch:PutMetricData (the drift metrics AlarmFeatureDrift watches): it has no "
                       "resource-level permissions; the statement is limited to the stack's metrics namespace by "
                       "the cloudwatch:namespace condition key")
        acknowledge(role, "AwsSolutions-IAM5[Resource::*]", reason)


def _artifact_prefixes(stack: "RealtimeInferenceStack", acknowledge: _Acknowledger) -> None:
    """IAM5 on the prefixes of the artifacts bucket whose keys are known only at run time."""
    bucket = _arn_token(stack, stack.artifacts_bucket)
    journals = ("every batch's journal (each record's outcome and features: the execution input of a large batch, "
                "what a redelivered record is scored from, the drift sample) is an object under journal/<hour>/"
                "<shard>/<batch id>.json; large batches without a journal go under batches/<batch id>.json, and large "
                "predictions under predictions/<batch id>.json: keys known only at run time; each wildcard is limited "
                "to its prefix of the stack's own artifacts bucket")
    for function_id, prefix, what in (
            ("ProcessStreamFunction", "batches", "s3:PutObject and s3:GetObject only."),
            ("ProcessStreamFunction", "journal", "s3:PutObject and s3:GetObject (a redelivered record reads its "
                                                 "batch's journal) only."),
            ("InvokeModelFunction", "batches", "s3:GetObject only."),
            ("InvokeModelFunction", "journal", "s3:GetObject only."),
            ("InvokeModelFunction", "predictions", "s3:PutObject only (predictions over 200 KB leave the state "
                                                   "through S3)."),
            ("StorePredictionsFunction", "predictions", "s3:GetObject only."),
            ("MonitorDriftFunction", "journal", "s3:GetObject only: the drift sample reads recent batch journals.")):
        acknowledge(stack.roles[function_id], f"AwsSolutions-IAM5[Resource::{bucket}/{prefix}/*]", f"{what} {journals}")
    promoted = ("promoted model versions are uploaded by scripts/promote.py to models/<version>/model.tar.gz, "
                "keys known only when a version is promoted; the wildcard is limited to that prefix of the stack's "
                "own artifacts bucket")
    acknowledge(stack.roles["MonitorDriftFunction"], f"AwsSolutions-IAM5[Resource::{bucket}/models/*]",
                f"s3:GetObject only: the drift baseline travels inside the live model's artifact, and {promoted}")
    acknowledge(stack.model_role, f"AwsSolutions-IAM5[Resource::{bucket}/models/*]",
                f"s3:GetObject only: SageMaker loads the model a promoted endpoint config names; {promoted}")
    if stack.config.endpoint.mode == "instance" and stack.config.endpoint.data_capture_percent:
        acknowledge(stack.model_role, f"AwsSolutions-IAM5[Resource::{bucket}/datacapture/*]",
                    "s3:PutObject only: SageMaker data capture (endpoint.dataCapturePercent) writes captured requests "
                    "and responses under datacapture/<endpoint>/<variant>/<date>/, keys chosen by SageMaker at run "
                    "time; the wildcard is limited to that prefix of the stack's own artifacts bucket")
    acknowledge(stack.roles["RetrainBatchSizeFunction"], f"AwsSolutions-IAM5[Resource::{bucket}/optimizer/*]",
                "s3:PutObject only: each retrain writes its fitted optimizer models to optimizer/<timestamp>.pkl, "
                "a key known only at run time; the wildcard is limited to that prefix of the artifacts bucket")


def _model_role(stack: "RealtimeInferenceStack", acknowledge: _Acknowledger) -> None:
    # SageMaker execution role.
    acknowledge(stack.model_role, "AwsSolutions-IAM5[Resource::*]",
                "ecr:GetAuthorizationToken only: it is an account-level ECR call without resource-level "
                "permissions. The image pull itself (BatchGetImage, GetDownloadUrlForLayer, "
                "BatchCheckLayerAvailability) is limited to the regional repositories of the deployed model kinds "
                "(sagemaker-xgboost, pytorch-inference)")
    acknowledge(stack.model_role,
                "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:logs:<AWS::Region>:<AWS::AccountId>:log-group:"
                "/aws/sagemaker/Endpoints/*]",
                "SageMaker writes the endpoint container's logs to /aws/sagemaker/Endpoints/<endpoint name>; the "
                "endpoint name is generated by CloudFormation when the endpoint is created (no fixed physical "
                "names, so stacks can coexist), so the log group is limited to the SageMaker endpoint log prefix")


def _state_machine(stack: "RealtimeInferenceStack", acknowledge: _Acknowledger) -> None:
    # Step Functions.
    state_machine = stack.state_machine
    acknowledge(state_machine.role, "AwsSolutions-IAM5[Resource::*]",
                "Generated by CDK for the state machine's logging and tracing: the CloudWatch Logs vended-delivery "
                "actions (logs:CreateLogDelivery, GetLogDelivery, UpdateLogDelivery, DeleteLogDelivery, "
                "ListLogDeliveries, PutResourcePolicy, DescribeResourcePolicies, DescribeLogGroups) and the X-Ray "
                "actions do not support resource-level permissions. Its task permissions (lambda:InvokeFunction on "
                "the three task functions, sqs:SendMessage on the quarantine queue) are resource-scoped")
    acknowledge(state_machine, "AwsSolutions-SF1",
                "Express workflow started once per Kinesis batch: logging ALL events would write every state "
                "transition of every batch (cost and volume grow with traffic). Level ERROR records every failed "
                "execution; each failed batch is also kept whole, with its error, in QuarantineQueue (alarmed), "
                "and X-Ray tracing is on for per-execution timing")


def _dead_letter_queues(stack: "RealtimeInferenceStack", acknowledge: _Acknowledger) -> None:
    # SQS: the two queues are themselves the end of the failure paths.
    acknowledge(stack.stream_dlq, "AwsSolutions-SQS3",
                "StreamDlq is the dead-letter destination itself (the Kinesis event source mapping's on-failure "
                "destination; it holds record pointers, not messages consumed by a worker). Operators inspect and "
                "replay it by hand; a DLQ of this DLQ would add nothing. AlarmStreamDlqDepth fires on any message")
    acknowledge(stack.quarantine_queue, "AwsSolutions-SQS3",
                "QuarantineQueue is the dead-letter destination itself (the state machine's Catch sends failed "
                "batches here with their error; no worker consumes it). Operators inspect and redrive it by hand; a "
                "DLQ of this DLQ would add nothing. AlarmQuarantineDepth fires on any message")
