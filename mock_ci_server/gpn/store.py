"""In-memory state of the simulated GPN Transaction API: client credentials and transactions.

Plain Python, no Flask. Datetimes are aware UTC throughout; the routes convert to and from the
requested ``timeZone``. The record fields follow the seed document (``gpn-transaction-api.txt``);
everything about their JSON rendering is ASSUMED (see ``schemas.py``).
"""

from __future__ import annotations

import hashlib
import random
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

__all__ = [
    "DEFAULT_AUTH_SKEW",
    "STATUSES",
    "STATUSES_BY_TYPE",
    "TYPES",
    "GPNRecord",
    "GPNStore",
    "GPNStoreError",
]

TYPES: tuple[str, ...] = (
    "SALE",
    "REFUND",
    "BONUS",
    "BOUNTY",
    "BOUNTY_REFUND",
    "PAYMENT",
    "CORRECTION",
)
STATUSES: tuple[str, ...] = ("PENDING", "COMMISSIONABLE", "NON-COMMISSIONABLE", "INVOICED")

# The seed's "Transaction Type and Status" table: which status each type can have.
STATUSES_BY_TYPE: dict[str, frozenset[str]] = {
    "SALE": frozenset(STATUSES),
    "REFUND": frozenset({"COMMISSIONABLE", "INVOICED"}),
    "BONUS": frozenset({"INVOICED"}),
    "BOUNTY": frozenset(STATUSES),
    "BOUNTY_REFUND": frozenset({"COMMISSIONABLE", "INVOICED"}),
    "PAYMENT": frozenset({"INVOICED"}),
    "CORRECTION": frozenset({"COMMISSIONABLE", "INVOICED"}),
}

# The seed's stale-timestamp tolerance is not published; 5 minutes is ASSUMED (common practice).
DEFAULT_AUTH_SKEW = timedelta(minutes=5)


class GPNStoreError(ValueError):
    """A control-plane request the store cannot honour (unknown client, bad record...)."""


@dataclass
class GPNRecord:
    """One GPN transaction, fields as the seed lists them (``invoiceId`` is the seed's
    ``invoidId``, a typo). ``None`` means "empty" in the seed's "Empty for ..." sense."""

    transaction_id: str
    transaction_type: str
    transaction_status: str
    last_modified: datetime
    transaction_date: datetime | None
    currency: str
    country: str
    payable_minor: int
    order_id: str | None = None
    short_id: str | None = None
    cart_id: str | None = None
    cart_item_id: str | None = None
    support_id: str | None = None
    link_id: str | None = None
    permalink: str | None = None
    gross_amount: Decimal | None = None
    sid: str | None = None
    wid: str | None = None
    invoice_id: str | None = None
    transaction_details: str | None = None
    commission_category: str | None = None
    commission_details: str | None = None
    is_new_user: bool | None = None

    def __post_init__(self) -> None:
        if self.transaction_type not in STATUSES_BY_TYPE:
            raise GPNStoreError(f"unknown transactionType {self.transaction_type!r}")
        if self.transaction_status not in STATUSES_BY_TYPE[self.transaction_type]:
            raise GPNStoreError(
                f"transactionStatus {self.transaction_status!r} is not possible for "
                f"transactionType {self.transaction_type!r}"
            )
        apply_empty_rules(self)


_EMPTY_FOR: dict[str, frozenset[str]] = {
    # field -> types for which the seed says "Empty for ..."
    "transaction_date": frozenset({"BONUS", "PAYMENT"}),
    "order_id": frozenset({"BOUNTY", "BONUS", "PAYMENT"}),
    "short_id": frozenset({"BOUNTY", "BONUS", "PAYMENT"}),
    "cart_id": frozenset({"BONUS", "PAYMENT"}),
    "cart_item_id": frozenset({"BOUNTY", "BOUNTY_REFUND", "BONUS", "PAYMENT"}),
    "support_id": frozenset({"BONUS", "PAYMENT"}),
    "link_id": frozenset({"BONUS", "PAYMENT"}),
    "permalink": frozenset({"BOUNTY", "BOUNTY_REFUND", "BONUS", "PAYMENT"}),
    "gross_amount": frozenset({"BOUNTY", "BOUNTY_REFUND", "BONUS", "PAYMENT"}),
    "sid": frozenset({"BONUS", "PAYMENT"}),
    "wid": frozenset({"BONUS", "PAYMENT"}),
    "transaction_details": frozenset({"SALE", "REFUND", "BOUNTY", "BOUNTY_REFUND", "PAYMENT"}),
}


def apply_empty_rules(record: GPNRecord) -> None:
    """Blank the fields the seed says are empty for the record's type and status."""
    for name, types in _EMPTY_FOR.items():
        if record.transaction_type in types:
            setattr(record, name, None)
    if record.transaction_type != "SALE" or record.transaction_status == "NON-COMMISSIONABLE":
        record.commission_category = None  # "Only for SALE ... blank for NON-COMMISSIONABLE"
    if record.transaction_status == "NON-COMMISSIONABLE":
        record.commission_details = None
        record.is_new_user = None
    if record.transaction_status != "INVOICED":
        record.invoice_id = None  # "Empty for NON-INVOICED transactions"


@dataclass
class _Client:
    token: str
    records: dict[str, GPNRecord] = field(default_factory=dict)


def _uuid(rng: random.Random) -> str:
    raw = f"{rng.getrandbits(128):032x}"
    return f"{raw[:8]}-{raw[8:12]}-4{raw[13:16]}-a{raw[17:20]}-{raw[20:32]}"


_PERMALINKS = (
    "wise-owl-drinkery-cookhouse",
    "spa-day-for-two",
    "bluetooth-headphones-2-pack",
    "escape-room-adventure",
    "led-strip-lights",
)
_CATEGORIES = ("Local", "Goods", "Getaways")


class GPNStore:
    """Transactions and client credentials of the simulated GPN Transaction API. Thread-safe."""

    def __init__(self, auth_skew: timedelta = DEFAULT_AUTH_SKEW) -> None:
        self._lock = threading.RLock()
        self._clients: dict[str, _Client] = {}
        self._default_skew = auth_skew
        self.auth_skew = auth_skew

    def reset(self) -> None:
        """Forget every client and transaction; restore the default auth skew."""
        with self._lock:
            self._clients.clear()
            self.auth_skew = self._default_skew

    # -- clients ---------------------------------------------------------------------------
    def add_client(self, client_id: str, token: str) -> None:
        """Register (or re-key: one active token per affiliate) a client id and its token."""
        if not client_id or not token:
            raise GPNStoreError("client_id and token must be non-empty strings")
        with self._lock:
            existing = self._clients.get(client_id)
            if existing is None:
                self._clients[client_id] = _Client(token=token)
            else:
                existing.token = token

    def token_for(self, client_id: str) -> str | None:
        """The client's current token, or ``None`` for an unknown client id."""
        with self._lock:
            client = self._clients.get(client_id)
            return None if client is None else client.token

    def _client(self, client_id: str) -> _Client:
        client = self._clients.get(client_id)
        if client is None:
            raise GPNStoreError(f"unknown client_id {client_id!r}")
        return client

    # -- records ---------------------------------------------------------------------------
    def add(self, client_id: str, record: GPNRecord) -> None:
        """Insert or replace one record for a client."""
        with self._lock:
            self._client(client_id).records[record.transaction_id] = record

    def records(self, client_id: str) -> list[GPNRecord]:
        """A copy of every record of the client, ordered by (lastModifiedDate, id)."""
        with self._lock:
            rows = [replace(r) for r in self._client(client_id).records.values()]
        return sorted(rows, key=lambda r: (r.last_modified, r.transaction_id))

    def query(
        self,
        client_id: str,
        start: datetime,
        end: datetime,
        *,
        types: Iterable[str] | None = None,
        statuses: Iterable[str] | None = None,
        invoice_id: str | None = None,
    ) -> list[GPNRecord]:
        """Records whose lastModifiedDate is within [start, end] (both inclusive), filtered.

        Selecting on lastModifiedDate covers "created/modified after startDate" of the seed:
        a record's lastModifiedDate is its creation time until it is modified.
        """
        type_set = None if types is None else frozenset(types)
        status_set = None if statuses is None else frozenset(statuses)
        return [
            r
            for r in self.records(client_id)
            if start <= r.last_modified <= end
            and (type_set is None or r.transaction_type in type_set)
            and (status_set is None or r.transaction_status in status_set)
            and (invoice_id is None or r.invoice_id == invoice_id)
        ]

    # -- seeding and rectification ---------------------------------------------------------
    def seed(
        self,
        client_id: str,
        n: int,
        seed: int,
        start: datetime,
        end: datetime,
        *,
        currency: str = "USD",
        country: str = "US",
    ) -> list[GPNRecord]:
        """Add ``n`` deterministic transactions dated within [start, end] and return them.

        Roughly 60 % are SALE rows. Sales dated in the last 48 h before ``end`` stay PENDING
        (the seed: "rectified up to 48h later"); older ones were already rectified to
        COMMISSIONABLE / NON-COMMISSIONABLE / INVOICED, with lastModifiedDate set up to 48 h
        after transactionDate. Use :meth:`rectify` to move the PENDING ones later.
        """
        if n < 0 or n > 100_000:
            raise GPNStoreError("n must be between 0 and 100000")
        if end < start:
            raise GPNStoreError("end must not be before start")
        rng = random.Random(f"{client_id}:{seed}")  # str seeds are deterministic across runs
        span = max(int((end - start).total_seconds()), 1)
        created: list[GPNRecord] = []
        with self._lock:
            client = self._client(client_id)
            for _ in range(n):
                when = start + timedelta(seconds=rng.randrange(span + 1))
                kind = rng.choices(TYPES, weights=(60, 10, 5, 10, 5, 5, 5))[0]
                record = self._make_record(rng, kind, when, end, currency, country)
                client.records[record.transaction_id] = record
                created.append(replace(record))
        return created

    def _make_record(
        self,
        rng: random.Random,
        kind: str,
        when: datetime,
        end: datetime,
        currency: str,
        country: str,
    ) -> GPNRecord:
        gross = Decimal(rng.randrange(500, 20_000)).scaleb(-2)
        rate = Decimal(rng.choice((4, 6, 8, 10))) / 100
        payable = int((gross * rate * 100).to_integral_value())
        if kind in ("SALE", "BOUNTY"):
            if end - when < timedelta(hours=48):
                status, modified = "PENDING", when
            else:
                status = rng.choices(
                    ("COMMISSIONABLE", "NON-COMMISSIONABLE", "INVOICED"), weights=(6, 2, 2)
                )[0]
                modified = min(when + timedelta(minutes=rng.randrange(60, 48 * 60)), end)
        else:
            status = rng.choice(sorted(STATUSES_BY_TYPE[kind]))
            modified = when
        if kind in ("REFUND", "BOUNTY_REFUND"):
            payable = -payable
        if kind == "BOUNTY":
            payable = rng.choice((500, 1000, 1500))
        if kind in ("BONUS", "PAYMENT", "CORRECTION"):
            payable = rng.randrange(-2_000, 50_000)
        if status == "NON-COMMISSIONABLE":
            payable = 0
        return GPNRecord(
            transaction_id=f"T{rng.getrandbits(40):012d}",
            transaction_type=kind,
            transaction_status=status,
            last_modified=modified,
            transaction_date=when,
            currency=currency,
            country=country,
            payable_minor=payable,
            order_id=str(rng.randrange(10**9, 10**10)),
            short_id=f"{rng.randrange(10**6, 10**7)}",
            cart_id=_uuid(rng),
            cart_item_id=_uuid(rng),
            support_id=f"S-{rng.randrange(10**5, 10**6)}",
            link_id=str(rng.randrange(1000, 9999)),
            permalink=rng.choice(_PERMALINKS),
            gross_amount=gross,
            sid=rng.choice(("newsletter", "blog", "")) or None,
            wid=rng.choice(("web-1", "app-2", "")) or None,
            invoice_id=f"INV-{when:%Y%m}-{rng.randrange(100, 999)}",
            transaction_details=rng.choice(("Monthly bonus", "Correction of order total")),
            commission_category=rng.choice(_CATEGORIES),
            commission_details=f"{rate * 100:.0f}% of gross",
            is_new_user=rng.random() < 0.3,
        )

    def rectify(
        self,
        now: datetime,
        *,
        older_than: timedelta = timedelta(hours=48),
        client_id: str | None = None,
        modified_at: datetime | None = None,
    ) -> list[str]:
        """Move PENDING SALE/BOUNTY rows dated at or before ``now - older_than`` to
        COMMISSIONABLE or NON-COMMISSIONABLE (deterministically by id), stamping
        lastModifiedDate with ``modified_at`` (default ``now``). Returns the ids moved.

        ``modified_at`` earlier than ``now`` models a back-dated batch stamp: the reason a
        client must re-read an overlap before its last window start.
        """
        cutoff = now - older_than
        # The API renders whole seconds; a sub-second stamp would slip past a client's window.
        stamp = (modified_at or now).replace(microsecond=0)
        moved: list[str] = []
        with self._lock:
            clients = [self._client(client_id)] if client_id is not None else self._clients.values()
            for client in clients:
                for record in client.records.values():
                    if record.transaction_status != "PENDING":
                        continue
                    if record.transaction_date is None or record.transaction_date > cutoff:
                        continue
                    digest = hashlib.sha256(record.transaction_id.encode()).digest()
                    if digest[0] % 5 == 0:  # about one in five turns out to be invalid
                        record.transaction_status = "NON-COMMISSIONABLE"
                        record.payable_minor = 0
                    else:
                        record.transaction_status = "COMMISSIONABLE"
                    record.last_modified = stamp
                    apply_empty_rules(record)
                    moved.append(record.transaction_id)
        return sorted(moved)

    def snapshot(self) -> dict[str, Any]:
        """Counts per client, type and status (for ``GET /_sim/gpn/state``); no tokens."""
        with self._lock:
            out: dict[str, Any] = {"auth_skew_seconds": int(self.auth_skew.total_seconds())}
            clients: dict[str, Any] = {}
            for client_id, client in sorted(self._clients.items()):
                by_status: dict[str, int] = {}
                by_type: dict[str, int] = {}
                for r in client.records.values():
                    by_status[r.transaction_status] = by_status.get(r.transaction_status, 0) + 1
                    by_type[r.transaction_type] = by_type.get(r.transaction_type, 0) + 1
                clients[client_id] = {
                    "transactions": len(client.records),
                    "by_type": dict(sorted(by_type.items())),
                    "by_status": dict(sorted(by_status.items())),
                }
            out["clients"] = clients
            return out
