"""connector.crashpoints: armed only by the environment, counts arrivals per point, SIGKILLs.

Every behaviour that kills or depends on the import-time environment runs in a subprocess.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from connector.crashpoints import ENV_VAR, POINTS, CrashpointSpecError, parse_spec

_SCRIPT = textwrap.dedent(
    """
    import sys
    from connector.crashpoints import POINTS, crashpoint, hits, target
    print("target", target(), flush=True)
    for i in range(1, 6):
        for other in POINTS:
            if other != "after_store":
                crashpoint(other)  # other names never count towards the armed point
        print("arrive", i, flush=True)
        crashpoint("after_store")
        print("hits", hits(), flush=True)
    print("survived", flush=True)
    """
)


def _run(spec: str | None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env.pop(ENV_VAR, None)
    if spec is not None:
        env[ENV_VAR] = spec
    return subprocess.run(
        [sys.executable, "-c", _SCRIPT], env=env, capture_output=True, text=True, timeout=60
    )


def test_unset_is_a_no_op() -> None:
    out = _run(None)
    assert out.returncode == 0, out.stderr
    assert "target None" in out.stdout
    assert out.stdout.strip().endswith("survived")
    assert "hits 0" in out.stdout


def test_empty_value_is_off() -> None:
    out = _run("  ")
    assert out.returncode == 0, out.stderr
    assert "survived" in out.stdout


def test_kills_on_the_nth_arrival_of_the_named_point() -> None:
    out = _run("after_store:3")
    assert out.returncode == -signal.SIGKILL
    lines = out.stdout.split("\n")
    assert "target ('after_store', 3)" in lines
    assert [ln for ln in lines if ln.startswith("arrive")] == ["arrive 1", "arrive 2", "arrive 3"]
    assert [ln for ln in lines if ln.startswith("hits")] == ["hits 1", "hits 2"]
    assert "survived" not in out.stdout


def test_occurrence_defaults_to_the_first_arrival() -> None:
    out = _run("after_store")
    assert out.returncode == -signal.SIGKILL
    assert "arrive 1" in out.stdout
    assert "hits" not in out.stdout


def test_an_occurrence_never_reached_does_not_kill() -> None:
    out = _run("after_store:6")
    assert out.returncode == 0, out.stderr
    assert "hits 5" in out.stdout
    assert "survived" in out.stdout


def test_unknown_point_is_refused_at_import_naming_the_variable() -> None:
    out = _run("after_stor:2")
    assert out.returncode == 1
    assert "CrashpointSpecError" in out.stderr
    assert f"{ENV_VAR}='after_stor:2'" in out.stderr
    assert "unknown crash point 'after_stor'" in out.stderr
    assert "after_store" in out.stderr  # the known names are listed


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("flush", ("flush", 1)),
        ("ack_sent:4", ("ack_sent", 4)),
        (" fetch_page:1 ", ("fetch_page", 1)),
    ],
)
def test_parse_spec_accepts(text: str, expected: tuple[str, int]) -> None:
    assert parse_spec(text) == expected


@pytest.mark.parametrize("text", ["flush:0", "flush:-1", "flush:x", "flush:", "nope:1", ":1"])
def test_parse_spec_refuses(text: str) -> None:
    with pytest.raises(CrashpointSpecError, match=ENV_VAR):
        parse_spec(text)


def test_every_point_is_documented() -> None:
    text = (Path(__file__).resolve().parents[2] / "docs" / "reliability.md").read_text("utf-8")
    missing = [name for name in POINTS if f"`{name}`" not in text]
    assert missing == []
    assert all(desc.strip() for desc in POINTS.values())
