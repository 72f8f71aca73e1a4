"""Deterministic order generator: records in the real CI v4 shape, one record per line item.

Everything comes from ``random.Random(seed)`` plus the id counters handed in, so the same seed
on a fresh simulator gives the same listing. Names and addresses are invented.
"""

from __future__ import annotations

import random
import uuid
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from mock_ci_server.businessdays import due_at

PAGE_SIZE = 250
CI_DATE_FORMAT = "%m/%d/%Y %I:%M%p UTC"


def format_ci_datetime(dt: datetime) -> str:
    """``MM/DD/YYYY hh:mmAM UTC`` as CI renders order and ship-by dates."""
    return dt.astimezone(UTC).strftime(CI_DATE_FORMAT)


def money(cents: int) -> int | float:
    """Stored money: an int when whole, else a 2-decimal float. The CI answer writes it as the
    capture does (``22.00``, zero as ``0``): see ``schemas.ci_money``."""
    if cents % 100 == 0:
        return cents // 100
    return round(cents / 100, 2)


@dataclass(frozen=True)
class Knobs:
    """What to generate. Ranges are inclusive (min, max)."""

    orders: int = 10
    lines_per_order: tuple[int, int] = (1, 1)
    quantity: tuple[int, int] = (1, 1)
    split_share: float = 0.0
    countries: tuple[str, ...] = ("US",)
    spread_hours: float = 48.0
    unmapped_share: float = 0.0

    def __post_init__(self) -> None:
        problems = []
        if self.orders < 0:
            problems.append(f"orders must be >= 0, got {self.orders}")
        for name in ("lines_per_order", "quantity"):
            low, high = getattr(self, name)
            if low < 1 or high < low:
                problems.append(f"{name} must be (min, max) with 1 <= min <= max, got {low, high}")
        for share in ("split_share", "unmapped_share"):
            if not 0.0 <= getattr(self, share) <= 1.0:
                problems.append(f"{share} must be within 0..1, got {getattr(self, share)}")
        unknown = [c for c in self.countries if c.upper() not in ADDRESSES]
        if not self.countries or unknown:
            problems.append(
                f"countries must be a non-empty list of {', '.join(sorted(ADDRESSES))}; "
                f"got {list(self.countries)}"
            )
        if self.spread_hours < 0:
            problems.append(f"spread_hours must be >= 0, got {self.spread_hours}")
        if problems:
            raise ValueError("; ".join(problems))


@dataclass
class IdCounters:
    """Monotonic id sources shared by every seeding of one simulator."""

    next_orderid: int = 1499000001
    next_ci_lineitemid: int = 612000001
    next_fulfillment_id: int = 1302200001


@dataclass
class GeneratedOrder:
    """One customer order: its records (one per line item) in listing order."""

    orderid: str
    order_date: datetime
    split: bool
    records: list[dict[str, Any]] = field(default_factory=list)
    units: int = 0
    sales_cents: int = 0


# --- invented reference data -------------------------------------------------------------

# (first names, last names, [(address1, city, state, zip)], phone prefix, VAT rate, units)
_CountryData = tuple[
    tuple[str, ...], tuple[str, ...], tuple[tuple[str, str, str | None, str], ...], str, float, bool
]

ADDRESSES: dict[str, _CountryData] = {
    "US": (
        ("Alex", "Jordan", "Casey", "Morgan", "Taylor", "Riley", "Jamie", "Avery"),
        ("Sample", "Example", "Tester", "Placeholder", "Mockley", "Dummett"),
        (
            ("100 Example Ave", "Springfield", "IL", "62701"),
            ("42 Test Street", "Madison", "WI", "53703"),
            ("7 Sample Road", "Austin", "TX", "78701"),
            ("550 Mock Blvd", "Portland", "OR", "97204"),
        ),
        "217-555-0",
        0.0,
        True,
    ),
    "UK": (
        ("Oliver", "Amelia", "Harry", "Isla", "George", "Ava"),
        ("Specimen", "Sampleton", "Trialby", "Fakeham"),
        (
            ("12 Example Lane", "Leeds", "West Yorkshire", "LS1 4AP"),
            ("3 Test Mews", "Bristol", "", "BS1 5TR"),
            ("88 Mock Road", "Kent", "KENT", "CT1 2EH"),
        ),
        "07700 900",
        0.20,
        False,
    ),
    "IT": (
        ("Giulia", "Marco", "Sara", "Luca", "Chiara", "Paolo"),
        ("Esempio", "Fittizio", "Prova", "Campione"),
        (
            ("Via dei Campioni 14", "Torino", "TO", "10121"),
            ("Piazza Modello 3", "Bologna", "BO", "40121"),
            ("Corso Prova 7", "Milano", "MI", "20121"),
        ),
        "333000",
        0.22,
        False,
    ),
    "FR": (
        ("Paul", "Claire", "Louis", "Emma"),
        ("Specimen", "Exemple", "Essai"),
        (("5 Rue de l'Essai", "Lyon", "", "69002"), ("9 Avenue Modele", "Paris", "", "75011")),
        "0600000",
        0.20,
        False,
    ),
    "DE": (
        ("Lena", "Jonas", "Mia", "Felix"),
        ("Muster", "Beispiel", "Probe"),
        (("Musterstrasse 1", "Berlin", "", "10115"), ("Beispielweg 22", "Hamburg", "", "20095")),
        "0151000",
        0.19,
        False,
    ),
    "ES": (
        ("Lucia", "Pablo", "Carmen"),
        ("Ejemplo", "Prueba"),
        (("Calle Falsa 123", "Madrid", "MADRID", "28013"),),
        "600000",
        0.21,
        False,
    ),
    "IE": (
        ("Aoife", "Sean"),
        ("Sampleton", "Testerly"),
        (("4 Example Quay", "Dublin", "DUBLIN", "D02 X285"),),
        "085000",
        0.23,
        False,
    ),
    "NL": (
        ("Sanne", "Daan"),
        ("Voorbeeld", "Proef"),
        (("Voorbeeldstraat 8", "Utrecht", "", "3511 AB"),),
        "0612000",
        0.21,
        False,
    ),
    "BE": (
        ("Louise", "Noah"),
        ("Exemple", "Proef"),
        (("Rue de l'Exemple 2", "Mons", "HAINAUT", "7000"),),
        "0470000",
        0.21,
        False,
    ),
}
ADDRESSES["GB"] = ADDRESSES["UK"]

# (name, sku, bom_sku, unit price cents, groupon cost cents, weight, (w, l, h), hts)
_PRODUCTS: tuple[tuple[str, str, str, int, int, str, tuple[str, str, str], str], ...] = (
    ("Glass food containers, 10-piece set", "8009990001112", "EXH-2001", 4999, 3045, "0.8",
     ("12.0", "20.0", "6.0"), "70134900"),
    ("Glass food containers, 4-piece set", "8009990001129", "EXH-2002", 2999, 1875, "0.8",
     ("12.0", "20.0", "6.0"), "70134900"),
    ("Silicone stretch lids, 6-pack", "8009990003338", "EXH-3005", 2450, 1420, "0.3",
     ("10.0", "10.0", "3.0"), "39241000"),
    ("Bamboo cutting board, large", "0012345678905", "BRD-L", 1999, 1100, "1.4",
     ("10.0", "15.0", "1.0"), "44191900"),
    ("Water filter cartridge, 12-pack", "0012345678912", "WF-12", 7500, 4800, "2.0",
     ("20.0", "30.0", "10.0"), "84219900"),
    ("Stainless steel water bottle", "0612345000017", "BTL-750", 1500, 850, "0.4",
     ("8.0", "8.0", "26.0"), "73239300"),
    ("LED desk lamp", "0612345000024", "LMP-01", 3495, 2100, "1.1",
     ("15.0", "40.0", "15.0"), "94052000"),
    ("Cotton bath towels, set of 4", "0612345000031", "TWL-4", 3999, 2200, "1.6",
     ("30.0", "40.0", "12.0"), "63026000"),
)  # fmt: skip

# A product outside the usual catalog, drawn with probability ``unmapped_share``: merchants'
# alias files rarely cover every SKU a new deal brings, and the demo shows such a line held.
UNLISTED_PRODUCT = (
    "Mystery gift box", "0000000099990", "DEMO-9999", 1299, 700, "0.5",
    ("10.0", "10.0", "10.0"), "95030000",
)  # fmt: skip
_CATALOG = (*_PRODUCTS, UNLISTED_PRODUCT)

_SHIPPING_CACHE: dict[tuple[int, bool], dict[str, Any]] = {}


def _shipping(product_index: int, imperial: bool) -> dict[str, Any]:
    """Shipping block for a product; shared between records (never mutated)."""
    key = (product_index, imperial)
    cached = _SHIPPING_CACHE.get(key)
    if cached is None:
        _, _, _, _, _, weight, (width, length, height), _ = _CATALOG[product_index]
        cached = {
            "product_dimension_unit": "inches" if imperial else "cm",
            "product_weight_unit": "pounds" if imperial else "kg",
            "product_weight": weight,
            "incoterms": "",
            "3PL_warehouse": "",
            "3PL_name": "",
            "product_width": width,
            "product_length": length,
            "carrier": "",
            "product_height": height,
            "method": "standard",
        }
        _SHIPPING_CACHE[key] = cached
    return cached


def _opp_id(rng: random.Random) -> str:
    alphabet = "ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz0123456789"
    return "006Xx0000" + "".join(rng.choice(alphabet) for _ in range(6))


def _ship_by(order_date: datetime, region: str) -> str:
    # The 2023 capture's rule (38 of 38 records): 23:59 local on the next business day after
    # the order's start day (orders after 17:00 local or on a non-business day start on the
    # next business day). See businessdays.due_at and docs/simulator.md.
    return format_ci_datetime(due_at(order_date, 1, region))


def generate_orders(
    *,
    seed: int,
    knobs: Knobs,
    now: datetime,
    supplier_name: str,
    region: str,
    ids: IdCounters,
) -> Iterator[GeneratedOrder]:
    """Yield ``knobs.orders`` orders, lazily so a caller can stop (e.g. at a suspension)."""
    rng = random.Random(seed)
    countries = [c.upper() for c in knobs.countries]
    opp_ids = [_opp_id(rng) for _ in range(len(_PRODUCTS))]
    opp_ids.append("006Xx00000UnLst")
    spread_minutes = int(knobs.spread_hours * 60)
    # Real order dates fall on quarter hours: the base is floored to one and offsets are
    # rounded down to whole quarters (same draws as before, so seeds keep their lists).
    base = now.astimezone(UTC).replace(second=0, microsecond=0)
    base -= timedelta(minutes=base.minute % 15)
    for _ in range(knobs.orders):
        country = rng.choice(countries)
        firsts, lasts, streets, phone_prefix, vat, imperial = ADDRESSES[country]
        name = f"{rng.choice(firsts)} {rng.choice(lasts)}"
        address1, city, state, zip_code = rng.choice(streets)
        # Always filled, as in every real 2023 record (billing phones stay "": also real).
        # The draws are those of the old optional phone, so earlier seeds keep their lists.
        draw = rng.random()
        number = rng.randrange(100, 1000) if draw < 0.7 else 100 + int(draw * 1000) % 900
        phone = f"{phone_prefix}{number}"
        address2 = rng.choice(("", "", "", "Apt 4", "c/o Reception"))
        iso = "GB" if country == "UK" else country
        billing = {
            "city": city,
            "state": state,
            "name": name,
            "zip": zip_code,
            "country": iso,
            "address1": address1,
            "address2": "",
            "phone": "",
        }
        customer = {
            "city": city,
            "state": state,
            "billing_address": billing,
            "invoice_url": "",
            "name": name,
            "zip": zip_code,
            "country": iso,
            "address1": address1,
            "address2": address2,
            "phone": phone,
        }
        offset = rng.randint(0, spread_minutes)
        order_date = base - timedelta(minutes=offset - offset % 15)
        date_text = format_ci_datetime(order_date)
        ship_by = _ship_by(order_date, region)
        orderid = str(ids.next_orderid)
        ids.next_orderid += 1
        n_lines = rng.randint(*knobs.lines_per_order)
        split = n_lines > 1 and rng.random() < knobs.split_share
        order = GeneratedOrder(orderid=orderid, order_date=order_date, split=split)
        for _ in range(n_lines):
            p = rng.randrange(len(_PRODUCTS))
            # Drawn only when asked for, so seeds without the knob keep their exact output.
            if knobs.unmapped_share and rng.random() < knobs.unmapped_share:
                p = len(_PRODUCTS)
            pname, sku, bom_sku, price, cost, weight, _dims, hts = _CATALOG[p]
            qty = rng.randint(*knobs.quantity)
            discount = rng.choice((0, 0, 0, 0, 225, 94))
            intrinsic = round((price - discount) / (1 + vat))
            line_id = ids.next_ci_lineitemid
            ids.next_ci_lineitemid += 1
            fulfillment_id = str(ids.next_fulfillment_id)
            ids.next_fulfillment_id += 1
            line_item = {
                "weight": weight,
                "bom_sku": bom_sku,
                "opp_name": f"Example deal - {pname.lower()}",
                "ci_lineitemid": line_id,
                "sku": sku,
                "custom_field_value": "" if imperial else "Merchant VAT responsible",
                "channel_sku_provided": "a0YXx00000KlMnO",
                "unit_price": money(price),
                "ship_by_date": ship_by,
                "kitting_details": f"Primary:1x{sku}",
                "status": "open",
                "intrinsic_value": money(intrinsic),
                "gg_account_number": "001Xx00000AbCdEAA1, 001Xx00000FgHiJAA2",
                "groupon_cost": money(cost),
                "discount": money(discount),
                "voucher_code": "",
                "permalink": opp_ids[p],
                "name": pname,
                "po_number": None,
                "fulfillment_lineitem_id": fulfillment_id,
                "hts_code": hts,
                "gift_message": "",
                "order_line_item_uuid": str(uuid.UUID(int=rng.getrandbits(128), version=1)),
                "coo": "",
                "quantity": qty,
            }
            record = {
                "orderid": orderid,
                "parent_orderid": None,
                # Per record, as in real 2023 data: this record's own sum, discount not deducted.
                "amount": {"total": money(price * qty), "shipping": 0},
                "date": date_text,
                "fulfillment_method": "Drop Ship (Marketplace)",
                "opp_id": opp_ids[p],
                "supplier": supplier_name,
                "line_items": [line_item],
                "customer": customer,
                "shipping": _shipping(p, imperial),
            }
            order.records.append(record)
            order.units += qty
            order.sales_cents += price * qty
        yield order


def listing_order(orders: list[GeneratedOrder]) -> list[dict[str, Any]]:
    """Records in listing order; a split order's later records sit >= PAGE_SIZE places after
    its first one (at the end when the listing is too short for that)."""
    out: list[dict[str, Any]] = []
    pending: deque[tuple[int, dict[str, Any]]] = deque()
    for order in orders:
        first, *rest = order.records
        out.append(first)
        if order.split:
            release_at = len(out) - 1 + PAGE_SIZE
            pending.extend((release_at, record) for record in rest)
        else:
            out.extend(rest)
        while pending and pending[0][0] <= len(out):
            out.append(pending.popleft()[1])
    out.extend(record for _, record in pending)
    return out
