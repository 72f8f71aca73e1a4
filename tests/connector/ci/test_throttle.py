"""Token-bucket throttle: spacing, burst, off switch, thread safety, sharing per account."""

from __future__ import annotations

import threading
import time

import pytest

from connector.ci.throttle import Throttle, shared_throttle


class FakeTime:
    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(round(seconds, 6))
        self.now += seconds


def test_minimum_interval_at_rate() -> None:
    fake = FakeTime()
    throttle = Throttle(4, clock=fake.clock, sleep=fake.sleep)
    for _ in range(4):
        throttle.acquire()
    assert fake.slept == [0.25, 0.25, 0.25]


def test_idle_time_refills_but_not_beyond_burst() -> None:
    fake = FakeTime()
    throttle = Throttle(2, burst=2, clock=fake.clock, sleep=fake.sleep)
    throttle.acquire()
    throttle.acquire()
    fake.now += 100  # long idle: the bucket holds at most 2 tokens
    throttle.acquire()
    throttle.acquire()
    assert fake.slept == []
    throttle.acquire()
    assert fake.slept == [0.5]


def test_zero_rate_is_off() -> None:
    fake = FakeTime()
    throttle = Throttle(0, clock=fake.clock, sleep=fake.sleep)
    assert not throttle.enabled
    for _ in range(100):
        assert throttle.acquire() == 0.0
    assert fake.slept == []


def test_bad_burst_is_refused() -> None:
    with pytest.raises(ValueError):
        Throttle(1, burst=0)


def test_threads_share_the_budget() -> None:
    throttle = Throttle(100)
    stamps: list[float] = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(5):
            throttle.acquire()
            with lock:
                stamps.append(time.monotonic())

    threads = [threading.Thread(target=worker) for _ in range(4)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(stamps) == 20
    # 20 tokens at 100/s with a burst of 1: at least 19 intervals of 10 ms
    assert max(stamps) - started >= 0.19 - 0.005


def test_shared_throttle_is_one_bucket_per_key_and_rate() -> None:
    assert shared_throttle("https://ci|1", 5) is shared_throttle("https://ci|1", 5)
    assert shared_throttle("https://ci|1", 5) is not shared_throttle("https://ci|2", 5)
