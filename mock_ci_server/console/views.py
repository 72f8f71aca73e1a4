"""Routes of the web console: parse (``forms``), call one SimState method, render or redirect."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import replace
from typing import Any
from urllib.parse import urlencode

from flask import (
    Blueprint,
    Flask,
    Response,
    current_app,
    redirect,
    render_template,
    request,
    send_from_directory,
    url_for,
)
from werkzeug.wrappers import Response as BaseResponse

from mock_ci_server.carriers import SUPPORTED_REGIONS, UnknownRegionError
from mock_ci_server.console import forms
from mock_ci_server.errors import InvalidCredentials
from mock_ci_server.faults import FaultInjector
from mock_ci_server.state import LINE_STATUSES, LineQuery, SimState, UnknownAccountError
from mock_ci_server.uploads import (
    MAX_UPLOAD_BYTES,
    UploadError,
    export_orders_file,
    import_tracking_file,
)

blueprint = Blueprint(
    "sim_console",
    __name__,
    url_prefix="/_sim/ui",
    template_folder="templates",
    static_folder="static",
)

REQUEST_LOG_PAGE = 100
# Errors a console action turns into a red message on the page it came from.
_USER_ERRORS = (forms.FormError, UnknownAccountError, UnknownRegionError, UploadError, ValueError)


def register(app: Flask) -> None:
    """Mount the console and send ``GET /`` to it (a tester's browser lands somewhere useful)."""
    app.register_blueprint(blueprint)
    app.add_url_rule("/", "sim_console_root", _root)


def _root() -> BaseResponse:
    return redirect(url_for("sim_console.overview"))


def _state() -> SimState:
    state: SimState = current_app.extensions["sim_state"]
    return state


def _faults() -> FaultInjector:
    faults: FaultInjector = current_app.extensions["sim_faults"]
    return faults


@blueprint.context_processor
def _common() -> dict[str, Any]:
    state = _state()
    return {
        "sim_now": state.clock.now(),
        "clock_frozen": state.clock.frozen,
        "all_accounts": state.accounts(),
        "statuses": LINE_STATUSES,
        "msg": request.args.get("msg", ""),
        "err": request.args.get("err", ""),
    }


def _back(default: str, *, msg: str = "", err: str = "") -> BaseResponse:
    """Redirect to the form's ``next`` (console pages only) or ``default`` with a message."""
    target = request.form.get("next") or default
    if not target.startswith("/_sim/ui/"):
        target = default
    query = urlencode({k: v for k, v in (("msg", msg), ("err", err)) if v})
    if query:
        target += ("&" if "?" in target else "?") + query
    return redirect(target, code=303)


def _act(default_endpoint: str, action: Callable[[], str]) -> BaseResponse:
    """Run a form action; its message on success, the error's text (naming the field) else."""
    default = url_for(default_endpoint)
    try:
        return _back(default, msg=action())
    except InvalidCredentials as exc:
        return _back(default, err=exc.reason)
    except _USER_ERRORS as exc:
        text = str(exc.args[0]) if exc.args else str(exc)
        return _back(default, err=getattr(exc, "reason", text))


# --- accounts ---------------------------------------------------------------------------------


@blueprint.get("/")
def overview() -> str:
    state = _state()
    return render_template(
        "console/overview.html",
        accounts=state.accounts(),
        counts=state.status_counts(),
        regions=SUPPORTED_REGIONS,
    )


@blueprint.post("/accounts")
def add_account() -> BaseResponse:
    def action() -> str:
        fields = forms.account_fields(request.form)
        account = _state().add_account(**fields)
        return f"account {account.supplier_id} saved (token kept, never shown)"

    return _act("sim_console.overview", action)


@blueprint.post("/accounts/<supplier_id>/suspend")
def suspend(supplier_id: str) -> BaseResponse:
    def action() -> str:
        _state().suspend(supplier_id, forms.text(request.form, "reason") or "web console")
        return f"account {supplier_id} suspended"

    return _act("sim_console.overview", action)


@blueprint.post("/accounts/<supplier_id>/reinstate")
def reinstate(supplier_id: str) -> BaseResponse:
    def action() -> str:
        _state().reinstate(supplier_id)
        return f"account {supplier_id} reinstated (its 30-day cycle restarts now)"

    return _act("sim_console.overview", action)


# --- orders and lines -------------------------------------------------------------------------


@blueprint.get("/lines")
def lines() -> str:
    state = _state()
    args = request.args
    supplier_id = args.get("account") or None
    total, page, error = 0, 1, ""
    rows: list[dict[str, Any]] = []
    try:
        query = forms.line_query(args)
        page = forms.page_number(args)
        offset = (page - 1) * forms.PAGE_SIZE
        total, rows = state.find_lines(
            supplier_id, query=query, offset=offset, limit=forms.PAGE_SIZE
        )
        if total == 0 and query.orderid and query.orderid.isdigit():
            # No order with that id: the tester may have pasted a ci_lineitemid.
            by_line = replace(query, orderid=None, line_id=int(query.orderid))
            total, rows = state.find_lines(
                supplier_id, query=by_line, offset=offset, limit=forms.PAGE_SIZE
            )
    except (forms.FormError, UnknownAccountError) as exc:
        error = str(exc.args[0])
    pages = max(math.ceil(total / forms.PAGE_SIZE), 1)
    keep: dict[str, Any] = {k: v for k, v in args.items() if k != "page" and v}

    def page_url(number: int) -> str:
        return url_for("sim_console.lines", **{**keep, "page": number})

    return render_template(
        "console/lines.html",
        rows=rows,
        total=total,
        page=page,
        pages=pages,
        page_url=page_url,
        args=args,
        error=error,
        here=request.full_path.rstrip("?"),
    )


@blueprint.get("/lines/<int:line_id>")
def line_detail(line_id: int) -> tuple[str, int] | str:
    state = _state()
    line = state.line(line_id)
    if line is None:
        return render_template("console/missing.html", what=f"line {line_id}"), 404
    described = line.describe(include_record=True)
    _total, siblings = state.find_lines(
        line.supplier_id, query=LineQuery(orderid=line.orderid), limit=200
    )
    return render_template(
        "console/line.html",
        line=described,
        siblings=siblings,
        record_json=json.dumps(described.pop("record"), indent=2, ensure_ascii=False),
        here=request.path,
    )


@blueprint.post("/lines/cancel")
def cancel() -> BaseResponse:
    def action() -> str:
        ids = forms.line_ids(request.form.getlist("ids"))
        why = forms.reason(request.form)
        state = _state()
        by_supplier: dict[str, list[int]] = {}
        for line_id in ids:
            line = state.line(line_id)
            if line is None:
                raise forms.FormError(f"ids: unknown line {line_id}")
            if line.status == "shipped":
                raise forms.FormError(f"line {line_id} is shipped and cannot be cancelled")
            by_supplier.setdefault(line.supplier_id, []).append(line_id)
        cancelled: list[int] = []
        for supplier_id, chosen in by_supplier.items():
            cancelled += state.cancel_lines(supplier_id, chosen, reason=why)["cancelled"]
        skipped = len(ids) - len(cancelled)
        note = f" ({skipped} already cancelled)" if skipped else ""
        return f"cancelled {len(cancelled)} line(s){note}: {why}"

    return _act("sim_console.lines", action)


# --- request log ------------------------------------------------------------------------------


def _request_entries(after_id: int = 0) -> list[dict[str, Any]] | None:
    """Newest first; None when this simulator has no request log."""
    state = _state()
    reader = getattr(state, "request_log", None)
    if reader is None:
        return None
    args = request.args
    status = args.get("status", "")
    entries: list[dict[str, Any]] = reader(
        REQUEST_LOG_PAGE,
        after_id=after_id,
        supplier_id=args.get("account") or None,
        path_contains=args.get("path") or None,
        status=int(status) if status.isdigit() else None,
    )
    return entries


@blueprint.get("/requests")
def requests_page() -> str:
    entries = _request_entries()
    last_id = max((e["id"] for e in entries), default=0) if entries else 0
    return render_template(
        "console/requests.html", entries=entries, last_id=last_id, args=request.args
    )


@blueprint.get("/requests/rows")
def request_rows() -> Response:
    """Rows newer than ``after_id`` as ``<tr>`` HTML (the page polls this every 2 s)."""
    raw = request.args.get("after_id", "0")
    entries = _request_entries(int(raw) if raw.isdigit() else 0) or []
    last_id = max((e["id"] for e in entries), default=0)
    html = render_template("console/_request_rows.html", entries=entries)
    response = Response(html, mimetype="text/html")
    response.headers["X-Last-Id"] = str(last_id)
    response.headers["Cache-Control"] = "no-store"
    return response


@blueprint.post("/requests/clear")
def clear_requests() -> BaseResponse:
    def action() -> str:
        clear = getattr(_state(), "clear_request_log", None)
        if clear is None:
            raise forms.FormError("this simulator has no request log")
        clear()
        return "request log cleared"

    return _act("sim_console.requests_page", action)


# --- Groupon's supplier-UI files --------------------------------------------------------------


@blueprint.get("/files")
def files() -> str:
    return render_template("console/files.html")


@blueprint.get("/export")
def export() -> BaseResponse:
    """Export -> Orders as the logged-in supplier (the console acts with the account's token)."""
    args = request.args
    try:
        supplier_id = forms.text(args, "account", required=True)
        fmt = forms.text(args, "format") or "csv"
        if fmt not in ("csv", "xlsx"):
            raise forms.FormError(f"format must be csv or xlsx, got {fmt!r}")
        status = forms.text(args, "status") or None
        if status is not None and status not in LINE_STATUSES:
            raise forms.FormError(f"status must be one of {', '.join(LINE_STATUSES)}")
        state = _state()
        body, mimetype, filename = export_orders_file(
            state,
            supplier_id,
            state.supplier_token(supplier_id),
            fmt,
            status,
            mark_exported=args.get("mark_exported") == "1",
        )
    except (forms.FormError, UnknownAccountError) as exc:
        query = urlencode({"err": str(exc.args[0])})
        return redirect(url_for("sim_console.files") + "?" + query, code=303)
    return Response(
        body,
        mimetype=mimetype,
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


@blueprint.post("/import")
def import_tracking() -> BaseResponse:
    """Import -> Tracking Numbers as the logged-in supplier; all-or-nothing, rows named."""

    def action() -> str:
        supplier_id = forms.text(request.form, "account", required=True)
        upload = request.files.get("file")
        if upload is None or not upload.filename:
            raise forms.FormError("choose a .csv or .xlsx file to upload")
        state = _state()
        data = upload.stream.read(MAX_UPLOAD_BYTES + 1)
        rows = import_tracking_file(
            state, supplier_id, state.supplier_token(supplier_id), upload.filename, data
        )
        return f"{upload.filename}: {rows} tracking row(s) imported for {supplier_id}"

    return _act("sim_console.files", action)


# --- the simulator's levers -------------------------------------------------------------------


@blueprint.get("/levers")
def levers() -> str:
    from mock_ci_server.app import ERROR_STATUS_CODES

    rules = _faults().describe()
    return render_template(
        "console/levers.html",
        rules=rules,
        rules_json=json.dumps(
            [
                {k: v for k, v in r.items() if k not in ("index", "fired", "remaining")}
                for r in rules
            ],
            indent=2,
        ),
        error_status_codes=bool(current_app.config.get(ERROR_STATUS_CODES)),
    )


@blueprint.post("/clock")
def clock() -> BaseResponse:
    def action() -> str:
        kind, value = forms.clock_change(request.form)
        state = _state()
        result = state.set_clock(value) if kind == "set" else state.advance_clock(value)
        cancelled = len(result["auto_cancelled"])
        return f"clock now {result['now']}; {cancelled} line(s) auto-cancelled"

    return _act("sim_console.levers", action)


@blueprint.post("/faults")
def faults() -> BaseResponse:
    def action() -> str:
        rules, seed = forms.fault_rules(request.form)
        injector = _faults()
        if seed is not None:
            injector.set_seed(seed)
        described = injector.set_rules(rules)
        return f"{len(described)} fault rule(s) active"

    return _act("sim_console.levers", action)


@blueprint.post("/seed")
def seed() -> BaseResponse:
    def action() -> str:
        supplier_id = forms.text(request.form, "account", required=True)
        result = _state().seed(supplier_id, **forms.seed_knobs(request.form))
        refused = result["orders_refused"]
        note = f"; {refused} refused (account suspended)" if refused else ""
        return (
            f"seeded {result['orders_created']} order(s), {result['lines_created']} line(s) "
            f"for {supplier_id}{note}"
        )

    return _act("sim_console.levers", action)


@blueprint.post("/config")
def config() -> BaseResponse:
    from mock_ci_server.app import ERROR_STATUS_CODES

    def action() -> str:
        on = request.form.get("error_status_codes") == "1"
        current_app.config[ERROR_STATUS_CODES] = on
        return "API failures now answer " + ("4xx statuses" if on else "HTTP 200 + success:false")

    return _act("sim_console.levers", action)


@blueprint.post("/reset")
def reset() -> BaseResponse:
    def action() -> str:
        if request.form.get("confirm") != "yes":
            raise forms.FormError("tick 'yes, forget everything' to reset")
        _state().reset()
        _faults().reset()
        return "simulator reset: no accounts, no lines, clock back to real time, no faults"

    return _act("sim_console.levers", action)


# --- Swagger UI (vendored by the swagger-ui-bundle package; no CDN) ---------------------------


@blueprint.get("/api/")
def swagger() -> str:
    return render_template("console/swagger.html", spec_url=url_for("sim_control.openapi"))


@blueprint.get("/api/assets/<path:name>")
def swagger_asset(name: str) -> Response:
    from swagger_ui_bundle import swagger_ui_path

    return send_from_directory(swagger_ui_path, name, max_age=3600)
