"""Delivery ends the pending evaluation of the orders it evaluated: through the lines' own
state change when every line of the chunk changes state (no ``end_evaluation`` statement),
else through ``end_evaluation`` as always. Either way no line is left pending."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from connector.ledger import open_ledger
from connector.ledger.sqlite import Ledger
from connector.models import StoredOrder
from tests.connector.fakes import FakeCI, Host, make_host, make_line, make_record


def _rig(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[list[list[str]], Host, Any, FakeCI]:
    """A fake host and account, and the order ids of every ``end_evaluation`` call."""
    calls: list[list[str]] = []
    real = Ledger.end_evaluation

    def spy(self: Ledger, orderids: Any) -> None:
        calls.append(list(orderids))
        real(self, orderids)

    monkeypatch.setattr(Ledger, "end_evaluation", spy)
    host = make_host()
    acct = host.account(tmp_path)
    return calls, host, acct, host.cis["us"]


def test_every_line_changing_state_needs_no_end_evaluation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls, host, acct, ci = _rig(tmp_path, monkeypatch)
    ci.add(make_record("O1", [make_line(1), make_line(2)]))
    ci.add(make_record("O2", [make_line(3, "NO-ALIAS")]))  # held: a state change too
    batch = host.pm.hook.oms_import_orders(account=acct)
    assert [o.orderid for o in batch.orders] == ["O1"]
    assert calls == []
    ledger = open_ledger(acct)
    assert not ledger.has_pending_evaluation()
    assert {lid: ledger.get_line(lid).state for lid in (1, 2, 3)} == {  # type: ignore[union-attr]
        1: "delivered",
        2: "delivered",
        3: "held",
    }


def test_a_line_left_unchanged_still_ends_its_evaluation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls, host, acct, ci = _rig(tmp_path, monkeypatch)
    ci.add(make_record("O1", [make_line(1)]))
    first = host.pm.hook.oms_import_orders(account=acct)
    assert [o.orderid for o in first.orders] == ["O1"]
    assert calls == []
    # Not stored by the host: the next round evaluates line 1 again (still delivered, no
    # state change) with a new line of the same order.
    ci.add(make_record("O1", [make_line(1), make_line(2)]))
    second = host.pm.hook.oms_import_orders(account=acct)
    assert [o.ci_lineitemids for o in second.orders] == [(1, 2)]
    assert calls == [["O1"]]
    assert not open_ledger(acct).has_pending_evaluation()
    stored = [StoredOrder("O1", "H-O1", (1, 2))]
    host.pm.hook.oms_mark_exported(account=acct, stored=stored)
    assert ci.exported == {1, 2}
