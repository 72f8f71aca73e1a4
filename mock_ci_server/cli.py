"""``mock-ci-server``: run the CommerceInterface (CI) + GPN simulator on waitress."""

from __future__ import annotations

import secrets
import shlex
import string
from urllib.parse import urlencode

import click

from mock_ci_server.app import create_app
from mock_ci_server.carriers import SUPPORTED_REGIONS
from mock_ci_server.serve import run_forever
from mock_ci_server.state import SimState

DEMO_SUPPLIER_ID = "90001"
TOKEN_LENGTH = 31  # every public example token has 31 alphanumeric characters
_TOKEN_ALPHABET = string.ascii_letters + string.digits

EPILOG = """\b
Examples:
  mock-ci-server                         demo account, 10 orders, port 8000
  mock-ci-server --port 0 --seed-orders 300 --error-status-codes
  mock-ci-server --supplier-id 12345 --token "$CI_TOKEN" --region IT --level 3

The control plane lives under /_sim/ (state, seed, clock, faults, reset);
the OpenAPI document of the real-API part is at /_sim/openapi.json.
"""


def generate_token() -> str:
    """A random 31-char alphanumeric token (the shape of real CI tokens)."""
    return "".join(secrets.choice(_TOKEN_ALPHABET) for _ in range(TOKEN_LENGTH))


def curl_example(url: str, supplier_id: str, token: str | None) -> str:
    """A ready-to-paste curl command for get_orders (``$CI_TOKEN`` when token is None)."""
    query = urlencode({"supplier_id": supplier_id, "token": token or "TOKEN"})
    target = f"{url}/api/v4/get_orders?{query}"
    if token is None:
        # A token the user typed is theirs: never echo it; let the shell fill it in.
        return f'curl "{target.replace("token=TOKEN", "token=$CI_TOKEN")}"'
    return f"curl {shlex.quote(target)}"


@click.command(
    name="mock-ci-server",
    epilog=EPILOG,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to bind.")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8000,
    show_default=True,
    help="TCP port; 0 picks a free one (printed).",
)
@click.option(
    "--seed-orders",
    type=click.IntRange(min=0),
    default=10,
    show_default=True,
    help="Orders to generate for the account at start.",
)
@click.option("--supplier-id", help=f"Supplier id of the account [default: {DEMO_SUPPLIER_ID}].")
@click.option(
    "--token",
    help="Token of the account [default: a generated 31-char token, printed].",
)
@click.option(
    "--region",
    type=click.Choice(SUPPORTED_REGIONS, case_sensitive=False),
    default="US",
    show_default=True,
    help="Account region (approved carrier list, holidays).",
)
@click.option(
    "--level",
    type=click.IntRange(1, 5),
    default=5,
    show_default=True,
    help="Merchant level (sales caps).",
)
@click.option(
    "--seed", type=int, default=1, show_default=True, help="Generator seed (deterministic)."
)
@click.option(
    "--error-status-codes",
    is_flag=True,
    help="Answer API failures with 400/401/403/404 instead of HTTP 200 (ASSUMED behaviour).",
)
@click.option(
    "--threads",
    type=click.IntRange(1, 256),
    default=8,
    show_default=True,
    help="waitress worker threads.",
)
def main(
    host: str,
    port: int,
    seed_orders: int,
    supplier_id: str | None,
    token: str | None,
    region: str,
    level: int,
    seed: int,
    error_status_codes: bool,
    threads: int,
) -> None:
    """Serve a local simulator of Groupon's CommerceInterface API (and GPN) until Ctrl-C.

    It creates one supplier account, seeds it with generated orders, prints the URL and a
    curl example, and serves on waitress. This is a simulator built from public evidence,
    not the real Groupon service.
    """
    if supplier_id is not None and not supplier_id.strip():
        raise click.BadParameter("must not be empty", param_hint="--supplier-id")
    if token is not None and not token:
        raise click.BadParameter("must not be empty", param_hint="--token")
    generated = token is None
    account_id = supplier_id or DEMO_SUPPLIER_ID
    account_token = token if token is not None else generate_token()

    state = SimState()
    try:
        state.add_account(account_id, account_token, region=region.upper(), merchant_level=level)
    except ValueError as exc:
        raise click.UsageError(f"cannot create the account: {exc}") from None
    seeded = state.seed(account_id, orders=seed_orders, seed=seed) if seed_orders else None
    app = create_app(state, error_status_codes=error_status_codes)

    def announce(url: str) -> None:
        click.echo("mock-ci-server: Groupon CommerceInterface simulator (not the real service)")
        click.echo(f"  account      supplier_id={account_id} region={region.upper()} level={level}")
        if generated:
            click.echo(f"  token        {account_token}  (generated demo token)")
        else:
            click.echo("  token        (the one you passed with --token; not echoed)")
        if seeded is not None:
            click.echo(
                f"  seeded       {seeded['orders_created']} orders, "
                f"{seeded['lines_created']} lines (seed {seed})"
            )
        mode = "4xx statuses" if error_status_codes else "HTTP 200 + success:false"
        click.echo(f"  failures     {mode}")
        click.echo(f"serving on {url}  (Ctrl-C to stop)")
        click.echo("try:")
        click.echo("  " + curl_example(url, account_id, account_token if generated else None))
        click.echo(f"control plane: {url}/_sim/state   openapi: {url}/_sim/openapi.json")
        click.echo(f"connector:   ci-connector init --from-simulator {url}")

    try:
        run_forever(app, host, port, threads, on_ready=announce)
    except OSError as exc:
        raise click.ClickException(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}"
        ) from None


if __name__ == "__main__":  # pragma: no cover
    main()
