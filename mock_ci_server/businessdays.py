"""Business-day arithmetic for the simulator (weekends and the region's public holidays)."""

from __future__ import annotations

import functools
from datetime import date, timedelta

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
