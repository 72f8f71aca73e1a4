"""``create_app``: the Flask app of the simulator (CI API, control plane, GPN, faults)."""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException, InternalServerError

from mock_ci_server.console import register as register_console
from mock_ci_server.errors import ControlError, InvalidCredentials, SimAPIError, UnknownEndpoint
from mock_ci_server.faults import FaultInjector
from mock_ci_server.gpn.routes import blueprint as gpn_blueprint
from mock_ci_server.recorder import install as install_recorder
from mock_ci_server.routes_ci import blueprint as ci_blueprint
from mock_ci_server.routes_ci import ci_response
from mock_ci_server.routes_control import blueprint as control_blueprint
from mock_ci_server.state import SimState
from mock_ci_server.uploads import blueprint as uploads_blueprint

log = logging.getLogger(__name__)

#: app.config key: True = API failures use 400/401/403/404 instead of HTTP 200.
ERROR_STATUS_CODES = "SIM_ERROR_STATUS_CODES"
#: app.config key: the HTTP status of an authentication failure (401 by default, or 200).
AUTH_ERROR_STATUS = "SIM_AUTH_ERROR_STATUS"
AUTH_ERROR_STATUSES = (401, 403, 200)


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
) -> Flask:
    """Build the simulator app around ``state`` (a fresh SimState when None).

    ``auth_error_status``: HTTP status of a wrong supplier_id/token (401, 403 or 200); every
    other failure is HTTP 200 + the envelope unless ``error_status_codes``.

    ``app.extensions["sim_state"]`` is the SimState, ``app.extensions["sim_faults"]`` the
    fault injector wrapping ``app.wsgi_app``.
    """
    app = Flask("mock_ci_server")
    app.json.sort_keys = False  # type: ignore[attr-defined]  # keep CI's key order
    app.config[ERROR_STATUS_CODES] = error_status_codes
    if auth_error_status not in AUTH_ERROR_STATUSES:
        raise ValueError(f"auth_error_status must be one of {AUTH_ERROR_STATUSES}")
    app.config[AUTH_ERROR_STATUS] = auth_error_status
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
