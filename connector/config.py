"""The connector's TOML configuration: accounts, folders, GPN settings.

Tokens never live in the file. Each account names an environment variable in ``token_env``;
:func:`load_config` reads it and wraps the value in a :class:`~connector.secrets.Secret`.
Every problem in the file is collected and raised as one :class:`~connector.errors.ConfigError`
whose lines name the file, the account (by position and name) and the key.

Example (see ``connector.example.toml``)::

    [connector]
    data_dir = "data"               # relative paths are relative to this file's folder

    [[accounts]]
    name = "us"
    channel = "groupon"
    supplier_id = "12345"
    region = "US"
    token_env = "GROUPON_US_TOKEN"

    [accounts.options]
    merchant_level = 3
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import difflib
import re
import tomllib
import zoneinfo
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from connector.errors import ConfigError
from connector.mappings import default_mappings_dir, normalize_region
from connector.models import Account, AccountOptions
from connector.secrets import Secret, redact, register_secret

__all__ = [
    "ACCOUNT_KEYS",
    "CONNECTOR_KEYS",
    "DEFAULT_BASE_URL",
    "DEFAULT_GPN_BASE_URL",
    "GPN_KEYS",
    "ConnectorConfig",
    "GpnSettings",
    "load_config",
]

DEFAULT_BASE_URL = "https://scm.commerceinterface.com"
# From Groupon's GPN help page (seeds/gpn-transaction-api.txt); it shows plain http, we use https.
DEFAULT_GPN_BASE_URL = "https://partner-api.groupon.com"

TOP_KEYS = ("connector", "accounts", "gpn")
CONNECTOR_KEYS = ("data_dir", "mappings_dir", "ledger_url", "ledger_password_env")
ACCOUNT_KEYS = (
    "name",
    "channel",
    "supplier_id",
    "region",
    "api_version",
    "base_url",
    "token_env",
    "options",
    "ledger_url",
    "ledger_password_env",
)
GPN_KEYS = ("client_id", "token_env", "base_url", "auth")
GROUPON = "groupon"
API_VERSIONS = ("v2", "v4")
GPN_AUTH = ("SEC1", "SEC2")

_LITERAL_REFUSAL = (
    "tokens must not be written in the config file; put it in an environment variable "
    "and name it in token_env"
)
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_REGION = re.compile(r"^[A-Z]{2}$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_CUTOFF = re.compile(r"^([01][0-9]|2[0-3]):[0-5][0-9]$")


GPN_TOKEN_KEY = "[gpn]"  # noqa: S105 - a dictionary key, not a secret
"""Key of the GPN token in :attr:`ConnectorConfig.missing_tokens`."""


@dataclass(frozen=True, slots=True)
class GpnSettings:
    """Groupon Partner Network Transaction API access (optional ``[gpn]`` table)."""

    client_id: str
    token: Secret
    base_url: str = DEFAULT_GPN_BASE_URL
    auth: str = "SEC2"


@dataclass(frozen=True, slots=True)
class ConnectorConfig:
    """A loaded, validated configuration.

    :ivar path: the file it came from (``None`` when built in code).
    :ivar data_dir: where ledgers live (absolute once loaded from a file).
    :ivar mappings_dir: mapping CSV folder; ``None`` = the mappings shipped with the package.
    :ivar accounts: in file order; names are unique.
    :ivar gpn: GPN settings, or ``None`` without a ``[gpn]`` table.
    :ivar missing_tokens: account name (or :data:`GPN_TOKEN_KEY`) -> what to set, for each
        token whose environment variable is unset (its ``token`` is an empty Secret).
    :ivar ledger_url: ``[connector] ledger_url``: the PostgreSQL database of every account's
        ledger (an account's own ``ledger_url`` wins), and of the worker's job queue; ``None``
        = SQLite files in ``data_dir``.
    :ivar ledger_password: its password, from ``ledger_password_env`` (``None``: libpq's
        ``PGPASSWORD`` / ``~/.pgpass``).
    """

    path: Path | None
    data_dir: Path
    mappings_dir: Path | None
    accounts: tuple[Account, ...]
    gpn: GpnSettings | None = None
    missing_tokens: Mapping[str, str] = field(default_factory=dict)
    ledger_url: str | None = None
    ledger_password: Secret | None = None

    def require_token(self, name: str) -> None:
        """Raise if the token of account ``name`` (or of ``[gpn]`` for
        :data:`GPN_TOKEN_KEY`) is not set in the environment.

        Loading never fails on an unset token variable, so commands that only read local data
        (status, sla, files) work without it; commands that call Groupon check first.

        :raises ConfigError: naming the environment variable to set.
        """
        message = self.missing_tokens.get(name)
        if message is not None:
            raise ConfigError(message)

    def account(self, name: str) -> Account:
        """The account called ``name``.

        :raises ConfigError: naming the accounts that do exist.
        """
        for account in self.accounts:
            if account.name == name:
                return account
        known = ", ".join(repr(a.name) for a in self.accounts) or "none"
        where = f"{self.path}: " if self.path else ""
        raise ConfigError(f"{where}no account named {name!r} (known accounts: {known})")


def load_config(path: Path, environ: Mapping[str, str] | None = None) -> ConnectorConfig:
    """Read and validate the TOML file at ``path``; tokens come from ``environ``
    (default ``os.environ``).

    :raises ConfigError: listing every problem found (never a token value).
    """
    if environ is None:
        import os

        environ = os.environ
    try:
        data = tomllib.loads(path.read_bytes().decode("utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: configuration file not found") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a folder, not a configuration file") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the configuration file: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not valid UTF-8 at byte {exc.start + 1}") from None
    except tomllib.TOMLDecodeError as exc:
        # tomllib says "... (at line 3, column 7)"; that is what an editor needs.
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    return _Loader(path, environ).build(data)


class _Loader:
    """Walks the parsed TOML once, collecting problems instead of stopping at the first."""

    def __init__(self, path: Path, environ: Mapping[str, str]) -> None:
        self.path = path
        self.base = path.resolve().parent
        self.environ = environ
        self.problems: list[str] = []
        # Unset token variables do not make the whole file unusable: they are reported when
        # the account (or GPN) is actually used (see ConnectorConfig.require_token).
        self.missing_tokens: dict[str, str] = {}

    # -- reporting

    def problem(self, where: str, message: str) -> None:
        self.problems.append(f"{where}: {message}" if where else message)

    def raise_if_any(self) -> None:
        if self.problems:
            body = "\n".join(f"  {p}" for p in self.problems)
            # Last line of defence: every token value we have seen is masked.
            raise ConfigError(
                redact(f"{len(self.problems)} problem(s) in {self.path}:\n{body}")
            ) from None

    def unknown_keys(self, table: Mapping[str, Any], allowed: tuple[str, ...], where: str) -> None:
        for key in table:
            if key in allowed:
                continue
            if key == "token":
                value = table[key]
                if isinstance(value, str):
                    register_secret(value)
                self.problem(f"{where} key 'token'", _LITERAL_REFUSAL)
                continue
            close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]!r}?" if close else f" (allowed: {', '.join(allowed)})"
            # Never echo the value: a misspelt key may well hold a token.
            self.problem(f"{where} key {key!r}", f"unknown key{hint}")

    def string(
        self, table: Mapping[str, Any], key: str, where: str, *, required: bool = False
    ) -> str | None:
        if key not in table:
            if required:
                self.problem(f"{where} key {key!r}", "is required")
            return None
        value = table[key]
        if not isinstance(value, str):
            self.problem(f"{where} key {key!r}", f"must be a string, not {_type(value)}")
            return None
        if required and not value.strip():
            self.problem(f"{where} key {key!r}", "must not be empty")
            return None
        return value.strip()

    def folder(self, table: Mapping[str, Any], key: str, where: str) -> Path | None:
        text = self.string(table, key, where)
        if text is None:
            return None
        if not text:
            self.problem(f"{where} key {key!r}", "must not be empty")
            return None
        folder = Path(text).expanduser()
        return folder if folder.is_absolute() else self.base / folder

    def secret_from_env(self, table: Mapping[str, Any], where: str, key: str = "") -> Secret | None:
        name = self.string(table, "token_env", where, required=True)
        if name is None:
            return None
        if not _ENV_NAME.match(name) or _looks_like_token(name):
            # The value is not echoed: people paste the token itself here.
            self.problem(
                f"{where} key 'token_env'",
                "must be the NAME of an environment variable (letters, digits and _), "
                "not the token itself",
            )
            return None
        value = self.environ.get(name, "")
        if not value.strip():
            self.missing_tokens[key or where] = (
                f"{self.path}: {where} key 'token_env': environment variable {name} is not set; "
                f"set it to the access token (e.g. export {name}=...)"
            )
            return Secret("")
        return Secret(value.strip())

    # -- the tables

    def build(self, data: Mapping[str, Any]) -> ConnectorConfig:
        if "token" in data and isinstance(data["token"], str):
            register_secret(data["token"])
        self.unknown_keys(data, TOP_KEYS, "top level")

        connector = data.get("connector", {})
        if not isinstance(connector, dict):
            self.problem("[connector]", f"must be a table, not {_type(connector)}")
            connector = {}
        self.unknown_keys(connector, CONNECTOR_KEYS, "[connector]")
        data_dir = self.folder(connector, "data_dir", "[connector]") or self.base / "data"
        mappings_dir = self.folder(connector, "mappings_dir", "[connector]")
        ledger_url, ledger_password = self.ledger(connector, "[connector]")
        if mappings_dir is not None and not mappings_dir.is_dir():
            self.problem("[connector] key 'mappings_dir'", f"folder {mappings_dir} not found")
            mappings_dir = None

        raw_accounts = data.get("accounts", [])
        if not isinstance(raw_accounts, list):
            self.problem("accounts", "must be an array of tables, written [[accounts]]")
            raw_accounts = []
        if not raw_accounts:
            self.problem("[[accounts]]", "no accounts configured; add at least one [[accounts]]")
        accounts: list[Account] = []
        first_index: dict[str, int] = {}
        for index, raw in enumerate(raw_accounts, start=1):
            account = self.account(index, raw, data_dir, mappings_dir, first_index)
            if account is not None:
                if account.ledger_url is None and ledger_url is not None:
                    account = dataclasses.replace(
                        account, ledger_url=ledger_url, ledger_password=ledger_password
                    )
                accounts.append(account)

        gpn = None
        if "gpn" in data:
            gpn = self.gpn(data["gpn"])
        self.raise_if_any()
        return ConnectorConfig(
            self.path,
            data_dir,
            mappings_dir,
            tuple(accounts),
            gpn,
            dict(self.missing_tokens),
            ledger_url,
            ledger_password,
        )

    def ledger(self, table: Mapping[str, Any], where: str) -> tuple[str | None, Secret | None]:
        """``ledger_url`` (PostgreSQL, no password in it) and the password from the
        environment variable named by ``ledger_password_env``."""
        url = self.string(table, "ledger_url", where)
        password: Secret | None = None
        env = self.string(table, "ledger_password_env", where)
        if url is None:
            if env is not None:
                self.problem(f"{where} key 'ledger_password_env'", "needs a ledger_url")
            return None, None
        problem = _ledger_url_problem(url)
        if problem:
            # Never echo the value: it may hold a password.
            self.problem(f"{where} key 'ledger_url'", problem)
            return None, None
        if env is not None:
            if not _ENV_NAME.match(env) or _looks_like_token(env):
                self.problem(
                    f"{where} key 'ledger_password_env'",
                    "must be the NAME of an environment variable (letters, digits and _), "
                    "not the password itself",
                )
            elif self.environ.get(env, ""):
                password = Secret(self.environ[env])
                register_secret(self.environ[env])
            else:
                self.problem(
                    f"{where} key 'ledger_password_env'",
                    f"environment variable {env} is not set; set it to the database password",
                )
        return url, password

    def account(
        self,
        index: int,
        raw: Any,
        data_dir: Path,
        mappings_dir: Path | None,
        first_index: dict[str, int],
    ) -> Account | None:
        if not isinstance(raw, dict):
            self.problem(f"account #{index}", f"must be a table, not {_type(raw)}")
            return None
        name_value = raw.get("name")
        label = f"account #{index}"
        if isinstance(name_value, str) and name_value.strip():
            label += f" ({name_value.strip()!r})"
        before = len(self.problems)
        self.unknown_keys(raw, ACCOUNT_KEYS, label)

        name = self.string(raw, "name", label, required=True)
        if name is not None:
            if not _NAME.match(name):
                self.problem(
                    f"{label} key 'name'",
                    "use letters, digits, '.', '_' or '-' (it names the ledger file)",
                )
            folded = name.casefold()
            if folded in first_index:
                self.problem(
                    f"{label} key 'name'",
                    f"duplicate account name (already used by account #{first_index[folded]})",
                )
            else:
                first_index[folded] = index

        channel = self.string(raw, "channel", label) or GROUPON
        supplier_id = self.supplier_id(raw, label)
        region = self.string(raw, "region", label) or "US"
        api_version = self.string(raw, "api_version", label) or "v4"
        base_url = self.string(raw, "base_url", label) or DEFAULT_BASE_URL
        if not re.match(r"^https?://[^\s/]+", base_url):
            self.problem(f"{label} key 'base_url'", "must start with https:// (or http://)")
        if channel == GROUPON:
            region = self.groupon_region(region, mappings_dir, label)
            if api_version not in API_VERSIONS:
                self.problem(
                    f"{label} key 'api_version'",
                    f"{api_version!r} is not supported; use one of {', '.join(API_VERSIONS)}",
                )
        token = self.secret_from_env(raw, label, name or label)
        options = self.options(raw.get("options", {}), label, validate_values=channel == GROUPON)
        ledger_url, ledger_password = self.ledger(raw, label)

        if (
            len(self.problems) > before
            or name is None
            or supplier_id is None
            or token is None
            or options is None
        ):
            return None
        return Account(
            name=name,
            channel=channel,
            supplier_id=supplier_id,
            token=token,
            region=region,
            api_version=api_version,
            base_url=base_url.rstrip("/"),
            data_dir=data_dir,
            mappings_dir=mappings_dir,
            options=options,
            ledger_url=ledger_url,
            ledger_password=ledger_password,
        )

    def supplier_id(self, raw: Mapping[str, Any], label: str) -> str | None:
        value = raw.get("supplier_id")
        # A bare number is what people type for an id; accept it as its digits.
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return str(value)
        return self.string(raw, "supplier_id", label, required=True)

    def groupon_region(self, region: str, mappings_dir: Path | None, label: str) -> str:
        key = normalize_region(region)
        if not _REGION.match(key):
            self.problem(
                f"{label} key 'region'",
                f"{region!r} is not a two-letter country code such as US or UK",
            )
            return key
        folder = mappings_dir or default_mappings_dir()
        if not (folder / "carriers" / f"{key}.csv").is_file():
            known = sorted(p.stem.upper() for p in (folder / "carriers").glob("*.csv"))
            self.problem(
                f"{label} key 'region'",
                f"no approved carrier list for {key} ({folder / 'carriers' / (key + '.csv')} "
                f"is missing; regions with a list: {', '.join(known) or 'none'})",
            )
        return key

    def options(self, raw: Any, label: str, *, validate_values: bool) -> AccountOptions | None:
        where = f"{label} [accounts.options]"
        if not isinstance(raw, dict):
            self.problem(where, f"must be a table, not {_type(raw)}")
            return None
        fields = {f.name: f for f in dataclasses.fields(AccountOptions)}
        before = len(self.problems)
        self.unknown_keys(raw, tuple(fields), where)
        values: dict[str, Any] = {}
        for key, value in raw.items():
            if key not in fields:
                continue
            converted = _convert(fields[key].type, value)
            if converted is _BAD:
                self.problem(
                    f"{where} key {key!r}",
                    f"must be {_describe(fields[key].type)}, not {_type(value)}",
                )
                continue
            if validate_values:
                check = _OPTION_CHECKS.get(key)
                message = check(converted) if check else None
                if message:
                    self.problem(f"{where} key {key!r}", message)
                    continue
            values[key] = converted
        if len(self.problems) > before:
            return None
        return AccountOptions(**values)

    def gpn(self, raw: Any) -> GpnSettings | None:
        where = "[gpn]"
        if not isinstance(raw, dict):
            self.problem(where, f"must be a table, not {_type(raw)}")
            return None
        before = len(self.problems)
        self.unknown_keys(raw, GPN_KEYS, where)
        client_id = self.string(raw, "client_id", where, required=True)
        base_url = self.string(raw, "base_url", where) or DEFAULT_GPN_BASE_URL
        if not re.match(r"^https?://[^\s/]+", base_url):
            self.problem(f"{where} key 'base_url'", "must start with https:// (or http://)")
        auth = (self.string(raw, "auth", where) or "SEC2").upper()
        if auth not in GPN_AUTH:
            self.problem(f"{where} key 'auth'", f"must be SEC1 or SEC2, not {auth!r}")
        token = self.secret_from_env(raw, where, GPN_TOKEN_KEY)
        if len(self.problems) > before or client_id is None or token is None:
            return None
        return GpnSettings(client_id, token, base_url.rstrip("/"), auth)


# --------------------------------------------------------------------------- option typing

_BAD = object()


def _convert(annotation: Any, value: Any) -> Any:
    """``value`` as the option's declared type, or ``_BAD``. bool is never an int here."""
    kind = _kind(annotation)
    if kind == "bool":
        return value if isinstance(value, bool) else _BAD
    if isinstance(value, bool):
        return _BAD
    if kind == "int":
        return value if isinstance(value, int) else _BAD
    if kind == "float":
        return float(value) if isinstance(value, int | float) else _BAD
    if kind == "str":
        return value if isinstance(value, str) else _BAD
    if kind.startswith("tuple[str"):
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return tuple(value)
        return _BAD
    return _BAD  # an AccountOptions field type this loader does not know yet


def _kind(annotation: Any) -> str:
    # models.py uses postponed annotations, so field types are usually strings already.
    return annotation.__name__ if isinstance(annotation, type) else str(annotation)


def _describe(annotation: Any) -> str:
    kind = _kind(annotation)
    return {
        "bool": "true or false",
        "int": "a whole number",
        "float": "a number",
        "str": "a string",
    }.get(kind, "a list of strings" if kind.startswith("tuple[str") else kind)


def _at_least(minimum: float) -> Callable[[Any], str | None]:
    return lambda v: None if v >= minimum else f"must be at least {minimum}, not {v!r}"


def _one_of(*allowed: str) -> Callable[[Any], str | None]:
    return lambda v: None if v in allowed else f"must be one of {', '.join(allowed)}, not {v!r}"


def _range(low: int, high: int) -> Callable[[Any], str | None]:
    return lambda v: None if low <= v <= high else f"must be {low}..{high}, not {v!r}"


def _check_cutoff(value: str) -> str | None:
    return None if _CUTOFF.match(value) else f"must be a 24-hour time HH:MM, not {value!r}"


def _check_timezone(value: str) -> str | None:
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return f"{value!r} is not an IANA time zone such as 'America/Chicago'"
    return None


def _check_dates(values: tuple[str, ...]) -> str | None:
    for text in values:
        try:
            dt.date.fromisoformat(text)
        except ValueError:
            return f"{text!r} is not a date written YYYY-MM-DD"
    return None


_OPTION_CHECKS: dict[str, Callable[[Any], str | None]] = {
    "import_delay_minutes": _at_least(0),
    "window_hours": _range(1, 23),  # CI refuses windows of 24 h or more
    "window_overlap_minutes": _at_least(0),
    "lookback_hours": _at_least(1),
    "sku_fallback": _one_of("hold", "bom_sku", "sku"),
    "tracking_format_policy": _one_of("reject", "warn", "off"),
    "ack_batch_size": _at_least(1),
    "tracking_batch_size": _at_least(1),
    "requests_per_second": _at_least(0),
    "timeout_seconds": lambda v: None if v > 0 else f"must be more than 0, not {v!r}",
    "max_retries": _at_least(0),
    "backoff_seconds": _at_least(0),
    "merchant_level": _range(1, 5),
    "cutoff": _check_cutoff,
    "timezone": _check_timezone,
    "closures": _check_dates,
    "lock_timeout_seconds": _at_least(0),
    "lease_seconds": _at_least(30),
    "retention_days": _at_least(1),
    "import_interval_minutes": _at_least(1),
    "flush_interval_minutes": _at_least(1),
    "sla_interval_minutes": _at_least(1),
}


def _type(value: Any) -> str:
    names = {
        bool: "true/false",
        int: "a whole number",
        float: "a number",
        str: "a string",
        list: "a list",
        dict: "a table",
    }
    return names.get(type(value), type(value).__name__)


def _ledger_url_problem(url: str) -> str | None:
    """Why ``url`` cannot be a ledger URL, or ``None``. The message never repeats the URL."""
    from urllib.parse import parse_qs, urlsplit

    if not url.lower().startswith(("postgresql://", "postgres://")):
        return "must be a PostgreSQL URL such as postgresql://connector@db.example/ledger"
    try:
        parts = urlsplit(url)
        has_password = parts.password is not None
    except ValueError:
        return "is not a valid URL"
    if has_password or "password" in parse_qs(parts.query):
        register_secret(parts.password or "")
        for value in parse_qs(parts.query).get("password", []):
            register_secret(value)
        return (
            "must not contain a password; put it in an environment variable and name it in "
            "ledger_password_env (or use PGPASSWORD / ~/.pgpass)"
        )
    return None


def _looks_like_token(name: str) -> bool:
    """Env var names are usually SHOUTY_WITH_UNDERSCORES; a long run of mixed letters and
    digits without one is far more likely a pasted token."""
    return len(name) >= 20 and "_" not in name and any(c.isdigit() for c in name)
