"""The connector's TOML configuration: accounts, folders, GPN settings.

Tokens never live in the file. Each account names an environment variable in ``token_env``
or a file in ``token_file`` (readable by its owner only, like an ssh key); :func:`load_config`
reads it and wraps the value in a :class:`~connector.secrets.Secret`. Any other value that
looks like a token (a token pasted into ``region``, ``timezone``, ...) is refused without
being echoed.
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
import ipaddress
import itertools
import os
import re
import stat
import tomllib
import zoneinfo
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

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
    "token_file",
    "options",
    "enabled",
    "ledger_url",
    "ledger_password_env",
)
GPN_KEYS = ("client_id", "token_env", "token_file", "base_url", "auth")
GROUPON = "groupon"
API_VERSIONS = ("v2", "v4")
GPN_AUTH = ("SEC1", "SEC2")

_LITERAL_REFUSAL = (
    "tokens must not be written in the config file; put it in an environment variable "
    "and name it in token_env"
)
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_REGION = re.compile(r"^[A-Z]{2}$")
# A subdivision for public holidays: GB-ENG, GB-SCT, GB-WLS, GB-NIR, US-CA, ...
_SUBDIVISION = re.compile(r"^([A-Z]{2})-([A-Z0-9]{1,3})$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_CUTOFF = re.compile(r"^([01][0-9]|2[0-3]):[0-5][0-9]$")
_UUID = re.compile(r"^[0-9a-fA-F]{8}(-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}$")
_TOKEN_FILE_MAX = 4096
_TOKEN_LIKE = (
    "looks like an access token, so it is refused and not shown; a token belongs only in "  # noqa: S105
    "the environment variable named by token_env or in the file named by token_file"
)


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
    disabled: tuple[str, ...] = ()
    """Names of accounts written with ``enabled = false``: left out of :attr:`accounts`."""
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
        if name in self.disabled:
            raise ConfigError(
                f"{where}account {name!r} is disabled (enabled = false); set enabled = true "
                "once its token variable is exported"
            )
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
        # Token values this file's token_env variables hold: seen in any other key = pasted.
        self.known_tokens: set[str] = set()

    def token_like(self, value: str) -> bool:
        """Whether ``value`` looks like (or contains) an access token; registers it as a
        secret so no message can show it."""
        if looks_like_token(value, self.known_tokens):
            register_secret(value.strip())
            return True
        return False

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
            if self.token_like(str(key)):
                self.problem(where, f"a key {_TOKEN_LIKE}")
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
        if key != "token_env" and self.token_like(value):
            self.problem(f"{where} key {key!r}", _TOKEN_LIKE)
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

    def secret(self, table: Mapping[str, Any], where: str, key: str = "") -> Secret | None:
        """The token from ``token_env`` or ``token_file`` (exactly one of them)."""
        if "token_file" in table:
            if "token_env" in table:
                self.problem(f"{where} key 'token_file'", "give token_env or token_file, not both")
                return None
            return self.secret_from_file(table, where, key)
        return self.secret_from_env(table, where, key)

    def secret_from_file(self, table: Mapping[str, Any], where: str, key: str) -> Secret | None:
        path = self.folder(table, "token_file", where)
        if path is None:
            return None
        here = f"{where} key 'token_file'"
        try:
            info = path.stat()
        except FileNotFoundError:
            self.missing_tokens[key or where] = (
                f"{self.path}: {here}: {path} does not exist; write the access token into it "
                f"and make it private (chmod 600 {path})"
            )
            return Secret("")
        except OSError as exc:
            self.problem(here, f"cannot read {path}: {exc.strerror}")
            return None
        if not stat.S_ISREG(info.st_mode):
            self.problem(here, f"{path} is not a regular file")
            return None
        if os.name == "posix":
            # Like ssh with a private key: a token others can read is refused outright.
            if info.st_mode & 0o077:
                self.problem(
                    here,
                    f"permissions {stat.S_IMODE(info.st_mode):04o} for {path} are too open: "
                    f"the token must be readable by its owner only (chmod 600 {path})",
                )
                return None
            if info.st_uid not in (os.getuid(), 0):
                self.problem(
                    here,
                    f"{path} belongs to uid {info.st_uid}, not to this user ({os.getuid()}) "
                    "or root",
                )
                return None
        if info.st_size > _TOKEN_FILE_MAX:
            self.problem(here, f"{path} is {info.st_size} bytes; a token file holds only the token")
            return None
        try:
            text = path.read_bytes().decode("utf-8").strip()
        except (OSError, UnicodeDecodeError):
            self.problem(here, f"cannot read {path} as UTF-8 text")
            return None
        if not text:
            self.missing_tokens[key or where] = (
                f"{self.path}: {here}: {path} is empty; write the access token into it"
            )
            return Secret("")
        register_secret(text)
        if any(c.isspace() for c in text):
            self.problem(here, f"{path} must hold only the token, on one line")
            return None
        self.known_tokens.add(text)
        return Secret(text)

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

    def collect_known_tokens(self, data: Mapping[str, Any]) -> None:
        """Remember the values of every ``token_env`` variable the file names, so the same
        token pasted into another key is recognised whatever it looks like."""
        tables: list[Any] = [data.get("gpn")]
        accounts = data.get("accounts")
        if isinstance(accounts, list):
            tables.extend(accounts)
        for table in tables:
            if isinstance(table, dict) and isinstance(table.get("token_env"), str):
                value = self.environ.get(table["token_env"].strip(), "").strip()
                if len(value) >= 8:
                    self.known_tokens.add(value)

    # -- the tables

    def build(self, data: Mapping[str, Any]) -> ConnectorConfig:
        if "token" in data and isinstance(data["token"], str):
            register_secret(data["token"])
        self.collect_known_tokens(data)
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
        disabled: list[str] = []
        first_index: dict[str, int] = {}
        for index, raw in enumerate(raw_accounts, start=1):
            account = self.account(index, raw, data_dir, mappings_dir, first_index)
            if account is None:
                continue
            if account.ledger_url is None and ledger_url is not None:
                account = dataclasses.replace(
                    account, ledger_url=ledger_url, ledger_password=ledger_password
                )
            if raw.get("enabled", True) is False:
                # Validated like any account, then left out: its token need not be set yet.
                disabled.append(account.name)
                self.missing_tokens.pop(account.name, None)
                continue
            accounts.append(account)
        if raw_accounts and not accounts and disabled and not self.problems:
            self.problem("[[accounts]]", "every account has enabled = false; enable one")

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
            tuple(disabled),
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
        if (
            isinstance(name_value, str)
            and name_value.strip()
            and not looks_like_token(name_value, self.known_tokens)
        ):
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

        enabled = raw.get("enabled", True)
        if not isinstance(enabled, bool):
            self.problem(f"{label} key 'enabled'", f"must be true or false, not {_type(enabled)}")
        channel = self.string(raw, "channel", label) or GROUPON
        supplier_id = self.supplier_id(raw, label)
        region = self.string(raw, "region", label) or "US"
        api_version = self.string(raw, "api_version", label) or "v4"
        base_url = self.string(raw, "base_url", label) or DEFAULT_BASE_URL
        if not re.match(r"^https?://[^\s/]+", base_url):
            self.problem(f"{label} key 'base_url'", "must start with https:// (or http://)")
        self.check_url(base_url, f"{label} key 'base_url'")
        if channel == GROUPON:
            region = self.groupon_region(region, mappings_dir, label)
            if api_version not in API_VERSIONS:
                self.problem(
                    f"{label} key 'api_version'",
                    f"{api_version!r} is not supported; use one of {', '.join(API_VERSIONS)}",
                )
        token = self.secret(raw, label, name or label)
        options = self.options(raw.get("options", {}), label, validate_values=channel == GROUPON)
        ledger_url, ledger_password = self.ledger(raw, label)

        subdivision = _SUBDIVISION.match(str(raw.get("region", "")).strip().upper())
        if subdivision and options is not None:
            # "GB-ENG": the carrier list of GB (UK) above, the public holidays of England here.
            code = self.holiday_region(subdivision.group(0), label, "region")
            if not options.holiday_region:
                options = dataclasses.replace(options, holiday_region=code)
        if options is not None and options.holiday_region:
            self.holiday_region(options.holiday_region, label, "options.holiday_region")
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

    def check_url(self, url: str, where: str) -> None:
        """A base URL carries no credentials, query or fragment (a token would ride there)."""
        try:
            parts = urlsplit(url)
        except ValueError:
            self.problem(where, "is not a valid URL")
            return
        if parts.username or parts.password or parts.query or parts.fragment:
            self.problem(
                where,
                "must be scheme://host[:port][/path] only: no user:password@, query string or "
                "fragment (the client adds the credentials itself)",
            )
        elif parts.scheme == "http" and not _is_loopback(parts.hostname or ""):
            self.problem(
                where,
                f"plain http:// to {parts.hostname} would send the token unencrypted; use "
                "https:// (http:// is accepted only for loopback hosts such as a local "
                "simulator on 127.0.0.1)",
            )

    def supplier_id(self, raw: Mapping[str, Any], label: str) -> str | None:
        value = raw.get("supplier_id")
        # A bare number is what people type for an id; accept it as its digits.
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return str(value)
        return self.string(raw, "supplier_id", label, required=True)

    def groupon_region(self, region: str, mappings_dir: Path | None, label: str) -> str:
        subdivision = _SUBDIVISION.match(region.strip().upper())
        # "GB-ENG" / "US-CA": the country's carrier list; the subdivision only picks holidays.
        key = normalize_region(subdivision.group(1) if subdivision else region)
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

    def holiday_region(self, code: str, label: str, key: str) -> str:
        """A holiday subdivision the ``holidays`` package knows, e.g. GB-ENG or US-CA."""
        from connector.ops.businessdays import BusinessCalendar

        try:
            BusinessCalendar(code)
        except ConfigError:
            country = code.partition("-")[0]
            self.problem(
                f"{label} key {key!r}",
                f"{code!r} is not a known holiday region; use a country code (US, GB) or a "
                f"subdivision such as GB-ENG, GB-SCT, GB-WLS, GB-NIR or US-CA ({country}-...)",
            )
        return code

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
            texts = value if isinstance(value, list) else [value]
            if any(isinstance(t, str) and self.token_like(t) for t in texts):
                self.problem(f"{where} key {key!r}", _TOKEN_LIKE)
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
        self.check_url(base_url, f"{where} key 'base_url'")
        auth = (self.string(raw, "auth", where) or "SEC2").upper()
        if auth not in GPN_AUTH:
            self.problem(f"{where} key 'auth'", f"must be SEC1 or SEC2, not {auth!r}")
        token = self.secret(raw, where, GPN_TOKEN_KEY)
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
    "max_response_bytes": _range(1024, 1024 * 1024 * 1024),
    "call_deadline_seconds": lambda v: None if v > 0 else f"must be more than 0, not {v!r}",
    "sync_deadline_seconds": lambda v: None if v > 0 else f"must be more than 0, not {v!r}",
    "max_pages_per_listing": _at_least(1),
    "max_items_per_listing": _at_least(1),
    "window_catchup_minutes": _at_least(0),
    "lock_timeout_seconds": _at_least(0),
    "lease_seconds": _at_least(30),
    "retention_days": _at_least(1),
    "import_interval_minutes": _at_least(1),
    "flush_interval_minutes": _at_least(1),
    "sla_interval_minutes": _at_least(1),
    "ack_concurrency": _range(1, 16),
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


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _class_changes(run: str) -> int:
    kinds = ["d" if c.isdigit() else "u" if c.isupper() else "l" for c in run]
    return sum(1 for a, b in itertools.pairwise(kinds) if a != b)


def looks_like_token(value: str, known: Iterable[str] = ()) -> bool:
    """Whether a config value looks like (or contains) an access token.

    True when it contains one of ``known`` (the tokens the file's own variables hold), or a
    run of 12+ letters/digits that switches between digits, lower and upper case at least
    every fourth character and holds digits (random tokens do; words, dates, zones, hosts and
    ids do not).
    A canonical UUID is an id format, not refused.
    """
    text = value.strip()
    if any(len(k) >= 8 and k in text for k in known):
        return True
    if _UUID.match(text):
        return False
    for run in re.findall(r"[A-Za-z0-9]{12,}", text):
        changes = _class_changes(run)
        digits = sum(c.isdigit() for c in run)
        # CamelCaseWords switch case too, but rarely and without digits.
        if changes >= max(4, len(run) // 4) and (digits >= 2 or changes >= len(run) // 3):
            return True
    return False


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
