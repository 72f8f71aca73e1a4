"""``ci-connector init``: write a ready ``connector.toml`` (from a running simulator or options)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from connector.cli.context import CliContext, emit_json, say
from connector.cli.output import output_options

__all__ = ["init", "render_config"]

_TEMPLATE_HEAD = """\
# groupon-ci-connector configuration, written by: ci-connector init{origin}
# Tokens are never written here: export the variable named in token_env, e.g.
#   export {first_env}=...
# Everything else is explained in connector.example.toml.

[connector]
data_dir = "data"
"""

_TEMPLATE_ACCOUNT = """
[[accounts]]
name = "{name}"
channel = "groupon"
supplier_id = "{supplier_id}"
region = "{region}"
api_version = "v4"
base_url = "{base_url}"
token_env = "{token_env}"

[accounts.options]
merchant_level = {level}
import_delay_minutes = {delay}{delay_note}
"""


def _account_name(region: str, index: int) -> str:
    base = f"{region.lower()}-main"
    return base if index == 0 else f"{base}-{index + 1}"


def render_config(accounts: list[dict[str, Any]], base_url: str, origin: str = "") -> str:
    """The TOML text for ``accounts`` (dicts with supplier_id, region, merchant_level)."""
    parts: list[str] = []
    envs: list[str] = []
    for index, acct in enumerate(accounts):
        region = str(acct.get("region") or "US").upper()
        env = f"GROUPON_{region}_TOKEN" if index == 0 else f"GROUPON_{region}_{index + 1}_TOKEN"
        envs.append(env)
        simulated = bool(origin)
        parts.append(
            _TEMPLATE_ACCOUNT.format(
                name=_account_name(region, index),
                supplier_id=acct["supplier_id"],
                region=region,
                base_url=base_url,
                token_env=env,
                level=int(acct.get("merchant_level") or 1),
                delay=0 if simulated else 30,
                delay_note=(
                    "   # the simulator's orders need no fraud-check delay; use 30 for Groupon"
                    if simulated
                    else "   # let Groupon's fraud checks cancel first"
                ),
            )
        )
    head = _TEMPLATE_HEAD.format(origin=origin, first_env=envs[0] if envs else "GROUPON_US_TOKEN")
    return head + "".join(parts)


def _simulator_accounts(url: str) -> list[dict[str, Any]]:
    import requests

    try:
        response = requests.get(f"{url}/_sim/accounts", timeout=10)
    except requests.RequestException as exc:
        raise click.ClickException(
            f"cannot reach a simulator at {url} ({type(exc).__name__}): check the URL "
            "mock-ci-server printed ('serving on ...') and that it is still running"
        ) from None
    if response.status_code in (401, 403):
        raise click.ClickException(
            f"{url}/_sim/accounts answered HTTP {response.status_code}: this simulator's "
            "control plane needs its control token"
        )
    try:
        payload = response.json()
        accounts = list(payload["accounts"])
    except (ValueError, KeyError, TypeError):
        raise click.ClickException(
            f"{url} answered HTTP {response.status_code} without a simulator account list: "
            "is it a mock-ci-server URL (not Groupon's)?"
        ) from None
    if not accounts:
        raise click.ClickException(f"the simulator at {url} has no accounts")
    return [a for a in accounts if isinstance(a, dict) and "supplier_id" in a]


@click.command("init")
@click.option(
    "--from-simulator",
    "simulator_url",
    metavar="URL",
    default=None,
    help="Read the accounts of a running mock-ci-server (the URL it printed).",
)
@click.option("--supplier-id", default=None, help="Supplier id (without --from-simulator).")
@click.option("--region", default="US", show_default=True, help="Account region.")
@click.option(
    "--base-url",
    default="https://scm.commerceinterface.com",
    show_default=True,
    help="CI base URL (without --from-simulator).",
)
@click.option("--force", is_flag=True, help="Replace the file if it exists.")
@output_options()
@click.pass_obj
def init(
    obj: CliContext,
    simulator_url: str | None,
    supplier_id: str | None,
    region: str,
    base_url: str,
    force: bool,
    output: str,
) -> None:
    """Write a ready configuration file (the --config path, default connector.toml).

    With --from-simulator the accounts, regions and merchant levels come from the simulator;
    then export the token it printed and run `ci-connector sync`. Tokens are never written.

    \b
    Example:
      ci-connector init --from-simulator http://127.0.0.1:8000
      ci-connector --config prod.toml init --supplier-id 12345 --region UK
    """
    path: Path = obj.config_path
    if path.exists() and not force:
        raise click.UsageError(f"{path} exists; pass --force to replace it")
    if simulator_url is not None:
        url = simulator_url.rstrip("/")
        accounts = _simulator_accounts(url)
        text = render_config(accounts, url, origin=f" --from-simulator {url}")
    else:
        if not supplier_id:
            raise click.UsageError("give --from-simulator URL, or --supplier-id (and --region)")
        accounts = [{"supplier_id": supplier_id, "region": region, "merchant_level": 1}]
        text = render_config(accounts, base_url.rstrip("/"))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    # Prove the file loads before telling the operator it is ready.
    from connector.config import load_config
    from connector.errors import ConfigError

    try:
        config = load_config(path)
    except ConfigError as exc:  # pragma: no cover - the template is tested
        raise click.ClickException(f"wrote {path} but it does not load: {exc}") from None
    envs = sorted(
        {line.split('"')[1] for line in text.splitlines() if line.startswith("token_env")}
    )
    if output == "json":
        emit_json(
            {
                "path": str(path),
                "accounts": [a.name for a in config.accounts],
                "token_env": envs,
            }
        )
        return
    say(f"wrote {path}: account(s) {', '.join(a.name for a in config.accounts)}")
    for env in envs:
        say(f"next: export {env}=<the token>   then: ci-connector sync")
