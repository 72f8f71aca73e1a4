"""``ci-connector orders show|list`` and ``ci-connector lines``: look one order or line up.

One row per CI line with three views side by side: the plugin's ledger (state, hold reason,
tracking CI accepted), the reference host's database (its order id, line status, shipped
quantity) and CI (the status CI last sent; with ``--ci`` read live from CI's date window of
the order). Everything but ``--ci`` is read locally and read-only.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import click

from connector.cli import select_accounts
from connector.cli.context import CliContext, emit_json, say
from connector.cli.hints import explain
from connector.cli.output import (
    SuggestingGroup,
    output_options,
    problems_found,
    render_table,
    to_csv,
)
from connector.errors import ChannelError, ConfigError, LedgerError
from connector.ledger import ledger_path, open_ledger
from connector.ledger.sqlite import LineRow
from connector.models import Account
from connector.reference_host.host import HOST_DB_NAME
from connector.secrets import redact

__all__ = ["lines", "orders"]

_HEADERS = (
    "account",
    "order",
    "line",
    "sku",
    "qty",
    "ledger",
    "host",
    "CI",
    "tracking",
    "note",
)


@dataclass
class _View:
    """One line as seen by the ledger, the host and CI."""

    account: str
    orderid: str
    ci_lineitemid: int
    sku: str
    quantity: int
    ledger_state: str
    hold: str
    tracking: tuple[str, ...]
    outbox: list[dict[str, Any]]
    ci_status: str
    host: dict[str, Any] | None
    ci_live: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "account": self.account,
            "orderid": self.orderid,
            "ci_lineitemid": self.ci_lineitemid,
            "sku": self.sku,
            "quantity": self.quantity,
            "ledger": {"state": self.ledger_state, "hold_reason": self.hold or None},
            "host": self.host,
            "ci": {"last_seen_status": self.ci_status, "live_status": self.ci_live},
            "tracking": list(self.tracking),
            "outbox": self.outbox,
        }

    def row(self) -> list[object]:
        host = "not stored"
        if self.host is not None:
            host = f"{self.host['status']} {self.host['host_order_id']}"
            if self.host.get("shipped_quantity"):
                host += f" shipped {self.host['shipped_quantity']}"
        ci = self.ci_status or "?"
        if self.ci_live is not None and self.ci_live != self.ci_status:
            ci = f"{self.ci_live} (live; ledger saw {self.ci_status or '?'})"
        elif self.ci_live is not None:
            ci += " (live)"
        note = self.hold
        pending = [o for o in self.outbox if o["state"] not in ("accepted",)]
        if not note and pending:
            o = pending[-1]
            note = f"outbox {o['state']}: {o['reason']}" if o["reason"] else f"outbox {o['state']}"
        return [
            self.account,
            self.orderid,
            self.ci_lineitemid,
            self.sku,
            self.quantity,
            self.ledger_state,
            host,
            ci,
            ", ".join(self.tracking) or "-",
            note or "",
        ]


def _accounts_with_ledgers(obj: CliContext, name: str) -> list[Account]:
    """The selected accounts whose ledger file exists (a lookup never creates one)."""
    accounts = select_accounts(obj.config(), name)
    return [a for a in accounts if ledger_path(a.data_dir, a.name).is_file()]


def _host_rows(db: Path, account: str, ids: Iterable[int]) -> dict[int, dict[str, Any]]:
    """The host's rows for ``ids`` (read-only); empty without a host database."""
    if not db.is_file():
        return {}
    wanted = list(ids)
    if not wanted:
        return {}
    found: dict[int, dict[str, Any]] = {}
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30.0)
    con.row_factory = sqlite3.Row
    try:
        for start in range(0, len(wanted), 500):
            chunk = wanted[start : start + 500]
            marks = ",".join("?" * len(chunk))
            rows = con.execute(
                "SELECT l.ci_lineitemid, l.host_order_id, l.host_sku, l.quantity,"  # noqa: S608
                " l.shipped_quantity, l.status, o.orderid FROM order_lines l"
                " JOIN orders o USING (host_order_id)"
                f" WHERE l.account = ? AND l.ci_lineitemid IN ({marks})",
                [account, *chunk],
            ).fetchall()
            found.update((int(r["ci_lineitemid"]), dict(r)) for r in rows)
    except sqlite3.Error as exc:
        raise click.ClickException(f"host database {db}: {exc}") from None
    finally:
        con.close()
    return found


def _views(account: Account, rows: Sequence[LineRow], host_db: Path) -> list[_View]:
    ledger = open_ledger(account)
    try:
        outbox: dict[int, list[dict[str, Any]]] = {}
        for line in rows:
            outbox[line.ci_lineitemid] = [
                {
                    "shipment_id": o.shipment_id,
                    "tracking": o.tracking,
                    "carrier": o.carrier_code,
                    "state": o.state,
                    "reason": o.reason,
                }
                for o in ledger.outbox_rows(ci_lineitemid=line.ci_lineitemid)
            ]
    finally:
        ledger.close()
    host = _host_rows(host_db, account.name, (r.ci_lineitemid for r in rows))
    return [
        _View(
            account=account.name,
            orderid=r.orderid,
            ci_lineitemid=r.ci_lineitemid,
            sku=r.sku,
            quantity=r.quantity,
            ledger_state=r.state,
            hold=r.hold_reason if r.hold_kind is not None else "",
            tracking=r.tracking,
            outbox=outbox.get(r.ci_lineitemid, []),
            ci_status=r.ci_status,
            host=host.get(r.ci_lineitemid),
        )
        for r in rows
    ]


def _read_ci(account: Account, views: list[_View], order_dates: dict[str, datetime]) -> None:
    """Fill ``ci_live`` from CI's date window around each order's date (< 24 h, as CI wants)."""
    from connector.ci.client import CIClient
    from connector.ci.schemas import RecordProblem, parse_record

    status: dict[int, str] = {}
    with CIClient.for_account(account) as client:
        for when in sorted(set(order_dates.values())):
            window = (when - timedelta(minutes=1), when + timedelta(hours=22))
            for page in client.fetch_all(window=window):
                for raw in page.records:
                    parsed = parse_record(raw) if isinstance(raw, dict) else None
                    if parsed is None or isinstance(parsed, RecordProblem):
                        continue
                    for line in parsed.lines:
                        status[line.ci_lineitemid] = line.status or "open"
    for view in views:
        view.ci_live = status.get(view.ci_lineitemid, "not listed")


def _show(
    obj: CliContext,
    account_name: str,
    find: Any,
    what: str,
    live: bool,
    output: str,
) -> None:
    config = obj.config()
    views: list[_View] = []
    for account in _accounts_with_ledgers(obj, account_name):
        try:
            ledger = open_ledger(account)
            try:
                rows: list[LineRow] = find(ledger)
            finally:
                ledger.close()
            found = _views(account, rows, config.data_dir / HOST_DB_NAME)
            if live and found:
                config.require_token(account.name)
                dates = {r.orderid: r.order_date for r in rows if r.order_date is not None}
                _read_ci(account, found, dates)
        except (LedgerError, ChannelError, ConfigError) as exc:
            why = explain(exc, account, config.path) if isinstance(exc, ChannelError) else exc
            raise click.ClickException(f"account {account.name!r}: {redact(str(why))}") from None
        views.extend(found)
    if output == "json":
        emit_json({"found": bool(views), "lines": [v.to_dict() for v in views]})
    elif output == "csv":
        say(
            to_csv(
                ({h: c for h, c in zip(_HEADERS, v.row(), strict=True)} for v in views), _HEADERS
            )
        )
    elif views:
        say(render_table(_HEADERS, [v.row() for v in views]))
    if not views:
        if output == "table":
            say(f"{what}: not in any ledger (never imported, or another account/config)")
        problems_found()


_ACCOUNT = click.option(
    "--account",
    "account_name",
    default="all",
    show_default=True,
    metavar="NAME|all",
    help="Look in this account only, or in every account.",
)
_LIVE = click.option(
    "--ci", "live", is_flag=True, help="Also read CI's current status (one date window)."
)


@click.group(cls=SuggestingGroup)
def orders() -> None:
    """Look up imported orders: one order line by line, or a list of what was imported.

    \b
    Example:
      ci-connector orders show 1499000001
      ci-connector orders list --since 2026-11-20 --json
    """


@orders.command("show")
@click.argument("orderid")
@_ACCOUNT
@_LIVE
@output_options(csv=True)
@click.pass_obj
def show(obj: CliContext, orderid: str, account_name: str, live: bool, output: str) -> None:
    """Show every line of a Groupon order: the ledger's state, the host's and CI's, side by side.

    Exit code 1 when no ledger knows the order.

    \b
    Example:
      ci-connector orders show 1499000001
      ci-connector orders show 1499000001 --ci --json
    """
    _show(
        obj,
        account_name,
        lambda ledger: ledger.eval_lines_of_orders([orderid]).get(orderid, []),
        f"order {orderid}",
        live,
        output,
    )


@orders.command("list")
@_ACCOUNT
@click.option("--since", metavar="ISO", default=None, help="Only orders stored at or after this.")
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True)
@output_options(csv=True)
@click.pass_obj
def list_orders(
    obj: CliContext, account_name: str, since: str | None, limit: int, output: str
) -> None:
    """List the orders the reference host imported, newest first (its database, read-only).

    \b
    Example:
      ci-connector orders list --limit 20
      ci-connector orders list --since 2026-11-20 --format csv > imported.csv
    """
    config = obj.config()
    accounts = [a.name for a in select_accounts(config, account_name)]
    db = config.data_dir / HOST_DB_NAME
    rows: list[dict[str, Any]] = []
    if db.is_file():
        marks = ",".join("?" * len(accounts))
        sql = (
            "SELECT o.account, o.orderid, o.host_order_id, o.order_date, o.status,"  # noqa: S608
            " o.created_at,"
            " COUNT(l.ci_lineitemid) AS lines, COALESCE(SUM(l.quantity), 0) AS units"
            " FROM orders o LEFT JOIN order_lines l USING (host_order_id)"
            f" WHERE o.account IN ({marks})"
        )
        params: list[Any] = list(accounts)
        if since:
            sql += " AND o.created_at >= ?"
            params.append(since)
        sql += " GROUP BY o.host_order_id ORDER BY o.seq DESC LIMIT ?"
        params.append(limit)
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30.0)
        con.row_factory = sqlite3.Row
        try:
            rows = [dict(r) for r in con.execute(sql, params).fetchall()]
        except sqlite3.Error as exc:
            raise click.ClickException(f"host database {db}: {exc}") from None
        finally:
            con.close()
    fields = ("account", "orderid", "host_order_id", "order_date", "status", "lines", "units",
              "created_at")  # fmt: skip
    if output == "json":
        emit_json({"host_db": str(db), "orders": rows})
    elif output == "csv":
        say(to_csv(rows, fields))
    elif rows:
        say(render_table(
            ["account", "order", "host order", "order date", "status", "lines", "units", "stored"],
            [[r[f] for f in fields] for r in rows],
        ))  # fmt: skip
    else:
        say(f"no orders imported yet ({db})")


@click.command("lines")
@click.argument("ci_lineitemids", nargs=-1, required=True, type=int, metavar="LINEID...")
@_ACCOUNT
@_LIVE
@output_options(csv=True)
@click.pass_obj
def lines(
    obj: CliContext, ci_lineitemids: tuple[int, ...], account_name: str, live: bool, output: str
) -> None:
    """Look CI line items up: ledger state, host state and CI state side by side.

    Exit code 1 when none of the lines is known.

    \b
    Example:
      ci-connector lines 612000001 612000002
      ci-connector lines 612000001 --ci --json
    """
    _show(
        obj,
        account_name,
        lambda ledger: [
            row for lid in ci_lineitemids if (row := ledger.get_lines([lid]).get(lid)) is not None
        ],
        "line(s) " + ", ".join(str(i) for i in ci_lineitemids),
        live,
        output,
    )
