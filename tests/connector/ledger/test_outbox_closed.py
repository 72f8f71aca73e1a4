"""Schema v7 (host contract v2): held dispatch rows that will never be sent move to
``outbox_closed``; on both backends (the autouse ``backend`` fixture of this folder)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from connector.ledger import open_ledger
from connector.models import Account, HoldKind
from connector.secrets import Secret

NOW = datetime(2024, 3, 4, 12, 0, tzinfo=UTC)


def _account(tmp_path: Path) -> Account:
    return Account(
        name="us", channel="groupon", supplier_id="90001", token=Secret("t" * 31), data_dir=tmp_path
    )


def test_settled_holds_are_closed_once_and_kept_for_the_shipment_identity(tmp_path: Path) -> None:
    ledger = open_ledger(_account(tmp_path))
    try:
        for lid, qty in ((1, 1), (2, 1)):
            ledger.stage_line(ci_lineitemid=lid, orderid="A", now=NOW, quantity=qty, sku="s")
            ledger.update_line(lid, NOW, state="acked")
        held = ledger.insert_outbox(
            shipment_id="S-held",
            ci_lineitemid=1,
            tracking="1Z1",
            quantity=1,
            now=NOW,
            orderid="A",
            state="held",
            hold_kind=HoldKind.PREFLIGHT,
            reason="bad tracking number",
        )
        still = ledger.insert_outbox(
            shipment_id="S-open",
            ci_lineitemid=2,
            tracking="1Z2",
            quantity=1,
            now=NOW,
            orderid="A",
            state="held",
            hold_kind=HoldKind.PREFLIGHT,
            reason="bad tracking number",
        )
        assert ledger.settled_holds() == []  # nothing shipped yet: both holds still matter

        ledger.update_line(1, NOW, qty_shipped=1)  # line 1 shipped by another shipment
        [settled] = ledger.settled_holds()
        assert settled.id == held.id

        later = NOW + timedelta(hours=1)
        ledger.close_outbox([settled], "superseded", "line fully shipped", later)
        # A replay neither fails nor duplicates the closed row.
        ledger.close_outbox([settled], "superseded", "again", later)

        assert [r.id for r in ledger.outbox_rows(states=("held",))] == [still.id]
        [closed] = ledger.closed_outbox(["S-held"])
        assert (closed.id, closed.ci_lineitemid, closed.tracking, closed.why) == (
            held.id,
            1,
            "1Z1",
            "superseded",
        )
        assert (closed.state_before, closed.reason, closed.closed_at) == (
            "held",
            "bad tracking number",
            later,
        )
        assert ledger.closed_outbox(["S-open"]) == []
        assert [c.shipment_id for c in ledger.closed_outbox()] == ["S-held"]
        assert ledger.settled_holds() == []
    finally:
        ledger.close()


def test_settled_holds_by_state_held_and_rejected_and_none_without_holds(tmp_path: Path) -> None:
    ledger = open_ledger(_account(tmp_path))
    try:
        for lid in (1, 2, 3):
            ledger.stage_line(ci_lineitemid=lid, orderid="A", now=NOW, quantity=1, sku="s")
            ledger.update_line(lid, NOW, state="acked", qty_shipped=1)  # all fully shipped
        ledger.insert_outbox(
            shipment_id="S-sent", ci_lineitemid=1, tracking="1Z1", quantity=1, now=NOW,
            orderid="A", state="accepted",
        )  # fmt: skip
        assert ledger.settled_holds() == []  # no held or rejected row at all
        rejected = ledger.insert_outbox(
            shipment_id="S-rej", ci_lineitemid=2, tracking="1Z2", quantity=1, now=NOW,
            orderid="A", state="rejected", reason="refused by CI",
        )  # fmt: skip
        assert [r.id for r in ledger.settled_holds()] == [rejected.id]  # rejected only
        held = ledger.insert_outbox(
            shipment_id="S-held", ci_lineitemid=3, tracking="1Z3", quantity=1, now=NOW,
            orderid="A", state="held", hold_kind=HoldKind.PREFLIGHT, reason="bad tracking",
        )  # fmt: skip
        assert [r.id for r in ledger.settled_holds()] == [rejected.id, held.id]
        ledger.close_outbox([rejected], "superseded", "line fully shipped", NOW)
        assert [r.id for r in ledger.settled_holds()] == [held.id]  # held only
    finally:
        ledger.close()
