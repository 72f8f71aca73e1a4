"""``ci-connector status``: what is held for the operator and what is still on its way."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import click

from connector.cli import open_facade, render_table, select_accounts, to_jsonable
from connector.cli.context import CliContext, emit_json, say
from connector.errors import ChannelError
from connector.importer import waiting_lines
from connector.ledger import open_ledger
from connector.models import Account, HeldLine
from connector.reference_host.facade import ChannelFacade
from connector.runtime.claims import account_claims, lock_state
from connector.secrets import redact


def _mapping_problems(account: Account) -> list[str]:
    """Every problem of the account's mapping folder (a broken file holds every import and
    dispatch), empty when the mappings load."""
    from connector.errors import MappingError
    from connector.mappings import load_mappings

    try:
        load_mappings(account.mappings_dir)
    except MappingError as exc:
        return [str(p) for p in exc.problems]
    return []


def _holders(account: Account) -> dict[str, Any]:
    """The account's lock and the ledger's claims, read before anything waits for the lock
    (so a failure because the account is busy still shows who holds what)."""
    lock = lock_state(account)
    ledger = open_ledger(account)
    try:
        claims = account_claims(ledger, datetime.now(UTC))
    finally:
        ledger.close()
    return {"lock": lock.to_dict(), "claims": [c.to_dict() for c in claims]}


def _account_status(
    facade: ChannelFacade, account: Account, holders: dict[str, Any]
) -> dict[str, Any]:
    held: list[HeldLine] = facade.held_lines(account=account)
    ledger = open_ledger(account)
    try:
        pending = ledger.pending_outbox()
        summary = ledger.summary()
        waiting = waiting_lines(account, ledger, datetime.now(UTC))
    finally:
        ledger.close()
    return {
        "account": account.name,
        **holders,
        "mapping_problems": _mapping_problems(account),
        "held": [to_jsonable(h) for h in held],
        "pending_outbox": [
            {
                "shipment_id": row.shipment_id,
                "ci_lineitemid": row.ci_lineitemid,
                "orderid": row.orderid,
                "tracking": row.tracking,
                "state": row.state,
                "attempts": row.attempts,
                "reason": row.reason,
                "next_attempt_at": to_jsonable(row.next_attempt_at),
            }
            for row in pending
        ],
        "summary": to_jsonable(summary),
        # Informational: staged lines waiting on import_delay_minutes (not a failure).
        "waiting": [
            {
                "ci_lineitemid": w.ci_lineitemid,
                "orderid": w.orderid,
                "until": to_jsonable(w.until),
                "reason": w.reason,
            }
            for w in waiting
        ],
    }


def _print_status(status: dict[str, Any]) -> None:
    name = status["account"]
    lines = status["summary"].get("lines", {})
    counts = ", ".join(f"{k} {v}" for k, v in lines.items() if v) or "no lines yet"
    say(f"== {name}: {counts}")
    problems = status.get("mapping_problems") or []
    if problems:
        say(f"mappings: {len(problems)} problem(s); imports and dispatch are held until fixed:")
        for problem in problems:
            say(f"  {problem}")
    _print_holders(status)
    held = status["held"]
    say(f"held lines: {len(held)}")
    if held:
        say(
            render_table(
                ["kind", "line", "order", "since", "reason"],
                [
                    [h["kind"], h["ci_lineitemid"], h["orderid"], h["since"], h["reason"]]
                    for h in held
                ],
            )
        )
    waiting = status.get("waiting", [])
    if waiting:
        say(f"waiting on the import delay: {len(waiting)}")
        say(
            render_table(
                ["line", "order", "until", "why"],
                [[w["ci_lineitemid"], w["orderid"], w["until"], w["reason"]] for w in waiting],
            )
        )
    pending = status["pending_outbox"]
    say(f"pending outbox: {len(pending)}")
    if pending:
        say(
            render_table(
                ["shipment", "line", "tracking", "state", "attempts", "reason"],
                [
                    [
                        p["shipment_id"],
                        p["ci_lineitemid"],
                        p["tracking"],
                        p["state"],
                        p["attempts"],
                        p["reason"],
                    ]
                    for p in pending
                ],
            )
        )


def _print_holders(status: dict[str, Any], *, err: bool = False) -> None:
    lock = status["lock"]
    say(
        f"account lock: held by {lock['holder']}" if lock["held"] else "account lock: free", err=err
    )
    claims = status["claims"]
    say(f"claimed calls (leases): {len(claims)}", err=err)
    if claims:
        say(
            render_table(
                ["kind", "line", "order", "shipment", "tracking", "owner", "until", "state"],
                [
                    [
                        c["kind"],
                        c["ci_lineitemid"],
                        c["orderid"],
                        c["shipment_id"],
                        c["tracking"],
                        c["owner"],
                        c["until"],
                        c["state"],
                    ]
                    for c in claims
                ],
            ),
            err=err,
        )


@click.command()
@click.option(
    "--account",
    "account_name",
    default="all",
    show_default=True,
    metavar="NAME|all",
    help="Account to report on, or 'all'.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
@click.pass_obj
def status(obj: CliContext, account_name: str, as_json: bool) -> None:
    """Show held lines (with the reason and fix), the pending outbox, who holds the account's
    lock and which calls are claimed (leased) by whom until when, per account.

    Held lines come from the channel plugin (oms_held_lines); the outbox and line counts
    from the account's ledger; broken mapping files are listed with their file and line.
    The lock holder (pid, machine, since) and the claims (tracking rows and acknowledgements
    claimed before their CI call: owner machine:pid, lease end, active / expired / owner
    gone) are read first, so they show even when the account is busy.
    Exits 1 when any line is held, a mapping file is broken or an account failed.

    \b
    Example:
      ci-connector status --account us
      ci-connector status --json | jq '.accounts[].held[].reason'
    """
    config = obj.config()
    accounts = select_accounts(config, account_name)
    facade = open_facade()
    statuses: list[dict[str, Any]] = []
    failures: list[dict[str, Any]] = []
    for account in accounts:
        holders: dict[str, Any] = {}
        try:
            holders = _holders(account)
            statuses.append(_account_status(facade, account, holders))
        except ChannelError as exc:
            failures.append({"account": account.name, "error": redact(str(exc)), **holders})
    held_total = sum(len(s["held"]) for s in statuses)
    broken = any(s["mapping_problems"] for s in statuses)
    ok = not failures and held_total == 0 and not broken
    if as_json:
        emit_json({"ok": ok, "accounts": statuses, "failures": failures})
    else:
        for s in statuses:
            _print_status(s)
        for failure in failures:
            say(f"{failure['account']}: status failed: {failure['error']}", err=True)
            if "lock" in failure:
                _print_holders(failure, err=True)
    if not ok:
        raise click.exceptions.Exit(1)
