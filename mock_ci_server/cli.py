"""``mock-ci-server``: run the CommerceInterface (CI) + GPN simulator on waitress."""

from __future__ import annotations

import json
import secrets
import shlex
import string
from importlib import metadata
from urllib.parse import urlencode

import click
from click.core import ParameterSource

from mock_ci_server.app import AUTH_ERROR_STATUSES, create_app
from mock_ci_server.carriers import SUPPORTED_REGIONS
from mock_ci_server.requestlog import RequestRecord
from mock_ci_server.serve import run_forever
from mock_ci_server.state import SimState

DEMO_SUPPLIER_ID = "90001"
TOKEN_LENGTH = 31  # every public example token has 31 alphanumeric characters
_TOKEN_ALPHABET = string.ascii_letters + string.digits
TOKEN_ENVVAR = "MOCK_CI_TOKEN"  # noqa: S105 - a variable name, not a secret
TOKEN_PLACEHOLDER = "YOUR_TOKEN"  # noqa: S105 - printed instead of the secret

EPILOG = """\b
Examples:
  mock-ci-server                         demo account, 10 orders, port 8000
  mock-ci-server --port 0 --seed-orders 300 --error-status-codes
  mock-ci-server --supplier-id 12345 --region IT --level 3   (token from $MOCK_CI_TOKEN)
  mock-ci-server --seed-orders 300 --lines-per-order 1-3 --split-share 0.2 --log-requests

The control plane lives under /_sim/ (state, seed, clock, faults, reset);
the OpenAPI document of the real-API part is at /_sim/openapi.json.
"""


def generate_token() -> str:
    """A random 31-char alphanumeric token (the shape of real CI tokens)."""
    return "".join(secrets.choice(_TOKEN_ALPHABET) for _ in range(TOKEN_LENGTH))


def package_version() -> str:
    """The installed distribution's version (the simulator ships with the connector)."""
    try:
        return metadata.version("groupon-ci-connector")
    except metadata.PackageNotFoundError:  # pragma: no cover - running from a bare checkout
        return "unknown"


def curl_example(
    url: str, supplier_id: str, token: str | None = None, token_env: str | None = None
) -> str:
    """A ready-to-paste curl command for get_orders, using the token's actual source.

    ``token``: a generated demo token, printed as is. ``token_env``: the token came from this
    environment variable, so the shell fills it in. Neither: the user typed the token on the
    command line; it is never echoed, :data:`TOKEN_PLACEHOLDER` stands in for it.
    """
    query = urlencode({"supplier_id": supplier_id, "token": token or "TOKEN"})
    target = f"{url}/api/v4/get_orders?{query}"
    if token is not None:
        return f"curl {shlex.quote(target)}"
    fill = f"${token_env}" if token_env else TOKEN_PLACEHOLDER
    return f'curl "{target.replace("token=TOKEN", "token=" + fill)}"'


def parse_range(text: str, name: str) -> tuple[int, int]:
    """``"2"`` -> (2, 2); ``"1-3"`` -> (1, 3); click.BadParameter otherwise."""
    low, sep, high = text.strip().partition("-")
    try:
        out = (int(low), int(high) if sep else int(low))
    except ValueError:
        raise click.BadParameter(f"expected N or MIN-MAX, got {text!r}", param_hint=name) from None
    if out[0] < 1 or out[1] < out[0]:
        raise click.BadParameter(f"need 1 <= MIN <= MAX, got {text!r}", param_hint=name)
    return out


def connector_toml(url: str, supplier_id: str, region: str, token_env: str) -> str:
    """The ``[[accounts]]`` block of a connector.toml that talks to this simulator."""
    # json.dumps gives a valid TOML basic string for any supplier id (quotes escaped).
    return "\n".join(
        [
            "[[accounts]]",
            f"name = {json.dumps('sim-' + supplier_id)}",
            'channel = "groupon"',
            f"supplier_id = {json.dumps(supplier_id)}",
            f"region = {json.dumps(region)}",
            'api_version = "v4"',
            f"base_url = {json.dumps(url)}",
            f"token_env = {json.dumps(token_env)}",
        ]
    )


def format_request(record: RequestRecord) -> str:
    """One line of the ``--log-requests`` stderr log (parameters already token-masked)."""
    params = " ".join(f"{k}={v}" for k, v in record.params.items())
    params = params if len(params) <= 200 else params[:200] + "…"
    fault = f" fault={record.fault}" if record.fault else ""
    outcome = "" if record.success is None else f" success={str(record.success).lower()}"
    return (
        f"{record.at:%H:%M:%S} {record.method} {record.path} {params} -> {record.status}"
        f"{outcome}{fault} {record.latency_ms:.1f}ms"
    )


def _print_request(record: RequestRecord) -> None:
    click.echo(format_request(record), err=True)


@click.command(
    name="mock-ci-server",
    epilog=EPILOG,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(package_version(), "--version", prog_name="mock-ci-server")
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
    envvar=TOKEN_ENVVAR,
    show_envvar=True,
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
    help="Answer business failures with 400/403/404 instead of HTTP 200 (ASSUMED behaviour).",
)
@click.option(
    "--auth-error-status",
    type=click.Choice([str(s) for s in AUTH_ERROR_STATUSES]),
    default="401",
    show_default=True,
    help="HTTP status of a wrong supplier_id/token (200 = the old 200 + success:false).",
)
@click.option(
    "--lines-per-order",
    default="1",
    show_default=True,
    metavar="N|MIN-MAX",
    help="Line items per seeded order.",
)
@click.option(
    "--split-share",
    type=click.FloatRange(0.0, 1.0),
    default=0.0,
    show_default=True,
    help="Share of multi-line orders whose records are split across pages.",
)
@click.option(
    "--log-requests",
    is_flag=True,
    help="Print every API call to stderr (tokens masked).",
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
    auth_error_status: str,
    lines_per_order: str,
    split_share: float,
    log_requests: bool,
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
    lines_range = parse_range(lines_per_order, "--lines-per-order")
    generated = token is None
    from_env = (
        click.get_current_context().get_parameter_source("token") is ParameterSource.ENVIRONMENT
    )
    account_id = supplier_id or DEMO_SUPPLIER_ID
    account_token = token if token is not None else generate_token()
    token_env = TOKEN_ENVVAR if from_env else f"CI_TOKEN_{account_id}"

    state = SimState()
    try:
        state.add_account(account_id, account_token, region=region.upper(), merchant_level=level)
    except ValueError as exc:
        raise click.UsageError(f"cannot create the account: {exc}") from None
    seeded = (
        state.seed(
            account_id,
            orders=seed_orders,
            seed=seed,
            lines_per_order=lines_range,
            split_share=split_share,
        )
        if seed_orders
        else None
    )
    if log_requests:
        state.requests.add_listener(_print_request)
    app = create_app(
        state, error_status_codes=error_status_codes, auth_error_status=int(auth_error_status)
    )

    def announce(url: str) -> None:
        click.echo("mock-ci-server: Groupon CommerceInterface simulator (not the real service)")
        click.echo(f"  account      supplier_id={account_id} region={region.upper()} level={level}")
        if generated:
            click.echo(f"  token        {account_token}  (generated demo token)")
        elif from_env:
            click.echo(f"  token        (from ${TOKEN_ENVVAR}; not echoed)")
        else:
            click.echo("  token        (the one you passed with --token; not echoed)")
        if seeded is not None:
            click.echo(
                f"  seeded       {seeded['orders_created']} orders, "
                f"{seeded['lines_created']} lines (seed {seed})"
            )
        mode = "4xx statuses" if error_status_codes else "HTTP 200 + success:false"
        click.echo(f"  failures     {mode}; wrong credentials: HTTP {auth_error_status}")
        if log_requests:
            click.echo("  requests     logged on stderr (tokens masked)")
        click.echo(f"serving on {url}  (Ctrl-C to stop)")
        click.echo("try:")
        curl = curl_example(
            url,
            account_id,
            account_token if generated else None,
            token_env if from_env else None,
        )
        click.echo("  " + curl)
        if not generated and not from_env:
            click.echo(f"  (replace {TOKEN_PLACEHOLDER} with the token you passed)")
        click.echo("connector.toml account block:")
        for line in connector_toml(url, account_id, region.upper(), token_env).splitlines():
            click.echo("  " + line)
        if generated:
            click.echo(f"  # export {token_env}={account_token}")
        elif not from_env:
            click.echo(f"  # export {token_env}=<the token you passed with --token>")
        click.echo(f"control plane: {url}/_sim/state   openapi: {url}/_sim/openapi.json")

    try:
        run_forever(app, host, port, threads, on_ready=announce)
    except OSError as exc:
        raise click.ClickException(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}"
        ) from None


if __name__ == "__main__":  # pragma: no cover
    main()
