"""The control plane under ``/_sim/``: JSON in, JSON out; every change is a POST."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request
from marshmallow import Schema, ValidationError

from mock_ci_server.carriers import UnknownRegionError
from mock_ci_server.errors import ControlError
from mock_ci_server.faults import FaultInjector
from mock_ci_server.openapi import build_openapi
from mock_ci_server.schemas import (
    AccountSchema,
    CancelSchema,
    ClockSchema,
    ConfigSchema,
    SeedSchema,
    SuspendSchema,
    flatten_errors,
)
from mock_ci_server.state import SimState, UnknownAccountError

blueprint = Blueprint("sim_control", __name__, url_prefix="/_sim")


def _state() -> SimState:
    state: SimState = current_app.extensions["sim_state"]
    return state


def _faults() -> FaultInjector:
    faults: FaultInjector = current_app.extensions["sim_faults"]
    return faults


def _body(schema: Schema | None = None, *, optional: bool = False) -> Any:
    raw = request.get_json(silent=True)
    if raw is None:
        if optional and not request.get_data():
            raw = {}
        else:
            raise ControlError("request body must be JSON (Content-Type: application/json)")
    if schema is None:
        return raw
    if not isinstance(raw, dict):
        raise ControlError(f"request body must be a JSON object, got {type(raw).__name__}")
    try:
        return schema.load(raw)
    except ValidationError as err:
        raise ControlError("; ".join(flatten_errors(err.messages))) from None


def _call(fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Map the state's errors to control-plane errors with a reason."""
    try:
        return fn(*args, **kwargs)
    except UnknownAccountError as exc:
        raise ControlError(str(exc.args[0]), 404) from None
    except (UnknownRegionError, ValueError) as exc:
        raise ControlError(str(exc)) from None


@blueprint.post("/reset")
def reset() -> Response:
    """Wipe accounts, lines, clock offset, GPN data and fault rules."""
    _state().reset()
    _faults().reset()
    return jsonify({"success": True})


@blueprint.get("/health")
def health() -> Response:
    """Liveness plus the simulated now."""
    state = _state()
    return jsonify({"status": "ok", "now": state.clock.now().isoformat()})


@blueprint.post("/accounts")
def put_account() -> Response:
    """Create or update an account (tokens are never echoed)."""
    data = _body(AccountSchema())
    account = _call(_state().add_account, **data)
    return jsonify({"success": True, "account": account.describe()})


@blueprint.get("/accounts")
def list_accounts() -> Response:
    """Every account, tokens masked."""
    return jsonify({"accounts": _state().accounts()})


@blueprint.post("/accounts/<supplier_id>/suspend")
def suspend(supplier_id: str) -> Response:
    """Suspend an account (new orders refused until reinstated)."""
    data = _body(SuspendSchema(), optional=True)
    return jsonify(
        {"success": True, "account": _call(_state().suspend, supplier_id, data["reason"])}
    )


@blueprint.post("/accounts/<supplier_id>/reinstate")
def reinstate(supplier_id: str) -> Response:
    """Lift a suspension (the 30-day cycle restarts)."""
    return jsonify({"success": True, "account": _call(_state().reinstate, supplier_id)})


@blueprint.post("/seed")
def seed() -> Response:
    """Generate orders from knobs, or store raw ``records``; returns counts and created ids."""
    data = _body(SeedSchema())
    state = _state()
    if data["records"] is not None:
        result = _call(state.seed_records, data["supplier_id"], data["records"])
    else:
        if data.get("orders") is None:
            raise ControlError("give orders (generator) or records")
        result = _call(
            state.seed,
            data["supplier_id"],
            orders=data["orders"],
            seed=data["seed"],
            lines_per_order=tuple(data["lines_per_order"]),
            quantity=tuple(data["quantity"]),
            split_share=data["split_share"],
            countries=data["countries"],
            spread_hours=data["spread_hours"],
            unmapped_share=data["unmapped_share"],
        )
    return jsonify({"success": True, **result})


@blueprint.get("/state")
def get_state() -> Response:
    """Every line with export flag, tracking, status and calls (``?supplier_id=``,
    ``?records=1`` to include the raw records)."""
    supplier_id = request.args.get("supplier_id") or None
    include = request.args.get("records", "").lower() in ("1", "true", "yes")
    return jsonify(_call(_state().get_state, supplier_id, include))


@blueprint.post("/clock")
def clock() -> Response:
    """``{"set": iso}`` or ``{"advance_seconds": n}`` / ``{"advance_days": n}``."""
    data = _body(ClockSchema())
    state = _state()
    if "set" in data:
        result = state.set_clock(data["set"])
    elif "advance_seconds" in data:
        result = state.advance_clock(timedelta(seconds=data["advance_seconds"]))
    else:
        result = state.advance_clock(timedelta(days=data["advance_days"]))
    return jsonify({"success": True, **result})


@blueprint.get("/clock")
def get_clock() -> Response:
    """The simulated now."""
    state = _state()
    return jsonify({"now": state.clock.now().isoformat(), "frozen": state.clock.frozen})


@blueprint.post("/cancel")
def cancel() -> Response:
    """Groupon customer service cancels lines."""
    data = _body(CancelSchema())
    result = _call(_state().cancel_lines, data["supplier_id"], data["ci_lineitemids"])
    return jsonify({"success": True, **result})


@blueprint.post("/faults")
def set_faults() -> Response:
    """Replace the fault rules: a JSON list, or ``{"rules": [...], "seed": n}``."""
    raw = _body()
    rules = raw.get("rules") if isinstance(raw, dict) else raw
    if not isinstance(rules, list):
        raise ControlError('body must be a JSON list of rules or {"rules": [...]}')
    seed = raw.get("seed") if isinstance(raw, dict) else None
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
        raise ControlError(f"seed must be an integer, got {seed!r}")
    try:
        if seed is not None:
            # Before the rules: set_rules restarts the generator from the current seed.
            _faults().set_seed(seed)
        described = _faults().set_rules(rules)
    except ValueError as exc:
        raise ControlError(str(exc)) from None
    return jsonify({"success": True, "rules": described})


@blueprint.get("/faults")
def get_faults() -> Response:
    """Current rules and how often each fired."""
    return jsonify({"rules": _faults().describe()})


def _switches() -> dict[str, Any]:
    from mock_ci_server.app import AUTH_ERROR_STATUS, ERROR_STATUS_CODES

    return {
        "error_status_codes": bool(current_app.config.get(ERROR_STATUS_CODES)),
        "auth_error_status": int(current_app.config.get(AUTH_ERROR_STATUS, 401)),
    }


@blueprint.post("/config")
def config() -> Response:
    """``{"error_status_codes": bool, "auth_error_status": 401|403|200}`` (either or both):
    business failures as HTTP 200 (default) or 4xx; credential failures 401 (default) or 200."""
    from mock_ci_server.app import AUTH_ERROR_STATUS, ERROR_STATUS_CODES

    data = _body(ConfigSchema())
    if "error_status_codes" in data:
        current_app.config[ERROR_STATUS_CODES] = data["error_status_codes"]
    if "auth_error_status" in data:
        current_app.config[AUTH_ERROR_STATUS] = data["auth_error_status"]
    return jsonify({"success": True, **_switches()})


@blueprint.get("/config")
def get_config() -> Response:
    """Current switches."""
    return jsonify(_switches())


@blueprint.get("/openapi.json")
def openapi() -> Response:
    """OpenAPI document of the real-API part (built by ``mock_ci_server.openapi``)."""
    return jsonify(build_openapi())


def _int_arg(name: str, default: int, low: int, high: int) -> int:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ControlError(f"{name} must be an integer, got {raw!r}") from None
    if not low <= value <= high:
        raise ControlError(f"{name} must be within {low}..{high}, got {value}")
    return value


@blueprint.get("/requests")
def get_requests() -> Response:
    """The request log, newest first (``?limit=&after_id=&supplier_id=&path=&status=``);
    tokens masked. ``/_sim/`` calls themselves are not logged."""
    status = request.args.get("status")
    entries = _state().request_log(
        _int_arg("limit", 100, 1, 10_000),
        after_id=_int_arg("after_id", 0, 0, 2**62),
        supplier_id=request.args.get("supplier_id") or None,
        path_contains=request.args.get("path") or None,
        status=_int_arg("status", 0, 100, 599) if status else None,
    )
    return jsonify({"requests": entries, "capacity": _state().requests.capacity})


@blueprint.post("/requests/clear")
def clear_requests() -> Response:
    """Empty the request log."""
    _state().clear_request_log()
    return jsonify({"success": True})
