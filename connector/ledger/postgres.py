"""The PostgreSQL ledger: the same :class:`~connector.ledger.sqlite.Ledger` API over psycopg 3.

Why a subclass: the ledger's SQL is written once, in the SQLite module, and this module only
swaps the plumbing underneath it — the connection, transactions, migrations and a small,
mechanical dialect translation (``?`` placeholders, ``INSERT OR IGNORE/REPLACE``,
``BEGIN IMMEDIATE``, DDL types). A new ledger method therefore works on both backends without
a second copy; where a statement cannot be translated the error says so on first use (and the
backend-parametrized ledger tests run every method on both).

Layout: one database holds every account; each account has its own schema
(``ledger_<account>``) with the same tables and the same versioned migrations as a SQLite
file. Text columns use the ``"C"`` collation so ``ORDER BY`` and ``MIN`` over ISO timestamps
behave exactly as in SQLite, whatever the database's default collation.

Transactions: ``BEGIN IMMEDIATE`` in SQLite takes the file's write lock up front, so two
writers of one ledger never interleave. Here each transaction takes a transaction-scoped
advisory lock keyed by the account's schema right after ``BEGIN``: the same "one writer at a
time" rule, across processes and machines. Parameters are bound on the client
(:class:`psycopg.ClientCursor`), as SQLite's loose typing expects (``? IS NULL`` with a
``None``, integers into text columns).

Secrets: the password never travels in the URL (``ledger_url`` with a password is refused by
the config); it is passed to libpq separately, registered for redaction, and every error
message is redacted.
"""

from __future__ import annotations

import hashlib
import os
import re
import socket
import threading
from collections.abc import Iterator, Sequence
from contextlib import suppress
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import urlsplit, urlunsplit

from connector.errors import LedgerError, LedgerIdentityError
from connector.ledger.migrations import MIGRATIONS
from connector.ledger.sqlite import Ledger, LedgerVersionError, _split_sql
from connector.secrets import Secret, redact, register_secret

if TYPE_CHECKING:
    import sqlite3

    import psycopg

__all__ = [
    "PG_MIGRATION_OVERRIDES",
    "PostgresLedger",
    "advisory_key",
    "connect",
    "display_url",
    "marker_stem",
    "schema_name",
    "translate",
    "translate_ddl",
]

PG_MIGRATION_OVERRIDES: dict[int, str] = {
    # v2 widens the outbox state CHECK. SQLite cannot alter a CHECK and rebuilds the table;
    # PostgreSQL alters the constraint in place (same name as PostgreSQL gave it in v1).
    2: (
        "ALTER TABLE outbox DROP CONSTRAINT outbox_state_check;\n"
        "ALTER TABLE outbox ADD CONSTRAINT outbox_state_check CHECK (state IN"
        " ('pending', 'sending', 'accepted', 'rejected', 'held', 'retry', 'manual'));\n"
    ),
    # v10 rewrites the lines state CHECK as comparisons (SQLite rebuilds the table for it);
    # PostgreSQL alters the constraint in place (same name as PostgreSQL gave it in v1).
    10: (
        "ALTER TABLE lines DROP CONSTRAINT lines_state_check;\n"
        "ALTER TABLE lines ADD CONSTRAINT lines_state_check CHECK (state = 'staged'"
        " OR state = 'held' OR state = 'delivered' OR state = 'stored' OR state = 'acked'"
        " OR state = 'cancelled');\n"
    ),
    # v11 does the same for the outbox state CHECK.
    11: (
        "ALTER TABLE outbox DROP CONSTRAINT outbox_state_check;\n"
        "ALTER TABLE outbox ADD CONSTRAINT outbox_state_check CHECK (state = 'pending'"
        " OR state = 'sending' OR state = 'accepted' OR state = 'rejected' OR state = 'held'"
        " OR state = 'retry' OR state = 'manual');\n"
    ),
}
"""Migrations whose SQLite script cannot be translated mechanically: the PostgreSQL script of
the same version (same resulting schema)."""

_PRIMARY_KEYS: dict[str, tuple[str, ...]] = {
    "lines": ("ci_lineitemid",),
    "records": ("key",),
    "line_parsed": ("line_id",),
    "problems": ("key",),
    "watermarks": ("name",),
    "meta": ("name",),
    "notices": ("ci_lineitemid", "kind"),
    "carrier_events": ("ci_lineitemid", "kind", "at"),
    "outbox_closed": ("id",),
}
"""Conflict targets for ``INSERT OR REPLACE`` (PostgreSQL needs them named)."""

_APP_NAME_MAX = 63  # PostgreSQL truncates application_name to NAMEDATALEN - 1


def display_url(url: str) -> str:
    """``url`` without a password or query string (for messages and logs)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    netloc = f"{parts.username}@{host}" if parts.username else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def schema_name(account_name: str) -> str:
    """The schema of ``account_name``'s ledger (kept under PostgreSQL's 63-byte limit)."""
    name = f"ledger_{account_name}"
    if len(name.encode()) > _APP_NAME_MAX:
        digest = hashlib.sha256(account_name.encode()).hexdigest()[:12]
        name = f"{name.encode()[:50].decode(errors='ignore')}_{digest}"
    return name


def _quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def advisory_key(purpose: str, name: str) -> int:
    """A signed 64-bit advisory-lock key for ``(purpose, name)`` (sha256, so two accounts
    practically never share a key; a collision would only make them wait for each other)."""
    digest = hashlib.sha256(f"ci-connector:{purpose}:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def application_name(role: str) -> str:
    """``ci-connector <role> <pid>@<host>``: what ``pg_stat_activity`` shows for our sessions
    (it names the holder of a busy account)."""
    text = f"ci-connector {role} {os.getpid()}@{socket.gethostname()}"
    return text[:_APP_NAME_MAX]


def connect(
    url: str, password: Secret | None = None, *, role: str = "ledger"
) -> psycopg.Connection[Any]:
    """A psycopg connection (autocommit; transactions are explicit) to ``url``.

    :raises LedgerError: psycopg is not installed, or the server cannot be reached (redacted,
        naming the URL without secrets).
    """
    try:
        import psycopg
    except ImportError:
        raise LedgerError(
            "ledger_url names a PostgreSQL database but psycopg is not installed; install "
            "the extra: pip install 'groupon-ci-connector[postgres]'"
        ) from None
    kwargs: dict[str, Any] = {
        "autocommit": True,
        "cursor_factory": psycopg.ClientCursor,
        "application_name": application_name(role),
        "connect_timeout": 30,
    }
    if password is not None and password.reveal():
        register_secret(password.reveal())
        kwargs["password"] = password.reveal()
    try:
        return psycopg.connect(url, **kwargs)
    except psycopg.Error as exc:
        raise LedgerError(
            redact(f"cannot connect to the ledger database {display_url(url)}: {exc}")
        ) from None


# -- dialect ---------------------------------------------------------------------------------

_TOKEN = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|\?|%|[^'\"?%]+", re.S)
_PLACEHOLDERS = {"?": "%s", "%": "%%"}  # psycopg's placeholder; a literal % doubled
_INSERT_OR = re.compile(r"^\s*INSERT\s+OR\s+(IGNORE|REPLACE)\s+INTO\s+", re.I)
_INSERT_COLUMNS = re.compile(r"INTO\s+(\w+)\s*\(([^)]*)\)", re.I)


@lru_cache(maxsize=1024)
def translate(sql: str) -> str:
    """One SQLite statement as PostgreSQL (cached: the ledger's statements are constants).

    :raises LedgerError: ``INSERT OR REPLACE`` into a table whose key is not known here.
    """
    stripped = sql.strip()
    upper = stripped.upper()
    if upper == "BEGIN IMMEDIATE":
        return "BEGIN"
    out: list[str] = []
    for piece in _TOKEN.findall(sql):
        if piece.startswith(("'", '"')):
            out.append(piece.replace("%", "%%"))  # psycopg formats the whole text
        else:
            out.append(_PLACEHOLDERS.get(piece, piece))
    text = "".join(out)
    match = _INSERT_OR.match(text)
    if match:
        text = "INSERT INTO " + text[match.end() :]
        if match.group(1).upper() == "IGNORE":
            text = text.rstrip().rstrip(";") + " ON CONFLICT DO NOTHING"
        else:
            text = _upsert(text)
    return text


def _upsert(text: str) -> str:
    columns = _INSERT_COLUMNS.search(text)
    table = columns.group(1).lower() if columns else ""
    keys = _PRIMARY_KEYS.get(table)
    if columns is None or keys is None:
        raise LedgerError(
            f"INSERT OR REPLACE into {table or '?'}: no conflict key known for PostgreSQL "
            "(add the table to connector.ledger.postgres._PRIMARY_KEYS)"
        )
    names = [c.strip() for c in columns.group(2).split(",")]
    updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in names if c not in keys)
    action = f"DO UPDATE SET {updates}" if updates else "DO NOTHING"
    return text.rstrip().rstrip(";") + f" ON CONFLICT ({', '.join(keys)}) {action}"


_DDL_RULES: tuple[tuple[re.Pattern[str], str], ...] = (
    (
        re.compile(r"\bINTEGER\s+PRIMARY\s+KEY\s+AUTOINCREMENT\b", re.I),
        "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY",
    ),
    # SQLite integers are 64-bit; CI ids may outgrow PostgreSQL's 32-bit INTEGER.
    (re.compile(r"\bINTEGER\b", re.I), "BIGINT"),
    # Byte order, as SQLite's BINARY collation: ORDER BY and MIN over ISO text keep working.
    (re.compile(r"\bTEXT\b", re.I), 'TEXT COLLATE "C"'),
)


def translate_ddl(script: str) -> list[str]:
    """A SQLite migration script as PostgreSQL statements (types and collation; quoted text
    is left alone)."""
    statements = []
    for statement in _split_sql(script):
        parts = []
        for token in _TOKEN.findall(statement):
            if not token.startswith(("'", '"')):
                for pattern, replacement in _DDL_RULES:
                    token = pattern.sub(replacement, token)
            parts.append(token)
        statements.append(translate("".join(parts)))
    return statements


def pg_migrations(
    migrations: Sequence[tuple[int, str]],
) -> list[tuple[int, list[str]]]:
    """Each migration as PostgreSQL statements: the override of its version, else the SQLite
    script translated."""
    out = []
    for version, script in sorted(migrations):
        override = PG_MIGRATION_OVERRIDES.get(version)
        if override is not None and script == dict(MIGRATIONS).get(version):
            out.append((version, _split_sql(override)))
        else:
            out.append((version, translate_ddl(script)))
    return out


# -- rows and the connection adapter ----------------------------------------------------------


class _Row(tuple[Any, ...]):
    """A result row readable by position and by column name, as ``sqlite3.Row``."""

    __slots__ = ()
    _names: dict[str, int]

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            return tuple.__getitem__(self, self._names[key])
        return tuple.__getitem__(self, key)

    def keys(self) -> list[str]:
        return list(self._names)


@lru_cache(maxsize=256)
def _row_class(names: tuple[str, ...]) -> type[_Row]:
    index = {n: i for i, n in enumerate(names)}
    return type("Row", (_Row,), {"__slots__": (), "_names": index})


def _plain(value: Any) -> Any:
    # SUM/AVG give numeric in PostgreSQL where SQLite gives an integer.
    if isinstance(value, Decimal) and value == value.to_integral_value():
        return int(value)
    return value


class _Result:
    """A fully fetched result (the adapter never leaves a cursor open)."""

    def __init__(self, rows: list[_Row], rowcount: int) -> None:
        self._rows = rows
        self.rowcount = rowcount

    def fetchall(self) -> list[_Row]:
        return self._rows

    def fetchone(self) -> _Row | None:
        return self._rows[0] if self._rows else None

    def __iter__(self) -> Iterator[_Row]:
        return iter(self._rows)


class _PgConnection:
    """The slice of ``sqlite3.Connection`` the ledger uses, over psycopg: SQL translated,
    results fetched, errors turned into redacted :class:`LedgerError`. ``BEGIN`` also takes
    the ledger's transaction lock and pins the account's schema for the transaction."""

    def __init__(self, url: str, password: Secret | None, schema: str, label: str) -> None:
        self._url = url
        self._password = password
        self._schema = schema
        self._label = label
        self._txn_key = advisory_key("ledger-txn", schema)
        self._conn = connect(url, password)
        self._set_search_path()

    def _set_search_path(self) -> None:
        self._run("SELECT set_config('search_path', %s, false)", (_quote_ident(self._schema),))

    def _fail(self, exc: Exception, what: str = "") -> LedgerError:
        prefix = f"ledger {self._label}: " + (f"{what}: " if what else "")
        return LedgerError(redact(prefix + str(exc).strip()))

    def _run(self, sql: str, params: Sequence[Any] = ()) -> _Result:
        import psycopg

        try:
            cur = self._conn.execute(sql, list(params))
        except psycopg.Error as exc:
            raise self._fail(exc) from None
        return self._fetch(cur)

    @staticmethod
    def _fetch(cur: psycopg.Cursor[Any]) -> _Result:
        if cur.description is None:
            return _Result([], cur.rowcount)
        cls = _row_class(tuple(d.name for d in cur.description))
        rows = [cls(_plain(v) for v in r) for r in cur.fetchall()]
        return _Result(rows, cur.rowcount)

    @property
    def in_transaction(self) -> bool:
        from psycopg.pq import TransactionStatus

        return self._conn.info.transaction_status != TransactionStatus.IDLE

    def _reconnect_if_broken(self) -> None:
        if self._conn.broken or self._conn.closed:
            self._conn = connect(self._url, self._password)
            self._set_search_path()

    def execute(self, sql: str, params: Sequence[Any] = ()) -> _Result:
        text = translate(sql)
        if text == "BEGIN":
            self._reconnect_if_broken()
            # With the write lock of this ledger, released by COMMIT/ROLLBACK (see the module
            # doc); one round trip (client-side binding allows two statements).
            self._run("BEGIN; SELECT pg_advisory_xact_lock(%s)", (self._txn_key,))
            return _Result([], -1)
        return self._run(text, params)

    def execute_script(self, statements: Sequence[str]) -> None:
        """Several statements without parameters in one round trip (already PostgreSQL)."""
        if statements:
            self._run(";\n".join(statements))  # translated already (% doubled)

    def executemany(self, sql: str, seq: Sequence[Sequence[Any]]) -> _Result:
        import psycopg

        rows = list(seq)
        if not rows:
            return _Result([], 0)
        try:
            with self._conn.cursor() as cur:
                cur.executemany(translate(sql), rows)
                return _Result([], cur.rowcount)
        except psycopg.Error as exc:
            raise self._fail(exc) from None

    def close(self) -> None:
        self._conn.close()


# -- the ledger ------------------------------------------------------------------------------


def marker_stem(data_dir: Path, account_name: str) -> Path:
    """The local name of a PostgreSQL ledger, ``<data_dir>/ledger-<account>.postgres``: never
    a file itself, it places the identity marker (``ledger-<account>.postgres.id.json``) the
    way a SQLite ledger file places its own (see :mod:`connector.ledger.identity`)."""
    return Path(data_dir) / f"ledger-{account_name}.postgres"


class PostgresLedger(Ledger):
    """An account's ledger in a PostgreSQL schema. Same API and semantics as the SQLite
    :class:`Ledger`; see the module docstring for what differs underneath.

    :param url: ``postgresql://user@host:port/database`` (no password).
    :param password: from the environment variable the config names (or ``None``: libpq's own
        ``PGPASSWORD``/``.pgpass``).
    :param marker_stem: :attr:`path` (see :func:`marker_stem`); default
        ``ledger-<account>.postgres`` in the working folder.
    :param may_create: ``False`` refuses to create a missing schema (the account has history:
        its marker exists) with :class:`LedgerIdentityError`.
    """

    def __init__(
        self,
        url: str,
        account_name: str,
        migrations: Sequence[tuple[int, str]] = MIGRATIONS,
        *,
        password: Secret | None = None,
        schema: str | None = None,
        marker_stem: Path | None = None,
        may_create: bool = True,
    ) -> None:
        self.url = display_url(url)
        self.schema = schema or schema_name(account_name)
        self.location = f"{self.url} schema {self.schema}"
        """Where the ledger is, for messages (``path`` only places the marker)."""
        self.path = marker_stem or Path(f"ledger-{account_name}.postgres")
        self.account = account_name
        self._lock = threading.RLock()
        self._depth = 0
        self.created = False
        self._leases = True
        self._side_records = True
        self._side_parsed = True
        self._schema_oid: int | None = None
        adapter = _PgConnection(url, password, self.schema, self.location)
        # Duck-typed: the Ledger's SQL runs through the adapter's execute/executemany.
        self._conn = cast("sqlite3.Connection", adapter)
        try:
            self._migrate(migrations, may_create=may_create)
        except BaseException:
            adapter.close()
            raise

    def _migrate(self, migrations: Sequence[tuple[int, str]], *, may_create: bool = True) -> None:
        """Create the schema and apply missing migrations in ONE transaction under the ledger's
        lock (PostgreSQL DDL is transactional): two processes opening a new ledger at once
        cannot both apply version 1."""
        latest = max((v for v, _ in migrations), default=0)
        conn = cast(_PgConnection, self._conn)
        with self._lock:
            conn.execute("BEGIN IMMEDIATE")
            try:
                oid = self._namespace_oid()
                if oid is None and not may_create:
                    raise self._missing("is missing")
                self.created = oid is None
                conn.execute(f"CREATE SCHEMA IF NOT EXISTS {_quote_ident(self.schema)}")
                conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version BIGINT NOT NULL)")
                row = conn.execute("SELECT MAX(version) AS v FROM schema_version").fetchone()
                current = int(row["v"] or 0) if row is not None else 0
                if current > latest:
                    raise LedgerVersionError(
                        f"ledger {self.location} has schema version {current}, newer than "
                        f"this connector supports ({latest}); upgrade groupon-ci-connector or "
                        "restore an older ledger"
                    )
                self._leases = max(latest, current) >= 5
                self._side_records = max(latest, current) >= 8
                self._side_parsed = max(latest, current) >= 9
                for version, statements in pg_migrations(migrations):
                    if version <= current:
                        continue
                    try:
                        # One round trip per version (client-side binding allows a script).
                        conn.execute_script(statements)
                    except LedgerError as exc:
                        raise LedgerError(
                            f"ledger {self.location}: migration to version {version} failed: {exc}"
                        ) from None
                    conn.execute("INSERT INTO schema_version (version) VALUES (?)", (version,))
                self._schema_oid = self._namespace_oid()
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    with suppress(LedgerError):  # the error being raised says what went wrong
                        conn.execute("ROLLBACK")
                raise

    _ORPHAN_RECORDS = (
        "DELETE FROM records WHERE NOT EXISTS"
        " (SELECT 1 FROM lines WHERE lines.record_key = records.key)"
    )
    """PostgreSQL plans ``NOT EXISTS`` as a hash anti-join (``NOT IN`` over a large subquery
    can fall back to a scan per row once it outgrows ``work_mem``)."""

    def _namespace_oid(self) -> int | None:
        rows = self._query("SELECT oid FROM pg_namespace WHERE nspname = ?", (self.schema,))
        return int(rows[0][0]) if rows else None

    def _missing(self, what: str) -> LedgerIdentityError:
        from connector.ledger.identity import marker_path

        return LedgerIdentityError(
            f"ledger {self.location} of account {self.account} {what}, but "
            f"{marker_path(self.path)} shows the account has history. Starting an empty one "
            "would hand the host every open order again and forget what was shipped. Restore "
            "the schema from a backup, or if it is gone for good run `ci-connector reconcile "
            f"--fix --account {self.account}` (it rebuilds the ledger from CI and the host)"
        )

    def verify_intact(self) -> None:
        """Raise if the account's schema was dropped (or dropped and made again) since the
        ledger was opened.

        :raises LedgerIdentityError: saying what happened and how to recover.
        """
        oid = self._namespace_oid()
        if oid == self._schema_oid:
            return
        what = "was dropped" if oid is None else "was dropped and made again"
        raise LedgerIdentityError(
            f"ledger {self.location} of account {self.account} {what} while the connector was "
            "working on it; whatever this call recorded is lost. Stop every process of this "
            "account, restore the schema from a backup if you have one, else run "
            f"`ci-connector reconcile --fix --account {self.account}` to rebuild it from CI "
            "and the host"
        )

    def _query_tuples(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        # The adapter's rows are tuples already (``_Row``).
        return cast("list[tuple[Any, ...]]", self._query(sql, params))

    def _exec(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Cursor:
        """One statement; outside a transaction it commits on its own (PostgreSQL's
        autocommit: one round trip instead of BEGIN/statement/COMMIT — a single statement is
        atomic, and the ledger's transaction lock only orders multi-statement batches)."""
        with self._lock:
            return self._conn.execute(sql, params)

    # A sequence may hand out ids out of order across sessions: always read rows back.
    _consecutive_ids = False

    def _data_version(self) -> int | None:
        # No counter of other sessions' commits here: identity() reads the row every time.
        return None

    # No unary ``+`` on text here; PostgreSQL's planner uses the table statistics instead.
    _active_outbox_filter = "state IN ('pending', 'sending', 'retry', 'accepted')"

    def _begin(self, durable: bool) -> None:
        """``BEGIN``; a non-durable batch commits asynchronously (``synchronous_commit`` off
        for this transaction): the server may lose it in a crash, never half of it, and the
        next synchronous commit waits for the WAL up to its own record, which includes it."""
        self._conn.execute("BEGIN IMMEDIATE")
        if not durable:
            self._conn.execute("SET LOCAL synchronous_commit TO off")

    def _end(self, durable: bool) -> None:
        """Nothing to restore: ``SET LOCAL`` ended with the transaction."""

    def _rollback(self) -> None:
        conn = cast(_PgConnection, self._conn)
        if not conn.in_transaction:
            return
        with suppress(LedgerError):  # the error being raised already says what went wrong
            conn.execute("ROLLBACK")

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            cast(_PgConnection, self._conn).close()

    def drop(self) -> None:
        """Remove this account's schema and everything in it (tests and tooling; never called
        by the plugin)."""
        conn = cast(_PgConnection, self._conn)
        with self._lock:
            conn.execute(f"DROP SCHEMA IF EXISTS {_quote_ident(self.schema)} CASCADE")
