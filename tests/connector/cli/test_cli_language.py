"""One CLI language (issue 13): every command enumerated for --json and exit codes; the one
table renderer; 'did you mean'; Ctrl-C = 130; init, lookups, mappings init."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from connector.cli import main
from connector.cli.output import EXIT_CODES, money, render_table
from connector.testing.simulator import running_simulator

DOCS = Path(__file__).resolve().parents[3] / "docs" / "operations.md"


def leaf_commands() -> Iterator[tuple[str, click.Command]]:
    """Every runnable command of the CLI, as 'group sub' paths (generic: new ones are seen)."""
    ctx = click.Context(main)

    def walk(
        group: click.Group, prefix: str, gctx: click.Context
    ) -> Iterator[tuple[str, click.Command]]:
        for name in group.list_commands(gctx):
            command = group.get_command(gctx, name)
            assert command is not None, name
            path = f"{prefix} {name}".strip()
            if isinstance(command, click.Group):
                yield from walk(command, path, click.Context(command, parent=gctx))
            else:
                yield path, command

    yield from walk(main, "", ctx)


ALL = sorted(leaf_commands(), key=lambda item: item[0])


def test_the_enumeration_sees_every_command() -> None:
    names = {path for path, _ in ALL}
    assert {"sync", "status", "orders show", "orders list", "lines", "mappings init"} <= names
    for path, command in ALL:
        assert "(unavailable)" not in (command.help or ""), path


@pytest.mark.parametrize(("path", "command"), ALL, ids=[p for p, _ in ALL])
def test_every_data_command_speaks_json(path: str, command: click.Command) -> None:
    if getattr(command, "prints_no_data", False):  # @prints_no_data: a server, a worker loop
        pytest.skip("prints no data")
    options = {opt for param in command.params for opt in getattr(param, "opts", [])}
    assert "--json" in options or "--format" in options, f"{path}: no --json"
    fmt = next((p for p in command.params if "--format" in getattr(p, "opts", [])), None)
    if fmt is not None and isinstance(fmt.type, click.Choice) and "json" in fmt.type.choices:
        assert "--json" in options, f"{path}: --format json but no --json"


@pytest.mark.parametrize(("path", "command"), ALL, ids=[p for p, _ in ALL])
def test_usage_errors_exit_2(path: str, command: click.Command, tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main, ["--config", str(tmp_path / "none.toml"), *path.split(), "--no-such-option"]
    )
    assert result.exit_code == 2, (path, result.output)


def test_exit_codes_are_documented() -> None:
    text = DOCS.read_text(encoding="utf-8")
    section = text.split("## Exit codes", 1)[1]
    for code in EXIT_CODES:
        assert re.search(rf"^\|\s*`?{code}`?\s*\|", section, re.M), f"exit code {code} missing"


def test_mistyped_command_gets_a_suggestion() -> None:
    result = CliRunner().invoke(main, ["synk"])
    assert result.exit_code == 2
    assert "Did you mean 'sync'?" in result.output


def test_ctrl_c_exits_130_and_says_what_was_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    import connector.cli.plugins_cmd as plugins_cmd

    def interrupted(*_a: object, **_k: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(plugins_cmd, "get_plugin_manager", interrupted)
    result = CliRunner().invoke(main, ["plugins"])
    assert result.exit_code == 130
    assert "interrupted:" in result.output
    assert "kept" in result.output
    assert "Aborted!" not in result.output


def test_table_escapes_control_characters_and_aligns_numbers() -> None:
    text = render_table(
        ["Name", "QTY"], [["\x1b[31mEvil\x1b[0m\nforged row", 5], ["ok", 12345]], width=200
    )
    assert "\x1b" not in text
    assert "\\x1b[31mEvil" in text
    assert "\\nforged row" in text
    lines = text.splitlines()
    assert len(lines) == 3  # a line break in a cell cannot add a row
    assert lines[0].startswith("name")
    assert lines[1].endswith("    5")  # numbers right-aligned
    assert "[31m" in lines[1]  # shown, not interpreted as rich markup or colour


def test_table_fits_the_width_by_wrapping_text_not_numbers() -> None:
    reason = "courier 'Acme' has no Groupon carrier code for region US: " * 4
    text = render_table(["line", "reason"], [[612000001, reason]], width=60)
    assert max(len(line) for line in text.splitlines()) <= 60
    assert "612000001" in text


def test_money_uses_the_region_currency() -> None:
    assert money(1234.5, "US") == "$1,234.50"
    assert money(1234.5, "UK") == "£1,234.50"
    assert money(10, "DE") == "€10.00"
    assert money(None, "UK") == "-"


def test_init_from_simulator_writes_a_ready_config(tmp_path: Path) -> None:
    config = tmp_path / "connector.toml"
    with running_simulator("socket") as sim:
        sim.seed(orders=3)
        runner = CliRunner()
        result = runner.invoke(main, ["--config", str(config), "init", "--from-simulator", sim.url])
        assert result.exit_code == 0, result.output
        assert "export GROUPON_US_TOKEN=" in result.output
        assert sim.token not in config.read_text()
        env = {"GROUPON_US_TOKEN": sim.token}
        synced = runner.invoke(main, ["--config", str(config), "sync", "--json"], env=env)
        assert synced.exit_code == 0, synced.output
        payload = json.loads(synced.stdout)
        assert payload["accounts"][0]["orders_imported"] == 3
        again = runner.invoke(main, ["--config", str(config), "init", "--from-simulator", sim.url])
        assert again.exit_code == 2  # exists: usage error, nothing replaced
        # Lookups: what was imported, one order side by side, one line, an unknown line.
        listed = runner.invoke(main, ["--config", str(config), "orders", "list", "--json"])
        orders = json.loads(listed.stdout)["orders"]
        assert len(orders) == 3
        orderid = orders[0]["orderid"]
        shown = runner.invoke(
            main, ["--config", str(config), "orders", "show", orderid, "--ci", "--json"], env=env
        )
        assert shown.exit_code == 0, shown.output
        line = json.loads(shown.stdout)["lines"][0]
        assert line["ledger"]["state"] == "acked"
        assert line["host"]["status"] == "open"
        assert line["ci"]["live_status"] == "open"
        table = runner.invoke(main, ["--config", str(config), "lines", str(line["ci_lineitemid"])])
        assert table.exit_code == 0
        assert table.output.splitlines()[0].split()[:3] == ["account", "order", "line"]
        unknown = runner.invoke(main, ["--config", str(config), "lines", "1"])
        assert unknown.exit_code == 1
        assert "not in any ledger" in unknown.output


def test_init_from_a_dead_url_says_what_to_check(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main,
        ["--config", str(tmp_path / "c.toml"), "init", "--from-simulator", "http://127.0.0.1:1"],
    )
    assert result.exit_code == 1
    assert "cannot reach a simulator at http://127.0.0.1:1" in result.output


def test_sync_failure_names_base_url_and_progress_shows_retries(tmp_path: Path) -> None:
    config = tmp_path / "connector.toml"
    config.write_text(
        '[[accounts]]\nname = "us-main"\nsupplier_id = "90001"\n'
        'base_url = "http://127.0.0.1:1"\ntoken_env = "GROUPON_US_TOKEN"\n'
        "[accounts.options]\nmax_retries = 2\nbackoff_seconds = 0.01\n",
        encoding="utf-8",
    )
    result = CliRunner().invoke(
        main, ["--config", str(config), "sync"], env={"GROUPON_US_TOKEN": "t" * 31}
    )
    assert result.exit_code == 1
    assert "Check base_url of account 'us-main'" in result.output
    assert "connection refused by CI, retry 1/2" in result.output
    assert "Max retries exceeded" not in result.output.split("sync failed:")[1]


def test_sync_with_a_wrong_token_names_the_variable_and_supplier(tmp_path: Path) -> None:
    with running_simulator("socket") as sim:
        config = tmp_path / "connector.toml"
        CliRunner().invoke(main, ["--config", str(config), "init", "--from-simulator", sim.url])
        result = CliRunner().invoke(
            main, ["--config", str(config), "sync"], env={"GROUPON_US_TOKEN": "w" * 31}
        )
    assert result.exit_code == 1
    assert "$GROUPON_US_TOKEN" in result.output
    assert "supplier_id = '90001'" in result.output
    assert "w" * 31 not in result.output


def test_mappings_init_copies_the_shipped_csvs(tmp_path: Path) -> None:
    target = tmp_path / "maps"
    result = CliRunner().invoke(main, ["mappings", "init", str(target), "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert "couriers.csv" in payload["copied"]
    assert (target / "carriers" / "US.csv").is_file()
    (target / "couriers.csv").write_text("region,courier,service,carrier_code\n")
    again = CliRunner().invoke(main, ["mappings", "init", str(target)])
    assert "kept" in again.output
    assert (target / "couriers.csv").read_text() == "region,courier,service,carrier_code\n"
    check = CliRunner().invoke(main, ["mappings", "check", "--dir", str(target), "--json"])
    assert check.exit_code == 0, check.output
    assert json.loads(check.stdout)["valid"] is True


def test_sync_shows_each_503_retry_and_the_summary(tmp_path: Path) -> None:
    with running_simulator("socket") as sim:
        sim.seed(orders=3)
        config = tmp_path / "connector.toml"
        CliRunner().invoke(main, ["--config", str(config), "init", "--from-simulator", sim.url])
        text = config.read_text().replace(
            "[accounts.options]\n", "[accounts.options]\nmax_retries = 3\nbackoff_seconds = 0.01\n"
        )
        config.write_text(text)
        sim.set_faults([{"method": "GET", "path": "/api/*/get_orders", "status": 503, "count": 2}])
        result = CliRunner().invoke(
            main, ["--config", str(config), "sync"], env={"GROUPON_US_TOKEN": sim.token}
        )
    assert result.exit_code == 0, result.output
    assert "us-main: HTTP 503 from CI, retry 1/3" in result.output
    assert "us-main: HTTP 503 from CI, retry 2/3" in result.output
    assert "retried 2 call(s): 503 x2" in result.output


def _groups() -> list[tuple[str, click.Group]]:
    found: list[tuple[str, click.Group]] = [("", main)]
    ctx = click.Context(main)
    for name in main.list_commands(ctx):
        command = main.get_command(ctx, name)
        if isinstance(command, click.Group):
            found.append((name, command))
    return found


@pytest.mark.parametrize(("path", "group"), _groups(), ids=[p or "main" for p, _ in _groups()])
def test_every_group_suggests_a_close_command(path: str, group: click.Group) -> None:
    name = sorted(group.list_commands(click.Context(group)))[0]
    typo = name[:-1] + ("x" if name[-1] != "x" else "y")
    result = CliRunner().invoke(main, [*path.split(), typo])
    assert result.exit_code == 2, result.output
    assert f"Did you mean '{name}'" in result.output


def test_the_example_config_runs_against_a_default_simulator(tmp_path: Path) -> None:
    example = Path(__file__).resolve().parents[3] / "connector.example.toml"
    text = example.read_text(encoding="utf-8")
    assert 'base_url = "http://127.0.0.1:8000"' in text  # mock-ci-server's default address
    with running_simulator("socket") as sim:  # supplier 90001, as by default; a free port
        sim.seed(orders=20)
        config = tmp_path / "connector.toml"
        config.write_text(text.replace("http://127.0.0.1:8000", sim.url), encoding="utf-8")
        env = {"GROUPON_US_TOKEN": sim.token}  # the disabled uk account needs none
        result = CliRunner().invoke(main, ["--config", str(config), "sync", "--json"], env=env)
        assert result.exit_code == 0, result.output
        payload = json.loads(result.stdout)
        assert [a["account"] for a in payload["accounts"]] == ["us-main"]
        assert payload["failures"] == []
        status = CliRunner().invoke(main, ["--config", str(config), "status", "--json"], env=env)
        assert status.exit_code == 0, status.output


def test_status_reports_broken_mappings_and_exits_1(tmp_path: Path) -> None:
    maps = tmp_path / "maps"
    CliRunner().invoke(main, ["mappings", "init", str(maps)])
    (maps / "couriers.csv").write_text("region,courier,service,carrier_code\nUS,Acme,,nope\n")
    config = tmp_path / "connector.toml"
    config.write_text(
        f'[connector]\nmappings_dir = "{maps}"\n[[accounts]]\nname = "us-main"\n'
        'supplier_id = "90001"\ntoken_env = "GROUPON_US_TOKEN"\n',
        encoding="utf-8",
    )
    result = CliRunner().invoke(main, ["--config", str(config), "status"])
    assert result.exit_code == 1, result.output
    assert "mappings: 1 problem(s)" in result.output
    assert "couriers.csv:2" in result.output
    as_json = CliRunner().invoke(main, ["--config", str(config), "status", "--json"])
    assert json.loads(as_json.stdout)["accounts"][0]["mapping_problems"]


def test_prints_no_data_marks_a_command_for_the_enumeration() -> None:
    from connector.cli.output import prints_no_data

    @prints_no_data
    @click.command()
    def serve() -> None:
        """Serve until Ctrl-C."""

    assert getattr(serve, "prints_no_data", False) is True
    # Only the loops that serve or schedule: everything else prints data.
    servers = {p for p, c in ALL if getattr(c, "prints_no_data", False)}
    assert servers <= {"run", "worker", "dashboard"}, servers


def test_reconcile_and_lookups_say_what_to_check_when_ci_is_down(tmp_path: Path) -> None:
    with running_simulator("socket") as sim:
        sim.seed(orders=2)
        config = tmp_path / "connector.toml"
        CliRunner().invoke(main, ["--config", str(config), "init", "--from-simulator", sim.url])
        env = {"GROUPON_US_TOKEN": sim.token}
        CliRunner().invoke(main, ["--config", str(config), "sync"], env=env)
    # The simulator is gone: nothing answers at base_url any more.
    text = config.read_text().replace(
        "[accounts.options]\n", "[accounts.options]\nmax_retries = 1\nbackoff_seconds = 0.01\n"
    )
    config.write_text(text)
    for args in (["reconcile"], ["orders", "show", "1499000001", "--ci"]):
        result = CliRunner().invoke(main, ["--config", str(config), *args], env=env)
        assert result.exit_code == 1, (args, result.output)
        assert "Check base_url of account 'us-main'" in result.output, args


def test_progress_counts_pages_lines_and_orders_from_the_plugin_events() -> None:
    import logging

    from rich.progress import Progress

    from connector.cli.progress import SyncProgress
    from connector.progress import PROGRESS_LOGGER

    handler = SyncProgress(Progress(disable=True))
    handler.start("us-main")

    def page(number: int, pages: int, records: int) -> logging.LogRecord:
        record = logging.LogRecord(PROGRESS_LOGGER, logging.DEBUG, __file__, 1, "page", (), None)
        record.ci_progress = {"event": "page", "page": number, "pages": pages, "records": records}
        return record

    for number in (1, 2, 3):
        handler.emit(page(number, 3, 250))
    batch = logging.LogRecord(
        "connector.plugin", logging.INFO, __file__, 1,
        "account %s: %d order(s), %d held, %d cancellation(s)", ("us-main", 120, 0, 0), None,
    )  # fmt: skip
    handler.emit(batch)
    assert handler.figures["us-main"] == {"pages": 3, "of": 3, "lines": 750, "orders": 120}
    task = handler.progress.tasks[0]
    assert (task.completed, task.total) == (3, 3)
    assert "page 3/3" in task.description
    assert "750 lines read" in task.description
