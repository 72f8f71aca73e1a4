"""OpenAPI path items for the GPN part (placeholder until the GPN work lands)."""

from __future__ import annotations

from typing import Any

PATHS: dict[str, Any] = {}
