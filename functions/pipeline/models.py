"""The model registry as the API and scripts/promote.py show it: registered versions (the manifest that
model/registry.py keeps in the artifacts bucket) and which of them the endpoint serves now (the live variants:
STATE_TABLE "model" after a promotion, else the stack's MODEL_VARIANTS)."""
from __future__ import annotations

from datetime import datetime, timezone

from . import aws, store, variants

MANIFEST_KEY = "models/manifest.json"   # model/registry.py writes it


def live_view(settings) -> dict:
    """The variants serving now, and whether a promotion or the stack's deploy put them there."""
    item = store.get_item(settings.state_table, {"pk": "model"}) if settings.state_table else None
    promoted = bool(item and item.get("variants"))
    return {"source": "promotion" if promoted else "stack",
            "updated_at": _iso(item.get("updated_at")) if item and promoted else None,
            "variants": [{"name": v.name, "weight": v.weight, "kind": v.kind, "model_version": v.model_version,
                          "endpoint": v.endpoint or settings.endpoint_name} for v in variants.live_variants(settings)]}


def version_rows(manifest: dict, live: list[dict]) -> list[dict]:
    """One row per version, oldest first: kind, feature set, metrics, created time, the variants serving it. A live
    version the manifest does not hold (the stack deployed it from its own asset) is listed as from the stack."""
    serving: dict[str, list[str]] = {}
    for variant in live:
        serving.setdefault(str(variant["model_version"]), []).append(str(variant["name"]))
    rows = [{"version": version, "kind": entry.get("kind"), "feature_set": entry.get("feature_set"),
             "metrics": entry.get("metrics") or {}, "created_at": _iso(entry.get("created_at")),
             "sha256": entry.get("sha256"), "size": entry.get("size"), "source": "registry",
             "live": version in serving, "variants": serving.get(version, [])}
            for version, entry in (manifest.get("versions") or {}).items()]
    rows.sort(key=lambda r: r["created_at"] or "")
    known = {r["version"] for r in rows}
    for variant in live:
        version = str(variant["model_version"])
        if version not in known:
            known.add(version)
            rows.append({"version": version, "kind": variant.get("kind"), "feature_set": None, "metrics": {},
                         "created_at": None, "sha256": None, "size": None, "source": "stack", "live": True,
                         "variants": serving[version]})
    return rows


def registered(settings) -> dict:
    """GET /models."""
    manifest = aws.get_json(settings.artifacts_bucket, MANIFEST_KEY, missing_ok=True) or {}
    live = live_view(settings)
    return {"versions": version_rows(manifest, live["variants"]), "live": live}


def _iso(epoch) -> str | None:
    if epoch in (None, ""):
        return None
    return datetime.fromtimestamp(float(epoch), tz=timezone.utc).isoformat(timespec="seconds")
