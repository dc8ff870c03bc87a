"""The embedded local cloud: runs a synthesized CDK app (cdk.out) on 127.0.0.1 without Docker or an AWS account.

``from localcloud import LocalCloud`` (imported lazily: the Lambda worker processes import ``localcloud._worker``
and must not pay for moto and boto3).
"""
from typing import Any

__all__ = ["LocalCloud", "LocalCloudError", "FunctionError"]


def __getattr__(name: str) -> Any:
    if name == "LocalCloud":
        from .cloud import LocalCloud

        return LocalCloud
    if name in ("LocalCloudError", "FunctionError"):
        from . import errors

        return getattr(errors, name)
    raise AttributeError(f"module 'localcloud' has no attribute {name!r}")
