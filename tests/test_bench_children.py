"""The benchmark's child processes: :class:`benchmarks.bench_import.SteppedChild` and
:func:`benchmarks.bench_import.run_child`, a stepped child of one step."""

from __future__ import annotations

import os
from collections.abc import Generator
from typing import Any

import pytest

from benchmarks.bench_import import ChildError, SteppedChild, run_child


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
    assert "counting_steps failed (exit code 0): ValueError: negative step -1" in text
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
    assert "failing_setup failed (exit code 0): RuntimeError: no simulator at all" in text
    assert "tok-secret" not in text


def child_result(value: int, token: str) -> dict[str, Any]:
    """A plain child function: one result, or a failure naming the token."""
    if value < 0:
        raise ValueError(f"negative value {value} with token {token}")
    return {"double": 2 * value, "pid": os.getpid()}


def test_run_child_returns_the_result_of_a_plain_function() -> None:
    result = run_child(child_result, value=21, token="tok-secret")
    assert result["double"] == 42
    assert result["pid"] != os.getpid()


def test_run_child_failure_names_the_function_and_hides_the_token() -> None:
    with pytest.raises(ChildError) as caught:
        run_child(child_result, value=-1, token="tok-secret")
    text = str(caught.value)
    assert "child_result failed (exit code 0): ValueError: negative value -1" in text
    assert "tok-secret" not in text
