"""Fault injection for the simulator (placeholder interface until the faults work lands)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

WSGIApp = Any


class FaultInjector:
    """WSGI middleware that answers matching requests with a configured fault.

    Rules are matched in order on method and path; the first match wins; an empty list turns
    faults off. Paths under ``/_sim/`` are never faulted.
    """

    def __init__(self, app: WSGIApp, *, seed: int = 0) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        result: Iterable[bytes] = self.app(environ, start_response)
        return result

    def set_rules(self, rules: list[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Replace all rules; raises ValueError naming the bad rule and field."""
        return []

    def describe(self) -> list[dict[str, Any]]:
        """Current rules with how often each fired."""
        return []

    def reset(self) -> None:
        """Remove every rule."""
