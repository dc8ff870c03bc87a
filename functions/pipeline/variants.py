"""A/B assignment: each user is served by one variant, chosen deterministically (sticky) from a hash of the user id
and the variants' weights. The variant names its endpoint: in instance mode every variant is a production variant of
one endpoint and the request carries TargetVariant; in serverless mode (one production variant per serverless
endpoint) each variant has its own endpoint and the assignment chooses the endpoint (``targets``).

The variants come from the stack (env MODEL_VARIANTS, JSON [{name, weight, kind, model_version, endpoint}],
docs/wiring.md); a promotion (scripts/promote.py) records the live variants in STATE_TABLE item "model", which then
takes precedence, so predictions carry the model version that actually scored them.

Assignment: u = first 8 bytes of SHA-256(user_id) as an integer / 2**64, uniform on [0, 1); the user gets the
variant whose slice of the cumulative normalized weights contains u. The same user always lands on the same
variant while the weights stay; changing a weight moves only the users whose u falls in the moved boundary.
"""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass

from . import store


@dataclass(frozen=True)
class VariantSpec:
    name: str
    weight: float
    kind: str = "xgboost"
    model_version: str = ""
    model_data_url: str = ""
    endpoint: str = ""               # the SageMaker endpoint serving this variant ("" = SAGEMAKER_ENDPOINT_NAME)


def parse(raw: str | list | None, default_version: str = "") -> list[VariantSpec]:
    """MODEL_VARIANTS (JSON text or a list of dicts) -> variants; an empty value gives []. A weight must be a
    finite number >= 0 (the stack's config checks the same at synth; this guards a hand-edited "model" item)."""
    if not raw:
        return []
    items = json.loads(raw) if isinstance(raw, str) else raw
    specs = [VariantSpec(name=str(i["name"]), weight=float(i.get("weight", 1.0)), kind=str(i.get("kind", "xgboost")),
                         model_version=str(i.get("model_version") or default_version),
                         model_data_url=str(i.get("model_data_url") or ""), endpoint=str(i.get("endpoint") or ""))
             for i in items]
    for spec in specs:
        if not (math.isfinite(spec.weight) and spec.weight >= 0):
            raise ValueError(f"variant {spec.name!r}: weight must be a finite number >= 0, got {spec.weight}")
    return specs


def user_point(user_id: str) -> float:
    """The user's fixed point on [0, 1)."""
    return int.from_bytes(hashlib.sha256(user_id.encode("utf-8")).digest()[:8], "big") / 2.0 ** 64


def assign(user_id: str, variants: list[VariantSpec]) -> VariantSpec:
    """The variant serving ``user_id`` (variants with weight 0 get nobody, unless all weights are 0). Weights are
    finite and >= 0 (``parse`` checks)."""
    if not variants:
        raise ValueError("no variants to assign")
    weights = [v.weight for v in variants]
    if sum(weights) <= 0:
        weights = [1.0] * len(variants)
    point = user_point(user_id) * sum(weights)
    cumulative = 0.0
    for variant, weight in zip(variants, weights, strict=True):
        cumulative += weight
        if point < cumulative and weight > 0:
            return variant
    # past every slice: the top 2**10 of the 2**64 hash values round to a point of exactly 1.0 (a float has 53 bits)
    return next(v for v, w in zip(reversed(variants), reversed(weights), strict=True) if w > 0)


@dataclass(frozen=True)
class Target:
    """Where a variant's requests go: the endpoint, and TargetVariant when that endpoint hosts other variants too."""
    endpoint: str
    target_variant: str | None


def targets(live: list[VariantSpec], default_endpoint: str) -> dict[str, Target]:
    """variant name -> Target. A variant alone on its endpoint (serverless mode, or a single variant) needs no
    TargetVariant; variants sharing an endpoint (instance mode) are addressed by name."""
    sharing: dict[str, int] = {}
    for variant in live:
        endpoint = variant.endpoint or default_endpoint
        sharing[endpoint] = sharing.get(endpoint, 0) + 1
    return {v.name: Target(v.endpoint or default_endpoint,
                           v.name if sharing[v.endpoint or default_endpoint] > 1 else None) for v in live}


def live_variants(settings) -> list[VariantSpec]:
    """The endpoint's variants: STATE_TABLE "model" (written by promotions) if present, else the stack's."""
    item = store.get_item(settings.state_table, {"pk": "model"}) if settings.state_table else None
    if item and item.get("variants"):
        return parse(item["variants"], settings.model_version)
    return parse(settings.model_variants, settings.model_version)
