"""``ci-connector files``: the manual file path (CI's Import/Export screens).

``tracking-upload`` writes CI's Import -> Tracking Numbers file from an account's outbox;
``read-orders`` shows what an Export -> Orders file would import, and every problem in it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from connector.cli.context import CliContext, emit_json, say
from connector.cli.output import SuggestingGroup
from connector.errors import ConfigError, LedgerError
from connector.ops.manual_files import (
    MANUAL_STATE,
    UPLOADABLE_STATES,
    ManualFileError,
    OrderExportResult,
    eligible_for_upload,
    mark_manual,
    read_order_export,
    write_tracking_upload,
)
from connector.secrets import redact
from connector.textsafe import printable

__all__ = ["files", "read_orders", "tracking_upload"]

_TABLE_HEADERS = (
    "row",
    "order",
    "line",
    "sku",
    "qty",
    "price",
    "status",
    "ship to",
    "ctry",
    "ship by",
)


@click.group(cls=SuggestingGroup, context_settings={"help_option_names": ["-h", "--help"]})
def files() -> None:
    """Work with CI's manual files: tracking upload (Import) and order export (Export).

    \b
    Examples:
      ci-connector files tracking-upload --account us --out tracking.csv
      ci-connector files tracking-upload --account us --out t.xlsx --format xlsx --mark-sent
      ci-connector files read-orders orders.xlsx
      ci-connector files read-orders orders.csv --format json
    """


def _format_for(out: Path, fmt: str | None) -> str:
    if fmt is not None:
        return fmt
    return "xlsx" if out.suffix.lower() == ".xlsx" else "csv"


@files.command("tracking-upload")
@click.option("--account", "account_name", required=True, help="Account name from the config.")
@click.option(
    "--out",
    "out",
    required=True,
    type=click.Path(path_type=Path, dir_okay=False),
    help="File to write (replaced if it exists).",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["csv", "xlsx"]),
    default=None,
    help="File format (default: from the --out suffix, else csv).",
)
@click.option(
    "--mark-sent",
    is_flag=True,
    help=f"Mark the rows as handed to the manual path (outbox state '{MANUAL_STATE}') so the "
    "API flush does not send them too.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
@click.pass_obj
def tracking_upload(
    obj: CliContext,
    account_name: str,
    out: Path,
    fmt: str | None,
    mark_sent: bool,
    as_json: bool = False,
) -> None:
    """Write CI's Import -> Tracking Numbers file from the account's outbox.

    Only pending/retry rows that passed pre-flight (they have a carrier code) are written.
    Upload the file in CI: Orders -> Import -> Import Type "Tracking Numbers".

    \b
    Examples:
      ci-connector files tracking-upload --account us --out tracking.csv
      ci-connector files tracking-upload --account us --out t.xlsx --mark-sent
    """
    from connector.ledger import open_ledger

    try:
        account = obj.config().account(account_name)
    except ConfigError as exc:
        raise click.ClickException(redact(str(exc))) from None
    kind = _format_for(out, fmt)
    try:
        ledger = open_ledger(account)
    except LedgerError as exc:
        raise click.ClickException(redact(str(exc))) from None
    try:
        rows = eligible_for_upload(ledger.outbox_rows(states=UPLOADABLE_STATES))
        if not rows:
            if as_json:
                emit_json({"account": account.name, "path": None, "rows": 0, "marked": 0})
                return
            say(f"account {account.name}: no pending tracking rows to write; {out} not written")
            return
        lines = ledger.get_lines((r.ci_lineitemid for r in rows), light=True)  # only the SKU
        skus = {lid: line.sku for lid, line in lines.items()}
        if mark_sent:
            now = datetime.now(UTC)
            written = False
            try:
                # One transaction: the rows are marked only if the file was written too.
                with ledger.transaction():
                    mark_manual(ledger, rows, out, now)
                    count = write_tracking_upload(rows, out, kind, skus=skus)
                    written = True
            except LedgerError as exc:
                if written:  # the commit failed after the file was written: take it back
                    out.unlink(missing_ok=True)
                raise click.ClickException(
                    redact(
                        f"could not mark the rows as '{MANUAL_STATE}' ({exc}); this ledger "
                        f"may predate the '{MANUAL_STATE}' outbox state. Nothing was marked "
                        f"and no file was written; run without --mark-sent to only write it"
                    )
                ) from None
        else:
            count = write_tracking_upload(rows, out, kind, skus=skus)
    except ManualFileError as exc:
        raise click.ClickException(redact(str(exc))) from None
    finally:
        ledger.close()
    if as_json:
        marked = count if mark_sent else 0
        emit_json(
            {"account": account.name, "path": str(out), "format": kind, "rows": count,
             "marked": marked}
        )  # fmt: skip
        return
    say(f"account {account.name}: wrote {count} tracking row(s) to {out} ({kind})")
    if mark_sent:
        say(f"marked {count} outbox row(s) '{MANUAL_STATE}': the API flush will not send them")
    else:
        say(
            "note: these rows are still pending in the outbox and the next sync may send them "
            "through the API too (CI ignores an identical repeat); use --mark-sent to hand "
            "them to the manual path",
            err=True,
        )


@files.command("read-orders")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
@click.option(
    "--format",
    "output",
    type=click.Choice(["table", "json"]),
    default="table",
    show_default=True,
    help="Output format.",
)
@click.option(
    "--file-format",
    "file_format",
    type=click.Choice(["csv", "xlsx"]),
    default=None,
    help="Read FILE as this format (default: from the suffix, else sniffed).",
)
@click.option("--json", "as_json", is_flag=True, help="Same as --format json.")
def read_orders(file: Path, output: str, file_format: str | None, as_json: bool = False) -> None:
    """Show what a CI order export (Export -> Orders, CSV or XLSX) would import, and every
    problem with its row and column. Exit code 1 when there are problems.

    \b
    Examples:
      ci-connector files read-orders orders.xlsx
      ci-connector files read-orders orders.csv --format json
    """
    output = "json" if as_json else output
    result = read_order_export(file, file_format)
    if output == "json":
        emit_json(_as_json(file, result))
    else:
        _print_table(result)
    if result.problems:
        click.get_current_context().exit(1)


def _as_json(file: Path, result: OrderExportResult) -> dict[str, Any]:
    return {
        "file": str(file),
        "records": [
            {
                "row": row,
                "orderid": record.orderid,
                "order_date": record.order_date.isoformat(),
                "ship_to": {
                    "name": record.ship_to.name,
                    "city": record.ship_to.city,
                    "country": record.ship_to.country,
                },
                "lines": [
                    {
                        "ci_lineitemid": line.ci_lineitemid,
                        "fulfillment_lineitem_id": line.fulfillment_lineitem_id,
                        "sku": line.sku,
                        "bom_sku": line.bom_sku,
                        "quantity": line.quantity,
                        "unit_price": str(line.unit_price),
                        "status": line.status,
                        "ship_by": line.ship_by.isoformat() if line.ship_by else None,
                    }
                    for line in record.lines
                ],
                "total": str(record.total),
            }
            for row, record in zip(result.source_rows, result.records, strict=True)
        ],
        "problems": [
            {
                "row": p.row,
                "column": p.column,
                "orderid": p.orderid,
                "ci_lineitemids": list(p.ci_lineitemids),
                "reason": p.reason,
            }
            for p in result.problems
        ],
        "blank_rows": result.blank_rows,
        "incomplete_orders": _incomplete_orders(result),
    }


def _incomplete_orders(result: OrderExportResult) -> list[str]:
    """Orders with a problem row: their readable lines should wait (an order ships whole)."""
    return sorted({p.orderid for p in result.problems if p.orderid})


def _print_table(result: OrderExportResult) -> None:
    from connector.cli import render_table

    rows: list[list[object]] = []
    for row, record in zip(result.source_rows, result.records, strict=True):
        for line in record.lines:
            rows.append(
                [
                    row,
                    record.orderid,
                    line.ci_lineitemid,
                    line.sku,
                    line.quantity,
                    str(line.unit_price),
                    line.status,
                    record.ship_to.name,
                    record.ship_to.country or "",
                    line.ship_by.strftime("%Y-%m-%d %H:%M") if line.ship_by else "",
                ]
            )
    orders = len({r.orderid for r in result.records})
    say(f"{len(result.records)} line(s) in {orders} order(s) can be imported")
    if rows:
        # The file is untrusted: an escape sequence in a name must show, not act.
        say(render_table(list(_TABLE_HEADERS), [[printable(c) for c in r] for r in rows]))
    if result.blank_rows:
        say(f"blank rows skipped: {', '.join(map(str, result.blank_rows))}")
    incomplete = _incomplete_orders(result)
    if incomplete:
        say(f"incomplete orders (a row has a problem): {printable(', '.join(incomplete))}")
    say(f"problems: {len(result.problems)}")
    for problem in result.problems:
        say(f"  {printable(problem)}")
