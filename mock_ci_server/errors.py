"""One exception per simulated CI API failure, rendered as ``{"success": false, "reason": ...}``.

Plain Python (no Flask): the state raises these and the app renders them. Real CI failures
are answered with HTTP 200 as far as public evidence goes; ``http_status`` is used only when
the app runs with ``error_status_codes=True``.
"""

from __future__ import annotations

from typing import Any


class SimAPIError(Exception):
    """Base class: a CI API call refused with a reason."""

    http_status = 400

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason

    def envelope(self) -> dict[str, Any]:
        """The body CI answers with: ``success`` first, then ``reason``."""
        return {"success": False, "reason": self.reason}


class InvalidCredentials(SimAPIError):
    """Unknown supplier_id or wrong token (never says which)."""

    http_status = 401

    def __init__(self, reason: str = "Invalid supplier_id or token") -> None:
        super().__init__(reason)


class MissingParameter(SimAPIError):
    """A required request parameter is absent."""


class InvalidParameter(SimAPIError):
    """A parameter is present but malformed (bad JSON, bad date, wrong type, unknown field)."""


class InvalidDateWindow(InvalidParameter):
    """Only one date given, end before start, or a window of 24 h or more."""


class JSONTooDeep(InvalidParameter):
    """A JSON body or field nested deeper than the simulator parses (always HTTP 400)."""


class BodyTooLarge(SimAPIError):
    """The request body is over the simulator's limit (always HTTP 413)."""

    http_status = 413


class UnknownLineItems(SimAPIError):
    """mark_exported / tracking named line ids this supplier does not own."""

    http_status = 404


class TrackingRefused(SimAPIError):
    """A tracking element breaks a Groupon rule (carrier, quantity, edit, address, six numbers)."""

    http_status = 403


class UnknownEndpoint(SimAPIError):
    """No such API version / endpoint, or the wrong HTTP method for it."""

    http_status = 404


class ControlError(Exception):
    """A /_sim/ control-plane request was refused (always rendered with its HTTP status)."""

    def __init__(self, reason: str, http_status: int = 400) -> None:
        super().__init__(reason)
        self.reason = reason
        self.http_status = http_status
