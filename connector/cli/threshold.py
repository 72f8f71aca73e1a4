"""`ci-connector threshold`: units and sales in the 30-day cycle against the merchant level."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import click

from connector.cli import sla as sla_cli
from connector.cli.context import CliContext, emit_json, say
from connector.cli.output import money, problems_found
from connector.errors import LedgerError
from connector.models import Account
from connector.ops.sla import parse_datetime
from connector.ops.threshold import (
    CYCLE_LENGTH,
    CycleEvent,
    CycleEventKind,
    ReviewReadiness,
    ThresholdReport,
    evaluate,
    orders_delivered,
    review_readiness,
    sales_from_rows,
)

__all__ = ["load_sales_rows", "parse_events", "parse_warn", "threshold"]

_CSV_FIELDS = (
    "account",
    "level",
    "cycle_start",
    "cycle_end",
    "units",
    "max_units",
    "units_share",
    "sales",
    "max_sales",
    "sales_share",
    "warnings",
    "cap_reached",
    "projected_cap_at",
    "projected_within_cycle",
    "suspended",
)


def load_sales_rows(account: Account) -> list[dict[str, Any]]:
    """The account's ledger lines as rows (same adapter as ``sla``; carries ``unit_price``)."""
    return sla_cli.load_sla_rows(account)


def parse_warn(text: str) -> tuple[float, ...]:
    """``"0.8,0.95"`` -> ``(0.8, 0.95)``; each in (0, 1]."""
    try:
        values = tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise click.BadParameter(
            f"{text!r}: expected fractions separated by commas, e.g. 0.8,0.95",
            param_hint="--warn",
        ) from None
    if not values or any(not 0 < v <= 1 for v in values):
        raise click.BadParameter(
            f"{text!r}: every value must be a fraction in (0, 1], e.g. 0.8,0.95",
            param_hint="--warn",
        )
    return values


def parse_events(items: Sequence[str]) -> list[CycleEvent]:
    """``KIND=ISO`` values of ``--event`` (kind: first_sale, suspended, unsuspended)."""
    kinds = [k.value for k in CycleEventKind]
    events: list[CycleEvent] = []
    for item in items:
        kind, sep, when = item.partition("=")
        if not sep or kind.strip() not in kinds:
            raise click.BadParameter(
                f"{item!r}: expected KIND=ISO with KIND one of {', '.join(kinds)}",
                param_hint="--event",
            )
        try:
            at = parse_datetime(when)
        except ValueError:
            raise click.BadParameter(
                f"{item!r}: {when!r} is not an ISO 8601 date-time", param_hint="--event"
            ) from None
        events.append(CycleEvent(at, CycleEventKind(kind.strip())))
    return events


HELP = """Check units and sales of the current 30-day cycle against the merchant level.

Caps per 30-day cycle: level 1 100 units or $1,000; level 2 200 / $5,000; level 3
2,500 / $25,000; level 4 12,500 / $125,000; level 5 uncapped. Reaching a cap suspends the
account for a review. The cycle restarts at the first unit sold, at a suspension and at an
unsuspension (give those with --event). While suspended, the report also shows how far the
account is from an expedited review (all orders delivered, all tickets resolved).
Amounts are shown in the account region's currency. Exit code 1 when a cap is reached or an
account is suspended.

\b
Example:
  ci-connector threshold --account us-main --level 2 --warn 0.8,0.95 \\
      --event suspended=2026-03-05T12:00:00Z --open-tickets 0
  ACCOUNT  LEVEL  CYCLE              UNITS      SALES             WARNINGS ...
  us-main  2      03-05 .. 04-04     170/200    $1,234.00/$5,000  units>=80% ...
"""


@click.command("threshold", help=HELP)
@click.option("--account", "account_name", metavar="NAME", help="Only this account.")
@click.option(
    "--level",
    type=click.IntRange(1, 5),
    help="Merchant level 1-5 (default: the account's merchant_level option).",
)
@click.option(
    "--warn", "warn_text", default="0.8,0.95", show_default=True, help="Warning fractions."
)
@click.option("--now", "now_text", metavar="ISO", help="Judge at this moment (default: now).")
@click.option(
    "--event",
    "event_items",
    multiple=True,
    metavar="KIND=ISO",
    help="A cycle event: first_sale, suspended or unsuspended at a time (repeatable).",
)
@click.option(
    "--open-tickets",
    type=click.IntRange(min=0),
    help="Unresolved customer tickets, for the review readiness (unknown if omitted).",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "json", "csv"]),
    default="table",
    show_default=True,
)
@click.option("--json", "as_json", is_flag=True, help="Same as --format json.")
@click.pass_obj
def threshold(
    obj: CliContext,
    account_name: str | None,
    level: int | None,
    warn_text: str,
    now_text: str | None,
    event_items: tuple[str, ...],
    open_tickets: int | None,
    fmt: str,
    as_json: bool = False,
) -> None:
    fmt = "json" if as_json else fmt
    warn_at = parse_warn(warn_text)
    events = parse_events(event_items)
    now = sla_cli.parse_now(now_text)
    results: list[tuple[Account, ThresholdReport, ReviewReadiness | None]] = []
    for account in sla_cli.selected_accounts(obj, account_name):
        try:
            rows = load_sales_rows(account)
            report = evaluate(
                level or account.options.merchant_level,
                sales_from_rows(rows),
                events,
                now,
                warn_at,
            )
            readiness = None
            if report.suspended and report.suspended_since is not None:
                # Orders that may still be on their way: those of the cycle before suspension.
                delivered, total = orders_delivered(
                    rows, report.suspended_since - CYCLE_LENGTH - timedelta(days=1)
                )
                readiness = review_readiness(delivered, total, open_tickets)
        except (LedgerError, ValueError) as exc:  # ThresholdInputError is a ValueError
            raise click.ClickException(f"account {account.name!r}: {exc}") from None
        results.append((account, report, readiness))

    if fmt == "json":
        emit_json(
            {
                "now": now.isoformat(),
                "accounts": [
                    {
                        "account": acct.name,
                        **rep.to_dict(),
                        "review": None if ready is None else ready.to_dict(),
                    }
                    for acct, rep, ready in results
                ],
            }
        )
    elif fmt == "csv":
        say(sla_cli.to_csv((_flat(acct, rep) for acct, rep, _ in results), _CSV_FIELDS))
    else:
        _print_table(results)
    if any(rep.cap_reached or rep.suspended for _, rep, _ in results):
        problems_found()  # exit 1: a cap reached (or a suspension) is a problem found


def _flat(account: Account, report: ThresholdReport) -> dict[str, Any]:
    row = report.to_dict()
    row["account"] = account.name
    row["warnings"] = ";".join(f"{w.measure}>={w.fraction:g}" for w in report.warnings)
    return row


def _status(report: ThresholdReport) -> str:
    """Groupon suspends an account the moment a cap is reached; say so before it is recorded."""
    if report.suspended:
        return "SUSPENDED"
    if report.cap_reached:
        return "CAP REACHED (Groupon suspends at the cap)"
    return "active"


def _money(value: Any, region: str = "US") -> str:
    """An amount in the account's currency ($ for US, £ for UK, € for the euro regions)."""
    return money(value, region)


def _share(value: float | None) -> str:
    return "" if value is None else f" ({value:.0%})"


def _print_table(results: list[tuple[Account, ThresholdReport, ReviewReadiness | None]]) -> None:
    headers = (
        "ACCOUNT",
        "LEVEL",
        "CYCLE (UTC)",
        "UNITS",
        "SALES",
        "WARNINGS",
        "CAP AT (PROJECTED)",
        "STATUS",
    )
    rows: list[list[Any]] = []
    for account, rep, _ in results:
        cycle = (
            "not started"
            if rep.cycle_start is None or rep.cycle_end is None
            else f"{rep.cycle_start:%Y-%m-%d %H:%M} .. {rep.cycle_end:%Y-%m-%d %H:%M}"
        )
        units_cap = "uncapped" if rep.max_units is None else f"{rep.max_units:,}"
        sales_cap = "uncapped" if rep.max_sales is None else _money(rep.max_sales, account.region)
        projected = "-"
        if rep.projected_cap_at is not None:
            projected = f"{rep.projected_cap_at:%Y-%m-%d %H:%M}"
            if rep.cap_reached:
                projected += " (reached)"
            elif not rep.projected_within_cycle:
                projected += " (after cycle end)"
        rows.append(
            [
                account.name,
                rep.level,
                cycle,
                f"{rep.units:,}/{units_cap}{_share(rep.units_share)}",
                f"{_money(rep.sales, account.region)}/{sales_cap}{_share(rep.sales_share)}",
                ", ".join(f"{w.measure}>={w.fraction:.0%}" for w in rep.warnings) or "-",
                projected,
                _status(rep),
            ]
        )
    say(sla_cli.render_table(headers, rows))
    for account, rep, ready in results:
        if ready is None:
            continue
        say("")
        since = f"{rep.suspended_since:%Y-%m-%d %H:%M} UTC" if rep.suspended_since else "?"
        say(
            f"{account.name}: suspended since {since}; orders delivered "
            f"{ready.orders_delivered}/{ready.orders_total} ({ready.delivered_share:.0%}), "
            f"open tickets {'unknown' if ready.open_tickets is None else ready.open_tickets}"
        )
        for step in ready.steps:
            say(f"  - {step}")
