"""Turn a failed CI call into a message that says what the operator should check.

The client's errors are precise but technical ("no answer after 5 retries: ConnectionError:
HTTPConnectionPool(...): Max retries exceeded ..."). An operator needs to know which setting
to look at: the ``base_url``, the token variable, the supplier id, or Groupon's status.
"""

from __future__ import annotations

import re
from pathlib import Path

from connector.errors import (
    CIAuthError,
    CIBusinessError,
    CIProtocolError,
    CITransportError,
    ConfigError,
)
from connector.models import Account
from connector.secrets import redact

__all__ = ["explain"]


def _where(account: Account, config_path: Path | None) -> str:
    return f"account '{account.name}' in {config_path}" if config_path else f"'{account.name}'"


def _token_env(account: Account, config_path: Path | None) -> str:
    """The token variable's name as the config file spells it (the account holds no name)."""
    if config_path is None or not config_path.is_file():
        return "the token variable (token_env)"
    import tomllib

    try:
        data = tomllib.loads(config_path.read_text(encoding="utf-8"))
        for raw in data.get("accounts", []):
            if isinstance(raw, dict) and raw.get("name") == account.name:
                return f"${raw.get('token_env')}"
    except (OSError, ValueError):
        pass
    return "the token variable (token_env)"


def _short(text: str) -> str:
    """urllib3's "HTTPConnectionPool(...): Max retries exceeded with url: ... (Caused by ...)"
    adds nothing an operator can act on once the hint is given: keep the head."""
    # Any urllib3 pool's repr (HTTPConnectionPool, HTTPSConnectionPool, the client's guarded
    # pools) starts the part to drop.
    return re.split(r": _?\w*Pool\(", text, maxsplit=1)[0]


def explain(exc: Exception, account: Account, config_path: Path | None = None) -> str:
    """One or two sentences: what failed, and which setting to check."""
    text = redact(str(exc))
    where = _where(account, config_path)
    if isinstance(exc, CIAuthError):
        return (
            f"CI refused the supplier id / token pair ({text}). Check supplier_id = "
            f"'{account.supplier_id}' of {where} and the token in "
            f"{_token_env(account, config_path)}."
        )
    if isinstance(exc, CITransportError):
        lowered = text.lower()
        if "refused" in lowered or "newconnectionerror" in lowered:
            what = "nothing answers there (connection refused)"
        elif "name or service not known" in lowered or "nodename" in lowered:
            what = "the host name does not resolve"
        elif "timeout" in lowered or "timed out" in lowered:
            what = "it does not answer in time"
        elif any(code in lowered for code in ("500", "502", "503", "504", "429")):
            what = "it keeps answering with server errors or rate limits"
        else:
            what = "no usable answer after the retries"
        return (
            f"cannot reach CI at {account.base_url}: {what}. Check base_url of {where} and the "
            f"network (for a simulator: is mock-ci-server still running on that port?). "
            f"Details: {_short(text)}"
        )
    if isinstance(exc, CIProtocolError):
        return (
            f"{account.base_url} answered, but not like CI ({text}). Check base_url of {where}: "
            "it must be the CommerceInterface API root, not a web page or proxy."
        )
    if isinstance(exc, CIBusinessError):
        return f"CI refused the call: {text} ({where})"
    if isinstance(exc, ConfigError):
        return text
    return text
