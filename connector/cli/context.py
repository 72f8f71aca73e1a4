"""State shared by every `ci-connector` command: where the config is, and output mode."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from connector.secrets import redact

if TYPE_CHECKING:
    from connector.config import ConnectorConfig

DEFAULT_CONFIG = Path("connector.toml")
CONFIG_ENV = "CI_CONNECTOR_CONFIG"


@dataclass
class CliContext:
    """Carried in ``click.Context.obj``; commands get it with ``@click.pass_obj``."""

    config_path: Path = DEFAULT_CONFIG
    verbose: int = 0
    # What a Ctrl-C keeps, said on exit 130; a long-running command sets a precise one.
    interrupt_note: str | None = None
    _config: ConnectorConfig | None = field(default=None, repr=False)

    def config(self) -> ConnectorConfig:
        """Load (once) and return the configuration; a bad file becomes a clean CLI error."""
        if self._config is None:
            from connector.config import load_config
            from connector.errors import ConfigError

            try:
                self._config = load_config(self.config_path)
            except ConfigError as exc:
                raise click.ClickException(redact(str(exc))) from None
        return self._config


def emit_json(payload: Any) -> None:
    """Print one JSON object on stdout, redacted, for machines (``--json``)."""
    click.echo(redact(json.dumps(payload, default=str, sort_keys=False)))


def say(message: str, *, err: bool = False) -> None:
    """Print a human line, redacted."""
    click.echo(redact(message), err=err)
