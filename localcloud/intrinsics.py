"""CloudFormation intrinsic functions, pseudo parameters, parameters and conditions.

``Resolver.resolve`` turns template values into plain JSON values. Resource references are answered by the
``ref`` and ``get_att`` callbacks (the deployer's registry of created resources), so the resolver itself holds no
wiring. ``references`` lists the logical ids a value depends on (for the creation order).
"""
from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable
from typing import Any

from .errors import LocalCloudError


class _NoValue:
    def __repr__(self) -> str:
        return "AWS::NoValue"


NO_VALUE = _NoValue()
SUB_PATTERN = re.compile(r"\$\{([^}]*)\}")


class TemplateError(LocalCloudError):
    """The template uses something the resolver cannot evaluate."""


def is_intrinsic(value: Any) -> bool:
    return isinstance(value, dict) and len(value) == 1 and (
        next(iter(value)) == "Ref" or next(iter(value)).startswith("Fn::"))


def pseudo_parameters(region: str, account_id: str, stack_name: str, partition: str = "aws",
                      url_suffix: str = "amazonaws.com") -> dict[str, Any]:
    stack_id = (f"arn:{partition}:cloudformation:{region}:{account_id}:stack/{stack_name}/"
                "00000000-0000-4000-8000-000000000000")
    return {"AWS::Region": region, "AWS::AccountId": account_id, "AWS::Partition": partition,
            "AWS::URLSuffix": url_suffix, "AWS::StackName": stack_name, "AWS::StackId": stack_id,
            "AWS::NotificationARNs": [], "AWS::NoValue": NO_VALUE}


def _sub_variables(text: str) -> list[str]:
    return [m.group(1) for m in SUB_PATTERN.finditer(text) if not m.group(1).startswith("!")]


def references(value: Any, resource_ids: set[str] | frozenset[str]) -> set[str]:
    """Logical ids of resources that ``value`` refers to through Ref, Fn::GetAtt or Fn::Sub."""
    found: set[str] = set()

    def walk(v: Any, local: frozenset[str] = frozenset()) -> None:
        if isinstance(v, dict):
            if len(v) == 1:
                key, arg = next(iter(v.items()))
                if key == "Ref" and isinstance(arg, str):
                    if arg in resource_ids:
                        found.add(arg)
                    return
                if key == "Fn::GetAtt":
                    name = arg[0] if isinstance(arg, list) else str(arg).split(".", 1)[0]
                    if name in resource_ids:
                        found.add(name)
                    if isinstance(arg, list):
                        walk(arg[1:], local)
                    return
                if key == "Fn::Sub":
                    text, variables = (arg, {}) if isinstance(arg, str) else (arg[0], arg[1] if len(arg) > 1 else {})
                    walk(variables, local)
                    for name in _sub_variables(text):
                        base = name.split(".", 1)[0]
                        if name not in variables and base in resource_ids:
                            found.add(base)
                    return
            for item in v.values():
                walk(item, local)
        elif isinstance(v, list):
            for item in v:
                walk(item, local)

    walk(value)
    return found


class Resolver:
    def __init__(self, *, pseudo: dict[str, Any], parameters: dict[str, Any] | None = None,
                 conditions: dict[str, Any] | None = None, mappings: dict[str, Any] | None = None,
                 ref: Callable[[str], Any] | None = None, get_att: Callable[[str, str], Any] | None = None):
        self.pseudo = pseudo
        self.parameters = parameters or {}
        self.conditions = conditions or {}
        self.mappings = mappings or {}
        self._ref = ref
        self._get_att = get_att
        self._condition_cache: dict[str, bool] = {}

    # -- entry points -------------------------------------------------------------------------------------------
    def resolve(self, value: Any) -> Any:
        result = self._resolve(value)
        return None if result is NO_VALUE else result

    def condition(self, name: str) -> bool:
        if name not in self._condition_cache:
            if name not in self.conditions:
                raise TemplateError(f"unknown condition {name!r}")
            self._condition_cache[name] = bool(self._condition_value(self.conditions[name]))
        return self._condition_cache[name]

    # -- internals ----------------------------------------------------------------------------------------------
    def _resolve(self, value: Any) -> Any:
        if isinstance(value, dict):
            if is_intrinsic(value):
                key, arg = next(iter(value.items()))
                return self._intrinsic(key, arg)
            out = {}
            for k, v in value.items():
                r = self._resolve(v)
                if r is not NO_VALUE:
                    out[k] = r
            return out
        if isinstance(value, list):
            return [r for r in (self._resolve(v) for v in value) if r is not NO_VALUE]
        return value

    def ref(self, name: str) -> Any:
        if name in self.pseudo:
            return self.pseudo[name]
        if name in self.parameters:
            return self.parameters[name]
        if self._ref is None:
            raise TemplateError(f"Ref {name!r}: no resource registry")
        return self._ref(name)

    def get_att(self, name: str, attribute: str) -> Any:
        if self._get_att is None:
            raise TemplateError(f"Fn::GetAtt {name}.{attribute}: no resource registry")
        return self._get_att(name, attribute)

    def _intrinsic(self, key: str, arg: Any) -> Any:
        if key == "Ref":
            return self.ref(arg)
        if key == "Fn::GetAtt":
            if isinstance(arg, str):
                name, attribute = arg.split(".", 1)
            else:
                name, attribute = arg[0], self._resolve(arg[1])
            return self.get_att(name, attribute)
        if key == "Fn::Join":
            delimiter, items = arg
            items = self._resolve(items)
            if not isinstance(items, list):
                raise TemplateError(f"Fn::Join needs a list, got {items!r}")
            return self._resolve(delimiter).join(_to_str(i) for i in items)
        if key == "Fn::Sub":
            return self._sub(arg)
        if key == "Fn::Select":
            index, items = self._resolve(arg[0]), self._resolve(arg[1])
            return items[int(index)]
        if key == "Fn::Split":
            delimiter, text = self._resolve(arg[0]), self._resolve(arg[1])
            return text.split(delimiter)
        if key == "Fn::If":
            name, when_true, when_false = arg
            return self._resolve(when_true if self.condition(name) else when_false)
        if key in ("Fn::Equals", "Fn::And", "Fn::Or", "Fn::Not", "Fn::Contains"):
            return self._condition_value({key: arg})
        if key == "Fn::FindInMap":
            resolved = [self._resolve(a) for a in arg]
            map_name, top, second = resolved[:3]
            try:
                return self.mappings[map_name][top][second]
            except KeyError:
                if len(resolved) > 3 and isinstance(resolved[3], dict) and "DefaultValue" in resolved[3]:
                    return resolved[3]["DefaultValue"]
                raise TemplateError(f"Fn::FindInMap {map_name}/{top}/{second}: no such entry") from None
        if key == "Fn::Base64":
            return base64.b64encode(_to_str(self._resolve(arg)).encode()).decode()
        if key == "Fn::GetAZs":
            region = self._resolve(arg) or self.pseudo["AWS::Region"]
            return [f"{region}{zone}" for zone in "abcdef"]
        if key == "Fn::ToJsonString":
            return json.dumps(self._resolve(arg), separators=(",", ":"))
        if key == "Fn::Length":
            return len(self._resolve(arg))
        if key == "Fn::ImportValue":
            raise TemplateError("Fn::ImportValue (cross-stack references) is not supported by the local cloud")
        raise TemplateError(f"unsupported intrinsic function {key}")

    def _sub(self, arg: Any) -> str:
        if isinstance(arg, str):
            text, variables = arg, {}
        else:
            text = arg[0]
            variables = {k: self._resolve(v) for k, v in (arg[1] if len(arg) > 1 else {}).items()}

        def replace(match: re.Match) -> str:
            name = match.group(1)
            if name.startswith("!"):
                return "${" + name[1:] + "}"
            if name in variables:
                return _to_str(variables[name])
            if name in self.pseudo or name in self.parameters:
                return _to_str(self.ref(name))
            if "." in name:
                logical, attribute = name.split(".", 1)
                return _to_str(self.get_att(logical, attribute))
            return _to_str(self.ref(name))

        return SUB_PATTERN.sub(replace, text)

    def _condition_value(self, value: Any) -> Any:
        if isinstance(value, dict) and len(value) == 1:
            key, arg = next(iter(value.items()))
            if key == "Condition":
                return self.condition(arg)
            if key == "Fn::Equals":
                a, b = (self._condition_value(x) for x in arg)
                return _to_str(a) == _to_str(b)
            if key == "Fn::And":
                return all(self._condition_value(x) for x in arg)
            if key == "Fn::Or":
                return any(self._condition_value(x) for x in arg)
            if key == "Fn::Not":
                return not self._condition_value(arg[0])
            if key == "Fn::Contains":
                items, item = self._resolve(arg[0]), self._condition_value(arg[1])
                return _to_str(item) in [_to_str(i) for i in items]
        return self._resolve(value)


def _to_str(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"))
    return str(value)
