"""What an operator does about a held line, per hold kind (shown beside the plugin's reason)."""

from __future__ import annotations

from connector.models import HoldKind

HINTS: dict[str, tuple[str, str]] = {
    HoldKind.UNMAPPED_SKU.value: (
        "Map the Groupon SKU to your product: add a row groupon_sku,host_sku,quantity to "
        "sku_aliases.csv in your mappings folder, check it, then sync again.",
        "ci-connector mappings check && ci-connector sync",
    ),
    HoldKind.UNMAPPED_COURIER.value: (
        "Map your courier/service to one of Groupon's approved carrier codes for the region "
        "in couriers.csv, then ship again.",
        "ci-connector mappings check",
    ),
    HoldKind.INVALID_PAYLOAD.value: (
        "CommerceInterface sent a record the connector cannot read (the reason names the "
        "field). Check the order in Groupon's supplier UI; report it to Groupon support "
        "with the order id if the data is wrong there.",
        "ci-connector status --json",
    ),
    HoldKind.PREFLIGHT.value: (
        "The shipment failed the connector's own checks (tracking number, carrier, "
        "quantity): correct it in your OMS as the reason says and ship it again.",
        "ci-connector status",
    ),
    HoldKind.REJECTED_BY_CI.value: (
        "CommerceInterface refused the tracking. Correct what the reason names and send it "
        "again, or upload it by hand in Groupon's supplier UI.",
        "ci-connector files tracking-upload --account NAME --out tracking.csv",
    ),
    HoldKind.AWAITING_HOST.value: (
        "The shipment came before the host confirmed storing the line (a crash between "
        "storing and acknowledging, or the line not imported yet). Nothing to fix: the next "
        "sync acknowledges the line and the outbox flush sends the tracking.",
        "ci-connector sync",
    ),
}
DEFAULT_HINT = ("Read the reason, fix the cause, then sync again.", "ci-connector status")


def hint_for(kind: str) -> tuple[str, str]:
    """(what to do, a command that helps) for a hold kind."""
    return HINTS.get(kind, DEFAULT_HINT)


__all__ = ["DEFAULT_HINT", "HINTS", "hint_for"]
