"""The STATE_TABLE "config" item, read once into a typed object: the batch settings in force (what the optimizer
last applied, else what the stack deployed) and the optimizer's last decision, guard-rail state and history. Written
by pipeline/optimizer/apply.py ``retrain_and_apply``; read by invoke_model (chunk size), record_cost (settings in
force), the optimizer itself and the API (GET /model/status, /stats, /batches/recent).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from . import store
from .settings import Settings

KEY = {"pk": "config"}


@dataclass(frozen=True)
class BatchConfig:
    applied: bool                 # the optimizer has written the item (False: the deployed settings hold)
    batch_size: int
    batching_window_seconds: int
    invoke_chunk_size: int
    optimizer: dict[str, Any] | None = None                       # the last decision, as the API shows it
    optimizer_state: dict[str, Any] = field(default_factory=dict)  # last change, its evaluation, rollbacks
    history: list[dict[str, Any]] = field(default_factory=list)    # the last decisions over time

    @classmethod
    def from_item(cls, item: dict | None, settings: Settings) -> "BatchConfig":
        item = item or {}
        return cls(
            applied=bool(item),
            batch_size=int(item.get("batch_size") or settings.batch_size),
            batching_window_seconds=int(item.get("batching_window_seconds", settings.batching_window_seconds)),
            invoke_chunk_size=int(item.get("invoke_chunk_size") or settings.invoke_chunk_size),
            optimizer=item.get("optimizer"), optimizer_state=dict(item.get("optimizer_state") or {}),
            history=list(item.get("history") or []))


def read(settings: Settings) -> BatchConfig:
    """One GetItem of the config item (strongly consistent, as store.get_item reads)."""
    return BatchConfig.from_item(store.get_item(settings.state_table, KEY), settings)
