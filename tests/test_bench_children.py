"""The benchmark's child processes: :class:`benchmarks.bench_import.SteppedChild`."""

from __future__ import annotations

import os
from collections.abc import Generator
from typing import Any

import pytest

from benchmarks.bench_import import ChildError, SteppedChild


def counting_steps(start: int, token: str) -> Generator[dict[str, Any], Any, None]:
    """Yields its pid once set up, then the running total of what it is sent; a negative
    number fails with the token in the message (the parent must not print it)."""
    total = start
    command = yield {"pid": os.getpid()}
    while True:
        if command < 0:
            raise ValueError(f"negative step {command} with token {token}")
        total += command
        command = yield {"total": total, "pid": os.getpid()}


def test_steps_run_in_one_child_that_keeps_its_state() -> None:
    with SteppedChild(counting_steps, start=10, token="tok-secret") as child:
        pid = child.ready["pid"]
        assert pid != os.getpid()
        assert child.send(5) == {"total": 15, "pid": pid}
        assert child.send(7) == {"total": 22, "pid": pid}


def test_a_failing_step_names_the_child_and_hides_the_token() -> None:
    with (
        SteppedChild(counting_steps, start=0, token="tok-secret") as child,
        pytest.raises(ChildError) as caught,
    ):
        child.send(-1)
    text = str(caught.value)
    assert "counting_steps failed: ValueError: negative step -1" in text
    assert "tok-secret" not in text
    assert "***" in text


def test_close_ends_the_child_process() -> None:
    child = SteppedChild(counting_steps, start=0, token="t")
    process = child._proc
    child.close()
    assert not process.is_alive()
    assert process.exitcode == 0


def failing_setup(token: str) -> Generator[dict[str, Any], Any, None]:
    raise RuntimeError(f"no simulator at all (token {token})")
    yield {}  # a generator: the error comes from its first step, as a failed set-up would


def test_a_failed_set_up_raises_with_its_reason() -> None:
    with pytest.raises(ChildError) as caught:
        SteppedChild(failing_setup, token="tok-secret")
    text = str(caught.value)
    assert "failing_setup failed: RuntimeError: no simulator at all" in text
    assert "tok-secret" not in text
