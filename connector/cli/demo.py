"""`ci-connector demo`: the whole cycle against an embedded simulator, explained."""

from __future__ import annotations

import logging
from pathlib import Path

import click

from connector.cli.context import emit_json, say


@click.command("demo")
@click.option(
    "--orders", type=click.IntRange(2, 100_000), default=40, show_default=True,
    help="Orders to seed into the simulator.",
)  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object with the figures.")
@click.option(
    "--keep", type=click.Path(file_okay=False, path_type=Path), default=None,
    help="Keep the ledger, host database and mappings in this folder (default: a temp folder).",
)  # fmt: skip
@click.pass_obj
def demo(obj: object, orders: int, as_json: bool, keep: Path | None) -> None:
    """Run one full cycle on an embedded CommerceInterface simulator and explain it.

    Starts the simulator on 127.0.0.1 (a free port), seeds orders (some split across pages,
    some with a SKU that has no alias), then drives the Groupon plugin through the reference
    host: import, acknowledge after the host committed, release a held order once its alias is
    added, dispatch with tracking (one line cancelled by Groupon, one unmapped courier), and
    report Groupon's cancellation back to the host. Needs no Groupon account and no config.

    \b
    Example:
      ci-connector demo --orders 200
      ci-connector demo --json | python -m json.tool
    """
    from connector.testing.simulator import MissingExtraError, require_extras

    try:
        require_extras("socket", "ci-connector demo")
    except MissingExtraError as exc:
        raise click.ClickException(str(exc)) from None
    from connector.demo import run_demo

    verbose = getattr(obj, "verbose", 0)
    if not verbose:
        # The story below already says what the plugin's warnings would (e.g. a rejection).
        logging.getLogger("connector").setLevel(logging.ERROR)
    from connector.cli.progress import sync_progress

    with sync_progress(enabled=not as_json) as progress:
        if progress is not None:
            progress.start("demo-us", max_retries=2, backoff=0.1)  # the demo account's values
        result = run_demo(orders, echo=None if as_json else say, keep_dir=keep)
    figures = result.figures
    if as_json:
        emit_json(figures)
    else:
        say("")
        say("Summary: " + ", ".join(f"{k}={v}" for k, v in figures.items() if k != "workdir"))
        if keep is None:
            say("(the demo's temporary folder was removed; --keep DIR keeps its files)")
    ok = figures["duplicates"] == 0 and figures["orders_imported"] == figures["orders_seeded"]
    if not ok:
        raise SystemExit(1)
