"""Shared library for every Lambda function of the pipeline.

Plain functions over plain data: the handlers in functions/*/handler.py parse the Lambda event, call into
this package and return. The same code runs in AWS, in the embedded local cloud and in unit tests.
Nothing here calls AWS at import time; clients are created lazily (see ``pipeline.aws``).
"""
