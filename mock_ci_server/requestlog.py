"""A bounded, in-memory log of the API calls the simulator answered. Plain Python, no Flask.

A tester integrating a client wants to see exactly what the client sent and what it got back
(Stripe's and LocalStack's dashboards show the same). Entries are kept newest-last in a
``deque(maxlen=capacity)``: the oldest fall off, memory stays bounded. Secrets never enter
the log: every parameter whose name contains ``token`` (any case) is masked before an entry
is built, and answer excerpts are cut to :data:`EXCERPT_CHARS` characters.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

log = logging.getLogger(__name__)

DEFAULT_CAPACITY = 1000
EXCERPT_CHARS = 300
MASK = "********"
#: Paths under these prefixes are not logged (the control plane and the web console poll it).
DEFAULT_EXCLUDED_PREFIXES: tuple[str, ...] = ("/_sim/",)


def is_secret_param(name: str) -> bool:
    """Parameter names whose values never enter the log (``token``, ``control_token``...)."""
    return "token" in name.lower()


def mask_params(params: Mapping[str, str]) -> dict[str, str]:
    """A copy of ``params`` with secret values replaced by ``********``."""
    return {k: (MASK if is_secret_param(k) else v) for k, v in params.items()}


def excerpt(body: bytes | str, limit: int = EXCERPT_CHARS) -> str:
    """The first ``limit`` characters of an answer (``…`` marks a cut), decoded leniently."""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    return text if len(text) <= limit else text[:limit] + "…"


@dataclass(frozen=True)
class RequestRecord:
    """One answered request (``id`` is assigned by :class:`RequestLog`, increasing from 1).

    :ivar at: wall-clock time the request arrived (aware UTC).
    :ivar sim_now: the simulator clock at that moment (differs once the clock is moved).
    :ivar params: query + form parameters, secrets masked; uploaded files as
        ``"<file name.csv, 1234 bytes>"``.
    :ivar status: the HTTP status the client got (a fault's status when a fault answered).
    :ivar success: the envelope's ``success`` when the answer was a CI envelope, else None.
    :ivar fault: the fault kind (``status``, ``latency``, ``truncate``, ``drop``) or None.
    :ivar latency_ms: arrival to the last byte handed to the server.
    """

    method: str
    path: str
    params: dict[str, str]
    status: int
    excerpt: str
    latency_ms: float
    at: datetime
    sim_now: datetime
    supplier_id: str | None = None
    success: bool | None = None
    fault: str | None = None
    id: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> dict[str, Any]:
        """JSON-ready view (datetimes as ISO 8601 UTC)."""
        return {
            "id": self.id,
            "at": self.at.isoformat(),
            "sim_now": self.sim_now.isoformat(),
            "method": self.method,
            "path": self.path,
            "supplier_id": self.supplier_id,
            "params": dict(self.params),
            "status": self.status,
            "success": self.success,
            "fault": self.fault,
            "latency_ms": round(self.latency_ms, 2),
            "excerpt": self.excerpt,
        }


Listener = Callable[[RequestRecord], None]


class RequestLog:
    """Thread-safe ring buffer of :class:`RequestRecord` plus optional listeners.

    :param capacity: entries kept (the oldest fall off); 0 keeps none but still notifies
        listeners (e.g. the CLI's ``--log-requests`` printer).
    """

    def __init__(
        self,
        capacity: int = DEFAULT_CAPACITY,
        excluded_prefixes: tuple[str, ...] = DEFAULT_EXCLUDED_PREFIXES,
    ) -> None:
        if capacity < 0:
            raise ValueError(f"request log capacity must be >= 0, got {capacity}")
        self._lock = threading.Lock()
        self._entries: deque[RequestRecord] = deque(maxlen=capacity)
        self._next_id = 1
        self._listeners: list[Listener] = []
        self.capacity = capacity
        self.excluded_prefixes = excluded_prefixes

    def wants(self, path: str) -> bool:
        """Whether requests to ``path`` are logged."""
        return not path.startswith(self.excluded_prefixes)

    def add_listener(self, listener: Listener) -> None:
        """Call ``listener(record)`` after every recorded request (exceptions are swallowed)."""
        with self._lock:
            self._listeners.append(listener)

    def record(self, entry: RequestRecord) -> RequestRecord:
        """Store ``entry`` (with its params masked again, defensively) and notify listeners."""
        with self._lock:
            stored = RequestRecord(
                method=entry.method,
                path=entry.path,
                params=mask_params(entry.params),
                status=entry.status,
                excerpt=entry.excerpt,
                latency_ms=entry.latency_ms,
                at=entry.at,
                sim_now=entry.sim_now,
                supplier_id=entry.supplier_id,
                success=entry.success,
                fault=entry.fault,
                id=self._next_id,
                extra=dict(entry.extra),
            )
            self._next_id += 1
            self._entries.append(stored)
            listeners = list(self._listeners)
        for listener in listeners:
            try:
                listener(stored)
            except Exception:  # a broken printer must not break the API
                log.debug("request log listener failed", exc_info=True)
        return stored

    def entries(
        self,
        limit: int = 100,
        *,
        after_id: int = 0,
        supplier_id: str | None = None,
        path_contains: str | None = None,
        status: int | None = None,
    ) -> list[RequestRecord]:
        """The newest ``limit`` matching entries, newest first.

        ``after_id`` keeps only entries with a larger id (for incremental polling: pass the
        largest id seen so far).
        """
        with self._lock:
            snapshot = list(self._entries)
        out: list[RequestRecord] = []
        for entry in reversed(snapshot):
            if entry.id <= after_id:
                break
            if supplier_id is not None and entry.supplier_id != supplier_id:
                continue
            if path_contains and path_contains not in entry.path:
                continue
            if status is not None and entry.status != status:
                continue
            out.append(entry)
            if len(out) >= limit:
                break
        return out

    def clear(self) -> None:
        """Forget every entry (ids keep increasing, so pollers never see an id twice)."""
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)


__all__ = [
    "DEFAULT_CAPACITY",
    "EXCERPT_CHARS",
    "MASK",
    "RequestLog",
    "RequestRecord",
    "excerpt",
    "is_secret_param",
    "mask_params",
]
