"""`ci-connector sla`: where every Groupon line stands against its deadlines."""

from __future__ import annotations

import csv
import io
from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

import click

from connector.cli.context import CliContext, emit_json, say
from connector.cli.output import problems_found
from connector.errors import ConfigError, LedgerError
from connector.models import Account
from connector.ops.businessdays import calendar_for_account
from connector.ops.ledger_rows import rows_from_ledger
from connector.ops.sla import (
    SlaInputError,
    SlaState,
    SlaStatus,
    at_risk,
    cycle_time_report,
    evaluate_account,
    parse_datetime,
    scans_reported_in,
)
from connector.textsafe import neutralise_cell

__all__ = ["load_sla_rows", "parse_now", "render_table", "selected_accounts", "sla", "to_csv"]

_FINISHED = (SlaState.SHIPPED, SlaState.CANCELLED)
_CSV_FIELDS = (
    "account",
    "orderid",
    "ci_lineitemid",
    "status",
    "state",
    "deadline",
    "deadline_source",
    "auto_cancel_at",
    "business_days_to_auto_cancel",
    "movement_late",
    "tracking_late",
    "reason",
)


def load_sla_rows(account: Account) -> list[dict[str, Any]]:
    """Every ledger line of ``account`` as a plain row (see
    :func:`connector.ops.ledger_rows.rows_from_ledger`).

    :raises connector.errors.LedgerError: the ledger cannot be read.
    """
    from connector.ledger import open_ledger

    ledger = open_ledger(account)
    try:
        return rows_from_ledger(ledger, account)
    finally:
        ledger.close()


def parse_now(text: str | None) -> datetime:
    """``--now`` value (ISO 8601; naive = UTC) or the current time."""
    if text is None:
        return datetime.now(UTC)
    try:
        return parse_datetime(text)
    except ValueError:
        raise click.BadParameter(
            f"{text!r} is not an ISO 8601 date-time, e.g. 2026-11-25T16:00:00-06:00",
            param_hint="--now",
        ) from None


def selected_accounts(obj: CliContext, name: str | None) -> list[Account]:
    """The named account, or every Groupon account in the configuration."""
    config = obj.config()
    if name is not None:
        try:
            return [config.account(name)]
        except ConfigError as exc:
            raise click.ClickException(str(exc)) from None
    accounts = [a for a in config.accounts if a.channel == "groupon"]
    if not accounts:
        raise click.ClickException(f"no groupon account in {config.path or 'the configuration'}")
    return accounts


def render_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """The CLI's one table renderer (kept here for callers that import it from sla)."""
    from connector.cli.output import render_table as render

    return render(headers, rows)


def to_csv(rows: Iterable[dict[str, Any]], fields: Sequence[str]) -> str:
    """CSV text with a header row (no trailing newline). Every cell is neutralised
    (:func:`connector.textsafe.neutralise_cell`): a value that starts like a formula gets a
    leading ``'``, control characters are escaped, numbers stay numbers."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(fields), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: neutralise_cell(row.get(k)) for k in fields})
    return buf.getvalue().rstrip("\n")


HELP = """Show where each Groupon line stands against its SLA deadlines.

Tracking is due by CI's ship_by date, else 1 business day after the order (orders after the
account's cut-off, 5 pm America/Chicago by default, count from the next business day).
Lines without tracking are auto-cancelled by Groupon after 7 business days, partially
shipped ones after 14. States: on_time, due_today, overdue, auto_cancel_soon, shipped,
cancelled. Carrier movement (within 3 business days) and cycle time (order to delivered,
at most 6 days on average) come from the scans and deliveries the host reports; once it
reports any, a line still without a scan after 3 business days has late movement.
With --at-risk the exit code is 1 when any line is at risk.

\b
Example:
  ci-connector sla --account us-main --now 2026-11-25T16:00:00-06:00
  ACCOUNT  ORDERID  LINE  STATE      DEADLINE (LOCAL)          BD TO CANCEL  ...
  us-main  1499001  6120  due_today  Wed 2026-11-25 17:00 CST  7             ...
"""


@click.command("sla", help=HELP)
@click.option("--account", "account_name", metavar="NAME", help="Only this account.")
@click.option("--now", "now_text", metavar="ISO", help="Judge at this moment (default: now).")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "json", "csv"]),
    default="table",
    show_default=True,
)
@click.option("--all", "show_all", is_flag=True, help="Also list shipped and cancelled lines.")
@click.option(
    "--at-risk",
    "only_at_risk",
    is_flag=True,
    help="Only lines due today, overdue or near auto-cancel.",
)
@click.option(
    "--within",
    type=click.IntRange(min=0),
    default=2,
    show_default=True,
    help="Business days before auto-cancel that count as at risk.",
)
@click.option("--json", "as_json", is_flag=True, help="Same as --format json.")
@click.pass_obj
def sla(
    obj: CliContext,
    account_name: str | None,
    now_text: str | None,
    fmt: str,
    show_all: bool,
    only_at_risk: bool,
    within: int,
    as_json: bool = False,
) -> None:
    fmt = "json" if as_json else fmt
    now = parse_now(now_text)
    report: list[dict[str, Any]] = []
    table_rows: list[list[Any]] = []
    for account in selected_accounts(obj, account_name):
        try:
            tz = calendar_for_account(account)[2]  # the zone the table shows deadlines in
            rows = load_sla_rows(account)
            # Once the host reports carrier events, a missing scan is late movement.
            scans = scans_reported_in(rows)
            statuses = evaluate_account(account, rows, now, within, scans_reported=scans)
        except (ConfigError, LedgerError, SlaInputError) as exc:
            raise click.ClickException(f"account {account.name!r}: {exc}") from None
        lines = [s.line for s in statuses]
        risky = {r.ci_lineitemid for r in at_risk(statuses, within)}
        shown = [
            s
            for s in statuses
            if (show_all or s.state not in _FINISHED)
            and (not only_at_risk or s.line.ci_lineitemid in risky)
        ]
        counts = Counter(s.state.value for s in statuses)
        cycle = cycle_time_report(lines)
        report.append(
            {
                "account": account.name,
                "counts": {state.value: counts.get(state.value, 0) for state in SlaState},
                "at_risk": len(risky),
                "scans_reported": scans,
                "movement_late": sum(1 for s in statuses if s.movement_late),
                "cycle_time": {
                    "avg_days": cycle.avg_days,
                    "delivered_lines": cycle.n,
                    "over_6_days": cycle.over_6,
                    "meets_target": cycle.meets_target,
                },
                "lines": [s.to_dict() for s in shown],
            }
        )
        table_rows.extend(_table_row(s, tz) for s in shown)

    if fmt == "json":
        emit_json({"now": now.isoformat(), "accounts": report})
    elif fmt == "csv":
        say(to_csv((line for acc in report for line in acc["lines"]), _CSV_FIELDS))
    else:
        _print_table(now, report, table_rows)
    if only_at_risk and any(acc["at_risk"] for acc in report):
        problems_found()  # exit 1: lines at risk are problems for the operator


def _table_row(s: SlaStatus, tz: Any) -> list[Any]:
    return [
        s.line.account,
        s.line.orderid,
        s.line.ci_lineitemid,
        s.state.value,
        s.deadline.astimezone(tz).strftime("%a %Y-%m-%d %H:%M %Z"),
        s.business_days_to_auto_cancel,
        "late" if s.movement_late else "",
        s.reason,
    ]


def _print_table(now: datetime, report: list[dict[str, Any]], rows: list[list[Any]]) -> None:
    if rows:
        headers = (
            "ACCOUNT",
            "ORDERID",
            "LINE",
            "STATE",
            "DEADLINE (LOCAL)",
            "BD TO CANCEL",
            "MOVEMENT",
            "REASON",
        )
        say(render_table(headers, rows))
    else:
        say("No lines to show.")
    say("")
    say(f"As of {now.isoformat()}:")
    for acc in report:
        counts = ", ".join(f"{n} {state}" for state, n in acc["counts"].items() if n)
        cycle = acc["cycle_time"]
        if cycle["avg_days"] is None:
            cycle_text = "no delivered lines recorded"
        else:
            verdict = "within" if cycle["meets_target"] else "over"
            cycle_text = (
                f"average {cycle['avg_days']} days over {cycle['delivered_lines']} delivered "
                f"line(s), {verdict} Groupon's 6-day target"
            )
        movement = (
            f"{acc['movement_late']} with late carrier movement"
            if acc["scans_reported"]
            else "no carrier scans reported"
        )
        say(
            f"  {acc['account']}: {counts or 'no lines'}; {acc['at_risk']} at risk; "
            f"{movement}; cycle time {cycle_text}"
        )
