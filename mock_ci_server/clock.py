"""The simulator's clock: real UTC time by default, settable and freezable for tests."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta


def _require_aware(dt: datetime) -> datetime:
    if dt.tzinfo is None or dt.utcoffset() is None:
        raise ValueError(f"datetime {dt.isoformat()} has no time zone; give an aware UTC datetime")
    return dt.astimezone(UTC)


class SimClock:
    """Simulated "now" (aware UTC).

    Running by default (real time plus an offset). ``set()`` and ``freeze()`` stop it, so a
    test sees exactly the time it asked for; ``advance()`` moves it either way; ``resume()``
    lets it run again from the current simulated time.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._frozen_at: datetime | None = None
        self._offset = timedelta(0)

    @staticmethod
    def _real_now() -> datetime:
        return datetime.now(UTC)

    def now(self) -> datetime:
        """Current simulated time, an aware UTC datetime."""
        with self._lock:
            if self._frozen_at is not None:
                return self._frozen_at
            return self._real_now() + self._offset

    @property
    def frozen(self) -> bool:
        """True while the clock does not follow real time."""
        with self._lock:
            return self._frozen_at is not None

    def set(self, dt: datetime) -> datetime:
        """Jump to ``dt`` (aware) and freeze there; returns the new now."""
        aware = _require_aware(dt)
        with self._lock:
            self._frozen_at = aware
            return aware

    def advance(self, delta: timedelta) -> datetime:
        """Move the clock by ``delta`` (may be negative); returns the new now."""
        with self._lock:
            if self._frozen_at is not None:
                self._frozen_at = self._frozen_at + delta
                return self._frozen_at
            self._offset += delta
            return self._real_now() + self._offset

    def freeze(self) -> datetime:
        """Stop the clock at the current simulated time."""
        with self._lock:
            if self._frozen_at is None:
                self._frozen_at = self._real_now() + self._offset
            return self._frozen_at

    def resume(self) -> datetime:
        """Let the clock follow real time again, from the current simulated time."""
        with self._lock:
            if self._frozen_at is not None:
                self._offset = self._frozen_at - self._real_now()
                self._frozen_at = None
            return self._real_now() + self._offset

    def reset(self) -> None:
        """Back to real time, unfrozen."""
        with self._lock:
            self._frozen_at = None
            self._offset = timedelta(0)
