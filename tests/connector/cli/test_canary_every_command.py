"""A canary token through every `ci-connector` command and error path never reaches output,
logs or exception text (CI and GPN, SEC1 and SEC2)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from connector.cli import main
from connector.testing.simulator import SimulatorHandle, running_simulator

CANARY = "CanaryEveryCmd0123456789abcdefA"
GPN_CANARY = "CanaryGpnSecret0123456789abcdef"


@pytest.fixture
def sim() -> Iterator[SimulatorHandle]:
    with running_simulator("socket", token=CANARY) as handle:
        handle.seed(orders=6, lines_per_order=(1, 2))
        handle.state.gpn.add_client("aff-canary", GPN_CANARY)
        yield handle


@pytest.fixture
def config(sim: SimulatorHandle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("CANARY_CI_TOKEN", CANARY)
    monkeypatch.setenv("CANARY_GPN_TOKEN", GPN_CANARY)
    monkeypatch.delenv("CI_CONNECTOR_CONFIG", raising=False)
    path = tmp_path / "connector.toml"
    path.write_text(
        f'[connector]\ndata_dir = "data"\n\n'
        f'[[accounts]]\nname = "us"\nchannel = "groupon"\nsupplier_id = "{sim.supplier_id}"\n'
        f'region = "US"\nbase_url = "{sim.url}"\ntoken_env = "CANARY_CI_TOKEN"\n\n'
        f"[accounts.options]\nmax_retries = 1\nbackoff_seconds = 0.01\n\n"
        f'[gpn]\nclient_id = "aff-canary"\ntoken_env = "CANARY_GPN_TOKEN"\n'
        f'base_url = "{sim.url}"\n',
        encoding="utf-8",
    )
    return path


COMMANDS: list[list[str]] = [
    ["sync"],
    ["sync", "--json"],
    ["status"],
    ["status", "--json"],
    ["mappings", "check"],
    ["plugins", "--json"],
    ["sla"],
    ["sla", "--format", "json"],
    ["threshold", "--format", "csv"],
    ["reconcile"],
    ["reconcile", "--json", "--fix"],
    ["files", "tracking-upload", "--account", "us", "--out", "{tmp}/upload.csv"],
    ["held", "list"],
    ["held", "list", "--closed", "--json"],
    ["products"],
    ["products", "--json"],
    ["gpn", "transactions", "--from", "2026-11-01", "--to", "2026-11-20"],
    ["gpn", "transactions", "--from", "2026-11-01", "--to", "2026-11-20", "--auth", "sec1"],
    ["orders", "list"],
    ["orders", "show", "1499000001", "--ci"],
    ["lines", "612000001", "--ci", "--json"],
    ["mappings", "check", "--json"],
    ["threshold", "--json"],
]


def _run(config: Path, args: list[str], caplog: pytest.LogCaptureFixture) -> str:
    args = [a.replace("{tmp}", str(config.parent)) for a in args]
    result = CliRunner().invoke(main, ["--config", str(config), "-vv", *args])
    parts = [result.output, caplog.text]
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        parts += [str(result.exception), repr(result.exception)]
    return "\n".join(parts)


@pytest.mark.parametrize("args", COMMANDS, ids=lambda a: " ".join(a[:3]))
def test_canary_absent_on_success_paths(
    config: Path, args: list[str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    CliRunner().invoke(main, ["--config", str(config), "sync"])  # data for the readers
    text = _run(config, args, caplog)
    assert text.strip()  # the command said something
    if args[0] in ("sync", "reconcile"):
        assert "token=***" in text  # URLs were logged at -vv, redacted: the check has teeth
    assert CANARY not in text
    assert GPN_CANARY not in text


@pytest.mark.parametrize(
    ("args", "breakage"),
    [
        (["sync"], "wrong-token"),
        (["reconcile"], "wrong-token"),
        (["sync", "--json"], "ci-down"),
        (["sync"], "html"),
        (["gpn", "transactions", "--from", "2026-11-01", "--to", "2026-11-20"], "wrong-token"),
        (
            ["gpn", "transactions", "--from", "2026-11-01", "--to", "2026-11-20", "--auth", "sec1"],
            "wrong-token",
        ),
        (["gpn", "transactions", "--from", "2026-11-01", "--to", "2026-11-20"], "ci-down"),
        (["orders", "show", "1499000001", "--ci"], "wrong-token"),
        (["lines", "612000001", "--ci"], "ci-down"),
    ],
)
def test_canary_absent_on_error_paths(
    config: Path,
    sim: SimulatorHandle,
    args: list[str],
    breakage: str,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    caplog.set_level(logging.DEBUG)
    if breakage == "wrong-token":
        # A wrong token is still a secret: the canary reversed must not show either.
        monkeypatch.setenv("CANARY_CI_TOKEN", CANARY[::-1])
        monkeypatch.setenv("CANARY_GPN_TOKEN", GPN_CANARY[::-1])
    elif breakage == "ci-down":
        sim.set_faults([{"method": "*", "path": "/*", "status": 503}])
    else:
        page = f"<html><body>proxy error for token={CANARY}</body></html>"
        sim.set_faults([{"method": "GET", "path": "/api/*", "status": 200, "body": page}])
    result = CliRunner().invoke(main, ["--config", str(config), "-vv", *args])
    assert result.exit_code != 0, result.output
    text = _run(config, args, caplog) + result.output
    for secret in (CANARY, GPN_CANARY, CANARY[::-1], GPN_CANARY[::-1]):
        assert secret not in text
