"""DashboardData -> one HTML page (Jinja2, autoescaped; charts are inline SVG and CSS)."""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import datetime
from decimal import Decimal
from functools import cache
from typing import Any

from connector.dashboard.data import LANES, DashboardData

REFRESH_SECONDS = 60
NONE = "\u2013"  # an en dash for "no value"


@cache
def _environment() -> Any:
    try:
        from jinja2 import Environment, PackageLoader, select_autoescape
    except ImportError as exc:  # jinja2 is a dependency; say what to do if it went missing
        raise RuntimeError(
            "the dashboard needs Jinja2: pip install 'jinja2>=3.1' "
            "(it is a dependency of groupon-ci-connector)"
        ) from exc
    env = Environment(
        loader=PackageLoader("connector.dashboard", "templates"),
        autoescape=select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["money"] = _money
    env.filters["pct"] = lambda v: NONE if v is None else f"{v:.0%}"
    env.filters["when"] = _when
    return env


def _money(value: Decimal | float | None, sign: str = "$") -> str:
    return "uncapped" if value is None else f"{sign}{value:,.2f}"


def _when(value: datetime | str | None) -> str:
    if value is None or value == "":
        return NONE
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return str(value)
    return f"{value:%Y-%m-%d %H:%M} UTC" if value.utcoffset() is not None else f"{value}"


def render_page(data: DashboardData, *, css: str) -> str:
    """The dashboard page (self-contained: the stylesheet is inlined)."""
    template = _environment().get_template("dashboard.html")
    html: str = template.render(
        data=data, lanes=LANES, css=css, refresh=REFRESH_SECONDS, lane_y=_lane_y()
    )
    return html


def _lane_y() -> dict[str, int]:
    return {lane: 36 + i * 40 for i, (lane, _label) in enumerate(LANES)}


def render_json(data: DashboardData) -> str:
    """The same data for scripts (``/data.json``)."""

    def default(value: Any) -> Any:
        if isinstance(value, datetime):
            return value.isoformat()
        if isinstance(value, Decimal):
            return str(value)
        return str(value)

    payload = asdict(data)
    payload["held_total"] = data.held_total
    payload["at_risk_total"] = data.at_risk_total
    return json.dumps(payload, default=default)


__all__ = ["REFRESH_SECONDS", "render_json", "render_page"]
