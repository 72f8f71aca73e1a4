"""Fault injection for the simulator: LocalStack-chaos-style rules as WSGI middleware.

A rule is a dict; the first rule whose ``method`` and ``path`` match (and whose ``probability``
draw succeeds) fires. An empty rule list turns faults off. Paths under ``/_sim/`` are never
faulted, so the control plane always answers.

Rule fields (all optional except that a rule must do something):

* ``method``: ``"GET"``, ``"POST"``, ... or ``"*"`` (default ``"*"``).
* ``path``: fnmatch glob on the request path, e.g. ``"/api/*/get_orders"`` (default ``"*"``).
* ``probability``: 0..1, drawn from a seeded RNG so runs are deterministic (default 1).
* ``count``: the rule expires after firing this many times.
* ``status`` (+ ``body``, ``content_type``, ``retry_after``): answer with this instead of
  calling the app. ``content_type`` defaults to ``text/html`` (a proxy error page).
* ``latency_ms``: sleep first, then pass through (or answer with ``status`` if given).
* ``truncate``: let the app answer, then cut the body in half (Content-Length matches the cut).
* ``drop``: send headers announcing the full length, send part of the body, then abort the
  connection. Without ``status`` the app handles the request first, so its side effects
  happen and only the answer is lost (the hard case for a client). The response also carries
  ``X-Sim-Fault: drop`` so the in-process transport can raise ``requests.ConnectionError``.

Every faulted response carries ``X-Sim-Fault: <kind>`` (``status``, ``latency``, ``truncate``
or ``drop``); the real service sends no such header.
"""

from __future__ import annotations

import fnmatch
import random
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

#: Any WSGI callable (kept as a public alias for callers that annotate with it).
WSGIApp = Callable[..., Iterable[bytes]]

FAULT_HEADER = "X-Sim-Fault"
CONTROL_PREFIX = "/_sim/"

_METHODS = frozenset({"*", "GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})
_FIELDS = frozenset(
    {
        "method",
        "path",
        "probability",
        "count",
        "status",
        "body",
        "content_type",
        "retry_after",
        "latency_ms",
        "drop",
        "truncate",
    }
)


class SimulatedDrop(ConnectionAbortedError):
    """Raised from a response iterator to make the WSGI server abort the connection."""


@dataclass
class _Rule:
    method: str
    path: str
    probability: float | None
    count: int | None
    status: int | None
    body: str | None
    content_type: str
    retry_after: int | None
    latency_ms: int | None
    drop: bool
    truncate: bool
    fired: int = 0

    @property
    def kind(self) -> str:
        if self.drop:
            return "drop"
        if self.truncate:
            return "truncate"
        if self.status is not None:
            return "status"
        return "latency"

    @property
    def expired(self) -> bool:
        return self.count is not None and self.fired >= self.count

    def matches(self, method: str, path: str) -> bool:
        return (self.method in ("*", method)) and fnmatch.fnmatchcase(path, self.path)

    def describe(self, index: int) -> dict[str, Any]:
        out: dict[str, Any] = {"index": index, "method": self.method, "path": self.path}
        for key in ("probability", "count", "status", "body", "retry_after", "latency_ms"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        if self.status is not None:
            out["content_type"] = self.content_type
        if self.drop:
            out["drop"] = True
        if self.truncate:
            out["truncate"] = True
        out["fired"] = self.fired
        if self.count is not None:
            out["remaining"] = max(self.count - self.fired, 0)
        return out


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _parse_rule(index: int, raw: object) -> _Rule:
    """Validate one raw rule; ValueError names the rule index and the field."""

    def bad(field: str, why: str) -> ValueError:
        value = raw.get(field) if isinstance(raw, Mapping) else raw
        return ValueError(f"fault rule {index}: field {field!r} {why} (got {value!r})")

    if not isinstance(raw, Mapping):
        raise ValueError(f"fault rule {index}: must be an object, got {type(raw).__name__}")
    unknown = sorted(str(k) for k in raw if k not in _FIELDS)
    if unknown:
        raise ValueError(
            f"fault rule {index}: unknown field {unknown[0]!r} "
            f"(known: {', '.join(sorted(_FIELDS))})"
        )

    method = raw.get("method", "*")
    if not isinstance(method, str) or method.upper() not in _METHODS:
        raise bad("method", f"must be one of {', '.join(sorted(_METHODS))}")
    path = raw.get("path", "*")
    if not isinstance(path, str) or not path or not path.startswith(("/", "*")):
        raise bad("path", "must be a glob starting with '/' or '*'")

    probability = raw.get("probability")
    if probability is not None and (not _is_number(probability) or not 0 <= probability <= 1):
        raise bad("probability", "must be a number between 0 and 1")
    count = raw.get("count")
    if count is not None and (not _is_int(count) or count < 1):
        raise bad("count", "must be an integer >= 1")
    status = raw.get("status")
    if status is not None and (not _is_int(status) or not 100 <= status <= 599):
        raise bad("status", "must be an HTTP status code 100..599")
    body = raw.get("body")
    if body is not None and not isinstance(body, str):
        raise bad("body", "must be a string")
    content_type = raw.get("content_type", "text/html")
    if not isinstance(content_type, str) or not content_type:
        raise bad("content_type", "must be a non-empty string")
    retry_after = raw.get("retry_after")
    if retry_after is not None and (not _is_int(retry_after) or retry_after < 0):
        raise bad("retry_after", "must be a whole number of seconds >= 0")
    latency_ms = raw.get("latency_ms")
    if latency_ms is not None and (not _is_int(latency_ms) or latency_ms < 0):
        raise bad("latency_ms", "must be an integer >= 0")
    drop = raw.get("drop", False)
    if not isinstance(drop, bool):
        raise bad("drop", "must be true or false")
    truncate = raw.get("truncate", False)
    if not isinstance(truncate, bool):
        raise bad("truncate", "must be true or false")

    if drop and truncate:
        raise bad("truncate", "cannot be combined with drop")
    if status is None:
        for needs_status in ("body", "retry_after", "content_type"):
            if needs_status in raw:
                raise bad(needs_status, "only applies together with 'status'")
    if status is None and latency_ms is None and not drop and not truncate:
        raise ValueError(
            f"fault rule {index}: does nothing; give one of 'status', 'latency_ms', "
            "'drop' or 'truncate'"
        )
    return _Rule(
        method=method.upper(),
        path=path,
        probability=float(probability) if probability is not None else None,
        count=count,
        status=status,
        body=body,
        content_type=content_type,
        retry_after=retry_after,
        latency_ms=latency_ms,
        drop=drop,
        truncate=truncate,
    )


def _default_body(status: int) -> str:
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Error"
    return f"<html><body><h1>{status} {phrase}</h1></body></html>"


def _status_line(status: int) -> str:
    try:
        return f"{status} {HTTPStatus(status).phrase}"
    except ValueError:
        return f"{status} Unknown"


class _DroppingIterator:
    """Yields the first half of the body, then raises so the server aborts the connection."""

    def __init__(self, body: bytes) -> None:
        self._first = body[: max(len(body) // 2, 1)] if body else b""
        self._sent = False

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        if not self._sent:
            self._sent = True
            return self._first
        raise SimulatedDrop("simulated connection drop (fault rule)")


class FaultInjector:
    """WSGI middleware that answers matching requests with a configured fault.

    Rules are matched in order on method and path; the first match wins; an empty list turns
    faults off. Paths under ``/_sim/`` are never faulted. Thread-safe.
    """

    def __init__(self, app: WSGIApplication | WSGIApp, *, seed: int = 0) -> None:
        self.app = app
        self._lock = threading.Lock()
        self._rules: list[_Rule] = []
        self._seed = seed
        self._rng = random.Random(seed)
        # Injected for tests; real runs sleep.
        self.sleep: Callable[[float], None] = time.sleep

    # -- control -----------------------------------------------------------------------------

    @property
    def seed(self) -> int:
        """The seed of the probability RNG."""
        return self._seed

    def set_seed(self, seed: int) -> None:
        """Re-seed the probability RNG (deterministic runs)."""
        if not _is_int(seed):
            raise ValueError(f"fault seed must be an integer (got {seed!r})")
        with self._lock:
            self._seed = seed
            self._rng = random.Random(seed)

    def set_rules(self, rules: list[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Replace all rules; raises ValueError naming the bad rule and field.

        Also restarts the RNG from the current seed, so the same rules + seed give the same
        sequence of faults. Returns :meth:`describe`.
        """
        if not isinstance(rules, list):
            raise ValueError(f"fault rules must be a list (got {type(rules).__name__})")
        parsed = [_parse_rule(i, raw) for i, raw in enumerate(rules)]
        with self._lock:
            self._rules = parsed
            self._rng = random.Random(self._seed)
        return self.describe()

    def describe(self) -> list[dict[str, Any]]:
        """Current rules with how often each fired (``remaining`` for ``count`` rules)."""
        with self._lock:
            return [rule.describe(i) for i, rule in enumerate(self._rules)]

    def reset(self) -> None:
        """Remove every rule (the seed is kept; the RNG restarts from it)."""
        with self._lock:
            self._rules = []
            self._rng = random.Random(self._seed)

    # -- WSGI --------------------------------------------------------------------------------

    def _select(self, method: str, path: str) -> _Rule | None:
        with self._lock:
            for rule in self._rules:
                if rule.expired or not rule.matches(method, path):
                    continue
                # Draw only for matching rules, so unrelated traffic does not shift the sequence.
                if rule.probability is not None and self._rng.random() >= rule.probability:
                    continue
                rule.fired += 1
                return rule
        return None

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        path = str(environ.get("PATH_INFO", "") or "/")
        if path.startswith(CONTROL_PREFIX) or path == CONTROL_PREFIX.rstrip("/"):
            return self.app(environ, start_response)
        rule = self._select(str(environ.get("REQUEST_METHOD", "GET")).upper(), path)
        if rule is None:
            return self.app(environ, start_response)

        if rule.latency_ms:
            self.sleep(rule.latency_ms / 1000)
        if rule.status is None and not rule.drop and not rule.truncate:
            # Pure latency: the real answer, late.
            return self.app(environ, start_response)

        if rule.status is not None:
            status = _status_line(rule.status)
            body = (rule.body if rule.body is not None else _default_body(rule.status)).encode()
            headers = [("Content-Type", rule.content_type)]
            if rule.retry_after is not None:
                headers.append(("Retry-After", str(rule.retry_after)))
        else:
            status, headers, body = self._call_app(environ)

        headers = [(k, v) for k, v in headers if k.lower() not in ("content-length", FAULT_HEADER)]
        headers.append((FAULT_HEADER, rule.kind))
        if rule.truncate:
            body = body[: len(body) // 2]
        # Drop: announce the full length so the client notices the missing bytes.
        headers.append(("Content-Length", str(len(body) + (1 if rule.drop and not body else 0))))
        start_response(status, headers)
        if rule.drop:
            return _DroppingIterator(body)
        return [body]

    def _call_app(self, environ: WSGIEnvironment) -> tuple[str, list[tuple[str, str]], bytes]:
        """Run the wrapped app to completion and return its status, headers and body."""
        captured: dict[str, Any] = {}
        written: list[bytes] = []

        def capture(
            status: str, headers: list[tuple[str, str]], exc_info: Any = None
        ) -> Callable[[bytes], object]:
            captured["status"] = status
            captured["headers"] = list(headers)
            return written.append

        result = self.app(environ, capture)
        try:
            chunks = [*written, *result]
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
        return captured["status"], captured["headers"], b"".join(chunks)
