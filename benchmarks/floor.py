"""The floor: the connector's HTTP calls made with plain ``requests`` and no processing.

* import floor: read every ``get_orders`` page (page 1 says how many), decode the JSON, keep
  only the line ids, then send ``mark_exported`` in batches of the connector's default
  ``ack_batch_size``. Every page is read before the first mark, as the connector must do:
  marking shifts the un-exported listing.
* dispatch floor: the ``tracking_notification`` calls of a shipment plan, one call per
  shipment (split at the connector's ``tracking_batch_size``), as the connector sends them
  through ``oms_dispatch``; for the batch hook (``oms_dispatch_many``, one call per wave of
  shipments) the same calls packed as the connector packs them: every item of the wave in
  order, ``tracking_batch_size`` items a call (:func:`packed_batches`).

The benchmarks run these in a child process, like the connector side.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

import requests

__all__ = [
    "ACK_BATCH",
    "TRACKING_BATCH",
    "dispatch_floor",
    "import_floor",
    "packed_batches",
    "tracking_batches",
]

ACK_BATCH = 100  # AccountOptions.ack_batch_size default
TRACKING_BATCH = 100  # AccountOptions.tracking_batch_size default
TIMEOUT = 60.0


def _checked(response: requests.Response) -> dict[str, Any]:
    body: dict[str, Any] = response.json()
    if response.status_code != 200 or body.get("success") is not True:
        raise RuntimeError(f"floor: HTTP {response.status_code}, reason {body.get('reason')!r}")
    return body


def import_floor(
    session: requests.Session, url: str, supplier_id: str, token: str, batch: int = ACK_BATCH
) -> dict[str, Any]:
    """Fetch every page, then mark every line exported; returns seconds, lines and calls, and
    ``read_seconds``: the part spent reading (until the last page was decoded)."""
    endpoint = f"{url}/api/v4"
    auth = {"supplier_id": supplier_id, "token": token}
    started = time.perf_counter()
    ids: list[int] = []
    pages, number = 1, 1
    while number <= pages:
        params = {**auth, "page": str(number)}
        body = _checked(session.get(f"{endpoint}/get_orders", params=params, timeout=TIMEOUT))
        if number == 1:
            pages = int(body["meta"]["no_of_pages"])
        ids.extend(item["ci_lineitemid"] for rec in body["data"] for item in rec["line_items"])
        number += 1
    read_seconds = time.perf_counter() - started
    marks = 0
    for start in range(0, len(ids), batch):
        chunk = json.dumps(ids[start : start + batch], separators=(",", ":"))
        data = {**auth, "ci_lineitem_ids": chunk}
        _checked(session.post(f"{endpoint}/mark_exported", data=data, timeout=TIMEOUT))
        marks += 1
    seconds = time.perf_counter() - started
    return {
        "seconds": seconds,
        "read_seconds": read_seconds,
        "lines": len(ids),
        "calls": {"get_orders": max(pages, 1), "mark_exported": marks},
    }


def tracking_batches(
    plan: Sequence[dict[str, Any]], carrier: str, batch: int = TRACKING_BATCH
) -> list[list[dict[str, Any]]]:
    """The ``tracking_info`` arrays the connector sends for a shipment plan: one per shipment,
    split at ``batch``; a line shipped in full carries no quantity."""
    calls: list[list[dict[str, Any]]] = []
    for shipment in plan:
        items = [
            {"carrier": carrier, "ci_lineitem_id": int(lid), "tracking": shipment["tracking"]}
            for lid, _qty in shipment["lines"]
        ]
        calls.extend(items[i : i + batch] for i in range(0, len(items), batch))
    return calls


def packed_batches(
    plan: Sequence[dict[str, Any]], carrier: str, wave: int, batch: int = TRACKING_BATCH
) -> list[list[dict[str, Any]]]:
    """The ``tracking_info`` arrays of ``oms_dispatch_many`` over ``plan`` in waves of
    ``wave`` shipments: per wave, every item in shipment order, ``batch`` items a call."""
    calls: list[list[dict[str, Any]]] = []
    for start in range(0, len(plan), max(1, wave)):
        items = [
            item for call in tracking_batches(plan[start : start + wave], carrier) for item in call
        ]
        calls.extend(items[i : i + batch] for i in range(0, len(items), batch))
    return calls


def dispatch_floor(
    session: requests.Session,
    url: str,
    supplier_id: str,
    token: str,
    calls: Sequence[Sequence[dict[str, Any]]],
) -> dict[str, Any]:
    """Send prepared ``tracking_notification`` calls; returns seconds, lines and calls."""
    endpoint = f"{url}/api/v4/tracking_notification"
    auth = {"supplier_id": supplier_id, "token": token}
    started = time.perf_counter()
    for items in calls:
        body = json.dumps(list(items), separators=(",", ":"))
        _checked(session.post(endpoint, data={**auth, "tracking_info": body}, timeout=TIMEOUT))
    seconds = time.perf_counter() - started
    return {
        "seconds": seconds,
        "lines": sum(len(items) for items in calls),
        "calls": {"tracking_notification": len(calls)},
    }
