"""HTTP API (API Gateway HTTP API, payload format 2.0): ingest events and answer queries."""
import json
import re
from functools import partial
from urllib.parse import unquote

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit

from pipeline import models, queries
from pipeline.events import ID_MAX_CHARS, check_id, parse_timestamp
from pipeline.ingest import BadRequest, body_format, body_text, ingest, loads, parse_body
from pipeline.observability import logger, metrics, tracer
from pipeline.predict import predict_instances
from pipeline.settings import settings

# Responses are strict JSON: a NaN or infinity would be a bug, and it fails loudly instead of reaching a client.
app = APIGatewayHttpResolver(serializer=partial(json.dumps, separators=(",", ":"), allow_nan=False))


def error(status: int, code: str, message: str) -> Response:
    return Response(status_code=status, content_type=content_types.APPLICATION_JSON,
                    body={"error": code, "message": message})


@app.exception_handler(BadRequest)
def _bad_request(exc: BadRequest) -> Response:
    return error(exc.status, exc.code, str(exc))


@app.exception_handler(queries.NotFound)
def _not_found(exc: queries.NotFound) -> Response:
    return error(404, exc.code, str(exc))


@app.not_found
def _no_route(exc: NotFoundError) -> Response:
    return error(404, "route_not_found", f"no route for {app.current_event.request_context.http.method} "
                                         f"{app.current_event.path}")


def _query_time(name: str) -> float | None:
    value = app.current_event.get_query_string_value(name)
    if value is None:
        return None
    try:
        return parse_timestamp(value)
    except ValueError as exc:
        raise BadRequest("bad_query", f"{name}: {exc}") from None


def _query_int(name: str, default: int, low: int, high: int) -> int:
    value = app.current_event.get_query_string_value(name, str(default))
    # ASCII digits only: str.isdigit() also takes "²" or "١", which int() rejects or reads differently
    if not re.fullmatch(r"[0-9]{1,9}", value) or not low <= int(value) <= high:
        raise BadRequest("bad_query", f"{name} must be an integer from {low} to {high}")
    return int(value)


def _path_id(name: str, value: str) -> str:
    """A user or event id from the path: the ingest rules apply, so an id that cannot exist is a 400, not a
    lookup (a key over DynamoDB's limits would fail the call). API Gateway passes the path decoded; an encoded
    one (another front end, a hand-built event) decodes to the same id, since ids never hold "%"."""
    value = unquote(value)
    try:
        if not 1 <= len(value) <= ID_MAX_CHARS:
            raise ValueError(f"must be 1 to {ID_MAX_CHARS} characters")
        return check_id(value)
    except ValueError as exc:
        raise BadRequest("bad_path", f"{name}: {exc}") from None


def _body() -> tuple[str, str]:
    """The request body as text (Content-Type checked: 415, base64 and UTF-8 decoded: 400, size: 413)."""
    event = app.current_event
    fmt = body_format(event.headers.get("content-type"))
    return body_text(event.body, bool(event.is_base64_encoded)), fmt


@app.post("/events")
def post_events():
    raws = parse_body(*_body())
    result = ingest(raws, settings())
    metrics.add_metric(name="EventsAccepted", unit=MetricUnit.Count, value=result.accepted)
    metrics.add_metric(name="EventsRejectedAtApi", unit=MetricUnit.Count, value=len(result.rejected))
    return Response(status_code=202, content_type=content_types.APPLICATION_JSON, body=result.body())


@app.get("/users/<user_id>/features")
def get_features(user_id: str):
    return queries.user_features(settings(), _path_id("user_id", user_id))


@app.get("/users/<user_id>/features/<name>")
def get_feature(user_id: str, name: str):
    return queries.user_feature(settings(), _path_id("user_id", user_id), name)


@app.get("/users/<user_id>/median")
def get_median(user_id: str):
    window = _query_int("window_seconds", queries.MEDIAN_WINDOW_SECONDS, 1, 7 * 24 * 3600)
    return queries.user_median(settings(), _path_id("user_id", user_id), window_seconds=window)


@app.get("/users/<user_id>/history", summary="A user's scores over time, oldest first, one page at a time",
         description="since/until: epoch seconds or ISO-8601. limit: rows per page (default 100, at most 1000). "
                     "next_token: from the previous page; null when there are no more pages.")
def get_history(user_id: str):
    user_id = _path_id("user_id", user_id)
    since, until = _query_time("since"), _query_time("until")
    if since is not None and until is not None and since > until:
        raise BadRequest("bad_query", "since must not be after until")  # DynamoDB rejects such a BETWEEN
    page_size = _query_int("limit", queries.HISTORY_PAGE_SIZE, 1, queries.HISTORY_MAX_PAGE_SIZE)
    try:
        return queries.history_page(settings(), user_id, since, until, page_size,
                                    app.current_event.get_query_string_value("next_token"))
    except queries.BadToken as exc:
        raise BadRequest("bad_query", str(exc)) from None


@app.get("/predictions/<event_id>")
def get_prediction(event_id: str):
    return queries.prediction(settings(), _path_id("event_id", event_id))


@app.post("/predict")
def post_predict():
    text, fmt = _body()
    if fmt != "json":
        raise BadRequest("unsupported_media_type", "POST /predict takes application/json", 415)
    body = loads(text)
    if not isinstance(body, dict) or not isinstance(body.get("instances"), list) or not body["instances"]:
        raise BadRequest("malformed_body", 'body must be {"instances": [event, ...]} with at least one event')
    return {"predictions": predict_instances(body["instances"], settings())}


@app.get("/stats")
def get_stats():
    return queries.stats(settings())


@app.get("/variants/stats", summary="A/B variants and per-variant prediction counts and mean scores",
         description="The endpoint's production variants (name, weight, kind, model version; users are assigned "
                     "to one sticky variant by a hash of their id) and, per variant and model version, predictions, "
                     "share of all predictions and mean score.")
def get_variant_stats():
    return queries.variant_stats(settings())


@app.get("/batches/recent", summary="Newest cost records and the batch-size optimizer's current setting",
         description="One cost record per batch (settings in force, events, bytes, stage seconds, $ per cost line, "
                     "$ per event, latency), newest first; `optimizer`: batch size, window, chunk size, status, "
                     "reason and training R² of the last retrain.")
def get_recent_batches():
    return queries.recent_batches_view(settings(), _query_int("limit", 20, 1, 500))


@app.get("/model/status", summary="Model and batch-size optimizer status",
         description="Model version and feature set; batch settings in force; the optimizer's last decision "
                     "(status trained/fallback/waiting/rollback, reason, out-of-bag R² of the cost and latency "
                     "models, predicted cost curve), the last change and its evaluation, rollbacks, history.")
def get_model_status():
    return queries.model_status(settings())


@app.get("/models", summary="Registered model versions and which is live",
         description="Every version in the registry (models/manifest.json: kind, feature set, metrics, created "
                     "time, sha256) and the stack's own deployed versions, each with the variants serving it now; "
                     "`live`: the variants in force and whether a promotion or the deploy set them.")
def get_models():
    return models.registered(settings())


@app.get("/health")
def get_health():
    return {"status": "ok"}


@app.get("/openapi.json")
def get_openapi():
    return Response(status_code=200, content_type=content_types.APPLICATION_JSON,
                    body=app.get_openapi_json_schema(title="Real-time inference API", version="1.0.0"))


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event, context):
    return app.resolve(event, context)
