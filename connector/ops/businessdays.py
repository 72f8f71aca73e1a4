"""Business-day arithmetic for Groupon's deadlines: weekends, public holidays, warehouse closures.

Holidays come from the ``holidays`` package (years are loaded lazily, on first use); extra
non-business dates come from the account's ``closures`` option. Which holidays Groupon itself
counts is not documented: we assume the region's *public* holidays (``holidays``' default
category, observed days included), which is what carriers close on. A bare ``GB``/``UK``
region gives the UK-wide holidays only; use ``GB-ENG`` (etc.) or ``closures`` for the rest.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, date, datetime, time, timedelta
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import holidays

from connector.errors import ConfigError

if TYPE_CHECKING:
    from connector.models import Account

__all__ = [
    "DUE_TIME",
    "BusinessCalendar",
    "calendar_for_account",
    "parse_closures",
    "parse_cutoff",
    "parse_timezone",
]

#: Local time of day Groupon's deadlines fall at (``ship_by_date`` in the 2023 capture).
DUE_TIME = time(23, 59)
# A calendar with no business day for this long is misconfigured; stop instead of looping.
_MAX_SCAN_DAYS = 3660
_ALIASES = {"UK": "GB"}


class BusinessCalendar:
    """Business days of one region: not a weekend day, not a public holiday, not a closure.

    :param region: ISO 3166 alpha-2 country code (``UK`` is accepted for ``GB``), optionally
        with a subdivision after a dash (``US-CA``, ``GB-ENG``).
    :param closures: extra non-business dates (e.g. warehouse closures from the config).
    :param weekend: weekday numbers that are never business days (Monday = 0).
    :raises connector.errors.ConfigError: unknown region or subdivision, or no business weekday.
    """

    def __init__(
        self,
        region: str,
        closures: Iterable[date] = (),
        weekend: Iterable[int] = (5, 6),
    ) -> None:
        country, _, subdiv = region.strip().upper().partition("-")
        country = _ALIASES.get(country, country)
        try:
            self._holidays = holidays.country_holidays(country, subdiv=subdiv or None)
        except NotImplementedError:
            raise ConfigError(
                f"region {region!r}: no holiday calendar for this code; use an ISO 3166 "
                "alpha-2 country code such as US or GB, optionally with a subdivision (US-CA)"
            ) from None
        self.region = f"{country}-{subdiv}" if subdiv else country
        self.closures: frozenset[date] = frozenset(closures)
        self.weekend: frozenset[int] = frozenset(weekend)
        if not self.weekend <= set(range(7)):
            raise ConfigError(f"weekend {sorted(self.weekend)}: weekday numbers must be 0-6")
        if len(self.weekend) == 7:
            raise ConfigError("weekend covers all seven days: there would be no business day")

    def __repr__(self) -> str:
        return (
            f"BusinessCalendar(region={self.region!r}, closures={len(self.closures)}, "
            f"weekend={sorted(self.weekend)})"
        )

    def holiday_name(self, d: date) -> str | None:
        """The public holiday's name on ``d``, ``"closure"`` for a configured closure, else None."""
        if d in self.closures:
            return "closure"
        name = self._holidays.get(d)
        return None if name is None else str(name)

    def is_business_day(self, d: date) -> bool:
        """True when ``d`` is neither a weekend day, a public holiday nor a closure."""
        return (
            d.weekday() not in self.weekend and d not in self.closures and d not in self._holidays
        )

    def next_business_day(self, d: date) -> date:
        """The first business day strictly after ``d``."""
        current = d
        for _ in range(_MAX_SCAN_DAYS):
            current += timedelta(days=1)
            if self.is_business_day(current):
                return current
        raise ConfigError(f"no business day within {_MAX_SCAN_DAYS} days after {d.isoformat()}")

    def roll_forward(self, d: date) -> date:
        """``d`` itself when it is a business day, else the next business day."""
        return d if self.is_business_day(d) else self.next_business_day(d)

    def add_business_days(self, d: date, n: int) -> date:
        """The ``n``-th business day after ``d``.

        ``n = 0`` rolls a non-business day forward to the next business day and keeps a
        business day. For ``n >= 1`` the count starts on the day after ``d``, so Saturday + 1
        is Monday (when Monday is a business day).

        :raises ValueError: ``n`` is negative.
        """
        if n < 0:
            raise ValueError(f"add_business_days: n must be >= 0, got {n}")
        if n == 0:
            return self.roll_forward(d)
        current = d
        for _ in range(n):
            current = self.next_business_day(current)
        return current

    def business_days_between(self, a: date, b: date) -> int:
        """How many business days lie in ``(a, b]``; 0 when ``b <= a``."""
        count = 0
        current = a + timedelta(days=1)
        while current <= b:
            if self.is_business_day(current):
                count += 1
            current += timedelta(days=1)
        return count

    def start_day(self, order_time_utc: datetime, cutoff: time, tz: ZoneInfo) -> date:
        """The local business day an order's clock starts on.

        An order placed on a business day before the cut-off starts that day; one placed at
        or after the cut-off, or on a non-business day, starts on the next business day.
        """
        local = _aware(order_time_utc, "order_time").astimezone(tz)
        day = local.date()
        if not self.is_business_day(day) or local.time() >= cutoff:
            return self.next_business_day(day)
        return day

    def deadline_after(
        self, order_time_utc: datetime, business_days: int, cutoff: time, tz: ZoneInfo
    ) -> datetime:
        """The cut-off time on the ``business_days``-th business day after the order's start day.

        Example (US, 17:00 America/Chicago, 1 business day): an order at 16:00 CT on Monday is
        due 17:00 CT Tuesday; an order at 18:00 CT on the Friday before a Monday holiday starts
        on Tuesday and is due 17:00 CT Wednesday.

        :returns: an aware UTC datetime.
        :raises ValueError: ``order_time_utc`` is naive or ``business_days`` is negative.
        """
        start = self.start_day(order_time_utc, cutoff, tz)
        day = self.add_business_days(start, business_days)
        return datetime.combine(day, cutoff, tzinfo=tz).astimezone(UTC)

    def due_at(
        self,
        order_time_utc: datetime,
        business_days: int,
        cutoff: time,
        tz: ZoneInfo,
        due_time: time = DUE_TIME,
    ) -> datetime:
        """Groupon's deadline: ``due_time`` (23:59) local on the ``business_days``-th business
        day after the order's start day (:meth:`start_day`, with ``cutoff``).

        This is the rule of the 2023 CI capture for ``ship_by_date`` (1 business day; orders
        after 17:00 local or on a non-business day one business day more; the UTC time follows
        daylight saving), and the simulator's auto-cancel rule (7 and 14 business days). The
        test ``tests/e2e/test_sla_truth.py`` holds both implementations to it hour by hour.

        Example (IT, 17:00 Europe/Rome, 1 business day): an order at 10:00 on Monday 2 Oct
        2023 is due Tuesday 23:59 CEST (21:59 UTC); one at 18:00 is due Wednesday 23:59.

        :returns: an aware UTC datetime.
        :raises ValueError: ``order_time_utc`` is naive or ``business_days`` is negative.
        """
        start = self.start_day(order_time_utc, cutoff, tz)
        day = self.add_business_days(start, business_days)
        return datetime.combine(day, due_time, tzinfo=tz).astimezone(UTC)


def _aware(value: datetime, name: str) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} {value.isoformat()} has no time zone; pass an aware UTC datetime")
    return value


def parse_cutoff(text: str) -> time:
    """``"HH:MM"`` -> :class:`datetime.time`; ConfigError naming the option otherwise."""
    try:
        hh, mm = text.strip().split(":")
        return time(int(hh), int(mm))
    except ValueError:
        raise ConfigError(f"option cutoff {text!r}: expected HH:MM, e.g. 17:00") from None


def parse_timezone(name: str) -> ZoneInfo:
    """IANA zone name -> :class:`zoneinfo.ZoneInfo`; ConfigError naming the option otherwise."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(
            f"option timezone {name!r}: not an IANA time zone, e.g. America/Chicago"
        ) from None


def parse_closures(values: Iterable[str]) -> frozenset[date]:
    """ISO dates from the ``closures`` option; ConfigError naming the bad value."""
    out: set[date] = set()
    for value in values:
        try:
            out.add(date.fromisoformat(str(value).strip()))
        except ValueError:
            raise ConfigError(f"option closures: {value!r} is not a date (YYYY-MM-DD)") from None
    return frozenset(out)


def calendar_for_account(account: Account) -> tuple[BusinessCalendar, time, ZoneInfo]:
    """The business calendar, cut-off time and zone configured for ``account``.

    :raises connector.errors.ConfigError: a bad region, cutoff, timezone or closure value.
    """
    opts = account.options
    try:
        calendar = BusinessCalendar(account.region, parse_closures(opts.closures))
        return calendar, parse_cutoff(opts.cutoff), parse_timezone(opts.timezone)
    except ConfigError as exc:
        raise ConfigError(f"account {account.name!r}: {exc}") from None
