"""``create_app``: the Flask app of the simulator (CI API, control plane, GPN, faults)."""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, Response, current_app, jsonify, request
from flask.json.provider import DefaultJSONProvider
from werkzeug.exceptions import HTTPException, InternalServerError, RequestEntityTooLarge

from mock_ci_server import jsonlimits
from mock_ci_server.console import register as register_console
from mock_ci_server.errors import (
    BodyTooLarge,
    ControlError,
    InvalidCredentials,
    JSONTooDeep,
    SimAPIError,
    UnknownEndpoint,
)
from mock_ci_server.faults import FaultInjector
from mock_ci_server.gpn.routes import blueprint as gpn_blueprint
from mock_ci_server.recorder import install as install_recorder
from mock_ci_server.routes_ci import blueprint as ci_blueprint
from mock_ci_server.routes_ci import ci_response
from mock_ci_server.routes_control import CONTROL_TOKEN, require_control_token
from mock_ci_server.routes_control import blueprint as control_blueprint
from mock_ci_server.state import SimState
from mock_ci_server.uploads import blueprint as uploads_blueprint

log = logging.getLogger(__name__)

#: app.config key: True = API failures use 400/401/403/404 instead of HTTP 200.
ERROR_STATUS_CODES = "SIM_ERROR_STATUS_CODES"
#: app.config key: the HTTP status of an authentication failure (401 by default, or 200).
AUTH_ERROR_STATUS = "SIM_AUTH_ERROR_STATUS"
AUTH_ERROR_STATUSES = (401, 403, 200)

MAX_BODY_BYTES = 16 * 1024 * 1024
"""Largest request body (Flask ``MAX_CONTENT_LENGTH``; waitress refuses bigger ones before
buffering them, see :mod:`mock_ci_server.serve`). A tracking upload is at most 10 MB."""


class _DepthLimitedJSON(DefaultJSONProvider):
    """``request.get_json()`` everywhere (control plane, GPN) refuses deep nesting."""

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        return jsonlimits.loads(s, **kwargs)


def _envelope(reason: str, status: int) -> Response:
    """``reason`` in the envelope of the family ``request.path`` belongs to."""
    path = request.path
    if path.startswith("/api/") or path == "/api":
        return ci_response({"success": False, "reason": reason}, status)
    if path.startswith("/v3/"):  # GPN's error shape
        response = jsonify({"error": {"httpCode": status, "message": reason}})
    else:
        response = jsonify({"success": False, "reason": reason})
    response.status_code = status
    return response


def _refusal(exc: Exception) -> Response | None:
    """Oversized or over-nested input: 413/400 in the route's envelope, never a 500."""
    if isinstance(exc, RequestEntityTooLarge | BodyTooLarge):
        length = request.content_length
        if length is not None and length <= MAX_BODY_BYTES:
            # Werkzeug's other limit: one non-file form field held in memory.
            limit = current_app.config.get("MAX_FORM_MEMORY_SIZE")
            what = f"a form field is larger than {limit:,} bytes" if limit else "too large"
        else:
            what = f"request body too large: the limit is {MAX_BODY_BYTES:,} bytes"
        return _envelope(f"{what} ({request.method} {request.path})", 413)
    if isinstance(exc, JSONTooDeep):
        return _envelope(exc.reason, 400)
    if isinstance(exc, RecursionError):  # a parser we did not wrap: still the client's fault
        return _envelope("request nested too deeply; refused", 400)
    return None


def _api_error(exc: SimAPIError) -> Response:
    from flask import current_app

    if isinstance(exc, InvalidCredentials):
        # Credentials refused: 4xx by default, business refusals stay 200 + reason (why:
        # docs/simulator.md, "Authentication failures").
        status = int(current_app.config.get(AUTH_ERROR_STATUS, 401))
    else:
        status = exc.http_status if current_app.config.get(ERROR_STATUS_CODES) else 200
    return ci_response(exc.envelope(), status)


def _control_error(reason: str, status: int) -> Response:
    response = jsonify({"success": False, "reason": reason})
    response.status_code = status
    return response


def _handle(exc: Exception) -> Any:
    path = request.path
    refused = _refusal(exc)
    if refused is not None:
        return refused
    if isinstance(exc, ControlError):
        return _control_error(exc.reason, exc.http_status)
    if isinstance(exc, SimAPIError):
        return _api_error(exc)
    if path.startswith("/_sim/"):
        if isinstance(exc, HTTPException):
            code = exc.code or 500
            reason = f"{exc.name}: {request.method} {path}"
            if code == 405:
                reason = f"Method {request.method} not allowed for {path}; changes use POST"
            return _control_error(reason, code)
        log.exception("simulator control-plane error on %s", path)
        return _control_error(f"internal simulator error ({type(exc).__name__})", 500)
    if path.startswith("/api/") or path == "/api":
        if isinstance(exc, HTTPException):
            return _api_error(UnknownEndpoint(f"Unknown endpoint: {request.method} {path}"))
        log.exception("simulator error on %s", path)
        err = SimAPIError(f"Internal simulator error ({type(exc).__name__})")
        err.http_status = 500
        return _api_error(err)
    if isinstance(exc, HTTPException):
        return exc
    log.exception("simulator error on %s", path)
    return InternalServerError()


def create_app(
    state: SimState | None = None,
    *,
    error_status_codes: bool = False,
    auth_error_status: int = 401,
    control_token: str | None = None,
) -> Flask:
    """Build the simulator app around ``state`` (a fresh SimState when None).

    ``auth_error_status``: HTTP status of a wrong supplier_id/token (401, 403 or 200); every
    other failure is HTTP 200 + the envelope unless ``error_status_codes``.

    ``app.extensions["sim_state"]`` is the SimState, ``app.extensions["sim_faults"]`` the
    fault injector wrapping ``app.wsgi_app``. With ``control_token`` every ``/_sim/`` request
    that changes or reads simulator state must carry it (header ``X-Sim-Control-Token``, see
    :func:`mock_ci_server.routes_control.require_control_token`).
    """
    app = Flask("mock_ci_server")
    app.json = _DepthLimitedJSON(app)
    app.json.sort_keys = False  # keep CI's key order
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    app.config[ERROR_STATUS_CODES] = error_status_codes
    if auth_error_status not in AUTH_ERROR_STATUSES:
        raise ValueError(f"auth_error_status must be one of {AUTH_ERROR_STATUSES}")
    app.config[AUTH_ERROR_STATUS] = auth_error_status
    app.config[CONTROL_TOKEN] = control_token or None
    app.before_request(require_control_token)
    # No 308 redirects for "//" or a trailing "/": CI clients get the envelope instead.
    app.url_map.merge_slashes = False
    app.url_map.strict_slashes = False
    app.extensions["sim_state"] = state if state is not None else SimState()
    app.register_blueprint(ci_blueprint)
    app.register_blueprint(control_blueprint)
    app.register_blueprint(gpn_blueprint)
    app.register_blueprint(uploads_blueprint)
    register_console(app)  # /_sim/ui/ web console and GET / -> it
    app.register_error_handler(Exception, _handle)
    faults = FaultInjector(app.wsgi_app)
    app.wsgi_app = faults  # type: ignore[method-assign]
    app.extensions["sim_faults"] = faults
    # Outermost, so the request log shows what the client got (faults included).
    install_recorder(app, app.extensions["sim_state"].requests, app.extensions["sim_state"].clock)
    return app
