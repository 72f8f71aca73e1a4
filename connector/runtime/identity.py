"""Who is working: this process (for locks and leases) and the host OMS it acts for.

* :func:`process_owner` names this process as ``<machine>:<pid>:<token>``; the token is drawn
  once per process so a reused pid on the same machine is a different owner.
* :func:`current_host` names the host OMS this process acts for. A ledger remembers the host
  that first worked it and refuses another one (the reference host of ``ci-connector sync``
  beside a real host OMS would divert real orders into its demo store). A host declares
  itself with the ``CI_CONNECTOR_HOST_ID`` environment variable or, in code, with
  :func:`acting_as`; a host that never declares itself is :data:`DEFAULT_HOST`.
"""

from __future__ import annotations

import contextvars
import os
import secrets
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

__all__ = [
    "DEFAULT_HOST",
    "HOST_ENV",
    "REFERENCE_HOST",
    "Owner",
    "acting_as",
    "current_host",
    "machine_name",
    "owner_is_dead",
    "parse_owner",
    "process_owner",
]

HOST_ENV = "CI_CONNECTOR_HOST_ID"
DEFAULT_HOST = "host-oms"
"""The host id of a host OMS that never declared one."""
REFERENCE_HOST = "reference-host"
"""The host id of ``ci-connector sync`` / ``run`` (the reference host's demo store)."""

_TOKEN = secrets.token_hex(4)
_host: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "ci_connector_host", default=None
)


def machine_name() -> str:
    """This machine's name (as leases and lock holders record it)."""
    return socket.gethostname() or "unknown-machine"


def process_owner() -> str:
    """``<machine>:<pid>:<token>``: the owner recorded on locks and leases by this process."""
    return f"{machine_name()}:{os.getpid()}:{_TOKEN}"


@dataclass(frozen=True, slots=True)
class Owner:
    """A parsed :func:`process_owner` string."""

    machine: str
    pid: int
    token: str


def parse_owner(text: str) -> Owner | None:
    """The parts of an owner string, or ``None`` when it is not one."""
    machine, _, rest = text.rpartition(":")
    machine, _, pid = machine.rpartition(":")
    if not machine or not pid.isdigit():
        return None
    return Owner(machine, int(pid), rest)


def owner_is_dead(text: str) -> bool:
    """Whether the owner is a process of *this* machine that no longer runs (its lease can be
    taken over at once). Owners on other machines are never judged dead here: their lease
    expires instead."""
    owner = parse_owner(text)
    if owner is None or owner.machine != machine_name():
        return False
    if owner.pid == os.getpid():
        return owner.token != _TOKEN
    try:
        os.kill(owner.pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # alive, another user's
    return False


def current_host() -> str:
    """The host OMS this process (or this :func:`acting_as` block) acts for."""
    declared = _host.get()
    if declared:
        return declared
    return os.environ.get(HOST_ENV, "").strip() or DEFAULT_HOST


@contextmanager
def acting_as(host: str) -> Iterator[None]:
    """Hook calls inside the block act for ``host`` (restored afterwards)."""
    token = _host.set(host)
    try:
        yield
    finally:
        _host.reset(token)
