"""Business-day arithmetic for the simulator (weekends and the region's public holidays), and
the one deadline rule Groupon's dates follow (``ship_by_date``, auto-cancel): see
:func:`due_at` and docs/simulator.md ("Deadlines")."""

from __future__ import annotations

import functools
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import holidays

# CI regions are country codes except the UK, which the holidays package calls GB.
_REGION_TO_COUNTRY = {"UK": "GB"}


def country_for_region(region: str) -> str:
    """ISO country code whose public holidays apply to a CI region."""
    upper = region.upper()
    return _REGION_TO_COUNTRY.get(upper, upper)


@functools.lru_cache(maxsize=256)
def _holidays_for(country: str, year: int) -> frozenset[date]:
    return frozenset(holidays.country_holidays(country, years=year).keys())


def is_business_day(day: date, region: str) -> bool:
    """Monday to Friday and not a public holiday of the region's country."""
    if day.weekday() >= 5:
        return False
    return day not in _holidays_for(country_for_region(region), day.year)


@functools.cache
def add_business_days(start: date, days: int, region: str) -> date:
    """The date ``days`` business days after ``start`` (``start`` itself does not count).

    Cached: a pure function of hashable arguments, called once per generated or seeded line.
    """
    if days < 0:
        raise ValueError(f"days must be >= 0, got {days}")
    current = start
    remaining = days
    while remaining > 0:
        current += timedelta(days=1)
        if is_business_day(current, region):
            remaining -= 1
    return current


# --- Groupon's deadlines ---------------------------------------------------------------------

#: An order placed before this local time on a business day starts its clock that day.
CUTOFF = time(17, 0)
#: Deadlines fall at this local time ("23:59 local of the next business day" in the capture).
DUE_TIME = time(23, 59)
#: Local zone of each CI region. IT is evidenced by the 2023 capture (Italian summer time
#: gives ``09:59PM UTC``); the US zone follows Groupon's "5 pm CST" vendor article; the rest
#: are the countries' own zones (assumed).
REGION_ZONES: dict[str, str] = {
    "US": "America/Chicago",
    "UK": "Europe/London",
    "GB": "Europe/London",
    "IE": "Europe/Dublin",
    "IT": "Europe/Rome",
    "DE": "Europe/Berlin",
    "FR": "Europe/Paris",
    "ES": "Europe/Madrid",
    "NL": "Europe/Amsterdam",
    "BE": "Europe/Brussels",
}


@functools.lru_cache(maxsize=32)
def zone_for_region(region: str) -> ZoneInfo:
    """The local zone whose clock Groupon's deadlines follow for a CI region."""
    name = REGION_ZONES.get(region.upper())
    if name is None:
        raise ValueError(f"no time zone known for region {region!r}")
    return ZoneInfo(name)


def start_day(order_time: datetime, region: str) -> date:
    """The local business day an order's clock starts on: the order's own day when it is a
    business day and the order came before :data:`CUTOFF`, else the next business day."""
    local = order_time.astimezone(zone_for_region(region))
    day = local.date()
    if is_business_day(day, region) and local.time() < CUTOFF:
        return day
    return add_business_days(day, 1, region)


def due_at(order_time: datetime, business_days: int, region: str) -> datetime:
    """:data:`DUE_TIME` local on the ``business_days``-th business day after the start day,
    as an aware UTC datetime (the UTC time follows daylight saving)."""
    day = add_business_days(start_day(order_time, region), business_days, region)
    return datetime.combine(day, DUE_TIME, tzinfo=zone_for_region(region)).astimezone(UTC)
