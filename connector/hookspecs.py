"""The contract between a host OMS and its channel plugins.

A host builds a :class:`pluggy.PluginManager` named ``"oms"``, adds these specs, loads the
plugins registered under the entry-point group ``oms`` and calls the hooks **with keyword
arguments**. Plugins mark their implementations with :data:`hookimpl`
(``from connector import hookimpl``).

Calling modes
-------------
* ``oms_channel_info`` is *fan-out*: every plugin answers and the host receives a list.
* Every other hook takes an ``account`` and is *firstresult*: only the plugin that owns
  ``account.channel`` answers; every other plugin returns ``None``. The call stops at the first
  non-``None`` result. A result of ``None`` therefore means "no plugin owns this channel".

Channel ownership
-----------------
Each channel is owned by exactly one plugin in a manager: the ``name`` its
``oms_channel_info`` returns. A host registers plugins through a registration step that
refuses a second claimant of the same channel (the reference host raises
:class:`~connector.reference_host.plugins.PluginLoadError` naming both plugins); otherwise the
firstresult calls would silently go to whichever plugin pluggy calls first.

Evolution
---------
Specs only ever gain keyword arguments; an implementation may accept fewer arguments than its
spec declares, so older plugins keep working. Each hook says the version that added it
(``versionadded``) and what changed since (``versionchanged``). A hook or argument on its way
out is marked with pluggy's ``warn_on_impl`` / ``warn_on_impl_args``, so a plugin that still
implements it gets a :class:`DeprecationWarning` at registration. Version 0.2.0 ("contract
v2") only adds hooks and arguments; nothing is deprecated yet. See ``CHANGELOG.md``.

This module imports no implementation: the types below come from :mod:`connector.models`
for annotations only.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from connector.models import (
        Account,
        CarrierEvent,
        ChannelInfo,
        ChannelProduct,
        HeldLine,
        ImportBatch,
        LineResult,
        Shipment,
        SlaRisk,
        StoredOrder,
        VoidResult,
    )

PROJECT_NAME = "oms"
"""pluggy project name and entry-point group."""

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@hookspec
def oms_channel_info() -> ChannelInfo:
    """Describe the channel this plugin serves.

    :returns: the channel's name (``"groupon"`` for this package): the channel the plugin
        owns, claimed once per plugin manager; version, capabilities (e.g. ``"import"``,
        ``"mark_exported"``, ``"dispatch"``, ``"dispatch_many"``, ``"void_shipment"``,
        ``"partial_dispatch"``, ``"cancellations"``, ``"sla"``, ``"products"``), the fields of
        :meth:`connector.models.Account.from_values` an account needs, and the stock policy.
    :raises: nothing; a plugin that cannot describe itself is broken.

    Calling mode: fan-out; the host receives one :class:`~connector.models.ChannelInfo` per
    plugin.

    .. versionadded:: 0.1.0
    .. versionchanged:: 0.2.0
       ``config_fields`` match ``Account.from_values``; ``stock_policy`` added.
    """


@hookspec(firstresult=True)
def oms_import_orders(account: Account) -> ImportBatch | None:
    """Fetch the account's new orders from the channel, ready for the host to store.

    The plugin reads *every* page (staging page by page in its ledger) before it hands over
    anything, merges the records of one ``orderid`` (they may sit on different pages) into one
    :class:`~connector.models.Order` and applies SKU aliases. It does **not** acknowledge
    anything: the host must store the orders and then call :func:`oms_mark_exported`.

    Chunked delivery: one call hands over at most ``AccountOptions.max_orders_per_import``
    orders. When further orders are ready, the batch has ``more=True``: the host stores and
    acknowledges this batch, then **calls again while** ``more``. Orders still waiting from an
    earlier read are handed over from the ledger without reading the channel again; the
    channel is read again only when nothing deliverable is left (held lines and lines waiting
    for ``import_delay_minutes`` do not count). A host that ignores ``more`` loses nothing:
    its next call continues where this one stopped.

    A line the host has already confirmed is never returned again. A line returned but not
    yet confirmed (the host crashed, or refused it) is returned again after the next read of
    the channel (once the orders still waiting were handed over). Records of one order can
    also arrive in different reads (the listing moved between pages): then the same
    ``orderid`` comes back carrying only its new lines. So the host must store idempotently
    and **merge by line**: keyed on ``(account.name, orderid)`` for the order and on
    ``ci_lineitemid`` for its lines, adding lines it does not have yet to an order it has
    (skipping a known ``orderid`` whole would acknowledge lines it never stored).

    :param account: the account to import for.
    :returns: an :class:`~connector.models.ImportBatch` with up to ``max_orders_per_import``
        new orders, ``more`` (call again), ``held``: a **full snapshot** of the import-side
        holds at the end of the call (unmapped SKU, invalid payload: each with its reason; an
        order with a held line is held whole) that replaces the host's list, never a delta
        to append; and the lines Groupon cancelled after import that the host has not
        confirmed yet (see :func:`oms_confirm_cancellations`: a cancellation is reported again
        by every import until the host confirms it, so apply them idempotently); ``None`` if
        the account belongs to another channel. An order re-delivered with only its new lines
        carries as ``total`` the sum of the CI records those lines came in: add it to the
        stored order's total.
    :raises connector.errors.ChannelError: the channel could not be read (after the client's
        own retries); nothing was handed over or acknowledged (pages read so far stay staged;
        the next call reads the channel again).

    Calling mode: firstresult. Stops at the first non-``None`` result.

    .. versionadded:: 0.1.0
    .. versionchanged:: 0.2.0
       ``held`` is documented as a full snapshot; ``total`` on partial re-delivery documented.
    """


@hookspec(firstresult=True)
def oms_mark_exported(account: Account, stored: Sequence[StoredOrder]) -> list[LineResult] | None:
    """Acknowledge orders the host has **durably stored**.

    Call it only after the host's transaction committed. The plugin records the binding
    between CI line ids and the host's order id, then marks the lines exported in CI in
    batches. Dispatches held because they arrived before this acknowledgement
    (``awaiting_host``) are sent by the next :func:`oms_flush_outbox` call. A
    line already acknowledged is reported ``already_done``; a batch CI could not
    take (after retries) is reported ``queued`` and retried by :func:`oms_flush_outbox`.
    While CI answers, the plugin may evaluate the next chunk of orders for the next
    :func:`oms_import_orders` call (nothing for the host to do: that call hands it over).

    :param account: the account the orders came from.
    :param stored: one receipt per stored order, with the host's id for it.
    :returns: one :class:`~connector.models.LineResult` per line id in ``stored``;
        ``None`` if the account belongs to another channel.
    :raises connector.errors.ChannelError: the ledger could not be written.

    Calling mode: firstresult. Stops at the first non-``None`` result.

    .. versionadded:: 0.1.0
    .. versionchanged:: 0.2.0
       Acknowledging a line releases the dispatches that waited for it on the next call.
    .. versionchanged:: 0.5.0
       The next chunk of orders may be evaluated meanwhile (same results, sooner).
    """


@hookspec(firstresult=True)
def oms_confirm_cancellations(
    account: Account, ci_lineitemids: Sequence[int]
) -> list[LineResult] | None:
    """Confirm that the host has durably applied the cancellations an import reported.

    Until a cancellation is confirmed, every :func:`oms_import_orders` call reports it again,
    so a host that crashes between receiving and applying one loses nothing.

    :param account: the account the cancellations came from.
    :param ci_lineitemids: the ``ci_lineitemid`` of each cancellation the host applied (or
        deliberately kept open with a recorded reason) and committed.
    :returns: one :class:`~connector.models.LineResult` per id: ``accepted``, ``already_done``
        for one confirmed before, ``rejected`` for an id the plugin never reported as cancelled;
        ``None`` if the account belongs to another channel.
    :raises connector.errors.ChannelError: the ledger could not be written.

    Calling mode: firstresult. Stops at the first non-``None`` result.

    .. versionadded:: 0.1.0
    .. versionchanged:: 0.2.0
       Held dispatches of a cancelled line are superseded (by the next ``oms_held_lines``,
       ``oms_flush_outbox`` or dispatch call).
    """


@hookspec(firstresult=True)
def oms_dispatch(account: Account, shipment: Shipment) -> list[LineResult] | None:
    """Send a shipment's tracking to the channel, one result per (line, parcel).

    Pre-flight checks run before anything reaches Groupon: the line was imported and
    acknowledged (else the row is held ``awaiting_host`` and sent by the next flush after the
    acknowledgement); the host courier maps to a code on the account region's approved list;
    tracking numbers match their carrier's format; one tracking number is shared only by lines
    with identical ship-to addresses; quantities fit what is still open; an order carries at
    most six tracking numbers; cancelled lines get no tracking. Lines that pass go into a
    durable outbox and are sent at once (full lines through ``tracking_notification``, partial
    quantities through ``lineitem_tracking_notification``).

    ``shipment_id`` is the idempotency key: the same ``shipment_id`` with the same contents
    (courier, service, per parcel the tracking number and line quantities) changes nothing
    and reports each (line, parcel) as it stands (``already_done`` once accepted); the same
    ``shipment_id`` with other contents is ``rejected`` with a reason naming the difference,
    and nothing is sent. A held row of the same shipment is checked again.

    Hold lifecycle: a held or CI-rejected row is *superseded* (drops out of
    :func:`oms_held_lines`) as soon as its line is fully shipped by other rows or cancelled;
    the host withdraws a shipment with :func:`oms_void_shipment`.

    :param account: the account the lines belong to.
    :param shipment: the host's dispatch.
    :returns: one :class:`~connector.models.LineResult` per (line, parcel), with
        ``shipment_id`` set: ``accepted``, ``already_done``, ``rejected`` (CI refused it, or
        the shipment id was reused with other contents: reason given), ``held`` (failed
        pre-flight: reason given) or ``queued`` (transient failure, retried by
        :func:`oms_flush_outbox` from ``retry_at``); ``None`` if the account belongs to
        another channel.
    :raises connector.errors.ChannelError: the ledger could not be written.

    Calling mode: firstresult. Stops at the first non-``None`` result.

    .. versionadded:: 0.1.0
    .. versionchanged:: 0.2.0
       A reused ``shipment_id`` with other contents is rejected, never sent; results carry
       ``shipment_id`` and, when queued, ``retry_at``; holds are superseded automatically.
    """


@hookspec(firstresult=True)
def oms_dispatch_many(account: Account, shipments: Sequence[Shipment]) -> list[LineResult] | None:
    """Send many shipments' tracking in one call: the batch form of :func:`oms_dispatch`.

    Every shipment gets exactly the checks and identity rules of :func:`oms_dispatch`; the
    cross-line checks (quantity still open, one address per tracking number, six numbers per
    order) also see the other shipments of the call. The outbox rows are committed before
    any of them is sent, the tracking items of every shipment are packed into as few CI calls
    as ``tracking_batch_size`` allows (one call per endpoint and batch size, not one per
    shipment), and what CI accepted is recorded in a commit or a few. A host dispatching a
    wave of parcels should prefer it: it is several times faster than one call per shipment
    (see ``docs/engine.md``).

    With calls in flight (``ack_concurrency`` > 1), a call of more than
    ``tracking_batch_size`` items is stored and sent in parts of a few CI calls each, so
    CI answers one part while the next is checked; the calls and results are those of the
    whole call at once.

    :param account: the account the lines belong to.
    :param shipments: the host's dispatches, in any order; a ``shipment_id`` twice in one
        call is one shipment (``already_done`` for the copy), or ``rejected`` if the copies
        differ.
    :returns: one :class:`~connector.models.LineResult` per (line, parcel) of every
        shipment, shipment by shipment in the order given, each with its ``shipment_id``;
        ``None`` if the account belongs to another channel.
    :raises connector.errors.ChannelError: the ledger could not be written (nothing of the
        part being written was stored; earlier parts were, and go out with the next
        :func:`oms_flush_outbox`); send the call again: the shipments already stored answer
        ``already_done`` or ``queued``.

    Calling mode: firstresult. Stops at the first non-``None`` result.

    .. versionadded:: 0.2.0
    .. versionchanged:: 0.9.0
       Stored and sent in parts when calls may be in flight (was: one transaction).
    """


@hookspec(firstresult=True)
def oms_void_shipment(account: Account, shipment_id: str, reason: str) -> VoidResult | None:
    """Withdraw a shipment the host cancelled or replaced (e.g. a label voided at the carrier).

    Rows not sent yet (held, CI-rejected, pending, waiting for a retry) are taken out of the
    outbox and never sent; their quantity is open again for another shipment. Rows CI already
    accepted cannot be withdrawn (CI cannot edit tracking once sent) and are reported as such;
    rows being sent right now are reported ``in_flight``. The ``shipment_id`` stays used: the
    same id again is ``rejected``; dispatch the replacement under a new id.

    :param account: the account the shipment belongs to.
    :param shipment_id: the host's id of the shipment.
    :param reason: why (kept with the withdrawn rows for the operator).
    :returns: a :class:`~connector.models.VoidResult` (``found=False`` when the plugin never
        saw the shipment); ``None`` if the account belongs to another channel.
    :raises connector.errors.ChannelError: the ledger could not be written.

    Calling mode: firstresult. Stops at the first non-``None`` result.

    .. versionadded:: 0.2.0
    """


@hookspec(firstresult=True)
def oms_flush_outbox(account: Account, force: bool = False) -> list[LineResult] | None:
    """Retry whatever is queued for the account: acknowledgements and tracking that hit a
    transient failure, held dispatches whose courier mapping has since been fixed, and held
    dispatches that waited for the host's acknowledgement of their line.

    Queued tracking is retried from its ``retry_at`` (60 s after the first failure, doubling
    to one hour); a flush before then leaves it alone unless ``force``. Holds whose line is
    fully shipped or cancelled are superseded first.

    :param account: the account to flush.
    :param force: retry every queued row now, ignoring ``retry_at`` (e.g. the host knows the
        outage is over).
    :returns: one :class:`~connector.models.LineResult` per line attempted (possibly empty),
        ``queued`` ones with their next ``retry_at``; ``None`` if the account belongs to
        another channel.
    :raises connector.errors.ChannelError: the ledger could not be written.

    Calling mode: firstresult. Stops at the first non-``None`` result.

    .. versionadded:: 0.1.0
    .. versionchanged:: 0.2.0
       Added ``force``; releases ``awaiting_host`` holds; supersedes settled holds.
    """


@hookspec(firstresult=True)
def oms_report_carrier_events(
    account: Account, events: Sequence[CarrierEvent]
) -> list[LineResult] | None:
    """Report what the host's carrier tracking saw: movement scans and deliveries per line.

    The plugin records each event in its ledger; the SLA clock and the threshold guard read
    them: the first scan of a line is its first carrier movement (Groupon wants movement
    within 3 business days of the order), its first delivery ends its cycle time (Groupon wants
    at most 6 calendar days on average) and an order whose lines are all delivered counts as
    delivered for an expedited threshold review. Once an account has any event, a shipped line
    still without a scan 3 business days after its order counts as late movement.

    Reporting is idempotent: the same ``(ci_lineitemid, kind, at)`` again changes nothing, so
    a host may re-send everything its carrier feed returned. Later scans or deliveries of a
    line are kept but do not move its first scan or first delivery.

    :param account: the account the lines belong to.
    :param events: the carrier events, in any order; ``at`` must be timezone-aware.
    :returns: one :class:`~connector.models.LineResult` per event, in order: ``accepted``
        (recorded), ``already_done`` (recorded before) or ``rejected`` (reason given: a line the
        plugin never handed to the host, a naive ``at``, an unknown kind); ``None`` if the
        account belongs to another channel.
    :raises connector.errors.ChannelError: the ledger could not be written (nothing of the
        call was recorded; send it again).

    Calling mode: firstresult. Stops at the first non-``None`` result.

    .. versionadded:: 0.1.0
    """


@hookspec(firstresult=True)
def oms_held_lines(account: Account) -> list[HeldLine] | None:
    """List every line the plugin holds for the operator, with the reason and how to fix it.

    Import holds (unmapped SKU, invalid payload) and dispatch holds (pre-flight, rejected by
    CI, waiting for the host's acknowledgement). A dispatch hold is listed only while it
    still matters: never for a line that is fully shipped or cancelled (such holds are
    superseded when this hook runs) and never for a line the account does not know (those
    wait unlisted and are sent if the line is imported; ``ci-connector held list`` shows
    them and ``ci-connector held dismiss`` closes them).

    :param account: the account to report on.
    :returns: the held lines (possibly empty); ``None`` if the account belongs to another
        channel.

    Calling mode: firstresult. Stops at the first non-``None`` result.

    .. versionadded:: 0.1.0
    .. versionchanged:: 0.2.0
       Superseded holds and holds of unknown lines are no longer listed.
    """


@hookspec(firstresult=True)
def oms_channel_stats(account: Account) -> dict[str, int] | None:
    """Counters of the channel's API traffic for the account, since the plugin started.

    Keys are ``"<kind>:<name>"``: ``calls:<endpoint>`` (attempts per endpoint),
    ``retries:<reason>`` (the HTTP status such as ``503`` or ``429``, the transport failure
    such as ``ConnectionError`` or ``ReadTimeout``, or ``protocol`` for an answer that was not
    the channel's envelope) and ``failures:<error class>`` (calls that failed after retries).
    Counters only grow: a host reports what one sync retried, and why, by subtracting the
    reading taken before it.

    :param account: the account to report on.
    :returns: the counters (possibly empty); ``None`` if the account belongs to another
        channel.

    Calling mode: firstresult. Stops at the first non-``None`` result.

    .. versionadded:: 0.1.0
    """


@hookspec(firstresult=True)
def oms_sla_at_risk(account: Account, now: datetime) -> list[SlaRisk] | None:
    """Report lines whose Groupon deadline is due today, overdue, or close to auto-cancel.

    :param account: the account to check.
    :param now: the moment to judge against (timezone-aware, UTC preferred); hosts pass their
        clock.
    :returns: the at-risk lines (possibly empty); ``None`` if the account belongs to another
        channel.
    :raises ValueError: ``now`` is naive (no time zone); the message says so.

    Calling mode: firstresult. Stops at the first non-``None`` result.

    .. versionadded:: 0.1.0
    .. versionchanged:: 0.2.0
       A naive ``now`` raises a documented ``ValueError`` with a clear message.
    """


@hookspec(firstresult=True)
def oms_channel_products(account: Account) -> list[ChannelProduct] | None:
    """The channel's catalogue as seen so far, for the host's product sync.

    One entry per distinct Groupon ``(sku, bom_sku)`` the account's imports have seen, with
    the latest name, unit price and deal option, what the SKU maps to on the host (the
    ``sku_aliases`` mapping; empty when unmapped), how many lines carried it and when it was
    last seen. A host creates or matches its products from it, and finds the SKUs it still
    has to map before their orders are held.

    Stock: Groupon takes no stock feed (CommerceInterface has no inventory endpoint; a deal's
    quantity is managed in Groupon's merchant centre), so every entry has ``stock=None``,
    meaning *unlimited / not managed by the channel*, and ``oms_channel_info`` reports
    ``stock_policy="unlimited"``. A host must not wait for stock levels from this channel.

    :param account: the account whose catalogue to list.
    :returns: the products, sorted by SKU (possibly empty before the first import); ``None``
        if the account belongs to another channel.
    :raises connector.errors.ChannelError: the mapping tables could not be loaded.

    Calling mode: firstresult. Stops at the first non-``None`` result.

    .. versionadded:: 0.2.0
    """
