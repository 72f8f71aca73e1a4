"""The child of the crash-consistency run: one full cycle through the reference host.

``python -m benchmarks.crash_worker --url URL --supplier-id ID --data-dir DIR --token-env VAR``

One run = ``ReferenceHost.sync`` (import, store, mark_exported, notices, flush), then one
shipment per stored order that still has open lines (the first half one ``ReferenceHost.ship``
each, the rest in waves of :data:`WAVE_SHIPMENTS` through ``ReferenceHost.ship_many``, which
stores and sends a wave in parts while calls are in flight), then ``oms_flush_outbox``. ``--role``
runs one part only (the concurrent mode runs several roles at once on one account):
``sync`` (the sync cycle), ``dispatch`` (the shipments), ``flush`` (the outbox). Shipment ids
and tracking numbers are derived from the order's line ids, so a re-run after a crash builds
exactly the same shipment. The parent may SIGKILL this process anywhere (see
:mod:`connector.crashpoints`); everything it needs to resume is on disk.

The last stdout line is a JSON summary. Exit status: 0 = the run found nothing left to do,
3 = it did some work (run again to confirm), 1 = an error (message on stderr, no traceback).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import string
import sys
from collections.abc import Sequence
from datetime import datetime
from functools import cache
from pathlib import Path

from connector.ci.client import CIClient, OrdersPage
from connector.crashpoints import crashpoint
from connector.errors import ChannelError
from connector.models import (
    Account,
    AccountOptions,
    LineOutcome,
    LineResult,
    Parcel,
    Shipment,
    ShipmentLine,
)
from connector.plugin import CIPort, GrouponPlugin
from connector.reference_host.facade import ChannelFacade
from connector.reference_host.host import ReferenceHost, SyncReport
from connector.reference_host.plugins import get_plugin_manager
from connector.reference_host.store import HostStoreError
from connector.secrets import Secret

__all__ = [
    "ACCOUNT_NAME",
    "COURIER",
    "EXIT_IDLE",
    "EXIT_WORKED",
    "HOST_DB",
    "WAVE_SHIPMENTS",
    "CrashingFetchClient",
    "main",
    "plan_shipments",
    "ups_tracking_number",
]

ACCOUNT_NAME = "crash"
HOST_DB = "host.sqlite3"
COURIER = "UPS"
CHUNK_ORDERS = 40  # max_orders_per_import (see build_account)
WAVE_SHIPMENTS = 20  # shipments per ship_many: with tracking batches of 25, 1-3 parts
EXIT_IDLE = 0
EXIT_WORKED = 3
EXIT_ERROR = 1


class CrashingFetchClient(CIClient):
    """A :class:`CIClient` with the ``fetch_page`` crash point between pages of a listing.

    ``fetch_all`` asks for pages through ``get_orders_page``, so the point sits before every
    page after the first: the crash lands after some pages were read and none staged.
    """

    def get_orders_page(
        self,
        page: int = 1,
        window: tuple[datetime, datetime] | None = None,
        *,
        raw_records: bool = False,
    ) -> OrdersPage:
        if page > 1:
            crashpoint("fetch_page")
        return super().get_orders_page(page, window, raw_records=raw_records)


def _client_factory(account: Account) -> CIPort:
    return CrashingFetchClient.for_account(account)


# UPS service codes (the two digits after the shipper number) that tracking_numbers accepts.
_UPS_SERVICES = ("01", "02", "03", "12", "13", "22", "32", "42", "66", "72", "90")


@cache
def ups_tracking_number(serial: int) -> str:
    """A well-formed UPS 1Z number for ``serial`` (check digit found with tracking_numbers).

    Distinct for serials that differ by less than 11 x 10**7 (a service code per 10**7).
    """
    from tracking_numbers import get_tracking_number

    service = _UPS_SERVICES[(serial // 10**7) % len(_UPS_SERVICES)]
    body = f"1Z999AA1{service}{serial % 10**7:07d}"
    for digit in string.digits:
        found = get_tracking_number(body + digit)
        if found is not None and found.valid:
            return body + digit
    raise AssertionError(f"no UPS check digit makes {body} valid")  # pragma: no cover


def _int(row: dict[str, object], key: str) -> int:
    value = row[key]
    if not isinstance(value, int):
        raise TypeError(f"host line column {key} is {value!r}, not an integer")
    return value


def plan_shipments(open_lines: Sequence[dict[str, object]]) -> list[Shipment]:
    """One shipment per order from the host's open lines, deterministic in its input.

    Parcel 1 carries every line (a line of quantity q > 1 only q - 1 units: a partial dispatch);
    parcel 2 carries the last unit of each such line. Ids and tracking numbers derive from the
    order's smallest line id, so a re-run after a crash rebuilds the same shipment.
    """
    by_order: dict[str, list[tuple[int, int]]] = {}
    for row in open_lines:
        lid, qty = _int(row, "ci_lineitemid"), _int(row, "quantity")
        shipped = _int(row, "shipped_quantity")
        if qty - shipped > 0:
            by_order.setdefault(str(row["orderid"]), []).append((lid, qty - shipped))
    shipments = []
    for orderid, lines in sorted(by_order.items()):
        lines.sort()
        key = lines[0][0]
        first = tuple(ShipmentLine(lid, qty - 1 if qty > 1 else qty) for lid, qty in lines)
        rest = tuple(ShipmentLine(lid, 1) for lid, qty in lines if qty > 1)
        parcels = [Parcel(ups_tracking_number(key * 2), first)]
        if rest:
            parcels.append(Parcel(ups_tracking_number(key * 2 + 1), rest))
        shipments.append(Shipment(f"S-{orderid}-{key}", COURIER, tuple(parcels)))
    return shipments


def build_account(args: argparse.Namespace, token: str) -> Account:
    """The account the worker serves; small batches so a crash can land between batches."""
    return Account(
        name=ACCOUNT_NAME,
        channel="groupon",
        supplier_id=args.supplier_id,
        token=Secret(token),
        region="US",
        api_version="v4",
        base_url=args.url,
        data_dir=Path(args.data_dir),
        ledger_url=args.ledger_url,
        options=AccountOptions(
            watch_cancellations=args.watch_cancellations,
            ack_batch_size=args.batch_size,
            tracking_batch_size=args.batch_size,
            # Small chunks: a sync is many import -> store -> mark_exported cycles, so kills
            # land between them and after a chunk was evaluated ahead (while the acks were in
            # flight) but before the import that hands it over.
            max_orders_per_import=CHUNK_ORDERS,
            max_retries=3,
            backoff_seconds=0.05,
            timeout_seconds=10.0,
        ),
    )


def run(args: argparse.Namespace, token: str) -> dict[str, object]:
    """One full cycle; returns the summary (``work`` = how many things it did)."""
    account = build_account(args, token)
    pm = get_plugin_manager(load_entrypoints=False)
    plugin = GrouponPlugin(client_factory=_client_factory)
    pm.register(plugin, name="groupon")
    host = ReferenceHost(Path(args.data_dir) / HOST_DB, ChannelFacade(pm))
    role = args.role
    report = SyncReport(account=account.name)
    shipments: list[Shipment] = []
    outcomes: dict[str, int] = {}
    flushed: list[LineResult] = []
    try:
        if role in ("all", "sync"):
            report = host.sync(account)
        if role in ("all", "dispatch"):
            shipments = plan_shipments(host.store.open_lines(account.name))
            half = len(shipments) // 2
            results = [r for shipment in shipments[:half] for r in host.ship(account, shipment)]
            for start in range(half, len(shipments), WAVE_SHIPMENTS):
                results += host.ship_many(account, shipments[start : start + WAVE_SHIPMENTS])
            for result in results:
                outcomes[result.outcome.value] = outcomes.get(result.outcome.value, 0) + 1
        if role in ("all", "flush"):
            flushed = host.facade.flush_outbox(account=account)
    finally:
        host.close()
        plugin.close()
    work = (
        report.orders_imported
        + report.lines_marked_exported
        + report.ack_queued
        + report.retried
        + report.cancellations
        + report.redispatched
        + len(shipments)
        + len(flushed)
    )
    return {
        "work": work,
        "sync": report.to_dict(),
        "shipments": len(shipments),
        "dispatch": outcomes,
        "flushed": len(flushed),
        "flush_queued": sum(1 for r in flushed if r.outcome is LineOutcome.QUEUED),
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; see the module docstring for the exit status."""
    parser = argparse.ArgumentParser(prog="benchmarks.crash_worker")
    parser.add_argument("--url", required=True, help="simulator base URL")
    parser.add_argument("--supplier-id", required=True)
    parser.add_argument("--data-dir", required=True, help="ledger + host database folder")
    parser.add_argument("--token-env", required=True, help="env var holding the CI token")
    parser.add_argument("--batch-size", type=int, default=25, help="ack/tracking batch size")
    parser.add_argument(
        "--role", choices=("all", "sync", "dispatch", "flush"), default="all", help="part to run"
    )
    parser.add_argument(
        "--watch-cancellations",
        action="store_true",
        help="re-read the windows of open lines (Groupon-side cancellations reach the host)",
    )
    parser.add_argument("--ledger-url", default=None, help="PostgreSQL ledger (default SQLite)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    token = os.environ.get(args.token_env, "")
    if not token:
        print(f"crash_worker: environment variable {args.token_env} is not set", file=sys.stderr)
        return EXIT_ERROR
    try:
        summary = run(args, token)
    except (ChannelError, HostStoreError) as exc:
        print(f"crash_worker: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_ERROR
    print(json.dumps(summary, sort_keys=True), flush=True)
    return EXIT_WORKED if summary["work"] else EXIT_IDLE


if __name__ == "__main__":
    sys.exit(main())
