"""The Groupon channel plugin: pluggy hook implementations over the import/dispatch engine.

The entry point ``connector.plugin:plugin`` (group ``oms``) is the module attribute
:data:`plugin`. Every hook that takes an account returns ``None`` unless
``account.channel == "groupon"``, so other channels' plugins can sit beside it.

Per account (keyed by ``account.name``) the plugin keeps one CI client and one ledger; the
mapping CSVs are reloaded on every call so a fixed mapping takes effect on the next cycle.
Accounts never share state: each has its own ledger file, client and token.
"""

from __future__ import annotations

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
from connector.importer import Importer
from connector.ledger import HOST_STATES, Ledger, LineRow, open_ledger
from connector.ledger.identity import claim_host
from connector.mappings import Mappings, MappingsCache
from connector.models import (
    Account,
    CarrierEvent,
    CarrierEventKind,
    ChannelInfo,
    ConfigField,
    HeldLine,
    ImportBatch,
    LineOutcome,
    LineResult,
    Shipment,
    SlaRisk,
    StoredOrder,
)
from connector.ops.ledger_rows import rows_from_ledger
from connector.ops.sla import risks_for_account, scans_reported_in
from connector.preflight import TrackingChecker
from connector.runtime.identity import current_host
from connector.runtime.locks import AccountLock, FileAccountLock, lock_path

__all__ = ["CHANNEL", "CIPort", "GrouponPlugin", "MappingsUnavailable", "plugin"]

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


def _utcnow() -> datetime:
    return datetime.now(UTC)


class GrouponPlugin:
    """Hook implementations for the Groupon channel.

    :param client_factory: builds the CI client of an account (default
        ``CIClient.for_account``); tests inject fakes here.
    :param clock: returns the current aware UTC time (default: the system clock).
    :param mappings_loader: loads the mapping tables of an account for each call (default:
        :class:`~connector.mappings.MappingsCache`, which re-reads the CSVs only when one of
        them changed on disk).
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
        mappings_loader: Callable[[Account], Mappings] | None = None,
        ledger_factory: Callable[[Account], Ledger] | None = None,
        tracking_checker: TrackingChecker | None = None,
        lock_factory: Callable[[Account], AccountLock] | None = None,
    ) -> None:
        self._lock_factory = lock_factory or _default_lock
        self._exclusions: dict[str, tuple[Account, AccountLock]] = {}
        self._client_factory = client_factory or _default_client
        self._clock = clock or _utcnow
        self._mappings_cache = MappingsCache()
        self._mappings_loader = mappings_loader or (
            lambda a: self._mappings_cache.load(a.mappings_dir)
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

    def _mappings(self, account: Account) -> Mappings:
        try:
            return self._mappings_loader(account)
        except MappingError as exc:
            raise MappingsUnavailable(f"account {account.name}: {exc}") from None

    def _importer(self, rt: _Runtime, *, acks_only: bool = False) -> Importer:
        # Acknowledgements never look at the mapping tables, so a CSV an operator is half-way
        # through editing must not block them.
        mappings = _NO_MAPPINGS if acks_only else self._mappings(rt.account)
        return Importer(rt.account, rt.client, rt.ledger, mappings, self._clock)

    def _dispatcher(self, rt: _Runtime) -> Dispatcher:
        return Dispatcher(
            rt.account,
            rt.client,
            rt.ledger,
            self._mappings(rt.account),
            self._clock,
            self._tracking_checker,
        )

    def ledger_for(self, account: Account) -> Ledger:
        """The ledger of ``account`` (for the CLI and ops)."""
        with self._using(account) as rt:
            return rt.ledger

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
                    "partial_dispatch",
                    "cancellations",
                    "sla",
                    "held_lines",
                    "outbox",
                    "carrier_events",
                }
            ),
            config_fields=(
                ConfigField("supplier_id", "CI supplier id (one per country account)"),
                ConfigField(
                    "token_env", "environment variable holding the CI access token", secret=True
                ),
                ConfigField("region", "ISO country of the account", default="US"),
                ConfigField("api_version", "CI API version: v2 or v4", False, default="v4"),
                ConfigField(
                    "base_url",
                    "CI host",
                    False,
                    default="https://scm.commerceinterface.com",
                ),
                ConfigField("mappings_dir", "folder with the mapping CSVs", False),
            ),
        )

    @hookimpl
    def oms_import_orders(self, account: Account) -> ImportBatch | None:
        """Fetch, stage and hand over new orders (see the hookspec)."""
        if account.channel != CHANNEL:
            return None
        with self._using(account) as rt:
            batch = self._importer(rt).import_orders()
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
            return self._importer(rt, acks_only=True).mark_exported(stored)

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
            return self._dispatcher(rt).dispatch(shipment)

    @hookimpl
    def oms_flush_outbox(self, account: Account) -> list[LineResult] | None:
        """Retry queued acknowledgements and tracking; release fixed courier holds."""
        if account.channel != CHANNEL:
            return None
        with self._using(account) as rt:
            # Acks first and without the mapping tables: a broken CSV then only stops tracking.
            results = self._importer(rt, acks_only=True).flush_acks()
            return results + self._dispatcher(rt).flush()

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
            return rt.ledger.held_lines()

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
        with self._using(account) as rt:
            every = rows_from_ledger(rt.ledger, account)
        rows = [row for row in every if row["ledger_state"] in HOST_STATES]
        return risks_for_account(account, rows, now, scans_reported=scans_reported_in(every))


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
"""The entry-point object (``[project.entry-points.oms] groupon = "connector.plugin:plugin"``)."""
