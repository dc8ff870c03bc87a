"""SageMaker UpdateEndpoint, which moto 5.2.5 does not implement: the gateway passes the request here
(``X-Amz-Target: SageMaker.UpdateEndpoint``); the SageMaker stand-in loads the new endpoint config's models and
switches to it, and the config is recorded in moto's control plane."""
from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from werkzeug.wrappers import Request, Response

from . import mototools
from .sagemaker import SageMakerRuntime, _SageMakerError

log = logging.getLogger("localcloud")


class UpdateEndpointHandler:
    """``runtime``: the stand-in that serves the endpoints; ``control``: returns a boto3 SageMaker client on the
    local cloud (DescribeEndpointConfig, DescribeModel)."""

    def __init__(self, runtime: SageMakerRuntime, control: Callable[[], Any]):
        self.runtime = runtime
        self.control = control

    def __call__(self, request: Request) -> Response:
        """SageMaker UpdateEndpoint (JSON protocol): the stand-in serves the new endpoint config; moto records it."""
        try:
            body = json.loads(request.get_data() or b"{}")
            name, config_name = body.get("EndpointName", ""), body.get("EndpointConfigName", "")
            control = self.control()
            endpoint = self.runtime.update_endpoint(
                name, config_name, lambda n: control.describe_endpoint_config(EndpointConfigName=n),
                lambda n: control.describe_model(ModelName=n))
            config = control.describe_endpoint_config(EndpointConfigName=config_name)
            arn = mototools.set_endpoint_config(name, config_name, config["ProductionVariants"])
        except _SageMakerError as exc:
            return Response(json.dumps({"__type": exc.code, "message": str(exc)}), status=400,
                            content_type="application/x-amz-json-1.1", headers={"X-Amzn-ErrorType": exc.code})
        log.info("UpdateEndpoint %s -> %s (%s)", name, config_name,
                 ", ".join(f"{v.name}={v.model_name}" for v in endpoint.variants))
        return Response(json.dumps({"EndpointArn": arn}), status=200, content_type="application/x-amz-json-1.1")
