"""A typed, keyword-only facade over ``pm.hook`` (as tox's ``manager.Plugin`` is).

The host calls these methods, never ``pm.hook.*`` directly, so a misspelt hook or argument is
a mypy error rather than a silent ``None`` in production. Every per-account hook is
firstresult: ``None`` means no loaded plugin owns ``account.channel``, which the facade turns
into :class:`NoChannelPlugin`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TypeVar

import pluggy

from connector.errors import ChannelError
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

__all__ = ["ChannelFacade", "NoChannelPlugin"]

_T = TypeVar("_T")


class NoChannelPlugin(ChannelError):
    """No loaded plugin answered for the account's channel."""

    def __init__(self, message: str, *, channel: str, hook: str) -> None:
        super().__init__(message)
        self.channel = channel
        self.hook = hook


class ChannelFacade:
    """Typed entry points to the ``oms`` hooks of one plugin manager."""

    def __init__(self, pm: pluggy.PluginManager) -> None:
        self.pm = pm

    def channel_infos(self) -> list[ChannelInfo]:
        """Every loaded plugin's self-description (fan-out hook ``oms_channel_info``)."""
        return list(self.pm.hook.oms_channel_info())

    def channels(self) -> list[str]:
        """Names of the channels the loaded plugins serve, sorted."""
        return sorted(info.name for info in self.channel_infos())

    def import_orders(self, *, account: Account) -> ImportBatch:
        """New orders, held lines and cancellations for ``account`` (``oms_import_orders``)."""
        result: ImportBatch | None = self.pm.hook.oms_import_orders(account=account)
        return self._owned("oms_import_orders", account, result)

    def mark_exported(self, *, account: Account, stored: Sequence[StoredOrder]) -> list[LineResult]:
        """Acknowledge orders the host has committed (``oms_mark_exported``)."""
        result: list[LineResult] | None = self.pm.hook.oms_mark_exported(
            account=account, stored=list(stored)
        )
        return self._owned("oms_mark_exported", account, result)

    def confirm_cancellations(
        self, *, account: Account, ci_lineitemids: Sequence[int]
    ) -> list[LineResult]:
        result: list[LineResult] | None = self.pm.hook.oms_confirm_cancellations(
            account=account, ci_lineitemids=list(ci_lineitemids)
        )
        return self._owned("oms_confirm_cancellations", account, result)

    def dispatch(self, *, account: Account, shipment: Shipment) -> list[LineResult]:
        """Send a shipment's tracking to the channel (``oms_dispatch``)."""
        result: list[LineResult] | None = self.pm.hook.oms_dispatch(
            account=account, shipment=shipment
        )
        return self._owned("oms_dispatch", account, result)

    def dispatch_many(self, *, account: Account, shipments: Sequence[Shipment]) -> list[LineResult]:
        """Send many shipments in one call (``oms_dispatch_many``)."""
        result: list[LineResult] | None = self.pm.hook.oms_dispatch_many(
            account=account, shipments=list(shipments)
        )
        return self._owned("oms_dispatch_many", account, result)

    def void_shipment(self, *, account: Account, shipment_id: str, reason: str) -> VoidResult:
        """Withdraw what of a shipment was not sent yet (``oms_void_shipment``)."""
        result: VoidResult | None = self.pm.hook.oms_void_shipment(
            account=account, shipment_id=shipment_id, reason=reason
        )
        return self._owned("oms_void_shipment", account, result)

    def flush_outbox(self, *, account: Account, force: bool = False) -> list[LineResult]:
        """Retry queued acknowledgements and tracking (``oms_flush_outbox``); ``force``
        ignores the retry times."""
        result: list[LineResult] | None = self.pm.hook.oms_flush_outbox(
            account=account, force=force
        )
        return self._owned("oms_flush_outbox", account, result)

    def channel_products(self, *, account: Account) -> list[ChannelProduct]:
        """The channel's catalogue as seen so far (``oms_channel_products``)."""
        result: list[ChannelProduct] | None = self.pm.hook.oms_channel_products(account=account)
        return self._owned("oms_channel_products", account, result)

    def report_carrier_events(
        self, *, account: Account, events: Sequence[CarrierEvent]
    ) -> list[LineResult]:
        """Hand the channel the carrier scans and deliveries the host saw
        (``oms_report_carrier_events``); one result per event."""
        result: list[LineResult] | None = self.pm.hook.oms_report_carrier_events(
            account=account, events=list(events)
        )
        return self._owned("oms_report_carrier_events", account, result)

    def held_lines(self, *, account: Account) -> list[HeldLine]:
        """Lines the plugin holds for the operator (``oms_held_lines``)."""
        result: list[HeldLine] | None = self.pm.hook.oms_held_lines(account=account)
        return self._owned("oms_held_lines", account, result)

    def channel_stats(self, *, account: Account) -> dict[str, int]:
        """API traffic counters of the account's channel (``oms_channel_stats``).

        :raises NoChannelPlugin: no plugin answered: the channel is not loaded, or its plugin
            predates the hook. An unanswered call is never reported as "no traffic" (``{}``);
            a plugin that keeps no counters answers ``{}`` itself.
        """
        result: dict[str, int] | None = self.pm.hook.oms_channel_stats(account=account)
        return dict(self._owned("oms_channel_stats", account, result))

    def sla_at_risk(self, *, account: Account, now: datetime) -> list[SlaRisk]:
        """Lines whose Groupon deadline is near or past at ``now`` (``oms_sla_at_risk``)."""
        if now.tzinfo is None:
            raise ValueError(f"sla_at_risk needs an aware datetime, got naive {now.isoformat()}")
        result: list[SlaRisk] | None = self.pm.hook.oms_sla_at_risk(account=account, now=now)
        return self._owned("oms_sla_at_risk", account, result)

    def _owned(self, hook: str, account: Account, result: _T | None) -> _T:
        if result is None:
            loaded = ", ".join(name for name, _ in self.pm.list_name_plugin()) or "none"
            raise NoChannelPlugin(
                f"no plugin answers for channel {account.channel!r} "
                f"(account {account.name!r}, hook {hook}; loaded plugins: {loaded}). "
                "Check the account's channel in the config and OMS_LOAD_PLUGINS.",
                channel=account.channel,
                hook=hook,
            )
        return result
