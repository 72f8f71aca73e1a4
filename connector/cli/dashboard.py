"""``ci-connector dashboard``: serve the operator dashboard on 127.0.0.1 until Ctrl-C."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import click

from connector.cli import open_facade, select_accounts
from connector.cli.context import CliContext, say
from connector.cli.output import prints_no_data
from connector.cli.sla import parse_now


@prints_no_data  # a server: its data is at /data.json
@click.command()
@click.option(
    "--account",
    "account_name",
    default="all",
    show_default=True,
    metavar="NAME|all",
    help="Account to show, or 'all'.",
)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8765,
    show_default=True,
    help="Port on 127.0.0.1 (0 = pick a free one).",
)
@click.option(
    "--within",
    type=click.IntRange(min=0),
    default=2,
    show_default=True,
    help="Business days before auto-cancel that count as at risk.",
)
@click.option("--now", "now_text", metavar="ISO", help="Judge at this moment (default: now).")
@click.option(
    "--render",
    "render_to",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Write the page once to this HTML file and exit (no server).",
)
@click.pass_obj
def dashboard(
    obj: CliContext,
    account_name: str,
    port: int,
    within: int,
    now_text: str | None,
    render_to: Path | None,
) -> None:
    """Serve a small read-only web page: held lines with what to do, SLA risk on a timeline,
    the threshold cycle with its projected cap date, and the last syncs.

    Binds 127.0.0.1 only and prints the URL. Every page load reads the ledgers and the plugin
    afresh (the page also reloads itself every minute). Stop it with Ctrl-C (exit 0).

    \b
    Example:
      ci-connector dashboard --port 0
      dashboard: http://127.0.0.1:40313/  (Ctrl-C to stop)
      ci-connector dashboard --render dashboard.html --now 2026-11-25T16:00:00Z
    """
    from connector.dashboard.data import DashboardData, collect
    from connector.dashboard.server import DashboardServer, stylesheet

    config = obj.config()
    accounts = select_accounts(config, account_name)
    facade = open_facade()
    fixed_now = parse_now(now_text) if now_text else None

    def collector(_ignored: datetime | None = None) -> DashboardData:
        now = fixed_now or parse_now(None)
        return collect(accounts, config.data_dir, now, facade=facade, within=within)

    if render_to is not None:
        from connector.dashboard.render import render_page

        render_to.write_text(render_page(collector(), css=stylesheet()), encoding="utf-8")
        say(f"dashboard written to {render_to}")
        return
    try:
        server = DashboardServer(collector, port)
    except OSError as exc:
        raise click.ClickException(
            f"cannot listen on 127.0.0.1:{port}: {exc.strerror or exc}; "
            "try another --port, or --port 0 to pick a free one"
        ) from None
    say(f"dashboard: {server.url}  (Ctrl-C to stop)")
    try:
        server.wait()
    except KeyboardInterrupt:
        say("dashboard stopped")
    finally:
        server.stop()
