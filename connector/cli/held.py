"""``ci-connector held``: the dispatch holds of an account, and the operator's two answers to
one: dismiss it (with a reason; it is never sent) or retry it now (checked again, sent if it
passes).

A hold whose line is fully shipped or cancelled is superseded automatically and is not
listed. Holds of lines the account does not know (not imported yet, or a host typo) are
listed here with ``line known: no``; ``oms_held_lines`` and ``ci-connector status`` leave
them out.
"""

from __future__ import annotations

from typing import Any

import click

from connector.cli import render_table, select_accounts, to_jsonable
from connector.cli.context import CliContext, emit_json, say
from connector.errors import ChannelError
from connector.models import Account
from connector.secrets import redact

__all__ = ["held"]


def _plugin() -> Any:
    """A Groupon plugin of its own for this command (no state shared with anything else)."""
    from connector.plugin import new_plugin

    return new_plugin()


def _account(obj: CliContext, name: str) -> Account:
    [account] = select_accounts(obj.config(), name)
    if account.channel != "groupon":
        raise click.ClickException(f"account {name!r} is on channel {account.channel!r}")
    return account


@click.group()
def held() -> None:
    """List, dismiss or retry held dispatches (shipments that were not sent).

    \b
    Example:
      ci-connector held list --account us
      ci-connector held dismiss --account us 17 --reason "parcel re-labelled as SHP-9"
      ci-connector held retry --account us 17
    """


@held.command("list")
@click.option("--account", "account_name", default="all", show_default=True, metavar="NAME|all")
@click.option("--closed", is_flag=True, help="Also list dismissed, voided and superseded rows.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
@click.pass_obj
def list_held(obj: CliContext, account_name: str, closed: bool, as_json: bool) -> None:
    """Held and CI-rejected dispatch rows, with the reason and whether the line is known.

    \b
    Example:
      ci-connector held list --account us
      ci-connector held list --closed --json | jq '.held[] | select(.state == "superseded")'
    """
    plugin = _plugin()
    out: list[dict[str, Any]] = []
    try:
        for account in select_accounts(obj.config(), account_name):
            if account.channel != "groupon":
                continue
            for row, known in plugin.dispatch_holds(account):
                out.append(
                    {
                        "account": account.name,
                        "id": row.id,
                        "shipment_id": row.shipment_id,
                        "ci_lineitemid": row.ci_lineitemid,
                        "tracking": row.tracking,
                        "state": row.state,
                        "kind": to_jsonable(row.hold_kind),
                        "line_known": known,
                        "reason": row.reason,
                        "since": to_jsonable(row.updated_at),
                    }
                )
            if closed:
                for c in plugin.ledger_for(account).closed_outbox():
                    out.append(
                        {
                            "account": account.name,
                            "id": c.id,
                            "shipment_id": c.shipment_id,
                            "ci_lineitemid": c.ci_lineitemid,
                            "tracking": c.tracking,
                            "state": c.why,
                            "kind": c.hold_kind,
                            "line_known": None,
                            "reason": c.note,
                            "since": to_jsonable(c.closed_at),
                        }
                    )
    except ChannelError as exc:
        raise click.ClickException(redact(str(exc))) from None
    finally:
        plugin.close()
    if as_json:
        emit_json({"held": out})
        return
    if not out:
        say("no held dispatches")
        return
    say(
        render_table(
            ["account", "id", "shipment", "line", "tracking", "state", "line known", "reason"],
            [
                [
                    r["account"],
                    r["id"],
                    r["shipment_id"],
                    r["ci_lineitemid"],
                    r["tracking"],
                    r["state"],
                    {True: "yes", False: "no", None: ""}[r["line_known"]],
                    r["reason"],
                ]
                for r in out
            ],
        )
    )


@held.command()
@click.option("--account", "account_name", required=True, metavar="NAME")
@click.option("--reason", required=True, help="Why (kept with the row for the audit trail).")
@click.argument("row_ids", nargs=-1, type=int, required=True)
@click.option("--json", "as_json", is_flag=True, help="Print the outcome per row as JSON.")
@click.pass_obj
def dismiss(
    obj: CliContext, account_name: str, reason: str, row_ids: tuple[int, ...], as_json: bool
) -> None:
    """Close held dispatch rows (ids from 'held list'); they are never sent.

    \b
    Example:
      ci-connector held dismiss --account us 17 18 --reason "re-shipped as SHP-9"
    """
    account = _account(obj, account_name)
    plugin = _plugin()
    try:
        closed = plugin.dismiss_holds(account, list(row_ids), reason)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    except ChannelError as exc:
        raise click.ClickException(redact(str(exc))) from None
    finally:
        plugin.close()
    done = {r.id for r in closed}
    if as_json:
        emit_json({"account": account.name, "rows": [
            {"row": rid, "dismissed": rid in done} for rid in row_ids
        ]})  # fmt: skip
    else:
        for rid in row_ids:
            say(f"{rid}: {'dismissed' if rid in done else 'not a held dispatch row: unchanged'}")
    if len(done) != len(set(row_ids)):
        raise click.exceptions.Exit(1)


@held.command()
@click.option("--account", "account_name", required=True, metavar="NAME")
@click.argument("row_ids", nargs=-1, type=int, required=True)
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
@click.pass_obj
def retry(obj: CliContext, account_name: str, row_ids: tuple[int, ...], as_json: bool) -> None:
    """Check held dispatch rows again now and send those that pass. Exits 1 if any is
    still held.

    \b
    Example:
      ci-connector held retry --account us 17
    """
    account = _account(obj, account_name)
    plugin = _plugin()
    try:
        results = plugin.retry_holds(account, list(row_ids))
    except ChannelError as exc:
        raise click.ClickException(redact(str(exc))) from None
    finally:
        plugin.close()
    if as_json:
        emit_json({"account": account.name, "results": to_jsonable(results)})
    elif not results:
        say("nothing to retry (no held dispatch row among the ids)")
    else:
        say(
            render_table(
                ["shipment", "line", "tracking", "outcome", "reason"],
                [
                    [r.shipment_id, r.ci_lineitemid, r.tracking_number, r.outcome.value, r.reason]
                    for r in results
                ],
            )
        )
    if not results or any(r.outcome.value != "accepted" for r in results):
        raise click.exceptions.Exit(1)
