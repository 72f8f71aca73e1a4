"""`ci-connector demo`: one full cycle against an embedded simulator, explained step by step.

The simulator is started through :mod:`connector.testing.simulator` (with the test kit, the only
part of :mod:`connector` that may import :mod:`mock_ci_server`). The demo drives the plugin only
through the reference host and the hooks, as a real host would.
"""

from __future__ import annotations

import shutil
import string
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from connector.models import LineOutcome, LineResult, Shipment
from connector.plugin import GrouponPlugin
from connector.reference_host.facade import ChannelFacade
from connector.reference_host.host import ReferenceHost
from connector.reference_host.plugins import get_plugin_manager
from connector.testing.simulator import make_account, running_simulator

__all__ = ["DemoResult", "run_demo", "ups_tracking_number"]

UNMAPPED_SKU = "DEMO-9999"
UNMAPPED_COURIER = "Acme Local Couriers"


@dataclass
class DemoResult:
    """Figures of one demo run (the ``--json`` output) and the story told along the way."""

    figures: dict[str, Any] = field(default_factory=dict)
    story: list[str] = field(default_factory=list)


def ups_tracking_number(serial: int) -> str:
    """A well-formed UPS 1Z number (valid check digit) for demo parcels."""
    from tracking_numbers import get_tracking_number

    body = f"1Z999AA101{serial % 10**7:07d}"  # shipper 999AA1, service 01 (next day air)
    for digit in string.digits:
        candidate = body + digit
        found = get_tracking_number(candidate)
        if found is not None and found.valid:
            return candidate
    raise AssertionError(f"no UPS check digit found for {body}")  # pragma: no cover


def run_demo(
    orders: int = 40, *, echo: Callable[[str], None] | None = None, keep_dir: Path | None = None
) -> DemoResult:
    """Seed ``orders`` orders into a fresh simulator, run the full cycle, return the figures."""
    result = DemoResult()

    def tell(line: str) -> None:
        result.story.append(line)
        if echo is not None:
            echo(line)

    workdir = keep_dir or Path(tempfile.mkdtemp(prefix="ci-connector-demo-"))
    if (workdir / "mappings").exists():
        shutil.rmtree(workdir / "mappings")  # a kept folder starts from the shipped mappings
    try:
        _run(orders, tell, result, workdir, keep_dir is not None)
    finally:
        if keep_dir is None:
            # Ledger, host database and mappings of a throw-away run: nothing to keep.
            shutil.rmtree(workdir, ignore_errors=True)
    return result


def _run(
    orders: int, tell: Callable[[str], None], result: DemoResult, workdir: Path, kept: bool
) -> None:
    with running_simulator("socket") as sim:
        state = sim.state
        state.clock.freeze()
        supplier_id = sim.supplier_id
        tell(f"0. Simulator on {sim.url}: seeding {orders} orders ...")
        seeded = sim.seed(
            orders=orders,
            seed=7,
            lines_per_order=(1, 3),
            quantity=(1, 2),
            split_share=0.3,
            unmapped_share=0.05,
            countries=("US",),
        )
        orders_seeded = int(seeded["orders_created"])
        tell(
            f"1. Simulator: seeded {orders_seeded} orders ({seeded['lines_created']} lines) for "
            f"supplier {supplier_id}. Some orders are split over several CI records that land on "
            f"different pages; some lines sell SKU {UNMAPPED_SKU}, which has no alias yet."
        )
        # An editable copy of the shipped mappings in workdir/mappings (step 3 edits it).
        account = make_account(sim, workdir, name="demo-us", backoff_seconds=0.1)
        assert account.mappings_dir is not None
        mappings_dir = account.mappings_dir
        pm = get_plugin_manager(load_entrypoints=False)
        pm.register(GrouponPlugin(), name="groupon")
        facade = ChannelFacade(pm)
        host = ReferenceHost(workdir / "host.sqlite3", facade)

        first = host.sync(account)
        tell(
            f"2. Sync: the plugin read every page, merged split orders and handed "
            f"{first.orders_imported} orders ({first.lines_imported} lines) to the host; after "
            f"the host committed them, {first.lines_marked_exported} lines were marked exported."
        )
        held = facade.held_lines(account=account)
        for h in held[:3]:
            tell(f"   held: line {h.ci_lineitemid} of order {h.orderid}: {h.reason}")
        if held:
            tell(f"   {len(held)} line(s) held: not acknowledged, so CI keeps offering them.")

        with (mappings_dir / "sku_aliases.csv").open("a", encoding="utf-8") as fh:
            fh.write(f"{UNMAPPED_SKU},HOST-9999,1\n")
        second = host.sync(account)
        tell(
            f"3. The operator adds {UNMAPPED_SKU} -> HOST-9999 to sku_aliases.csv; the next sync "
            f"releases {second.orders_imported} order(s) ({second.lines_imported} lines)."
        )

        third = host.sync(account)
        tell(f"4. Another sync finds {third.orders_imported} new orders: nothing twice.")

        by_order: dict[str, dict[int, int]] = {}
        for line in host.store.open_lines(account.name):
            lines = by_order.setdefault(str(line["host_order_id"]), {})
            lines[int(str(line["ci_lineitemid"]))] = int(str(line["quantity"]))
        order_ids = sorted(by_order)
        cancelled_line = next(iter(by_order[order_ids[0]])) if order_ids else None
        if cancelled_line is not None:
            # Groupon customer service cancels this line before it ships.
            state.cancel_lines(supplier_id, [cancelled_line])
        results: list[LineResult] = []
        last: Shipment | None = None
        for index, host_order_id in enumerate(order_ids):
            courier = UNMAPPED_COURIER if index == 1 else "UPS"
            last = Shipment.single(
                f"SHP-{host_order_id}",
                courier,
                ups_tracking_number(1000 + index),
                by_order[host_order_id],
            )
            results.extend(host.ship(account, last))
        accepted = [r for r in results if r.outcome is LineOutcome.ACCEPTED]
        refused = [r for r in results if r.outcome in (LineOutcome.REJECTED, LineOutcome.HELD)]
        tell(
            f"5. Dispatch: {len(results)} line shipments went through pre-flight; CI accepted "
            f"{len(accepted)} tracking numbers."
        )
        for r in refused:
            tell(f"   {r.outcome.value}: line {r.ci_lineitemid}: {r.reason}")

        if last is not None:
            again = host.ship(account, last)
            tell(
                "6. Sending the last shipment again changes nothing: "
                + ", ".join(sorted({r.outcome.value for r in again}))
                + "."
            )

        fourth = host.sync(account)
        tell(
            f"7. The next sync re-reads the date windows of lines still open and reports "
            f"{fourth.cancellations} Groupon-side cancellation(s) to the host: "
            f"{fourth.cancellations_applied} cancelled there, "
            f"{fourth.cancellation_conflicts} already recorded as shipped (kept as a conflict "
            "for the operator: the parcel must be recalled)."
        )

        sim_lines = state.get_state(supplier_id)["lines"]
        exported = sum(1 for line in sim_lines if line["exported"])
        duplicates = len(host.store.duplicates())
        figures: dict[str, Any] = {
            "orders_seeded": orders_seeded,
            "orders_imported": host.store.count_orders(account.name),
            "lines_imported": host.store.count_lines(account.name),
            "lines_marked_exported": exported,
            "lines_dispatched": len(results),
            "tracking_accepted": len(accepted),
            "lines_held": len(facade.held_lines(account=account)),
            "shipments_refused": len(refused),
            "duplicates": duplicates,
            "cancellations_reported": fourth.cancellations,
            "cancellation_conflicts": fourth.cancellation_conflicts,
            "workdir": str(workdir) if kept else None,
        }
        result.figures = figures
        tell(
            f"8. Result: {figures['orders_imported']} of {orders_seeded} orders in the host, "
            f"{exported} of {len(sim_lines)} lines exported in CI, {duplicates} duplicates. "
            + (
                f"Files are in {workdir}."
                if kept
                else "The temporary folder is removed; --keep DIR keeps the files."
            )
        )
