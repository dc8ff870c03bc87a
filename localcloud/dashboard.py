"""The live dashboard of the local cloud: the stack's own CloudWatch dashboard, plus the operator's stat cards.

Served by the gateway's control API (so no HTTP API route is shadowed):
- ``GET /_localcloud/dashboard``: the page (localcloud/static/dashboard.html; Chart.js from node_modules).
- ``GET /_localcloud/dashboard/data?minutes=15&period=10``: the widgets with their series and the cards, as JSON.
- ``GET /_localcloud/dashboard/static/<file>``: the page's script and Chart.js.

Widgets: every ``AWS::CloudWatch::Dashboard`` in the template, its DashboardBody resolved with the deployer's
resolver (intrinsics.py): the same widgets, titles, positions, metrics, stats, labels and axes, each metric row a
GetMetricData query against what the local cloud records: the functions' EMF lines (metrics.EmfShipper),
PutMetricData, and the AWS service metrics the local cloud records as AWS would (metrics.ServiceMetrics); a line
with no local source says "no data locally". The console's period override applies (``period``, default 10 s)
because the widgets' own period (300 s) shows one point per five minutes.

Cards: what the HTTP API answers (/stats, /variants/stats, /batches/recent, /model/status), and the metrics the
functions publish (IngestToPredictionSeconds p50/p95/p99; FeatureDriftMaxPSI).
"""
from __future__ import annotations

import json
import logging
import mimetypes
import threading
import time
import urllib.request
from collections import deque
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from werkzeug.wrappers import Request, Response

from .gateway import json_response

log = logging.getLogger("localcloud.dashboard")

STATIC = Path(__file__).parent / "static"
CHART_JS = Path(__file__).resolve().parents[1] / "node_modules" / "chart.js" / "dist" / "chart.umd.min.js"
QUERIES_PER_CALL = 500   # GetMetricData: up to 500 MetricDataQuery structures per call
LATENCY_WINDOW = 300     # seconds of IngestToPredictionSeconds behind the latency card
RATE_WINDOW = 10.0       # seconds between the two /stats samples the events/s card divides


def dashboard_widgets(deployer) -> list[dict]:
    """The metric and text widgets of every dashboard in the template, DashboardBody resolved."""
    widgets = []
    for resource in deployer.resources.values():
        if resource.type != "AWS::CloudWatch::Dashboard":
            continue
        body = deployer.resolver.resolve(resource.definition["Properties"]["DashboardBody"])
        for widget in json.loads(body).get("widgets", []):
            widget["dashboard"] = resource.logical_id
            widgets.append(widget)
    return widgets


def metric_rows(properties: dict) -> list[dict]:
    """A metric widget's ``metrics`` rows ([namespace, name, dim, value, ..., {options}]; "." repeats the row
    above at that position) as query specs."""
    rows: list[dict] = []
    previous: list = []
    for row in properties.get("metrics", []):
        options = row[-1] if row and isinstance(row[-1], dict) else {}
        parts = row[:-1] if options else list(row)
        parts = [previous[i] if part == "." and i < len(previous) else part for i, part in enumerate(parts)]
        previous = parts
        if "expression" in options or len(parts) < 2:
            rows.append({"label": options.get("label", options.get("expression", "?")), "unsupported": True})
            continue
        namespace, name, *dims = parts
        rows.append({"namespace": namespace, "name": name,
                     "dimensions": [{"Name": dims[i], "Value": str(dims[i + 1])} for i in range(0, len(dims) - 1, 2)],
                     "stat": options.get("stat", properties.get("stat", "Average")),
                     "label": options.get("label") or name, "axis": options.get("yAxis", "left")})
    return rows


class Dashboard:
    def __init__(self, cloud):
        self.cloud = cloud
        self.widgets = dashboard_widgets(cloud.deployer)
        environment = next(iter(cloud.deployer.functions.values()), None)
        environment = environment.environment if environment else {}
        # the functions' own metric namespace and service dimension (what Powertools writes into their EMF lines)
        self.namespace = environment.get("POWERTOOLS_METRICS_NAMESPACE", "")
        self.dimensions = [{"Name": "service", "Value": environment.get("POWERTOOLS_SERVICE_NAME", "")}]
        self._samples: deque[tuple[float, float]] = deque(maxlen=600)
        self._lock = threading.Lock()

    # -- HTTP ---------------------------------------------------------------------------------------------------
    def handle(self, request: Request, parts: list[str]) -> Response:
        if parts == []:
            return Response((STATIC / "dashboard.html").read_bytes(), content_type="text/html; charset=utf-8")
        if parts == ["data"]:
            minutes = min(180.0, float(request.args.get("minutes", 15)))
            period = max(1, int(request.args.get("period", 10)))
            return json_response(self.data(minutes, period))
        if len(parts) == 2 and parts[0] == "static":
            path = CHART_JS if parts[1] == "chart.umd.min.js" else STATIC / parts[1]
            if path.parent not in (STATIC, CHART_JS.parent) or not path.is_file():
                return json_response({"error": f"no file {parts[1]}" + (
                    " (Chart.js: run `npm ci`)" if path == CHART_JS else "")}, 404)
            return Response(path.read_bytes(), content_type=mimetypes.guess_type(path.name)[0] or "text/plain")
        return json_response({"error": "no dashboard route " + "/".join(parts)}, 404)

    # -- data ---------------------------------------------------------------------------------------------------
    def data(self, minutes: float = 15, period: int = 10) -> dict:
        end = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(seconds=1)
        start = end - timedelta(minutes=minutes)
        widgets: list[dict] = []
        queries: list[tuple[dict, dict]] = []
        for widget in self.widgets:
            properties = widget.get("properties", {})
            view: dict[str, Any] = {key: widget.get(key) for key in ("type", "x", "y", "width", "height", "dashboard")}
            view.update(title=properties.get("title", ""), markdown=properties.get("markdown"), series=[])
            if widget.get("type") == "metric":
                for row in metric_rows(properties):
                    series = {"label": row["label"], "stat": row.get("stat"), "axis": row.get("axis", "left"),
                              "metric": f"{row.get('namespace')}/{row.get('name')}", "timestamps": [], "values": []}
                    if not row.get("unsupported"):
                        queries.append((series, self._query(len(queries), row, period)))
                    view["series"].append(series)
            widgets.append(view)
        self._fill(queries, start, end)
        return {"generated_at": time.time(), "period": period, "minutes": minutes,
                "start": start.timestamp(), "end": end.timestamp(), "widgets": widgets, "cards": self.cards()}

    def _query(self, index: int, row: dict, period: int) -> dict:
        return {"Id": f"m{index}", "ReturnData": True, "MetricStat": {
            "Metric": {"Namespace": row["namespace"], "MetricName": row["name"], "Dimensions": row["dimensions"]},
            "Period": period, "Stat": row["stat"]}}

    def _fill(self, queries: list[tuple[dict, dict]], start: datetime, end: datetime) -> None:
        cloudwatch = self.cloud.client("cloudwatch")
        for first in range(0, len(queries), QUERIES_PER_CALL):
            chunk = dict((q["Id"], s) for s, q in queries[first:first + QUERIES_PER_CALL])
            response = cloudwatch.get_metric_data(
                MetricDataQueries=[q for _, q in queries[first:first + QUERIES_PER_CALL]], StartTime=start,
                EndTime=end, ScanBy="TimestampAscending")
            for result in response["MetricDataResults"]:
                series = chunk[result["Id"]]
                series["timestamps"] = [t.timestamp() for t in result["Timestamps"]]
                series["values"] = result["Values"]

    def _metric(self, name: str, stats: list[str], seconds: int) -> dict[str, float | None]:
        """The latest value of each statistic of one of the functions' metrics over the last ``seconds``."""
        end = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(seconds=1)
        response = self.cloud.client("cloudwatch").get_metric_data(
            MetricDataQueries=[{"Id": f"s{i}", "MetricStat": {
                "Metric": {"Namespace": self.namespace, "MetricName": name, "Dimensions": self.dimensions},
                "Period": seconds, "Stat": stat}} for i, stat in enumerate(stats)],
            StartTime=end - timedelta(seconds=seconds), EndTime=end, ScanBy="TimestampDescending")
        values = {r["Id"]: (r["Values"] or [None])[0] for r in response["MetricDataResults"]}
        return {stat: values.get(f"s{i}") for i, stat in enumerate(stats)}

    # -- cards --------------------------------------------------------------------------------------------------
    def cards(self) -> dict[str, Any]:
        stats = self._api("/stats")
        variants = self._api("/variants/stats")
        batches = self._api("/batches/recent?limit=30")
        status = self._api("/model/status")
        now = time.time()
        with self._lock:
            self._samples.append((now, stats.get("events_predicted", 0)))
            older = [s for s in self._samples if s[0] <= now - RATE_WINDOW] or [self._samples[0]]
            t0, n0 = older[-1]
        rate = (stats.get("events_predicted", 0) - n0) / (now - t0) if now > t0 else None
        latency = self._metric("IngestToPredictionSeconds", ["p50", "p95", "p99"], LATENCY_WINDOW)
        drift = self._metric("FeatureDriftMaxPSI", ["Maximum"], 24 * 3600)["Maximum"]
        trend = [{"t": b.get("recorded_at"), "cost_per_1k_events_usd": 1000 * b["cost_per_event_usd"]}
                 for b in reversed(batches.get("batches", [])) if b.get("cost_per_event_usd") is not None]
        optimizer = status.get("optimizer", {})
        return {
            "stats": stats,
            "events_per_second": rate, "rate_window_seconds": round(now - t0, 1),
            "latency_seconds": latency, "latency_window_seconds": LATENCY_WINDOW,
            "cost_per_1k_events_usd": stats.get("cost_per_1k_events_usd"), "cost_trend": trend,
            "batch_size": stats.get("current_batch_size"),
            "optimizer": {k: optimizer.get(k) for k in ("status", "reason", "trained_at", "applied",
                                                        "previous_batch_size", "batching_window_seconds")},
            "stream_dlq_messages": stats.get("stream_dlq_messages"),
            "quarantine_messages": stats.get("quarantine_messages"),
            "variants": variants.get("variants", []), "variant_stats": variants.get("stats", []),
            "drift_max_psi": drift,
        }

    def _api(self, path: str) -> dict:
        """GET from the HTTP API as a client would (signed when the API requires SigV4)."""
        url = self.cloud.api_url + path
        headers: dict[str, str] = {}
        if self.cloud.require_sigv4:
            from botocore.auth import SigV4Auth
            from botocore.awsrequest import AWSRequest
            from botocore.credentials import Credentials

            auth = self.cloud.api_auth()
            signed = AWSRequest(method="GET", url=url)
            SigV4Auth(Credentials(auth["access_key_id"], auth["secret_access_key"]), "execute-api",
                      auth["region"]).add_auth(signed)
            headers = dict(signed.headers)
        try:
            with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=30) as response:
                return json.loads(response.read())
        except Exception as exc:  # noqa: BLE001 - a card says what failed instead of the page failing
            log.warning("dashboard: GET %s failed: %s", path, exc)
            return {"error": f"GET {path}: {exc}"}
