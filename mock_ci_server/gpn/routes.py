"""GPN `/v3/transactions` routes (placeholder until the GPN work lands)."""

from __future__ import annotations

from flask import Blueprint

blueprint = Blueprint("gpn", __name__)
