"""``ci-connector gpn``: the Groupon Partner Network (GPN) Transaction API from the shell."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, date, datetime, time, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import click

from connector.cli import render_table
from connector.cli.context import CliContext, say
from connector.cli.output import SuggestingGroup
from connector.config import GPN_TOKEN_KEY
from connector.errors import ConfigError, GPNError
from connector.gpn import GPNClient, Transaction, TransactionsResult
from connector.gpn.client import STATUSES, TYPES
from connector.secrets import redact
from connector.textsafe import neutralise_cell

__all__ = ["gpn", "transaction_row"]

COLUMNS = (
    "transactionId",
    "transactionType",
    "transactionStatus",
    "transactionDate",
    "lastModifiedDate",
    "orderId",
    "shortId",
    "cartId",
    "cartItemId",
    "supportId",
    "linkId",
    "permalink",
    "grossAmount",
    "payableAmount",
    "payableMinor",
    "currency",
    "sid",
    "wid",
    "invoiceId",
    "transactionDetails",
    "commissionCategory",
    "commissionDetails",
    "country",
    "isNewUser",
)


def transaction_row(t: Transaction, zone: tzinfo = UTC) -> dict[str, Any]:
    """A transaction with the API's field names; ISO dates in ``zone``, amounts as strings
    (``payableAmount`` in major units, ``payableMinor`` as GPN sent it)."""
    return {
        "transactionId": t.transaction_id,
        "transactionType": t.transaction_type,
        "transactionStatus": t.transaction_status,
        "transactionDate": _iso(t.transaction_date, zone),
        "lastModifiedDate": _iso(t.last_modified, zone),
        "orderId": t.order_id,
        "shortId": t.short_id,
        "cartId": t.cart_id,
        "cartItemId": t.cart_item_id,
        "supportId": t.support_id,
        "linkId": t.link_id,
        "permalink": t.permalink,
        "grossAmount": None if t.gross_amount is None else str(t.gross_amount),
        "payableAmount": str(t.payable_amount),
        "payableMinor": t.payable_minor,
        "currency": t.currency,
        "sid": t.sid,
        "wid": t.wid,
        "invoiceId": t.invoice_id,
        "transactionDetails": t.transaction_details,
        "commissionCategory": t.commission_category,
        "commissionDetails": t.commission_details,
        "country": t.country,
        "isNewUser": t.is_new_user,
    }


def _iso(value: datetime | None, zone: tzinfo) -> str | None:
    return None if value is None else value.astimezone(zone).isoformat()


def _short(value: datetime | None, zone: tzinfo) -> str:
    return "" if value is None else value.astimezone(zone).strftime("%Y-%m-%d %H:%M")


def _zone(name: str | None) -> tzinfo:
    if name is None:
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise click.BadParameter(
            f"unknown time zone {name!r}; use an IANA name like Europe/Berlin",
            param_hint="--timezone",
        ) from None


def _when(text: str, zone: tzinfo, option: str, *, end_of_day: bool) -> datetime:
    """``YYYY-MM-DD`` or ``YYYY-MM-DDTHH:MM:SS`` in ``zone``; a bare ``--to`` date is inclusive."""
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            return datetime.combine(day, time(23, 59, 59) if end_of_day else time(0), zone)
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise click.BadParameter(
            f"{text!r} is not YYYY-MM-DD or YYYY-MM-DDTHH:MM:SS", param_hint=option
        ) from None
    return parsed.replace(tzinfo=zone) if parsed.tzinfo is None else parsed


def _print_table(result: TransactionsResult, summary: bool, zone: tzinfo, label: str) -> None:
    rows = [
        [
            t.transaction_id,
            t.transaction_type,
            t.transaction_status,
            _short(t.transaction_date, zone),
            _short(t.last_modified, zone),
            t.order_id,
            "" if t.gross_amount is None else str(t.gross_amount),
            str(t.payable_amount),
            t.currency,
        ]
        for t in result.transactions
    ]
    headers = ["id", "type", "status", f"date ({label})", f"modified ({label})", "order", "gross"]
    say(render_table([*headers, "payable", "cur"], rows))
    say(
        f"{len(result.transactions)} transaction(s); {result.rows_read} row(s) read in "
        f"{len(result.windows)} window(s)"
    )
    if summary:
        totals = result.totals()
        say("")
        say(
            render_table(
                ["type/status", "count", "payable", "cur"],
                [[k, v["count"], str(v["payable"]), v["currency"]] for k, v in totals.items()],
            )
        )


def _print_csv(result: TransactionsResult, zone: tzinfo) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for t in result.transactions:
        # Neutralised: GPN text (descriptions, ids) must not run as a spreadsheet formula.
        writer.writerow({k: neutralise_cell(v) for k, v in transaction_row(t, zone).items()})
    click.echo(redact(buffer.getvalue()), nl=False)


def _print_json(result: TransactionsResult, summary: bool, zone: tzinfo) -> None:
    payload: dict[str, Any] = {
        "transactions": [transaction_row(t, zone) for t in result.transactions],
        "count": len(result.transactions),
        "rows_read": result.rows_read,
        "windows": [[lo.isoformat(), hi.isoformat()] for lo, hi in result.windows],
        "problems": list(result.problems),
    }
    if summary:
        payload["totals"] = {
            k: {**v, "payable": str(v["payable"])} for k, v in result.totals().items()
        }
        payload["server_summaries"] = list(result.summaries)
    click.echo(redact(json.dumps(payload, indent=2, default=str)))


@click.group("gpn", cls=SuggestingGroup)
def gpn() -> None:
    """Groupon Partner Network (GPN) Transaction API: affiliate sales, refunds, bonuses.

    Credentials come from the [gpn] table of the configuration (client_id, token_env,
    base_url, auth); the token itself only ever comes from the environment variable named.

    \b
    Example:
      export GPN_TOKEN=...
      ci-connector gpn transactions --from 2026-10-01 --to 2026-11-20 --type SALE
    """


@gpn.command("transactions")
@click.option("--from", "date_from", required=True, help="Start: YYYY-MM-DD[THH:MM:SS].")
@click.option(
    "--to", "date_to", default=None, help="End (inclusive; a bare date = end of day). Default: now."
)
@click.option(
    "--type",
    "kind",
    type=click.Choice(["ALL", *TYPES], case_sensitive=False),
    default=None,
    help="Transaction type (default: all).",
)
@click.option(
    "--status",
    type=click.Choice(list(STATUSES), case_sensitive=False),
    default=None,
    help="Transaction status (GPN's default: NON-INVOICED, i.e. all but INVOICED).",
)
@click.option("--invoice", default=None, help="Only this invoice id.")
@click.option(
    "--timezone", "tz", default=None, help="IANA time zone for dates in and out (default UTC)."
)
@click.option("--summary", is_flag=True, help="Add totals per type/status.")
@click.option(
    "--auth",
    type=click.Choice(["sec1", "sec2"], case_sensitive=False),
    default=None,
    help="Auth scheme (default: the config's, normally sec2 = salted and signed).",
)
@click.option(
    "--overlap-hours",
    type=click.FloatRange(min=0),
    default=0.0,
    show_default=True,
    help="Also re-read this many hours before --from (48 catches late rectifications).",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "csv", "json"], case_sensitive=False),
    default="table",
    show_default=True,
)
@click.option("--json", "as_json", is_flag=True, help="Same as --format json.")
@click.pass_obj
def transactions(
    obj: CliContext,
    date_from: str,
    date_to: str | None,
    kind: str | None,
    status: str | None,
    invoice: str | None,
    tz: str | None,
    summary: bool,
    auth: str | None,
    overlap_hours: float,
    fmt: str,
    as_json: bool = False,
) -> None:
    """List GPN transactions created or modified between --from and --to.

    Ranges over 30 days are fetched in 30-day windows; rows are de-duplicated by id.

    \b
    Example:
      export GPN_TOKEN=...     # the [gpn] table names this variable in token_env
      ci-connector gpn transactions --from 2024-03-01 --to 2024-03-31 --type SALE
      ci-connector gpn transactions --from 2024-01-01 --summary --format json
    """
    fmt = "json" if as_json else fmt
    settings = obj.config().gpn
    if settings is None:
        raise click.ClickException(
            f"no [gpn] table in {obj.config_path}: add client_id, token_env (the name of the "
            "environment variable holding the token), and optionally base_url and auth"
        )
    try:
        obj.config().require_token(GPN_TOKEN_KEY)
    except ConfigError as exc:
        raise click.ClickException(redact(str(exc))) from None
    zone = _zone(tz)
    start = _when(date_from, zone, "--from", end_of_day=False)
    end = datetime.now(UTC) if date_to is None else _when(date_to, zone, "--to", end_of_day=True)
    if end < start:
        raise click.BadParameter(f"--to {date_to} is before --from {date_from}")
    try:
        with GPNClient(
            settings.base_url,
            settings.client_id,
            settings.token,
            auth=(auth or settings.auth).upper(),
        ) as client:
            result = client.transactions(
                start,
                end,
                transaction_type=kind,
                transaction_status=status,
                invoice_id=invoice,
                time_zone=tz,
                summary=summary,
                overlap_hours=overlap_hours,
            )
    except (GPNError, ValueError) as exc:
        raise click.ClickException(redact(str(exc))) from None
    for problem in result.problems:
        say(f"warning: skipped a row GPN sent: {problem}", err=True)
    if fmt.lower() == "json":
        _print_json(result, summary, zone)
    elif fmt.lower() == "csv":
        _print_csv(result, zone)
    else:
        _print_table(result, summary, zone, tz or "UTC")
