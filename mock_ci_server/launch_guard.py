"""Start-up checks of ``mock-ci-server``: where the tokens come from, and who can reach it.

The CLI (``mock_ci_server/cli.py``) only declares the options and calls :func:`resolve_tokens`.
Tokens come from a file or an environment variable, so they are not visible in ``ps``; a
token given on the command line works but is warned about. A bind beyond loopback is refused
without a control-plane token (``/_sim/`` replaces tokens, wipes state and shows customer
data) and, with one, announced with a loud warning.
"""

from __future__ import annotations

import stat
from pathlib import Path

import click
from click.core import ParameterSource

from mock_ci_server.serve import is_loopback

__all__ = ["CONTROL_TOKEN_ENV", "TOKEN_ENV", "read_secret_file", "resolve_tokens"]

TOKEN_ENV = "MOCK_CI_TOKEN"  # noqa: S105 - the names of variables, not secrets
CONTROL_TOKEN_ENV = "MOCK_CI_CONTROL_TOKEN"  # noqa: S105


def read_secret_file(path: Path, option: str) -> str:
    """The first line of ``path`` (a token file), stripped; a clear usage error otherwise.
    Warns on stderr when others may read the file."""
    try:
        mode = path.stat().st_mode
        text = path.read_text("utf-8").strip().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise click.BadParameter(f"cannot read {path}: {exc}", param_hint=option) from None
    if not text or not text[0].strip():
        raise click.BadParameter(f"{path} is empty", param_hint=option)
    if mode & (stat.S_IRGRP | stat.S_IROTH):
        click.echo(f"warning: {path} can be read by other users; chmod 600 it", err=True)
    return text[0].strip()


def _from_file(value: str | None, path: Path | None, option: str, env: str) -> str | None:
    if path is None:
        return value
    if value is not None:
        flag = option.removesuffix("-file")
        raise click.UsageError(f"give {option} or {flag}/{env}, not both")
    return read_secret_file(path, option)


def _warn_exposed(host: str, control_token: str | None) -> None:
    lines = [
        "",
        "!" * 78,
        f"!! WARNING: mock-ci-server is listening on {host}, not only on loopback.",
        "!! It is a TEST simulator: anyone who can reach it can read the seeded customer",
        "!! data through the API with the account token.",
        "!! The /_sim/ control plane needs the control token (X-Sim-Control-Token)."
        if control_token
        else "!! The /_sim/ control plane is OPEN.",
        "!" * 78,
        "",
    ]
    click.echo("\n".join(lines), err=True)


def resolve_tokens(
    host: str,
    token: str | None,
    token_file: Path | None,
    control_token: str | None,
    control_token_file: Path | None,
) -> tuple[str | None, str | None]:
    """The account token and the control token from options, files or the environment.

    Call inside the click command. Warns about tokens typed on the command line; refuses a
    non-loopback ``host`` without a control token, warns loudly with one.

    :raises click.UsageError: both a file and a value given, or an exposed bind unguarded.
    :raises click.BadParameter: a token file that cannot be read or is empty.
    """
    token = _from_file(token, token_file, "--token-file", TOKEN_ENV)
    control_token = _from_file(
        control_token, control_token_file, "--control-token-file", CONTROL_TOKEN_ENV
    )
    ctx = click.get_current_context()
    for name in ("token", "control_token"):
        if ctx.get_parameter_source(name) == ParameterSource.COMMANDLINE:
            flag = "--" + name.replace("_", "-")
            click.echo(
                f"warning: {flag} on the command line is visible to every user in `ps`; "
                f"use {flag}-file or the environment variable",
                err=True,
            )
    if not is_loopback(host):
        if not control_token:
            raise click.UsageError(
                f"refusing to listen on {host} (not loopback) without a control-plane token: "
                f"/_sim/ can replace tokens, wipe state and read customer data. Give "
                f"--control-token-file (or {CONTROL_TOKEN_ENV}), or use --host 127.0.0.1"
            )
        _warn_exposed(host, control_token)
    return token, control_token
