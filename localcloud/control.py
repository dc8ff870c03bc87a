"""The control API on the gateway, ``/_localcloud/...``: status, outputs, IAM, faults, schedules, wait-idle, invoke,
the dashboard. What ``python -m localcloud`` and the scripts call on a running cloud; each route calls the LocalCloud
it was built with."""
from __future__ import annotations

from typing import TYPE_CHECKING

from werkzeug.wrappers import Request, Response

from .errors import FunctionError
from .gateway import json_response

if TYPE_CHECKING:
    from .cloud import LocalCloud


class ControlApi:
    def __init__(self, cloud: "LocalCloud"):
        self.cloud = cloud

    def __call__(self, request: Request) -> Response:
        cloud = self.cloud
        parts = [p for p in request.path.split("/") if p][1:]  # drop "_localcloud"
        method = request.method
        body = request.get_json(silent=True) or {}
        if parts == ["status"] and method == "GET":
            return json_response(cloud.status())
        if parts[:1] == ["dashboard"] and method == "GET" and cloud.deployed:
            if cloud.dashboard is None:  # built on first use: a template without a dashboard deploys as before
                from .dashboard import Dashboard

                cloud.dashboard = Dashboard(cloud)
            return cloud.dashboard.handle(request, parts[1:])
        if parts == ["outputs"] and method == "GET":
            return json_response(cloud.outputs)
        if parts == ["iam"] and method == "GET":
            return json_response(cloud.iam.status())
        if parts == ["sagemaker", "faults"]:
            answer = self._model_faults(method, body)
            if answer is not None:
                return answer
        if parts == ["faults"]:
            return self._faults(method, body)
        if parts == ["schedules"] and method == "GET":
            return json_response(cloud.status().get("schedules", {}))
        if len(parts) == 3 and parts[0] == "schedules" and parts[2] == "run" and method == "POST":
            try:
                return json_response({"rule": parts[1], "result": cloud.run_schedule(parts[1])})
            except FunctionError as exc:
                return json_response({"rule": parts[1], "error": exc.payload}, 500)
        if parts == ["wait-idle"] and method == "POST":
            return json_response({"idle": cloud.wait_idle(float(body.get("timeout", 60)))})
        if len(parts) == 3 and parts[0] == "functions" and parts[2] == "invoke" and method == "POST":
            result = cloud.invoke_raw(parts[1], request.get_data() or b"{}")
            return Response(result.payload, status=200 if result.ok else 500, content_type="application/json")
        return json_response({"error": f"no control route {method} {request.path}"}, 404)

    def _model_faults(self, method: str, body: dict) -> Response | None:
        """``/_localcloud/sagemaker/faults``: the SageMaker stand-in's own fault list."""
        cloud, sagemaker = self.cloud, self.cloud.sagemaker
        assert sagemaker is not None, "the gateway serves the control API of a started cloud"
        if method == "POST":
            try:
                cloud.set_model_fault(error=body.get("error", "ThrottlingException"),
                                      count=int(body.get("count", 1)), endpoint=body.get("endpoint", "*"),
                                      message=body.get("message"))
            except ValueError as exc:
                return json_response({"error": str(exc)}, 400)
            return json_response({"faults": sagemaker.faults()})
        if method == "DELETE":
            cloud.clear_model_faults()
            return json_response({"faults": []})
        if method == "GET":
            return json_response({"faults": sagemaker.faults()})
        return None

    def _faults(self, method: str, body: dict) -> Response:
        """``/_localcloud/faults`` (localcloud/faults.py): arm (POST), disarm all (DELETE), list (any)."""
        cloud, faults = self.cloud, self.cloud.faults
        assert faults is not None, "the gateway serves the control API of a started cloud"
        if method == "POST":
            params = {k: v for k, v in body.items() if k not in ("name", "count")}
            try:
                cloud.inject_fault(body.get("name", ""), int(body.get("count", 1)), **params)
            except ValueError as exc:
                return json_response({"error": str(exc)}, 400)
        elif method == "DELETE":
            cloud.clear_faults()
        return json_response({"faults": faults.armed(), "hits": faults.history[-50:]})
