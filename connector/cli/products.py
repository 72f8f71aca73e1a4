"""``ci-connector products``: the channel's catalogue as the imports have seen it (product
sync, ``oms_channel_products``): every Groupon SKU / bom_sku with its name, unit price, deal
option and the host SKU(s) it maps to. Groupon takes no stock feed, so stock is shown as
"unlimited"."""

from __future__ import annotations

from typing import Any

import click

from connector.cli import open_facade, render_table, select_accounts, to_jsonable
from connector.cli.context import CliContext, emit_json, say
from connector.errors import ChannelError
from connector.secrets import redact

__all__ = ["products"]


@click.command()
@click.option("--account", "account_name", default="all", show_default=True, metavar="NAME|all")
@click.option("--unmapped", is_flag=True, help="Only SKUs with no host mapping (exit 1 if any).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
@click.pass_obj
def products(obj: CliContext, account_name: str, unmapped: bool, as_json: bool) -> None:
    """List every Groupon SKU seen, with what it maps to on the host.

    \b
    Example:
      ci-connector products --account us
      ci-connector products --unmapped --json | jq '.products[].sku'
    """
    facade = open_facade()
    rows: list[dict[str, Any]] = []
    failures: list[str] = []
    for account in select_accounts(obj.config(), account_name):
        try:
            found = facade.channel_products(account=account)
        except ChannelError as exc:
            failures.append(f"{account.name}: {redact(str(exc))}")
            continue
        for p in found:
            if unmapped and p.host_skus:
                continue
            rows.append({"account": account.name, **to_jsonable(p)})
    if as_json:
        emit_json({"products": rows, "failures": failures})
    elif rows:
        say(
            render_table(
                ["account", "sku", "bom_sku", "name", "price", "maps to", "lines", "stock"],
                [
                    [
                        r["account"],
                        r["sku"],
                        r["bom_sku"],
                        r["name"],
                        r["unit_price"],
                        ", ".join(
                            f"{c['host_sku']} x{c['quantity_per_unit']}" for c in r["host_skus"]
                        )
                        or "(unmapped)",
                        r["lines_seen"],
                        "unlimited" if r["stock"] is None else r["stock"],
                    ]
                    for r in rows
                ],
            )
        )
    else:
        say("no products seen yet" if not unmapped else "every SKU seen is mapped")
    for failure in failures:
        say(f"products failed: {failure}", err=True)
    if failures or (unmapped and rows):
        raise click.exceptions.Exit(1)
