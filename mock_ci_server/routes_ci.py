"""The CI API blueprint, ``/api/{v2,v3,v4}/...``: thin (load params -> state call -> dump)."""

from __future__ import annotations

from typing import Any

import simplejson
from flask import Blueprint, Response, current_app, request

from mock_ci_server.errors import UnknownEndpoint
from mock_ci_server.schemas import (
    load_get_orders,
    load_mark_exported,
    load_tracking,
    render_orders,
    render_record_v2,
    render_record_v4,
)
from mock_ci_server.state import SimState

blueprint = Blueprint("ci_api", __name__, url_prefix="/api")

CONTENT_TYPE = "text/json"  # what the real service sends (ShipWorks HAR)
# (endpoint, version) -> HTTP method; everything else under /api/ is an unknown endpoint.
ENDPOINTS: dict[tuple[str, str], str] = {
    **{("get_orders", v): "GET" for v in ("v2", "v3", "v4")},
    **{("mark_exported", v): "POST" for v in ("v2", "v4")},
    **{("tracking_notification", v): "POST" for v in ("v2", "v4")},
    ("lineitem_tracking_notification", "v4"): "POST",
}


def ci_response(body: dict[str, Any], status: int = 200) -> Response:
    """JSON in CI's key order with CI's ``text/json`` content type.

    ``simplejson`` with ``use_decimal``: the stdlib encoder cannot write ``22.00`` as a number
    literal, and the real capture does (see ``schemas.ci_money``). Otherwise the same bytes as
    ``json.dumps`` (same separators, ASCII escapes).
    """
    return Response(
        simplejson.dumps(body, use_decimal=True), status=status, content_type=CONTENT_TYPE
    )


def _state() -> SimState:
    state: SimState = current_app.extensions["sim_state"]
    return state


def _params() -> dict[str, str]:
    # query + form: the official sample sends a GET with a form body, and werkzeug's
    # request.values leaves the form out on GET, so merge by hand (the query wins).
    params = request.form.to_dict(flat=True)
    params.update(request.args.to_dict(flat=True))
    return params


def _check(endpoint: str, version: str) -> None:
    method = ENDPOINTS.get((endpoint, version))
    if method is None:
        raise UnknownEndpoint(f"Unknown endpoint: /api/{version}/{endpoint}")
    if request.method != method:
        raise UnknownEndpoint(
            f"Method {request.method} not allowed for /api/{version}/{endpoint}; use {method}"
        )


@blueprint.route("/<version>/get_orders", methods=["GET", "POST"])
def get_orders(version: str) -> Response:
    """One page of orders (un-exported by default, or a < 24 h window)."""
    _check("get_orders", version)
    p = load_get_orders(_params())
    page = _state().get_orders(p["supplier_id"], p["token"], p["page"], p["window"])
    render = render_record_v2 if version == "v2" else render_record_v4
    return ci_response(
        render_orders(
            no_of_pages=page.no_of_pages,
            current_page=page.current_page,
            no_of_items=page.no_of_items,
            records=[render(record, status) for record, status in page.records],
        )
    )


@blueprint.route("/<version>/mark_exported", methods=["GET", "POST"])
def mark_exported(version: str) -> Response:
    """Mark line ids exported (all-or-nothing)."""
    _check("mark_exported", version)
    supplier_id, token, ids = load_mark_exported(_params())
    _state().mark_exported(supplier_id, token, ids, call=f"{version}/mark_exported")
    return ci_response({"success": True})


@blueprint.route("/<version>/tracking_notification", methods=["GET", "POST"])
def tracking_notification(version: str) -> Response:
    """Tracking keyed by ``ci_lineitem_id`` (all-or-nothing)."""
    _check("tracking_notification", version)
    supplier_id, token, items = load_tracking(_params(), by_fulfillment_id=False)
    _state().tracking_notification(
        supplier_id, token, items, call=f"{version}/tracking_notification"
    )
    return ci_response({"success": True})


@blueprint.route("/<version>/lineitem_tracking_notification", methods=["GET", "POST"])
def lineitem_tracking_notification(version: str) -> Response:
    """Tracking keyed by ``fulfillment_lineitem_id`` (v4 only, all-or-nothing)."""
    _check("lineitem_tracking_notification", version)
    supplier_id, token, items = load_tracking(_params(), by_fulfillment_id=True)
    _state().tracking_notification(
        supplier_id, token, items, call=f"{version}/lineitem_tracking_notification"
    )
    return ci_response({"success": True})


@blueprint.route("/", defaults={"rest": ""}, methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
@blueprint.route("/<path:rest>", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
def unknown(rest: str) -> Response:
    """Anything else under /api/: refused in the envelope, never a 404 page or a 500."""
    raise UnknownEndpoint(f"Unknown endpoint: {request.method} /api/{rest}")
