"""What travels through the inference state machine (statemachines/inference.asl.json), typed.

process_stream starts an execution with an ``ExecutionInput``; each task's output is the next task's input
(``OutputPath: $.Payload``): InvokeModel -> ``Scored``, StorePredictions -> ``Stored``, RecordCost -> ``CostSummary``.
A failed batch goes to the quarantine queue with the input of the task that failed (docs/wiring.md).

TypedDicts, not classes: the states are JSON in Step Functions, so the steps read and write plain dicts, and mypy
checks every key a step reads or writes against these. Each task handler also validates its input with them
(``parse``): a malformed state fails its task at once with the fields that are wrong, rather than a KeyError
somewhere in the middle of the step.
"""
from __future__ import annotations

from typing import Any, TypeVar

from pydantic import TypeAdapter, ValidationError
from typing_extensions import NotRequired, TypedDict  # pydantic needs this TypedDict on Python < 3.12


class Stage(TypedDict):
    """One step's measurements, appended by each step (pipeline/costs.py prices them)."""
    stage: str
    seconds: float
    memory_mb: int | None
    events: NotRequired[int]            # process_stream: records in the batch
    bytes: NotRequired[int]             # process_stream: record payload bytes
    ddb_rru: NotRequired[float]
    ddb_wru: NotRequired[float]
    s3_puts: NotRequired[int]
    s3_gets: NotRequired[int]           # invoke_model, store_predictions: rows or predictions read from S3
    chunk_size: NotRequired[int]        # invoke_model
    calls: NotRequired[int]             # invoke_model: InvokeEndpoint calls
    model_seconds: NotRequired[float]   # invoke_model
    model_bytes: NotRequired[int]       # invoke_model: CSV bytes sent
    sampled_users: NotRequired[int]     # store_predictions
    redrive_of: NotRequired[str]        # process_stream's stage of a redriven batch: its journal


class Row(TypedDict):
    """One event to score: its feature vector, as process_stream computed it."""
    event_id: str
    user_id: str
    ts: float
    ingest_ts: float
    features: list[float]


class ExecutionHead(TypedDict):
    """An execution input but its rows (process_stream serialises the rows once, for the journal and the input)."""
    batch_id: str
    created_at: float
    feature_set: str
    model_version: str
    stages: list[Stage]
    rows_s3_uri: str | None


class ExecutionInput(ExecutionHead):
    """process_stream -> InvokeModel. ``rows`` inline, or in the batch journal at ``rows_s3_uri`` (then ``[]``)."""
    rows: list[Row]


class Prediction(TypedDict):
    event_id: str
    user_id: str
    ts: float
    ingest_ts: float
    score: float
    variant: str
    model_version: str


class Scored(TypedDict):
    """InvokeModel -> StorePredictions. ``predictions`` inline, or at ``predictions_s3_uri`` (then ``[]``)."""
    batch_id: str
    created_at: float
    model_version: str
    predictions: list[Prediction]
    predictions_s3_uri: str | None
    stages: list[Stage]


class Stored(TypedDict):
    """StorePredictions -> RecordCost: the batch's latency and workload figures."""
    batch_id: str
    created_at: float
    events: int
    latency_p50: float
    latency_max: float
    latencies: NotRequired[list[float]]  # per event, for the handler's metric; taken out of the state it returns
    ingest_first: float | None
    ingest_last: float | None
    api_requests: int
    stages: list[Stage]


class CostSummary(TypedDict):
    """RecordCost -> the execution's output (the full record is in COST_TABLE)."""
    batch_id: str
    events: int
    cost_per_event_usd: float


class InvalidState(ValueError):
    """A task's input that is not the shape the previous step writes."""


State = TypeVar("State")


_ADAPTERS: dict[type, TypeAdapter] = {}   # building one compiles a validator: once per shape and process


def parse(shape: type[State], state: Any) -> State:
    """``state`` checked against ``shape`` (the task's input type). Unknown keys are kept; numbers are not
    coerced from strings (strict where JSON has the type already)."""
    try:
        adapter = _ADAPTERS.get(shape) or _ADAPTERS.setdefault(shape, TypeAdapter(shape))
        adapter.validate_python(state, strict=True)
    except ValidationError as exc:
        errors = "; ".join(f"{'.'.join(map(str, e['loc'])) or '(state)'}: {e['msg']}" for e in exc.errors()[:5])
        raise InvalidState(f"{shape.__name__}: {exc.error_count()} invalid field(s): {errors}") from None
    return state
