"""The ledger knows what it belongs to: missing, replaced, another supplier's, another host's,
deleted mid-run -- each refused with what happened and how to recover. Files are 0600."""

from __future__ import annotations

import dataclasses
import stat
from pathlib import Path

import pytest

from connector.errors import LedgerIdentityError
from connector.ledger import ledger_path, open_ledger
from connector.ledger.identity import claim_host, hand_over, marker_path, read_marker
from connector.models import Account
from connector.reference_host.store import HostStore
from connector.runtime.identity import DEFAULT_HOST, REFERENCE_HOST, acting_as
from connector.runtime.locks import lock_path
from connector.secrets import Secret
from tests.connector.fakes import make_host, make_line, make_record


def _account(tmp_path: Path, supplier: str = "90001") -> Account:
    return Account(
        name="us",
        channel="groupon",
        supplier_id=supplier,
        token=Secret("t" * 31),
        data_dir=tmp_path,
    )


def test_a_new_ledger_records_its_identity_and_a_marker(tmp_path: Path) -> None:
    ledger = open_ledger(_account(tmp_path))
    found = ledger.identity()
    assert found is not None
    assert (found.account, found.supplier_id, found.host) == ("us", "90001", None)
    marker = read_marker(ledger.path)
    assert marker is not None
    assert marker["ledger_id"] == found.ledger_id
    ledger.close()
    again = open_ledger(_account(tmp_path))
    assert again.identity() == found
    again.close()


@pytest.mark.sqlite_only  # the ledger file itself (PostgreSQL: test_postgres.py)
def test_a_missing_ledger_of_an_account_with_history_is_refused(tmp_path: Path) -> None:
    open_ledger(_account(tmp_path)).close()
    path = ledger_path(tmp_path, "us")
    path.unlink()
    with pytest.raises(LedgerIdentityError) as caught:
        open_ledger(_account(tmp_path))
    text = str(caught.value)
    assert "is missing" in text
    assert "reconcile --fix --account us" in text
    assert not path.exists()  # nothing was created
    recovered = open_ledger(_account(tmp_path), recover=True)  # what reconcile --fix does
    recovered.close()
    open_ledger(_account(tmp_path)).close()  # and from then on it is the account's ledger


@pytest.mark.sqlite_only  # the ledger file itself (PostgreSQL: test_postgres.py)
def test_a_replaced_ledger_is_refused(tmp_path: Path) -> None:
    open_ledger(_account(tmp_path)).close()
    other = tmp_path / "other"
    open_ledger(_account(other)).close()
    ledger_path(other, "us").replace(ledger_path(tmp_path, "us"))
    with pytest.raises(LedgerIdentityError, match=r"was replaced.*reconcile --fix"):
        open_ledger(_account(tmp_path))


def test_another_suppliers_ledger_is_refused(tmp_path: Path) -> None:
    open_ledger(_account(tmp_path)).close()
    with pytest.raises(LedgerIdentityError, match=r"supplier id 90001.*supplier id 55555"):
        open_ledger(_account(tmp_path, supplier="55555"))


@pytest.mark.sqlite_only  # the ledger file itself (PostgreSQL: test_postgres.py)
def test_a_lost_marker_is_written_again(tmp_path: Path) -> None:
    ledger = open_ledger(_account(tmp_path))
    marker_path(ledger.path).unlink()
    ledger.close()
    open_ledger(_account(tmp_path)).close()
    assert read_marker(ledger_path(tmp_path, "us")) is not None


def test_a_second_host_on_the_same_ledger_is_refused(tmp_path: Path) -> None:
    """Regression: `ci-connector sync` (the reference host) beside a real host OMS sharing
    the data folder diverted real orders into the demo store; nothing warned."""
    host = make_host()
    acct = dataclasses.replace(host.account(tmp_path), supplier_id="90001")
    host.cis["us"].add(make_record("A", [make_line(1)]))
    batch = host.pm.hook.oms_import_orders(account=acct)  # the real host, undeclared
    assert [o.orderid for o in batch.orders] == ["A"]
    with acting_as(REFERENCE_HOST), pytest.raises(LedgerIdentityError) as caught:
        host.pm.hook.oms_import_orders(account=acct)
    text = str(caught.value)
    assert f"worked by host {DEFAULT_HOST!r}" in text
    assert repr(REFERENCE_HOST) in text
    assert "hand-over" in text
    # The real host goes on as before.
    host.pm.hook.oms_held_lines(account=acct)


@pytest.mark.sqlite_only  # the ledger file itself (PostgreSQL: test_postgres.py)
def test_ledger_deleted_mid_run_is_never_a_silent_success(tmp_path: Path) -> None:
    """Regression: the ledger deleted while a sync ran: that sync exited 0, the next one
    silently started an empty ledger."""
    host = make_host()
    acct = host.account(tmp_path)
    host.cis["us"].add(make_record("A", [make_line(1)]))
    host.pm.hook.oms_import_orders(account=acct)
    path = ledger_path(tmp_path, "us")
    path.unlink()
    with pytest.raises(LedgerIdentityError, match="was deleted while"):
        host.pm.hook.oms_held_lines(account=acct)
    # The next call (the next sync) refuses to start an empty ledger.
    with pytest.raises(LedgerIdentityError, match=r"is missing.*reconcile --fix"):
        host.pm.hook.oms_import_orders(account=acct)
    assert not path.exists()


@pytest.mark.sqlite_only  # the ledger file itself (PostgreSQL: test_postgres.py)
def test_deletion_during_a_call_fails_that_call(tmp_path: Path) -> None:
    host = make_host()
    acct = host.account(tmp_path)
    ci = host.cis["us"]
    ci.add(make_record("A", [make_line(1)]))
    real = ci.fetch_all

    def fetch_and_delete(window: object = None) -> object:
        ledger_path(tmp_path, "us").unlink()
        return real()

    ci.fetch_all = fetch_and_delete  # type: ignore[method-assign,assignment]
    with pytest.raises(LedgerIdentityError, match="was deleted while"):
        host.pm.hook.oms_import_orders(account=acct)


@pytest.mark.sqlite_only  # the ledger file itself (PostgreSQL: test_postgres.py)
def test_every_file_is_created_0600(tmp_path: Path) -> None:
    host = make_host()
    acct = host.account(tmp_path)
    host.cis["us"].add(make_record("A", [make_line(1)]))
    host.pm.hook.oms_import_orders(account=acct)
    HostStore(tmp_path / "reference-host.sqlite3").close()
    path = ledger_path(tmp_path, "us")
    files = [
        path,
        marker_path(path),
        lock_path(tmp_path, "us"),
        tmp_path / "reference-host.sqlite3",
    ]
    files += [p for p in tmp_path.glob("*-wal")]
    assert len(files) >= 5
    for file in files:
        assert stat.S_IMODE(file.stat().st_mode) == 0o600, file


@pytest.mark.sqlite_only  # the ledger file itself (PostgreSQL: test_postgres.py)
def test_an_existing_world_readable_ledger_is_tightened(tmp_path: Path) -> None:
    open_ledger(_account(tmp_path)).close()
    path = ledger_path(tmp_path, "us")
    path.chmod(0o644)
    open_ledger(_account(tmp_path)).close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_a_hand_over_by_another_connection_is_seen_at_once(tmp_path: Path) -> None:
    """The identity is kept between reads while nothing else wrote the ledger; a hand-over
    through another connection (`ci-connector hand-over` beside a running host) and one
    through this connection are both seen by the next read."""
    worker = open_ledger(_account(tmp_path))
    operator = open_ledger(_account(tmp_path))
    try:
        claim_host(worker, "odoo-prod")
        assert worker.identity() is not None
        assert worker.identity().host == "odoo-prod"  # type: ignore[union-attr]
        hand_over(operator, "odoo-new")
        found = worker.identity()
        assert found is not None
        assert found.host == "odoo-new"
        with pytest.raises(LedgerIdentityError):
            claim_host(worker, "odoo-prod")
        hand_over(worker, "odoo-back")
        assert worker.identity().host == "odoo-back"  # type: ignore[union-attr]
        assert operator.identity().host == "odoo-back"  # type: ignore[union-attr]
    finally:
        worker.close()
        operator.close()
