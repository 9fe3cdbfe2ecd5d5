"""The error every request decoder raises: an HTTP status and a message naming the field."""

from __future__ import annotations


class RequestError(Exception):
    """A request the server refuses, with the HTTP status to answer.

    Attributes:
        status: 400, 413 or 422 (see :mod:`tabpipe.serving.validation`).
        message: What is wrong, naming the field.
        violations: The broken contract rules, one message each, when that is why (422).
    """

    def __init__(self, status: int, message: str, violations: list[str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.violations = violations or []


class Busy(RequestError):
    """The server is at a limit for now: 503 or 429 with a ``Retry-After`` the client should honour."""

    def __init__(self, status: int, message: str, retry_after: int) -> None:
        super().__init__(status, message)
        self.retry_after = retry_after
