"""The Groupon channel plugin: pluggy hook implementations over the import/dispatch engine.

The entry point ``connector.plugin:plugin`` (group ``oms``) is the module attribute
:data:`plugin`. Every hook that takes an account returns ``None`` unless
``account.channel == "groupon"``, so other channels' plugins can sit beside it.

Plugin state per manager: the module attribute is one object per process. A host that builds
several plugin managers (tests, one manager per tenant) must give each its own instance: the
entry-point object offers :meth:`GrouponPlugin.new_instance` (the reference host's loader
calls it for every manager it builds; a host of its own calls ``plugin.new_instance()`` or
``GrouponPlugin(...)`` and registers the result), so clients, ledgers and counters never
carry over from one manager to another.

Per account (keyed by ``account.name``) the plugin keeps one CI client and one ledger; the
mapping CSVs are reloaded on every call so a fixed mapping takes effect on the next cycle.
Accounts never share state: each has its own ledger file, client and token.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from connector import __version__, hookimpl
from connector.dispatcher import Dispatcher
from connector.errors import AccountBusy, ChannelError, LedgerIdentityError, MappingError
from connector.importer import Importer, PreparedChunk
from connector.importer import _order_line as order_line_from_fields  # the parsed-line decoder
from connector.ledger import HOST_STATES, Ledger, LineRow, OutboxRow, open_ledger
from connector.ledger.identity import claim_host
from connector.mappings import CsvMappingsProvider, Mappings, MappingsProvider
from connector.models import (
    Account,
    CarrierEvent,
    CarrierEventKind,
    ChannelInfo,
    ChannelProduct,
    ConfigField,
    HeldLine,
    HoldKind,
    ImportBatch,
    LineOutcome,
    LineResult,
    Shipment,
    SkuComponent,
    SlaRisk,
    StoredOrder,
    VoidResult,
)
from connector.ops.ledger_rows import rows_from_ledger
from connector.ops.sla import risks_for_account, scans_reported_in
from connector.preflight import TrackingChecker
from connector.runtime.identity import current_host
from connector.runtime.locks import AccountLock, FileAccountLock, lock_path

__all__ = ["CHANNEL", "CIPort", "GrouponPlugin", "MappingsUnavailable", "new_plugin", "plugin"]

log = logging.getLogger("connector.plugin")

CHANNEL = "groupon"


class MappingsUnavailable(ChannelError):
    """The mapping CSVs could not be loaded; nothing was imported or sent this cycle."""


class CIPort(Protocol):
    """Everything the engine calls on a CI client (:class:`connector.ci.client.CIClient`)."""

    def fetch_all(self, window: tuple[datetime, datetime] | None = None) -> Sequence[Any]: ...

    def mark_exported(self, ci_lineitemids: Sequence[int]) -> None: ...

    def tracking_notification(self, items: Sequence[Any]) -> None: ...

    def lineitem_tracking_notification(self, items: Sequence[Any]) -> None: ...

    def close(self) -> None: ...


@dataclass
class _Runtime:
    account: Account
    client: CIPort
    ledger: Ledger
    lock: threading.RLock
    # The chunk the last oms_mark_exported evaluated while its CI calls were in flight, for
    # the next oms_import_orders (Importer.import_orders checks it is still valid).
    prepared: PreparedChunk | None = None


def _default_client(account: Account) -> CIPort:
    from connector.ci.client import CIClient

    return CIClient.for_account(account)


def _default_lock(account: Account) -> AccountLock:
    if account.ledger_url:
        # PostgreSQL ledger: an advisory lock in its database (seen by every machine).
        from connector.runtime.pglock import account_lock

        return account_lock(account)
    return FileAccountLock(lock_path(account.data_dir, account.name), account.name)


_NO_MAPPINGS = Mappings.from_tables({})
"""Empty tables for the acknowledgement paths, which never consult them."""


CONFIG_FIELDS: tuple[ConfigField, ...] = (
    ConfigField("name", "the operator's short name for the account, unique per host"),
    ConfigField("supplier_id", "CI supplier id (one per country account)"),
    ConfigField(
        "token",
        "CI access token, a plain str (wrapped in a Secret; in the TOML file name an "
        "environment variable in token_env instead)",
        secret=True,
    ),
    ConfigField("channel", "the channel plugin that owns the account", False, default=CHANNEL),
    ConfigField("region", "ISO country of the account (US, UK, ...)", False, default="US"),
    ConfigField("api_version", "CI API version: v2 or v4", False, default="v4"),
    ConfigField("base_url", "CI host", False, default="https://scm.commerceinterface.com"),
    ConfigField("data_dir", "folder of the account's ledger", False, default="data"),
    ConfigField(
        "mappings_dir",
        "folder with the mapping CSVs (None: the shipped mappings; in the TOML file it is a "
        "[connector] key)",
        False,
    ),
    ConfigField(
        "options",
        "behaviour switches: a mapping of AccountOptions field names ([accounts.options])",
        False,
        default={},
    ),
)
"""The parameters of :meth:`connector.models.Account.from_values`, for host set-up screens."""


def _utcnow() -> datetime:
    return datetime.now(UTC)


class GrouponPlugin:
    """Hook implementations for the Groupon channel.

    :param client_factory: builds the CI client of an account (default
        ``CIClient.for_account``); tests inject fakes here.
    :param clock: returns the current aware UTC time (default: the system clock).
    :param mappings_loader: loads the mapping tables of an account for each call: a
        :class:`~connector.mappings.MappingsProvider` (or any callable ``account ->
        Mappings``). Default: :class:`~connector.mappings.CsvMappingsProvider`, which reads the
        account's CSV folder and re-reads it only when a file changed on disk. A host that
        keeps couriers and SKU aliases in its own tables passes a provider that builds
        :meth:`Mappings.from_tables <connector.mappings.Mappings.from_tables>` from them.
    :param ledger_factory: opens an account's ledger (default :func:`open_ledger`).
    :param tracking_checker: tracking-number format check (default
        ``connector.tracking_formats.check_tracking_number``).
    :param lock_factory: the cross-process exclusion of an account (default: an OS file lock
        beside the ledger, :class:`~connector.runtime.locks.FileAccountLock`).
    """

    def __init__(
        self,
        client_factory: Callable[[Account], CIPort] | None = None,
        clock: Callable[[], datetime] | None = None,
        mappings_loader: MappingsProvider | Callable[[Account], Mappings] | None = None,
        ledger_factory: Callable[[Account], Ledger] | None = None,
        tracking_checker: TrackingChecker | None = None,
        lock_factory: Callable[[Account], AccountLock] | None = None,
    ) -> None:
        self._lock_factory = lock_factory or _default_lock
        self._exclusions: dict[str, tuple[Account, AccountLock]] = {}
        self._client_factory = client_factory or _default_client
        self._clock = clock or _utcnow
        self._mappings_loader: MappingsProvider | Callable[[Account], Mappings] = (
            mappings_loader or CsvMappingsProvider()
        )
        self._ledger_factory = ledger_factory or open_ledger
        self._tracking_checker = tracking_checker
        self._runtimes: dict[str, _Runtime] = {}
        self._account_locks: dict[str, threading.RLock] = {}
        self._lock = threading.Lock()  # guards the two dicts above, never held during work

    # -- runtime ------------------------------------------------------------------------------

    @contextmanager
    def _using(self, account: Account) -> Iterator[_Runtime]:
        """The account's runtime, held exclusively for one hook call.

        Exclusion is two-level: one lock per account *name* serialises the threads of this
        process, and the account's :class:`~connector.runtime.locks.AccountLock` (an OS file
        lock beside the ledger by default) the processes and machines. Both are held for the
        whole call and waited for at most ``lock_timeout_seconds``; then
        :class:`~connector.errors.AccountBusy` names the holder. A rebuild when the account's
        settings changed happens inside: the new client and ledger are opened first (a
        failure leaves the old runtime in place), then swapped in and the old ones closed.

        The ledger must still be the file it was opened on, before and after the call (one
        deleted mid-run must not end in silent success), and the ledger's host must be the
        host this process acts for (:func:`connector.runtime.identity.current_host`).
        """
        timeout = account.options.lock_timeout_seconds
        with self._lock:
            lock = self._account_locks.setdefault(account.name, threading.RLock())
        if not lock.acquire(timeout=timeout):
            raise AccountBusy(
                f"account {account.name} is busy: another thread of this process (pid "
                f"{os.getpid()}) is working it (waited {timeout:g} s; lock_timeout_seconds "
                "sets the wait). Nothing was done; try again when it is done.",
                account=account.name,
                holder=f"pid {os.getpid()} (another thread)",
            )
        try:
            exclusion = self._exclusion(account)
            exclusion.acquire(timeout)
            try:
                rt = self._runtime(account, lock)
                yield rt
                self._check_intact(rt)
            finally:
                exclusion.release()
        finally:
            lock.release()

    def _exclusion(self, account: Account) -> AccountLock:
        """The account's cross-process lock (made again when its data_dir changed)."""
        known = self._exclusions.get(account.name)
        if (
            known is not None
            and known[0].data_dir == account.data_dir
            and known[0].ledger_url == account.ledger_url
        ):
            return known[1]
        if known is not None:
            known[1].close()
        made = self._lock_factory(account)
        self._exclusions[account.name] = (account, made)
        return made

    def _runtime(self, account: Account, lock: threading.RLock) -> _Runtime:
        rt = self._runtimes.get(account.name)
        if rt is not None and rt.account == account:
            self._check_intact(rt)
        else:
            client = self._client_factory(account)
            try:
                ledger = self._ledger_factory(account)
            except BaseException:
                client.close()
                raise
            if rt is not None:
                if rt.prepared is not None:  # never handed over: due for evaluation again
                    rt.ledger.reopen_evaluation([o.orderid for o in rt.prepared.orders])
                rt.client.close()
                rt.ledger.close()
            rt = _Runtime(account, client, ledger, lock)
            with self._lock:
                self._runtimes[account.name] = rt
        claim_host(rt.ledger, current_host())
        return rt

    def _check_intact(self, rt: _Runtime) -> None:
        """Raise when the ledger file went away under the open runtime; the runtime is
        dropped so the next call opens the ledger again (and is refused by its marker)."""
        try:
            rt.ledger.verify_intact()
        except LedgerIdentityError:
            with self._lock:
                self._runtimes.pop(rt.account.name, None)
            rt.client.close()
            rt.ledger.close()
            raise

    def new_instance(self) -> GrouponPlugin:
        """A fresh plugin with the same collaborators and no state (no clients, ledgers or
        counters): what a host registers in each new plugin manager.

        .. versionadded:: 0.2.0
        """
        loader = self._mappings_loader
        return GrouponPlugin(
            client_factory=self._client_factory,
            clock=self._clock,
            mappings_loader=CsvMappingsProvider(check_seconds=loader.check_seconds)
            if isinstance(loader, CsvMappingsProvider)
            else loader,
            ledger_factory=self._ledger_factory,
            tracking_checker=self._tracking_checker,
            lock_factory=self._lock_factory,
        )

    def _mappings(self, account: Account, *, recent: bool = False) -> Mappings:
        """The account's mappings; ``recent``: the CSV provider may answer from files checked
        within its ``check_seconds`` (the one-shipment dispatch hook, called in a loop)."""
        try:
            loader = self._mappings_loader
            if recent and isinstance(loader, CsvMappingsProvider):
                return loader.recent_mappings_for(account)
            if isinstance(loader, MappingsProvider):
                return loader.mappings_for(account)
            return loader(account)
        except MappingError as exc:
            raise MappingsUnavailable(f"account {account.name}: {exc}") from None

    def _mappings_if_valid(self, rt: _Runtime) -> Mappings | None:
        """The account's mappings, or None while they do not load (a CSV half-way through an
        edit): only for evaluating the next chunk ahead, which then waits for the import,
        where the error is reported."""
        try:
            return self._mappings(rt.account)
        except MappingsUnavailable:
            return None

    def _importer(self, rt: _Runtime, *, acks_only: bool = False) -> Importer:
        # Acknowledgements never look at the mapping tables, so a CSV an operator is half-way
        # through editing must not block them.
        mappings = _NO_MAPPINGS if acks_only else self._mappings(rt.account)
        return Importer(rt.account, rt.client, rt.ledger, mappings, self._clock)

    def _dispatcher(self, rt: _Runtime, *, mappings: Mappings | None = None) -> Dispatcher:
        return Dispatcher(
            rt.account,
            rt.client,
            rt.ledger,
            mappings if mappings is not None else self._mappings(rt.account),
            self._clock,
            self._tracking_checker,
        )

    def ledger_for(self, account: Account) -> Ledger:
        """The ledger of ``account`` (for the CLI and ops)."""
        with self._using(account) as rt:
            return rt.ledger

    # -- operator actions (ci-connector held), not hooks -----------------------------------------

    def dispatch_holds(self, account: Account) -> list[tuple[OutboxRow, bool]]:
        """Every held or CI-rejected dispatch row of ``account`` (settled ones superseded
        first), each with whether its line is known (only those are in ``oms_held_lines``).

        .. versionadded:: 0.2.0
        """
        with self._using(account) as rt:
            self._dispatcher(rt, mappings=_NO_MAPPINGS).settle_holds()
            rows = rt.ledger.outbox_rows(states=("held", "rejected"))
            known = rt.ledger.get_lines((r.ci_lineitemid for r in rows), light=True)
            return [(r, r.ci_lineitemid in known) for r in rows]

    def dismiss_holds(
        self, account: Account, row_ids: Sequence[int], reason: str
    ) -> list[OutboxRow]:
        """Close held or CI-rejected dispatch rows on an operator's word (never sent).

        :raises ValueError: ``reason`` is empty.

        .. versionadded:: 0.2.0
        """
        with self._using(account) as rt:
            return self._dispatcher(rt, mappings=_NO_MAPPINGS).dismiss(row_ids, reason)

    def retry_holds(self, account: Account, row_ids: Sequence[int]) -> list[LineResult]:
        """Re-check held or CI-rejected dispatch rows now and send those that pass.

        .. versionadded:: 0.2.0
        """
        with self._using(account) as rt:
            return self._dispatcher(rt).retry_held(row_ids)

    def close(self) -> None:
        """Close every client and ledger (waiting for calls in progress on each account)."""
        with self._lock:
            names = list(self._runtimes)
        for name in names:
            with self._account_locks[name]:
                with self._lock:
                    rt = self._runtimes.pop(name, None)
                if rt is not None:
                    rt.client.close()
                    rt.ledger.close()
                known = self._exclusions.pop(name, None)
                if known is not None:
                    known[1].close()

    # -- hooks --------------------------------------------------------------------------------

    @hookimpl
    def oms_channel_info(self) -> ChannelInfo:
        """Describe the Groupon channel."""
        return ChannelInfo(
            name=CHANNEL,
            version=__version__,
            capabilities=frozenset(
                {
                    "import",
                    "mark_exported",
                    "dispatch",
                    "dispatch_many",
                    "void_shipment",
                    "partial_dispatch",
                    "cancellations",
                    "sla",
                    "held_lines",
                    "outbox",
                    "carrier_events",
                    "products",
                }
            ),
            config_fields=CONFIG_FIELDS,
            stock_policy="unlimited",
        )

    @hookimpl
    def oms_import_orders(self, account: Account) -> ImportBatch | None:
        """Fetch, stage and hand over new orders (see the hookspec)."""
        if account.channel != CHANNEL:
            return None
        with self._using(account) as rt:
            prepared, rt.prepared = rt.prepared, None
            batch = self._importer(rt).import_orders(prepared)
        log.info(
            "account %s: %d order(s), %d held, %d cancellation(s)",
            account.name,
            len(batch.orders),
            len(batch.held),
            len(batch.cancellations),
        )
        return batch

    @hookimpl
    def oms_mark_exported(
        self, account: Account, stored: Sequence[StoredOrder]
    ) -> list[LineResult] | None:
        """Record bindings and acknowledge in CI (see the hookspec)."""
        if account.channel != CHANNEL:
            return None
        with self._using(account) as rt:
            importer = self._importer(rt, acks_only=True)
            # One chunk ahead at most: one evaluated already waits for its import.
            ahead = self._mappings_if_valid(rt) if rt.prepared is None else None
            results = importer.mark_exported(stored, prepare_with=ahead)
            if importer.prepared is not None:
                rt.prepared = importer.prepared
            return results

    @hookimpl
    def oms_confirm_cancellations(
        self, account: Account, ci_lineitemids: Sequence[int]
    ) -> list[LineResult] | None:
        """Stop reporting cancellations the host applied (see the hookspec)."""
        if account.channel != CHANNEL:
            return None
        with self._using(account) as rt:
            return self._importer(rt, acks_only=True).confirm_cancellations(ci_lineitemids)

    @hookimpl
    def oms_dispatch(self, account: Account, shipment: Shipment) -> list[LineResult] | None:
        """Pre-flight, store and send tracking (see the hookspec)."""
        if account.channel != CHANNEL:
            return None
        with self._using(account) as rt:
            mappings = self._mappings(rt.account, recent=True)
            return self._dispatcher(rt, mappings=mappings).dispatch(shipment)

    @hookimpl
    def oms_dispatch_many(
        self, account: Account, shipments: Sequence[Shipment]
    ) -> list[LineResult] | None:
        """Many shipments, packed into as few CI calls as allowed (see the hookspec)."""
        if account.channel != CHANNEL:
            return None
        with self._using(account) as rt:
            return self._dispatcher(rt).dispatch_many(list(shipments))

    @hookimpl
    def oms_void_shipment(
        self, account: Account, shipment_id: str, reason: str
    ) -> VoidResult | None:
        """Withdraw the unsent rows of a shipment (see the hookspec)."""
        if account.channel != CHANNEL:
            return None
        with self._using(account) as rt:
            # Withdrawing never needs the mapping tables: a broken CSV must not block it.
            result = self._dispatcher(rt, mappings=_NO_MAPPINGS).void_shipment(shipment_id, reason)
        log.info(
            "account %s: shipment %r voided: %d withdrawn, %d already sent, %d in flight",
            account.name,
            shipment_id,
            len(result.withdrawn),
            len(result.already_sent),
            len(result.in_flight),
        )
        return result

    @hookimpl
    def oms_flush_outbox(self, account: Account, force: bool = False) -> list[LineResult] | None:
        """Retry queued acknowledgements and tracking; release holds that can pass now."""
        if account.channel != CHANNEL:
            return None
        with self._using(account) as rt:
            # Acks first and without the mapping tables: a broken CSV then only stops tracking.
            results = self._importer(rt, acks_only=True).flush_acks()
            return results + self._dispatcher(rt).flush(force=force)

    @hookimpl
    def oms_report_carrier_events(
        self, account: Account, events: Sequence[CarrierEvent]
    ) -> list[LineResult] | None:
        """Record the host's carrier scans and deliveries for the SLA clock (see the hookspec)."""
        if account.channel != CHANNEL:
            return None
        with self._using(account) as rt:
            known = rt.ledger.get_lines(
                (e.ci_lineitemid for e in events if isinstance(e.ci_lineitemid, int)), light=True
            )
            problems = [_carrier_event_problem(e, known) for e in events]
            valid = [e for e, problem in zip(events, problems, strict=True) if problem is None]
            inserted = iter(rt.ledger.record_carrier_events(valid, self._clock()) if valid else [])
        results: list[LineResult] = []
        for event, problem in zip(events, problems, strict=True):
            number = event.tracking_number
            if problem is not None:
                results.append(
                    LineResult(event.ci_lineitemid, LineOutcome.REJECTED, problem, number)
                )
            elif next(inserted):
                results.append(LineResult(event.ci_lineitemid, LineOutcome.ACCEPTED, "", number))
            else:
                results.append(
                    LineResult(
                        event.ci_lineitemid,
                        LineOutcome.ALREADY_DONE,
                        f"{event.kind} at {event.at.isoformat()} already recorded",
                        number,
                    )
                )
        rejected = sum(1 for p in problems if p is not None)
        log.info(
            "account %s: %d carrier event(s) reported, %d rejected",
            account.name,
            len(events),
            rejected,
        )
        return results

    @hookimpl
    def oms_held_lines(self, account: Account) -> list[HeldLine] | None:
        """Every line held for the operator, from the ledger."""
        if account.channel != CHANNEL:
            return None
        with self._using(account) as rt:
            dispatcher = self._dispatcher(rt, mappings=_NO_MAPPINGS)
            dispatcher.settle_holds()
            held = rt.ledger.held_lines(outbox=False)
            for o in rt.ledger.open_dispatch_holds():
                held.append(
                    HeldLine(
                        account=account.name,
                        kind=o.hold_kind or HoldKind.REJECTED_BY_CI,
                        reason=f"shipment {o.shipment_id!r} tracking {o.tracking!r}: {o.reason}",
                        ci_lineitemid=o.ci_lineitemid,
                        orderid=o.orderid or None,
                        since=o.updated_at,
                    )
                )
            return held

    @hookimpl
    def oms_channel_stats(self, account: Account) -> dict[str, int] | None:
        """The account's CI client counters, flattened (see the hookspec)."""
        if account.channel != CHANNEL:
            return None
        with self._using(account) as rt:
            stats = getattr(rt.client, "stats", None)  # injected test clients may keep none
        if stats is None:
            return {}
        out: dict[str, int] = {}
        for kind in ("calls", "retries", "failures"):
            for name, count in getattr(stats, kind, {}).items():
                out[f"{kind}:{name}"] = int(count)
        return out

    @hookimpl
    def oms_sla_at_risk(self, account: Account, now: datetime) -> list[SlaRisk] | None:
        """Lines the host has that are due today, overdue or near Groupon's auto-cancel.

        Judged by :mod:`connector.ops.sla` on the account's business-day calendar (region
        holidays, closures, cut-off time and zone); CI's ``ship_by_date`` wins when present.
        """
        if account.channel != CHANNEL:
            return None
        if not isinstance(now, datetime) or now.utcoffset() is None:
            raise ValueError(
                f"oms_sla_at_risk needs a timezone-aware now (UTC preferred), got {now!r}"
            )
        with self._using(account) as rt:
            every = rows_from_ledger(rt.ledger, account)
        rows = [row for row in every if row["ledger_state"] in HOST_STATES]
        return risks_for_account(account, rows, now, scans_reported=scans_reported_in(every))

    @hookimpl
    def oms_channel_products(self, account: Account) -> list[ChannelProduct] | None:
        """Every Groupon SKU the account's imports have seen (see the hookspec)."""
        if account.channel != CHANNEL:
            return None
        mappings = self._mappings(account)
        with self._using(account) as rt:
            rows = rt.ledger.product_rows()
        return [_product(row, mappings) for row in rows]


def _product(
    row: tuple[str, str | None, str | None, str | None, str, int], mappings: Mappings
) -> ChannelProduct:
    """One catalogue entry from the latest line of a ``(sku, bom_sku)``."""
    sku, bom_sku, parsed, record, first_seen, count = row
    name, price = "", None
    if parsed:
        fields = json.loads(parsed)
        line = order_line_from_fields(fields)
        name, price = line.name, line.unit_price
    option = ""
    raw = json.loads(record) if record else None
    if isinstance(raw, dict):
        listed = raw.get("line_items")
        items: list[Any] = listed if isinstance(listed, list) else [raw]
        for item in items:
            if isinstance(item, dict) and item.get("sku") == sku:
                option = str(item.get("opp_name") or "")
                if not name:
                    name = str(item.get("name") or "")
                break
    components: tuple[SkuComponent, ...] = mappings.aliases.get(sku, ())
    return ChannelProduct(
        sku=sku,
        bom_sku=bom_sku,
        name=name,
        unit_price=price,
        option=option,
        host_skus=components,
        lines_seen=count,
        last_seen=datetime.fromisoformat(first_seen) if first_seen else None,
    )


def _carrier_event_problem(event: CarrierEvent, known: dict[int, LineRow]) -> str | None:
    """Why a reported carrier event cannot be recorded, or ``None`` when it can."""
    lid = event.ci_lineitemid
    if not isinstance(lid, int) or isinstance(lid, bool):
        return f"ci_lineitemid {lid!r} is not an integer"
    try:
        CarrierEventKind(event.kind)
    except ValueError:
        kinds = ", ".join(k.value for k in CarrierEventKind)
        return f"line {lid}: kind {event.kind!r} is not one of {kinds}"
    if not isinstance(event.at, datetime):
        return f"line {lid}: at {event.at!r} is not a datetime"
    if event.at.utcoffset() is None:
        return f"line {lid}: at {event.at.isoformat()} has no time zone; send aware UTC"
    line = known.get(lid)
    if line is None:
        return f"line {lid} is unknown to this account's ledger"
    if line.state not in HOST_STATES:
        return f"line {lid} was never handed to the host (ledger state {line.state!r})"
    return None


plugin = GrouponPlugin()
"""The entry-point object (``[project.entry-points.oms] groupon = "connector.plugin:plugin"``).

One per process: register :meth:`~GrouponPlugin.new_instance` (or :func:`new_plugin`) in each
plugin manager that must not share clients, ledgers and counters with another."""


def new_plugin(
    *,
    mappings_loader: MappingsProvider | Callable[[Account], Mappings] | None = None,
    clock: Callable[[], datetime] | None = None,
) -> GrouponPlugin:
    """A fresh Groupon plugin (a factory for hosts): its own clients, ledgers and counters.

    A host that supplies its own mapping tables registers it instead of the entry point::

        pm = get_plugin_manager(load_entrypoints=False)
        pm.register(new_plugin(mappings_loader=MyTables()), name="groupon")

    :param mappings_loader: a :class:`~connector.mappings.MappingsProvider` (default: the CSVs).
    :param clock: the current aware UTC time (default: the system clock).

    .. versionadded:: 0.2.0
    """
    return GrouponPlugin(mappings_loader=mappings_loader, clock=clock)
