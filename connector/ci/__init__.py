"""CommerceInterface access: the HTTP client, its throttle and the tolerant payload schemas."""

from connector.ci.client import (
    CIClient,
    ClientStats,
    LineitemTrackingItem,
    OrdersPage,
    PageMeta,
    TrackingItem,
)
from connector.ci.schemas import ParsedRecord, RecordProblem, parse_ci_datetime, parse_record
from connector.ci.throttle import Throttle

__all__ = [
    "CIClient",
    "ClientStats",
    "LineitemTrackingItem",
    "OrdersPage",
    "PageMeta",
    "ParsedRecord",
    "RecordProblem",
    "Throttle",
    "TrackingItem",
    "parse_ci_datetime",
    "parse_record",
]
