"""``ci-connector mappings check``: validate the mapping CSVs and find unmapped couriers."""

from __future__ import annotations

from pathlib import Path

import click

from connector.cli import render_table
from connector.cli.context import CliContext, emit_json, say
from connector.cli.output import SuggestingGroup
from connector.config import ConnectorConfig
from connector.errors import MappingError
from connector.mappings import Mappings, default_mappings_dir, load_mappings, normalize_region
from connector.reference_host.host import HOST_DB_NAME
from connector.reference_host.store import HostStore, HostStoreError
from connector.secrets import redact


@click.group(cls=SuggestingGroup)
def mappings() -> None:
    """Work with the merchant-editable mapping CSVs (carriers, couriers, SKU aliases).

    \b
    Example:
      ci-connector mappings check --couriers "UPS,FedEx,Pigeon Post"
    """


def _config_if_present(obj: CliContext) -> ConnectorConfig | None:
    # The check works without a config (e.g. on a fresh checkout); a config that exists but is
    # broken is still reported.
    return obj.config() if obj.config_path.exists() else None


def _couriers_to_check(
    couriers_opt: str | None,
    regions_opt: tuple[str, ...],
    config: ConnectorConfig | None,
    table: Mappings,
) -> dict[str, list[str]]:
    """region -> host couriers to look up, from --couriers or the reference host's shipments."""
    if couriers_opt is not None:
        couriers = [c.strip() for c in couriers_opt.split(",") if c.strip()]
        if regions_opt:
            regions = [normalize_region(r) for r in regions_opt]
        elif config is not None and config.accounts:
            regions = sorted({normalize_region(a.region) for a in config.accounts})
        else:
            regions = list(table.regions)
        return {region: couriers for region in regions}
    if config is None:
        return {}
    db = config.data_dir / HOST_DB_NAME
    if not db.exists():
        return {}
    try:
        with HostStore(db) as store:
            used = store.shipment_couriers()
    except HostStoreError as exc:
        raise click.ClickException(redact(str(exc))) from None
    by_region: dict[str, list[str]] = {}
    for account in config.accounts:
        region = normalize_region(account.region)
        if regions_opt and region not in {normalize_region(r) for r in regions_opt}:
            continue
        for courier in used.get(account.name, []):
            if courier not in by_region.setdefault(region, []):
                by_region[region].append(courier)
    return by_region


@mappings.command("check")
@click.option(
    "--dir",
    "directory",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Mappings folder (default: the config's mappings_dir, else the shipped mappings).",
)
@click.option(
    "--couriers",
    metavar="A,B,...",
    default=None,
    help="Host courier names to look up (default: couriers used in the reference host's "
    "shipments).",
)
@click.option(
    "--region",
    "regions",
    multiple=True,
    metavar="CC",
    help="Region(s) to check couriers for (default: the configured accounts' regions).",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
@click.pass_obj
def check(
    obj: CliContext,
    directory: Path | None,
    couriers: str | None,
    regions: tuple[str, ...],
    as_json: bool = False,
) -> None:
    """Validate every mapping CSV and list host couriers without a carrier code per region.

    Every problem is printed as file:line column 'name': message. Exits 1 if any file is
    invalid or any courier has no code.

    \b
    Example:
      ci-connector mappings check --dir ./mappings
      ci-connector mappings check --couriers "UPS,Royal Mail,DPD" --region UK
    """
    needs_config = directory is None or couriers is None
    config = _config_if_present(obj) if needs_config else None
    if directory is None:
        directory = (config.mappings_dir if config else None) or default_mappings_dir()
    try:
        table = load_mappings(directory)
    except MappingError as exc:
        if as_json:
            emit_json(
                {
                    "directory": str(directory),
                    "valid": False,
                    "problems": [str(p) for p in exc.problems],
                    "unmapped": {},
                }
            )
            raise click.exceptions.Exit(1) from None
        for problem in exc.problems:
            say(str(problem))
        say(f"{len(exc.problems)} problem(s) in {directory}", err=True)
        raise click.exceptions.Exit(1) from None

    if as_json:
        to_check = _couriers_to_check(couriers, regions, config, table)
        unmapped = {
            region: (table.unmapped_couriers(region, names) if region in table.regions else names)
            for region, names in sorted(to_check.items())
        }
        emit_json(
            {
                "directory": str(directory),
                "valid": True,
                "problems": [],
                "regions": [
                    {"region": s.region, "approved_codes": s.approved_codes,
                     "courier_rows": s.courier_rows, "carriers_file": str(s.carriers_file)}
                    for s in table.summaries()
                ],
                "sku_aliases": len(table.aliases),
                "unmapped": unmapped,
            }
        )  # fmt: skip
        if any(unmapped.values()):
            raise click.exceptions.Exit(1)
        return
    say(f"mappings in {directory}: valid")
    summaries = table.summaries()
    if summaries:
        say(
            render_table(
                ["region", "approved codes", "courier rows", "carriers file"],
                [[s.region, s.approved_codes, s.courier_rows, s.carriers_file] for s in summaries],
            )
        )
    say(f"SKU aliases: {len(table.aliases)} ({table.bundle_count} bundles)")

    unmapped_total = 0
    for region, names in sorted(_couriers_to_check(couriers, regions, config, table).items()):
        if region not in table.regions:
            say(f"{region}: no approved carrier list (carriers/{region}.csv is missing)")
            unmapped_total += len(names) or 1
            continue
        missing = table.unmapped_couriers(region, names)
        unmapped_total += len(missing)
        if missing:
            for courier in missing:
                say(
                    f"{region}: courier {courier!r} has no carrier code "
                    f"(add a row to couriers.csv: {region},{courier},,<code>)"
                )
        else:
            say(f"{region}: all {len(names)} courier(s) mapped")
    if unmapped_total:
        raise click.exceptions.Exit(1)


@mappings.command("init")
@click.argument(
    "directory", required=False, type=click.Path(path_type=Path, file_okay=False), default=None
)
@click.option("--force", is_flag=True, help="Overwrite files that already exist in DIRECTORY.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
def init_mappings(directory: Path | None, force: bool, as_json: bool) -> None:
    """Copy the shipped mapping CSVs into DIRECTORY (default ./mappings) to edit them.

    An installed wheel keeps its mappings inside site-packages, where edits are lost on the
    next upgrade. Copy them once, then point the config at the copy:
    [connector] mappings_dir = "mappings". Existing files are kept unless --force.

    \b
    Example:
      ci-connector mappings init ./mappings
      ci-connector mappings check --dir ./mappings
    """
    import shutil

    target = directory or Path("mappings")
    source = default_mappings_dir()
    copied: list[str] = []
    kept: list[str] = []
    for path in sorted(source.rglob("*")):
        if not path.is_file() or path.suffix.lower() not in (".csv", ".md"):
            continue
        relative = path.relative_to(source)
        dest = target / relative
        if dest.exists() and not force:
            kept.append(str(relative))
            continue
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, dest)
        copied.append(str(relative))
    if as_json:
        emit_json({"directory": str(target), "copied": copied, "kept": kept})
        return
    say(f"copied {len(copied)} file(s) from {source} to {target}")
    if kept:
        say(f"kept {len(kept)} existing file(s) (use --force to overwrite): {', '.join(kept)}")
    say(f'next: set mappings_dir = "{target}" in the [connector] table of your config')
