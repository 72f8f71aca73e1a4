"""Crash points: named places where a crash-consistency run may SIGKILL the process.

``crashpoint(name)`` is a no-op unless the environment variable :data:`ENV_VAR` was set when
this module was first imported, e.g. ``CI_CONNECTOR_CRASH_AT=after_store:3``: then the 3rd time
the point ``after_store`` is reached the process sends itself ``SIGKILL`` (no ``finally``, no
``atexit``, no flush: the same as a power cut for everything but the disk cache). ``:N`` is
optional (default 1). The spec is read once; unset, the cost of a call is one global lookup and
a comparison, so the calls stay in production code.

A spec naming no known point is refused at import with :class:`CrashpointSpecError`, so a typo
cannot turn a crash run into a run that silently never crashes.

Every point is listed, in the order one cycle reaches it, in :data:`POINTS` and in
``docs/reliability.md``.
"""

from __future__ import annotations

import os
import signal

__all__ = [
    "ENV_VAR",
    "POINTS",
    "CrashpointSpecError",
    "crashpoint",
    "hits",
    "parse_spec",
    "target",
]

ENV_VAR = "CI_CONNECTOR_CRASH_AT"
"""Environment variable holding ``<point>[:<occurrence>]``."""

POINTS: dict[str, str] = {
    "fetch_page": "between two pages of one get_orders listing (before page 2, 3, ... is "
    "requested); nothing staged yet. Reached through a client wrapper (benchmarks/crash_worker)",
    "after_stage": "importer: every page read and staged (committed); nothing handed to the host",
    "after_deliver": "importer: lines marked delivered in the ledger; the batch not yet returned",
    "after_store": "reference host: the host committed the orders; mark_exported not called",
    "ack_sent": "importer: CI accepted a mark_exported batch; the ledger has not recorded it",
    "ack_recorded": "importer: one mark_exported batch recorded as acked (between batches)",
    "host_shipment": "reference host: the shipment is committed in the host; not yet dispatched",
    "after_outbox": "dispatcher: outbox rows committed as sending (a dispatch call's, or one "
    "part's of a long oms_dispatch_many); no tracking call of those rows made",
    "tracking_sent": "dispatcher: CI accepted a tracking batch; the outcome is not recorded",
    "tracking_recorded": "dispatcher: one tracking batch recorded as accepted (between batches)",
    "flush": "dispatcher flush: due outbox rows selected; none re-sent yet",
}
"""Every crash point name and where it sits."""


class CrashpointSpecError(ValueError):
    """The value of :data:`ENV_VAR` is not ``<known point>[:<occurrence >= 1>]``."""


def parse_spec(text: str) -> tuple[str, int]:
    """``"after_store:3"`` -> ``("after_store", 3)``; ``"flush"`` -> ``("flush", 1)``.

    :raises CrashpointSpecError: unknown point name or an occurrence that is not an int >= 1;
        the message names the variable, the value and the known points.
    """
    name, sep, count = text.strip().partition(":")
    if name not in POINTS:
        raise CrashpointSpecError(
            f"{ENV_VAR}={text!r}: unknown crash point {name!r}; known: {', '.join(POINTS)}"
        )
    if not sep:
        return name, 1
    try:
        occurrence = int(count)
    except ValueError:
        occurrence = 0
    if occurrence < 1:
        raise CrashpointSpecError(
            f"{ENV_VAR}={text!r}: occurrence {count!r} must be an integer >= 1"
        )
    return name, occurrence


def _read_env() -> tuple[str, int] | None:
    raw = os.environ.get(ENV_VAR)
    if raw is None or not raw.strip():
        return None
    return parse_spec(raw)


_TARGET: tuple[str, int] | None = _read_env()
_hits = 0


def target() -> tuple[str, int] | None:
    """The armed ``(point, occurrence)``, or ``None`` when crash points are off."""
    return _TARGET


def hits() -> int:
    """How many times the armed point has been reached so far (0 when off)."""
    return _hits


def crashpoint(name: str) -> None:
    """Mark a phase boundary; SIGKILL this process if it is the armed point's Nth arrival."""
    if _TARGET is None:
        return
    _arrive(name)


def _arrive(name: str) -> None:
    global _hits
    point, occurrence = _TARGET or ("", 0)
    if name != point:
        return
    _hits += 1
    if _hits >= occurrence:
        os.kill(os.getpid(), signal.SIGKILL)
