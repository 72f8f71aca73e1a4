"""Feeds the request log (:mod:`mock_ci_server.requestlog`): WSGI middleware plus a Flask hook.

The middleware sits outermost (around the fault injector), so the log shows what the client
really got: a fault's 503, a truncated body, a dropped connection. The Flask ``after_request``
hook hands the parameters Flask parsed (query + form + file names) to the middleware through
the WSGI environ; when a fault answered before the app ran, only the query string is known.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from flask import Flask, Response, request

from mock_ci_server.requestlog import EXCERPT_CHARS, RequestLog, RequestRecord, mask_params

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

    from mock_ci_server.clock import SimClock

log = logging.getLogger(__name__)

PARAMS_KEY = "mock_ci_server.params"
_SUCCESS = re.compile(rb'"success"\s*:\s*(true|false)')
_TAIL = 64


def _file_label(storage: Any) -> str:
    stream = storage.stream
    try:
        pos = stream.tell()
        stream.seek(0, 2)
        size = stream.tell()
        stream.seek(pos)
    except (OSError, AttributeError, ValueError):
        return f"<file {storage.filename}>"
    return f"<file {storage.filename}, {size} bytes>"


def _remember_params(response: Response) -> Response:
    """after_request hook: the parsed parameters, secrets masked, for the middleware."""
    try:
        params = request.args.to_dict(flat=True)
        if request.mimetype in ("application/x-www-form-urlencoded", "multipart/form-data"):
            for key, value in request.form.to_dict(flat=True).items():
                params.setdefault(key, value)
            for key, storage in request.files.items():
                params.setdefault(key, _file_label(storage))
        request.environ[PARAMS_KEY] = mask_params(params)
    except Exception:  # logging must never change the answer
        log.debug("request log: parameters not captured", exc_info=True)
    return response


class _Tap:
    """Wraps a response iterable: keeps the first bytes and the tail; records once, when the
    body has been read to the end or at close(), whichever comes first."""

    def __init__(self, inner: Iterable[bytes], recorder: RequestRecorder, context: dict[str, Any]):
        self._inner = inner
        self._recorder = recorder
        self._context = context
        self._head = bytearray()
        self._tail = b""
        self._done = False

    def __iter__(self) -> Iterator[bytes]:
        try:
            for chunk in self._inner:
                if len(self._head) < EXCERPT_CHARS * 4:
                    self._head += chunk[: EXCERPT_CHARS * 4 - len(self._head)]
                self._tail = (self._tail + chunk)[-_TAIL:]
                yield chunk
            self._finish()
        except Exception:  # GeneratorExit (the reader stopped early) is not an abort
            self._context.setdefault("aborted", True)
            self._finish()
            raise

    def close(self) -> None:
        try:
            close = getattr(self._inner, "close", None)
            if close is not None:
                close()
        finally:
            self._finish()

    def _finish(self) -> None:
        if self._done:
            return
        self._done = True
        head = bytes(self._head)
        self._recorder.finish(self._context, head, head[:_TAIL] + b" " + self._tail)


class RequestRecorder:
    """WSGI middleware recording every answered request into ``log`` (paths it wants)."""

    def __init__(self, app: WSGIApplication, log: RequestLog, clock: SimClock) -> None:
        self.app = app
        self.log = log
        self.clock = clock

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        path = str(environ.get("PATH_INFO", "") or "/")
        if not self.log.wants(path):
            return self.app(environ, start_response)
        context: dict[str, Any] = {
            "environ": environ,
            "path": path,
            "method": str(environ.get("REQUEST_METHOD", "GET")).upper(),
            "started": time.perf_counter(),
            "at": datetime.now(UTC),
            "sim_now": self.clock.now(),
            "status": 500,
        }

        def capture(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            context["status"] = int(status.split(" ", 1)[0])
            context["fault"] = next((v for k, v in headers if k.lower() == "x-sim-fault"), None)
            return start_response(status, headers, exc_info)

        try:
            result = self.app(environ, capture)
        except BaseException:
            self.finish(context, b"", b"")
            raise
        return _Tap(result, self, context)

    def finish(self, context: dict[str, Any], head: bytes, ends: bytes) -> None:
        """Build and store the record of one request."""
        environ = context["environ"]
        params = environ.get(PARAMS_KEY)
        if params is None:  # the app never ran (a fault answered): the query is all we know
            query = str(environ.get("QUERY_STRING", ""))
            params = mask_params(dict(parse_qsl(query, keep_blank_values=True)))
        found = _SUCCESS.search(ends)
        text = head.decode("utf-8", "replace")
        if len(text) > EXCERPT_CHARS:
            text = text[:EXCERPT_CHARS] + "…"
        if context.get("aborted"):
            text += " [connection aborted]"
        self.log.record(
            RequestRecord(
                method=context["method"],
                path=context["path"],
                params=params,
                status=context["status"],
                excerpt=text,
                latency_ms=(time.perf_counter() - context["started"]) * 1000,
                at=context["at"],
                sim_now=context["sim_now"],
                supplier_id=params.get("supplier_id") or params.get("clientId") or None,
                success=None if found is None else found.group(1) == b"true",
                fault=context.get("fault"),
            )
        )


def install(app: Flask, log: RequestLog, clock: SimClock) -> None:
    """Record ``app``'s requests into ``log``: call once, after every other WSGI wrapper."""
    app.after_request(_remember_params)
    app.wsgi_app = RequestRecorder(app.wsgi_app, log, clock)  # type: ignore[method-assign]
    app.extensions["sim_request_recorder"] = app.wsgi_app


__all__ = ["PARAMS_KEY", "RequestRecorder", "install"]
