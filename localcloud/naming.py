"""CloudFormation-like physical names: ``<StackName>-<LogicalId>-<SUFFIX>``.

The suffix is derived from the stack name and logical id, so the same template always gets the same names.
Each service's length limit and character set is respected (S3 lower-cases, SageMaker allows no underscores).
"""
from __future__ import annotations

import hashlib
import re

_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"

# resource type -> (max length, characters NOT allowed, lower-case)
_RULES: dict[str, tuple[int, str, bool]] = {
    "AWS::Lambda::Function": (64, r"[^A-Za-z0-9_-]", False),
    "AWS::SQS::Queue": (80, r"[^A-Za-z0-9_-]", False),
    "AWS::Kinesis::Stream": (128, r"[^A-Za-z0-9_.-]", False),
    "AWS::DynamoDB::Table": (255, r"[^A-Za-z0-9_.-]", False),
    "AWS::DynamoDB::GlobalTable": (255, r"[^A-Za-z0-9_.-]", False),
    "AWS::S3::Bucket": (63, r"[^a-z0-9-]", True),
    "AWS::StepFunctions::StateMachine": (80, r"[^A-Za-z0-9_-]", False),
    "AWS::SageMaker::Model": (63, r"[^A-Za-z0-9-]", False),
    "AWS::SageMaker::EndpointConfig": (63, r"[^A-Za-z0-9-]", False),
    "AWS::SageMaker::Endpoint": (63, r"[^A-Za-z0-9-]", False),
    "AWS::Events::Rule": (64, r"[^A-Za-z0-9_.-]", False),
    "AWS::IAM::Role": (64, r"[^A-Za-z0-9_+=,.@-]", False),
    "AWS::CloudWatch::Alarm": (255, r"[^A-Za-z0-9_.-]", False),
    "AWS::SNS::Topic": (256, r"[^A-Za-z0-9_-]", False),
    "AWS::SSM::Parameter": (1011, r"[^A-Za-z0-9_.-]", False),
    "AWS::Logs::LogGroup": (512, r"[^A-Za-z0-9_./#-]", False),
    "AWS::ApiGatewayV2::Api": (128, r"[^A-Za-z0-9_.-]", False),
}
_DEFAULT_RULE = (64, r"[^A-Za-z0-9_-]", False)


def suffix(stack_name: str, logical_id: str, length: int = 12) -> str:
    digest = hashlib.sha256(f"{stack_name}/{logical_id}".encode()).digest()
    number = int.from_bytes(digest, "big")
    chars = []
    for _ in range(length):
        number, index = divmod(number, len(_ALPHABET))
        chars.append(_ALPHABET[index])
    return "".join(chars)


def physical_name(stack_name: str, logical_id: str, resource_type: str, *, fifo: bool = False) -> str:
    max_length, disallowed, lower = _RULES.get(resource_type, _DEFAULT_RULE)
    tail = suffix(stack_name, logical_id)
    ending = ".fifo" if fifo else ""
    stack_part = re.sub(disallowed, "", stack_name.lower() if lower else stack_name)
    logical_part = re.sub(disallowed, "", logical_id.lower() if lower else logical_id)
    tail = tail.lower() if lower else tail
    budget = max_length - len(tail) - len(ending) - 2
    if len(stack_part) + len(logical_part) > budget:
        # keep the logical id readable first (it names the resource), then what is left of the stack name
        logical_part = logical_part[:max(budget * 2 // 3, budget - len(stack_part))]
        stack_part = stack_part[:max(budget - len(logical_part), 1)]
    name = f"{stack_part}-{logical_part}-{tail}{ending}"
    return name[:max_length]
