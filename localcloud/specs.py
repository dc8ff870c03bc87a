"""What the deployer reads from the template and the runtime emulators run from: one record per created resource
(``Resource``) and the registries of Kinesis event source mappings, schedules and HTTP APIs.

Plain data, no behaviour: the emulators (kinesis.py, schedules.py, httpapi.py) import these, not the deployer,
which fills them (deployer.py). Lambda functions and SageMaker variants have theirs next to the emulator that runs
them (``lambdahost.FunctionSpec``, ``sagemaker.Variant``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Resource:
    logical_id: str
    type: str
    definition: dict
    status: str = "pending"            # created | skipped | disabled (condition false)
    ref: Any = None
    attributes: dict[str, Any] = field(default_factory=dict)
    note: str = ""


@dataclass
class MappingInfo:
    logical_id: str
    uuid: str
    function_name: str
    event_source_arn: str
    properties: dict[str, Any]         # resolved template properties (what moto may not keep)


@dataclass
class RuleInfo:
    logical_id: str
    name: str
    arn: str
    schedule: str | None
    event_pattern: Any
    enabled: bool
    targets: list[dict]


@dataclass
class RouteInfo:
    logical_id: str
    api_id: str
    route_key: str
    integration_id: str | None
    authorization_type: str


@dataclass
class IntegrationInfo:
    logical_id: str
    api_id: str
    integration_id: str
    integration_type: str
    uri: str
    payload_format_version: str
    timeout_ms: int


@dataclass
class HttpApiInfo:
    logical_id: str
    api_id: str
    name: str
    protocol: str
    stage: str = "$default"
    routes: list[RouteInfo] = field(default_factory=list)
    integrations: dict[str, IntegrationInfo] = field(default_factory=dict)
