"""Users' feature states kept in a warm Lambda between the batches of a shard it processes.

Reading a user's hot item back and decoding it is a third of process_stream's CPU (bench/stream_handler.py
--breakdown), and the execution environment that wrote a state usually runs the shard's next batch too. A state kept
here is what the last batch wrote, so it is reused instead of read when nobody else can have written it since:

- a user's records all carry one partition key, hence one shard, and a shard's batches run one at a time; only
  process_stream writes feature states, and each batch first moves the shard's counters item (the counted mark, or
  ``state_gen`` for a redelivered batch that still writes states) and only then writes the states;
- so when the counters item still shows the mark this environment left after its last batch of the shard, no other
  invocation has written a state of the shard's users since, and every kept state is current.

A shard's kept states are taken out at the start of a batch and put back only after its states were written: a
batch that fails anywhere leaves the shard with nothing kept (its in-memory states may hold unwritten events).
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Hashable

from .settings import function_memory_mb

# A decoded state with its position and ring takes at most ~13 KB of Python objects (tracemalloc, v2 at 100,000
# events/day: 11.3 KB after decoding and one event); kept states may take a quarter of the function's memory.
KB_PER_USER = 16
MEMORY_SHARE = 4


def default_max_users() -> int:
    memory_mb = function_memory_mb() or 1024  # outside Lambda: sized as a 1,024 MB function
    return memory_mb * 1024 // MEMORY_SHARE // KB_PER_USER


@dataclass
class Kept:
    """One shard's states and the counters mark they are current for."""
    mark: tuple
    users: OrderedDict[str, Any] = field(default_factory=OrderedDict)


class WarmStates:
    def __init__(self, max_users: int | None = None):
        self.max_users = max_users if max_users is not None else default_max_users()  # over all shards
        self._shards: dict[Hashable, Kept] = {}

    def take(self, key: Hashable) -> Kept | None:
        """The shard's kept states, removed: the caller owns them until it ``keep``s them again."""
        return self._shards.pop(key, None)

    def keep(self, key: Hashable, mark: tuple, users: dict[str, Any], before: Kept | None = None) -> None:
        """``users`` are as stored now, current while the shard's counters show ``mark``; ``before``: what was
        taken for this batch, whose other users are still current too. Over ``max_users``, the other shards' states
        go first (this shard's batches are running here now), then this shard's least recently used."""
        kept = before.users if before is not None else OrderedDict()
        for user_id, state in users.items():
            kept[user_id] = state
            kept.move_to_end(user_id)
        excess = sum(len(other.users) for other in self._shards.values()) + len(kept) - self.max_users
        for other in list(self._shards):
            if excess <= 0:
                break
            excess -= len(self._shards.pop(other).users)
        for _ in range(excess):
            kept.popitem(last=False)
        self._shards[key] = Kept(mark, kept)

    def clear(self) -> None:
        self._shards.clear()


WARM = WarmStates()
