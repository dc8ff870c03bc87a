"""Exceptions raised by the local cloud."""


class LocalCloudError(Exception):
    """A problem with the local cloud itself: missing cdk.out, port in use, unsupported template feature."""


class FunctionError(Exception):
    """A Lambda function returned an error (the payload Lambda would return with X-Amz-Function-Error)."""

    def __init__(self, payload: dict):
        self.payload = payload
        self.error_type = payload.get("errorType", "Unhandled")
        self.error_message = payload.get("errorMessage", "")
        super().__init__(f"{self.error_type}: {self.error_message}")
