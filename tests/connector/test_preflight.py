"""Each pre-flight rule, through oms_dispatch: a failure is HELD and nothing reaches CI."""

from __future__ import annotations

from pathlib import Path

from connector.models import HoldKind, LineOutcome, Parcel, Shipment, ShipmentLine, StoredOrder
from tests.connector.fakes import Host, fake_mappings, make_host, make_line, make_record


def _ready(
    tmp_path: Path, records: list[dict], bad_tracking: set[str] | None = None, **options: object
) -> tuple[Host, object]:  # type: ignore[type-arg]
    host = make_host(bad_tracking)
    acct = host.account(tmp_path, **options)
    for rec in records:
        host.cis["us"].add(rec)
    batch = host.pm.hook.oms_import_orders(account=acct)
    stored = [StoredOrder(o.orderid, f"H-{o.orderid}", o.ci_lineitemids) for o in batch.orders]
    host.pm.hook.oms_mark_exported(account=acct, stored=stored)
    return host, acct


def _one(host: Host, acct: object, shipment: Shipment):  # type: ignore[no-untyped-def]
    return host.pm.hook.oms_dispatch(account=acct, shipment=shipment)


def test_unknown_line_held(tmp_path: Path) -> None:
    host, acct = _ready(tmp_path, [make_record("A", [make_line(1)])])
    (r,) = _one(host, acct, Shipment.single("S", "UPS", "1Z1", {77: 1}))
    assert r.outcome is LineOutcome.HELD
    assert "line 77 is not known" in r.reason
    assert host.cis["us"].calls_to("tracking_notification") == []


def test_line_not_confirmed_by_host_held(tmp_path: Path) -> None:
    host = make_host()
    acct = host.account(tmp_path)
    host.cis["us"].add(make_record("A", [make_line(1)]))
    host.pm.hook.oms_import_orders(account=acct)  # delivered, never confirmed
    (r,) = _one(host, acct, Shipment.single("S", "UPS", "1Z1", {1: 1}))
    assert r.outcome is LineOutcome.HELD
    assert "oms_mark_exported" in r.reason


def test_cancelled_line_gets_no_tracking(tmp_path: Path) -> None:
    host, acct = _ready(tmp_path, [make_record("A", [make_line(1)])])
    host.cis["us"].cancel(1)
    host.pm.hook.oms_import_orders(account=acct)
    (r,) = _one(host, acct, Shipment.single("S", "UPS", "1Z1", {1: 1}))
    assert r.outcome is LineOutcome.HELD
    assert "cancelled" in r.reason


def test_mapped_code_not_on_approved_list_held(tmp_path: Path) -> None:
    host, acct = _ready(tmp_path, [make_record("A", [make_line(1)])])
    host.maps["us"] = fake_mappings(couriers=[("US", "Acme", "", "acmex")])
    (r,) = _one(host, acct, Shipment.single("S", "Acme", "A1", {1: 1}))
    assert r.outcome is LineOutcome.HELD
    assert "'acmex'" in r.reason
    assert "approved list" in r.reason
    held = host.pm.hook.oms_held_lines(account=acct)
    assert [h.kind for h in held] == [HoldKind.UNMAPPED_COURIER]


def test_tracking_format_policy_reject_warn_off(tmp_path: Path) -> None:
    for policy, expected in (
        ("reject", LineOutcome.HELD),
        ("warn", LineOutcome.ACCEPTED),
        ("off", LineOutcome.ACCEPTED),
    ):
        host, acct = _ready(
            tmp_path / policy,
            [make_record("A", [make_line(1)])],
            bad_tracking={"1ZBROKEN"},
            tracking_format_policy=policy,
        )
        (r,) = _one(host, acct, Shipment.single("S", "UPS", "1ZBROKEN", {1: 1}))
        assert r.outcome is expected, policy
        if policy == "reject":
            assert "check digit mismatch" in r.reason


def test_quantity_beyond_open_held(tmp_path: Path) -> None:
    host, acct = _ready(tmp_path, [make_record("A", [make_line(1, quantity=2)])])
    (first,) = _one(host, acct, Shipment.single("S1", "UPS", "1Z1", {1: 1}))
    assert first.outcome is LineOutcome.ACCEPTED
    (r,) = _one(host, acct, Shipment.single("S2", "UPS", "1Z2", {1: 2}))
    assert r.outcome is LineOutcome.HELD
    assert "exceeds what is still open (1 of 2)" in r.reason


def test_shared_tracking_needs_identical_addresses(tmp_path: Path) -> None:
    host, acct = _ready(
        tmp_path,
        [
            make_record("A", [make_line(1)]),
            make_record("B", [make_line(2)]),  # same address as A
            make_record("C", [make_line(3)], address1="1 MAIN ST"),  # differs in case only
        ],
    )
    ok = _one(host, acct, Shipment.single("S1", "UPS", "1ZSHARED", {1: 1, 2: 1}))
    assert [r.outcome for r in ok] == [LineOutcome.ACCEPTED, LineOutcome.ACCEPTED]
    # Against an earlier accepted row with the same number:
    (r,) = _one(host, acct, Shipment.single("S2", "UPS", "1ZSHARED", {3: 1}))
    assert r.outcome is LineOutcome.HELD
    assert "different ship-to addresses" in r.reason


def test_at_most_six_tracking_numbers_per_order(tmp_path: Path) -> None:
    host, acct = _ready(tmp_path, [make_record("A", [make_line(1, quantity=8)])])
    parcels = tuple(Parcel(f"1Z{i}", (ShipmentLine(1, 1),)) for i in range(7))
    results = _one(host, acct, Shipment("S1", "UPS", parcels))
    assert [r.outcome for r in results] == [LineOutcome.ACCEPTED] * 6 + [LineOutcome.HELD]
    assert "more than 6 tracking numbers" in results[6].reason


def test_ship_to_is_the_address_keys_in_order() -> None:
    """``_ship_to`` spells the keys out: the same tuple as reading ``_ADDRESS_KEYS`` in order
    (missing keys ``None``, other keys ignored); not an object, ``None``."""
    from connector.preflight import _ADDRESS_KEYS, _ship_to

    customer = {"name": "Ann", "zip": "10001", "city": "NYC", "email": "x", "country": "US"}
    assert _ship_to(customer) == tuple(customer.get(k) for k in _ADDRESS_KEYS)
    assert _ship_to({k: k.upper() for k in _ADDRESS_KEYS}) == tuple(
        k.upper() for k in _ADDRESS_KEYS
    )
    assert _ship_to("not an object") is None
    assert _ship_to(None) is None
