"""Powertools Logger, Tracer and Metrics, created the way every handler uses them.

Service name and metrics namespace come from POWERTOOLS_SERVICE_NAME / POWERTOOLS_METRICS_NAMESPACE (set by the
stack). Tracing needs the X-Ray SDK and is disabled locally with POWERTOOLS_TRACE_DISABLED=true.
"""
from aws_lambda_powertools import Logger, Metrics, Tracer

logger = Logger()
tracer = Tracer()
metrics = Metrics()
