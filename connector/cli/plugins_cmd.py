"""``ci-connector plugins``: which channel plugins are installed and loaded."""

from __future__ import annotations

import click

from connector.cli import render_table
from connector.cli.context import emit_json, say
from connector.reference_host.plugins import ALLOW_ENV, get_plugin_manager, list_plugins


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
def plugins(as_json: bool) -> None:
    """List the loaded channel plugins with their versions and hooks.

    Plugins come from the 'oms' entry-point group; OMS_LOAD_PLUGINS (comma list of names)
    restricts which load. Exits 1 if an installed plugin failed to load.

    \b
    Example:
      ci-connector plugins
      OMS_LOAD_PLUGINS=groupon ci-connector plugins --json
    """
    pm = get_plugin_manager()
    infos = list_plugins(pm)
    errors = [str(e) for e in pm.load_errors]
    if as_json:
        emit_json({"ok": not errors, "plugins": [i.to_dict() for i in infos], "errors": errors})
    else:
        if infos:
            say(
                render_table(
                    ["name", "dist", "version", "hooks"],
                    [[i.name, i.dist or "-", i.version or "-", ", ".join(i.hooks)] for i in infos],
                )
            )
        else:
            say(f"no channel plugins loaded (check {ALLOW_ENV} and the installed packages)")
        for error in errors:
            say(f"error: {error}", err=True)
    if errors:
        raise click.exceptions.Exit(1)
