"""Exceptions the connector raises. Every message is safe to show: no token ever appears in one
(the client redacts URLs before it builds a message, and chains with ``from None``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "AccountBusy",
    "CIAuthError",
    "CIBusinessError",
    "CIError",
    "CIProtocolError",
    "CITransportError",
    "ChannelError",
    "ConfigError",
    "GPNAuthError",
    "GPNError",
    "LedgerError",
    "LedgerIdentityError",
    "MappingError",
    "MappingProblem",
]


class ChannelError(Exception):
    """Base class: something went wrong talking to a sales channel or keeping its state."""


class CIError(ChannelError):
    """A CommerceInterface call failed."""

    def __init__(self, message: str, *, endpoint: str = "") -> None:
        super().__init__(message)
        self.endpoint = endpoint


class CITransportError(CIError):
    """No usable answer after the retries: connection refused/reset, timeout, 5xx, 429.

    Transient by nature; the caller may retry later.
    """

    def __init__(self, message: str, *, endpoint: str = "", status: int | None = None) -> None:
        super().__init__(message, endpoint=endpoint)
        self.status = status


class CIProtocolError(CIError):
    """CI answered, but not with the JSON envelope it documents (HTML page, truncated JSON,
    no ``success`` key). Treated as transient: proxies and outages produce these."""


class CIBusinessError(CIError):
    """CI answered ``{"success": false, "reason": ...}``: it understood and refused."""

    def __init__(self, reason: str, *, endpoint: str = "", status: int = 200) -> None:
        super().__init__(f"CI refused {endpoint or 'the call'}: {reason}", endpoint=endpoint)
        self.reason = reason
        self.status = status


class CIAuthError(CIBusinessError):
    """CI refused the supplier id / token pair."""


class GPNError(ChannelError):
    """A Groupon Partner Network Transaction API call failed."""


class GPNAuthError(GPNError):
    """GPN answered 401 (its HTML error page): wrong client id, token or SEC2 signature."""


class LedgerError(ChannelError):
    """The plugin's ledger could not be read or written."""


class LedgerIdentityError(LedgerError):
    """The ledger is not the one this account and host should work on: missing or replaced
    while the account has history, another supplier's, or owned by a different host. The
    message says what happened and how to recover."""


class AccountBusy(ChannelError):
    """Another process (or machine) is working the account and did not finish within the
    configured wait (``lock_timeout_seconds``). Nothing was done; call again later.

    :ivar holder: who holds the account, e.g. ``pid 4242 on host-a since 2026-01-01T10:00Z``.
    """

    def __init__(self, message: str, *, account: str, holder: str) -> None:
        super().__init__(message)
        self.account = account
        self.holder = holder


class ConfigError(Exception):
    """The configuration file is wrong; the message names the file, the key and the fix."""


@dataclass(frozen=True, slots=True)
class MappingProblem:
    """One problem in a mapping CSV, located precisely enough to fix by hand."""

    file: Path
    line: int
    column: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}"
        if self.column:
            where += f" column {self.column!r}"
        return f"{where}: {self.message}"


class MappingError(Exception):
    """One or more mapping CSVs are invalid. Nothing from them was applied."""

    def __init__(self, problems: list[MappingProblem]) -> None:
        self.problems = problems
        lines = "\n".join(f"  {p}" for p in problems)
        super().__init__(f"{len(problems)} problem(s) in the mapping files:\n{lines}")
