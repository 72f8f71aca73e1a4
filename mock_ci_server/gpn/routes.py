"""``GET /v3/transactions`` (the simulated GPN Transaction API) and its ``/_sim/gpn`` control plane.

Thin: check auth, parse, ask the store, render. The state comes from
``current_app.extensions["sim_state"]`` (an object with ``.clock.now()`` and ``.gpn``).
"""

from __future__ import annotations

import hashlib
import hmac
import re
from datetime import UTC, datetime, timedelta
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request

from mock_ci_server.gpn.schemas import (
    DATE_FORMAT,
    ClientSchema,
    ConfigSchema,
    QueryError,
    RectifySchema,
    SeedSchema,
    load_control,
    parse_query,
    render_body,
)
from mock_ci_server.gpn.store import GPNStore, GPNStoreError

__all__ = ["UNAUTHORIZED_PAGE", "blueprint", "check_auth"]

blueprint = Blueprint("gpn", __name__)

# The seed's "Authorisation Error" sample, byte for byte (a Jetty error page, not JSON).
UNAUTHORIZED_PAGE = """<html>
    <head>
        <meta http-equiv="Content-Type" content="text/html;charset=utf-8"/>
        <title>Error 401 Unauthorized</title>
    </head>
    <body>
        <h2>HTTP ERROR 401</h2>
        <p>Problem accessing /v3/transactions. Reason
            <pre>Unauthorized</pre>
        </p>
    </body>
</html>
"""

_TIMESTAMP_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}")


def _state() -> Any:
    return current_app.extensions["sim_state"]


def _store() -> GPNStore:
    store = _state().gpn
    assert isinstance(store, GPNStore)
    return store


def _now() -> datetime:
    now = _state().clock.now()
    assert isinstance(now, datetime)
    return now.astimezone(UTC)


def _error(status: int, message: str) -> tuple[Response, int]:
    # The seed: "All error responses contain at least the top level error object with
    # httpCode and message".
    return jsonify({"error": {"httpCode": status, "message": message}}), status


def _unauthorized() -> Response:
    return Response(UNAUTHORIZED_PAGE, status=401, content_type="text/html;charset=utf-8")


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


def check_auth(
    token: str | None,
    version: str | None,
    given: str | None,
    timestamp: str | None,
    now: datetime,
    skew: timedelta,
) -> bool:
    """True when the headers prove knowledge of ``token`` (SEC1: the token itself; SEC2:
    ``sha256_hex(token + timestamp)`` with a timestamp within ``skew`` of ``now``)."""
    if token is None or given is None or version is None:
        return False
    version = version.strip().upper()
    if version == "SEC1":
        return _same(given, token)
    if version != "SEC2" or timestamp is None or not _TIMESTAMP_RE.fullmatch(timestamp):
        return False
    try:
        stamped = datetime.strptime(timestamp, DATE_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        return False
    if abs(now - stamped) > skew:
        return False  # stale or from the future: a replayed or badly clocked request
    expected = hashlib.sha256((token + timestamp).encode("utf-8")).hexdigest()
    return _same(given.strip().lower(), expected)


@blueprint.get("/v3/transactions")
def transactions() -> Any:
    """List transactions. Response body shape ASSUMED (see ``schemas.py``)."""
    store = _store()
    client_ids = request.args.getlist("clientId")
    if not client_ids or not client_ids[0]:
        return _error(400, "clientId: missing required parameter")
    token = store.token_for(client_ids[0])
    if not check_auth(
        token,
        request.headers.get("x-auth-version"),
        request.headers.get("x-auth-token"),
        request.headers.get("x-auth-timestamp"),
        _now(),
        store.auth_skew,
    ):
        return _unauthorized()
    try:
        query = parse_query(request.args.to_dict(flat=False))
    except QueryError as exc:
        return _error(400, str(exc))
    records = store.query(
        query.client_id,
        query.start,
        query.end,
        types=query.types,
        statuses=query.statuses,
        invoice_id=query.invoice_id,
    )
    return jsonify(render_body(records, query))


# -- control plane --------------------------------------------------------------------------


def _body() -> Any:
    return request.get_json(silent=True)


@blueprint.post("/_sim/gpn/clients")
def add_client() -> Any:
    """Register a client id and its token (re-registering replaces the token)."""
    try:
        data = load_control(ClientSchema(), _body())
        _store().add_client(data["client_id"], data["token"])
    except (QueryError, GPNStoreError) as exc:
        return _error(400, str(exc))
    return jsonify({"client_id": data["client_id"]}), 201


@blueprint.post("/_sim/gpn/seed")
def seed() -> Any:
    """Add deterministic transactions for a client (default: the 30 days before now)."""
    try:
        data = load_control(SeedSchema(), _body())
        end = data.get("end") or _now()
        start = data.get("start") or end - timedelta(days=30)
        created = _store().seed(
            data["client_id"],
            data["n"],
            data["seed"],
            start,
            end,
            currency=data["currency"],
            country=data["country"],
        )
    except (QueryError, GPNStoreError) as exc:
        return _error(400, str(exc))
    pending = sum(1 for r in created if r.transaction_status == "PENDING")
    return jsonify({"created": len(created), "pending": pending}), 201


@blueprint.post("/_sim/gpn/rectify")
def rectify() -> Any:
    """Move PENDING SALE/BOUNTY rows older than ``older_than_hours`` to a final status."""
    try:
        data = load_control(RectifySchema(), _body() if request.data else {})
        moved = _store().rectify(
            _now(),
            older_than=timedelta(hours=data["older_than_hours"]),
            client_id=data.get("client_id"),
            modified_at=data.get("modified_at"),
        )
    except (QueryError, GPNStoreError) as exc:
        return _error(400, str(exc))
    return jsonify({"moved": moved})


@blueprint.post("/_sim/gpn/config")
def configure() -> Any:
    """Change the SEC2 timestamp tolerance (``auth_skew_seconds``)."""
    try:
        data = load_control(ConfigSchema(), _body())
    except QueryError as exc:
        return _error(400, str(exc))
    _store().auth_skew = timedelta(seconds=data["auth_skew_seconds"])
    return jsonify({"auth_skew_seconds": data["auth_skew_seconds"]})


@blueprint.get("/_sim/gpn/state")
def state() -> Any:
    """Counts per client, type and status (never tokens)."""
    return jsonify(_store().snapshot())
