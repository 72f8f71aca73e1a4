"""``ci-connector``: the operator CLI. One module per command (group); loaded lazily.

Exit codes (:mod:`connector.cli.output`): 0 ok, 1 problems found (or an operation failed),
2 usage error, 130 interrupted. Tables, ``--json``/``--format`` and exit codes come from
:mod:`connector.cli.output`, the one output language of every command.
"""

from __future__ import annotations

import dataclasses
import enum
import importlib
import logging
import sys
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from connector import __version__
from connector.cli.context import CONFIG_ENV, DEFAULT_CONFIG, CliContext, say
from connector.cli.output import EXIT_INTERRUPTED, INTERRUPTED_NOTE, SuggestingGroup
from connector.cli.output import render_table as _render_table
from connector.runtime.identity import OPERATOR, acting_as
from connector.secrets import install_log_redaction, redact

if TYPE_CHECKING:
    from connector.config import ConnectorConfig
    from connector.models import Account
    from connector.reference_host.facade import ChannelFacade

__all__ = ["COMMANDS", "main", "open_facade", "render_table", "select_accounts", "to_jsonable"]

# ------------------------------------------------------------------------------------------
# COMMAND REGISTRY: (command name, module, attribute). Each module is imported only when its
# command runs (or when --help lists it), so one broken command cannot break the others.
# The lead adds the other groups here: gpn, sla, threshold, demo, reconcile, files.
# ------------------------------------------------------------------------------------------
COMMANDS: tuple[tuple[str, str, str], ...] = (
    ("sync", "connector.cli.sync", "sync"),
    ("status", "connector.cli.status", "status"),
    ("mappings", "connector.cli.mappings_cmd", "mappings"),
    ("plugins", "connector.cli.plugins_cmd", "plugins"),
    ("gpn", "connector.cli.gpn", "gpn"),
    ("sla", "connector.cli.sla", "sla"),
    ("threshold", "connector.cli.threshold", "threshold"),
    ("demo", "connector.cli.demo", "demo"),
    ("reconcile", "connector.cli.reconcile", "reconcile"),
    ("files", "connector.cli.files", "files"),
    ("held", "connector.cli.held", "held"),
    ("products", "connector.cli.products", "products"),
    ("run", "connector.cli.run", "run"),
    ("prune", "connector.cli.prune", "prune"),
    ("hand-over", "connector.cli.hand_over", "hand_over"),
    ("init", "connector.cli.init_cmd", "init"),
    ("orders", "connector.cli.lookup", "orders"),
    ("lines", "connector.cli.lookup", "lines"),
    ("dashboard", "connector.cli.dashboard", "dashboard"),
    ("worker", "connector.cli.worker", "worker"),
)


class LazyGroup(SuggestingGroup):
    """A group whose subcommands come from :data:`COMMANDS`, imported on first use."""

    def __init__(self, *args: Any, lazy: Sequence[tuple[str, str, str]], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._lazy = {name: (module, attr) for name, module, attr in lazy}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self._lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self._lazy:
            module_name, attr = self._lazy[cmd_name]
            try:
                command = getattr(importlib.import_module(module_name), attr)
            except (ImportError, AttributeError) as exc:
                return _unavailable(cmd_name, module_name, exc)
            if not isinstance(command, click.Command):
                return _unavailable(cmd_name, module_name, TypeError(f"{attr} is not a command"))
            return command
        return super().get_command(ctx, cmd_name)

    def invoke(self, ctx: click.Context) -> Any:
        """Ctrl-C ends with exit code 130 and says what was kept, instead of "Aborted!" and 1."""
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            note = getattr(ctx.obj, "interrupt_note", None) or INTERRUPTED_NOTE
            click.echo(f"\ninterrupted: {note}", err=True)
            raise click.exceptions.Exit(EXIT_INTERRUPTED) from None


def _unavailable(name: str, module: str, exc: Exception) -> click.Command:
    """A stand-in that explains why a command could not be loaded, instead of a traceback."""
    message = f"command {name!r} is unavailable: {module} failed to load: {exc}"

    def fail() -> None:
        raise click.ClickException(redact(message))

    return click.Command(name, callback=fail, help=f"(unavailable) {message}")


@click.group(
    cls=LazyGroup,
    lazy=COMMANDS,
    context_settings={"help_option_names": ["-h", "--help"]},
)
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path, dir_okay=False),
    envvar=CONFIG_ENV,
    default=DEFAULT_CONFIG,
    show_default=True,
    help=f"Connector configuration file (TOML). Also read from ${CONFIG_ENV}.",
)
@click.option("-v", "--verbose", count=True, help="Log to stderr: -v info, -vv debug.")
@click.version_option(__version__, prog_name="ci-connector")
@click.pass_context
def main(ctx: click.Context, config_path: Path, verbose: int) -> None:
    """Sell on Groupon Goods from your OMS through CommerceInterface.

    \b
    Example:
      export GROUPON_US_TOKEN=...        # the config names the variable, never the token
      ci-connector --config connector.toml sync --account us-main
      ci-connector status --json
    """
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(
        level=level, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger().setLevel(level)
    install_log_redaction()
    ctx.obj = CliContext(config_path=config_path, verbose=verbose)
    # Operator commands never claim an account's ledger for a host; `sync`/`run` act as the
    # reference host inside (their own acting_as wins).
    ctx.with_resource(acting_as(OPERATOR))


# ------------------------------------------------------------------------------------------
# Helpers shared by the command modules.
# ------------------------------------------------------------------------------------------


def select_accounts(config: ConnectorConfig, name: str) -> list[Account]:
    """``all`` -> every account in the config; otherwise the named one (clean error if none)."""
    from connector.errors import ConfigError

    if name == "all":
        if not config.accounts:
            where = config.path or "the configuration"
            raise click.ClickException(f"{where}: no [[accounts]] configured")
        return list(config.accounts)
    try:
        return [config.account(name)]
    except ConfigError as exc:
        raise click.ClickException(redact(str(exc))) from None


def open_facade() -> ChannelFacade:
    """Load the installed channel plugins (honouring ``OMS_LOAD_PLUGINS``) behind the typed
    facade; plugins that fail to load are reported on stderr and left out."""
    from connector.reference_host.facade import ChannelFacade
    from connector.reference_host.plugins import get_plugin_manager

    pm = get_plugin_manager()
    for error in pm.load_errors:
        say(f"warning: {error}", err=True)
    return ChannelFacade(pm)


def to_jsonable(value: Any) -> Any:
    """Dataclasses, enums, datetimes, paths and sets -> plain JSON values."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        items = [to_jsonable(v) for v in value]
        return sorted(items) if isinstance(value, set | frozenset) else items
    return value


def render_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """The one table renderer (see :func:`connector.cli.output.render_table`)."""
    return _render_table(headers, rows)
