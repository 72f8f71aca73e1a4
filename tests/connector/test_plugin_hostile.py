"""Issue 9: a ``302`` answering ``mark_exported`` used to become an empty GET on the other host
whose ``{"success": true}`` was recorded as CI's acknowledgement. Through the real plugin and
the real client (``responses``): the lines are queued for a retry, never recorded as acked."""

from __future__ import annotations

import json
from pathlib import Path

import responses

from connector.ci.client import CIClient
from connector.models import Account, AccountOptions, LineOutcome, StoredOrder
from connector.plugin import GrouponPlugin
from connector.secrets import Secret
from tests.connector.fakes import T0, make_line, make_record

BASE = "https://ci.test"
TOKEN = "pLuG1nHostile7Tok3nQw9"


def test_redirected_mark_exported_is_queued_not_acknowledged(tmp_path: Path) -> None:
    account = Account(
        name="us",
        channel="groupon",
        supplier_id="4242",
        token=Secret(TOKEN),
        base_url=BASE,
        data_dir=tmp_path,
        options=AccountOptions(sku_fallback="sku", backoff_seconds=0.0, max_retries=0),
    )
    meta = {"no_of_pages": 1, "current_page": 1, "max_items_per_page": 250, "no_of_items": 1}
    record = make_record("O1", [make_line(11)], date=T0)
    plugin = GrouponPlugin(
        client_factory=lambda a: CIClient.for_account(a),
        clock=lambda: T0.replace(hour=15),
    )
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        rsps.add(
            responses.GET,
            f"{BASE}/api/v4/get_orders",
            body=json.dumps({"success": True, "meta": meta, "data": [record]}),
        )
        rsps.add(
            responses.POST,
            f"{BASE}/api/v4/mark_exported",
            status=302,
            headers={"Location": "https://evil.example/ok"},
        )
        rsps.add(responses.GET, "https://evil.example/ok", json={"success": True})
        batch = plugin.oms_import_orders(account=account)
        assert [o.orderid for o in batch.orders] == ["O1"]
        results = plugin.oms_mark_exported(
            account=account, stored=[StoredOrder("O1", "H-1", (11,))]
        )
        assert [r.outcome for r in results] == [LineOutcome.QUEUED]
        assert "redirect to host 'evil.example'" in results[0].reason
        assert TOKEN not in results[0].reason
        assert not any("evil.example" in c.request.url for c in rsps.calls)
    assert plugin.ledger_for(account).get_line(11).state == "stored"  # not "acked"
    plugin.close()
