"""One output language for every ``ci-connector`` command: tables, formats, exit codes.

Every command that prints data uses these helpers, so all commands look and behave alike:

* :func:`render_table` -- the one table renderer (rich): lowercase headers, numbers right-aligned,
  long cells wrapped to the terminal's width, control characters shown as visible escapes
  (:func:`connector.textsafe.printable`), never interpreted as rich markup.
* :func:`output_options` -- adds ``--json`` (and ``--format table|json|csv`` where a file makes
  sense) and hands the command one ``output`` argument.
* the exit codes below, and :func:`problems_found` to leave with 1.

Adopting them in a new command::

    @click.command()
    @output_options(csv=True)
    def mything(output: str) -> None:
        rows = ...
        if output == "json":
            emit_json({"ok": not rows, "rows": rows})
        elif output == "csv":
            say(to_csv(rows, FIELDS))
        else:
            say(render_table(["line", "reason"], [[r["line"], r["reason"]] for r in rows]))
        if rows:
            problems_found()
"""

from __future__ import annotations

import csv
import io
import os
import shutil
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Any, NoReturn, TypeVar

import click

from connector.textsafe import neutralise_cell, printable

__all__ = [
    "CURRENCY_SYMBOLS",
    "EXIT_CODES",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_PROBLEMS",
    "EXIT_USAGE",
    "INTERRUPTED_NOTE",
    "SuggestingGroup",
    "money",
    "output_options",
    "prints_no_data",
    "problems_found",
    "render_table",
    "table_width",
    "to_csv",
]

EXIT_OK = 0
EXIT_PROBLEMS = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, the shell convention for Ctrl-C

EXIT_CODES: Mapping[int, str] = {
    EXIT_OK: "ok: nothing needs the operator",
    EXIT_PROBLEMS: (
        "problems found: a cap reached, lines at risk (with --at-risk), held rows, findings "
        "left, an invalid mapping, or an operation or account that failed"
    ),
    EXIT_USAGE: "usage error: unknown command or option, bad option value",
    EXIT_INTERRUPTED: "interrupted (Ctrl-C): what was committed before is kept; run it again",
}
"""The documented exit codes (docs/operations.md, "Exit codes"); a test enumerates the CLI."""

INTERRUPTED_NOTE = (
    "what was committed before Ctrl-C is kept (the ledger and the host database commit per "
    "batch; nothing is half-applied); run the command again to go on"
)
"""Said on exit 130 unless the command set ``CliContext.interrupt_note``."""

F = TypeVar("F", bound=Callable[..., Any])

# Kept in capitals when a header is lowercased.
_ACRONYMS = frozenset({"UTC", "CI", "SKU", "GPN", "ID", "ETA", "URL"})

# Cells up to this long are never wrapped (ids, states, dates); longer text wraps first.
_SHORT = 16

# Not a terminal: as wide as the table needs.
_UNWRAPPED = 100_000


class SuggestingGroup(click.Group):
    """A click group whose "No such command" error suggests the closest names (exit 2)."""

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        import difflib

        name = args[0] if args else ""
        if name and not name.startswith("-") and self.get_command(ctx, name) is None:
            close = difflib.get_close_matches(name, self.list_commands(ctx), n=2, cutoff=0.6)
            hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
            ctx.fail(f"No such command {name!r}.{hint} See '{ctx.command_path} --help'.")
        return super().resolve_command(ctx, args)


C = TypeVar("C", bound=click.Command)


def prints_no_data(command: C) -> C:
    """Mark a command that prints no data (a server, a worker loop): the CLI test then does not
    ask it for ``--json``. Put it above ``@click.command``."""
    command.prints_no_data = True  # type: ignore[attr-defined]
    return command


def problems_found() -> NoReturn:
    """Leave the command with exit code 1 (problems found), output already printed."""
    raise click.exceptions.Exit(EXIT_PROBLEMS)


def table_width() -> int:
    """The width tables are fitted to: ``$COLUMNS`` when set, else the terminal's; output
    that is not a terminal (a pipe, a file) is not wrapped, so ``grep`` sees whole rows."""
    columns = os.environ.get("COLUMNS", "")
    if columns.isdigit() and int(columns) > 20:
        return int(columns)
    if sys.stdout.isatty():
        return shutil.get_terminal_size((80, 24)).columns
    return _UNWRAPPED


def _header(text: str) -> str:
    """One header style for every table: lowercase, acronyms kept ("cycle (UTC)")."""
    words = printable(text).split(" ")
    return " ".join(w if w.strip("()[]").upper() in _ACRONYMS else w.lower() for w in words)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float | Decimal) and not isinstance(value, bool)


def render_table(
    headers: Sequence[str], rows: Iterable[Sequence[object]], *, width: int | None = None
) -> str:
    """Rows as a text table fitted to ``width`` (default :func:`table_width`).

    Headers are shown in lowercase; a column whose values are all numbers is right-aligned and
    never wrapped; other cells wrap (long reasons fold) when the table would be too wide.
    ``None`` prints as an empty cell. Every cell goes through :func:`printable`, so customer
    data with escape sequences or line breaks cannot forge or recolour output.
    """
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    materialised = [list(row) for row in rows]
    table = Table(box=None, show_edge=False, pad_edge=False, padding=(0, 2, 0, 0), expand=False)
    for index, header in enumerate(headers):
        values = [row[index] for row in materialised if index < len(row) and row[index] is not None]
        numeric = bool(values) and all(_is_number(v) for v in values)
        # Short values (ids, states, dates) stay on one line; long text (reasons) wraps.
        short = max((len(printable(v)) for v in values), default=0) <= _SHORT
        table.add_column(
            Text(_header(header)),
            justify="right" if numeric else "left",
            no_wrap=numeric or short,
            overflow="fold",
        )
    for row in materialised:
        cells = [Text("" if cell is None else printable(cell)) for cell in row]
        cells += [Text("")] * (len(headers) - len(cells))
        table.add_row(*cells[: len(headers)])
    buffer = io.StringIO()
    console = Console(
        file=buffer,
        width=width or table_width(),
        color_system=None,
        force_terminal=False,
        highlight=False,
        emoji=False,
        markup=False,
        soft_wrap=False,
        legacy_windows=False,
    )
    console.print(table)
    return "\n".join(line.rstrip() for line in buffer.getvalue().rstrip("\n").splitlines())


def to_csv(rows: Iterable[Mapping[str, Any]], fields: Sequence[str]) -> str:
    """Rows as CSV text with a header; cells neutralised against formula injection."""
    out = io.StringIO()
    writer = csv.DictWriter(
        out, fieldnames=list(fields), extrasaction="ignore", lineterminator="\n"
    )
    writer.writeheader()
    for row in rows:
        writer.writerow({k: neutralise_cell(row.get(k)) for k in fields})
    return out.getvalue().rstrip("\n")


CURRENCY_SYMBOLS: Mapping[str, tuple[str, str]] = {
    "US": ("USD", "$"),
    "UK": ("GBP", "£"),
    "GB": ("GBP", "£"),
    "IE": ("EUR", "€"),
    "DE": ("EUR", "€"),
    "FR": ("EUR", "€"),
    "IT": ("EUR", "€"),
    "ES": ("EUR", "€"),
    "NL": ("EUR", "€"),
    "BE": ("EUR", "€"),
}
"""Region -> (ISO currency, symbol) Groupon sells in there."""


def money(value: object, region: str) -> str:
    """``1234.5`` in ``region``'s currency: ``$1,234.50``, ``£1,234.50``; ``-`` for ``None``.
    A region without a known currency shows the amount without a symbol."""
    if value is None:
        return "-"
    country = region.upper().partition("-")[0]
    symbol = CURRENCY_SYMBOLS.get(country, ("", ""))[1]
    return f"{symbol}{float(str(value)):,.2f}"


def output_options(*, csv: bool = False, default: str = "table") -> Callable[[F], F]:
    """Add ``--json`` (and, with ``csv=True``, ``--format table|json|csv``) to a command.

    The command receives one keyword argument ``output``: ``"table"``, ``"json"`` or
    ``"csv"``. ``--json`` is the same as ``--format json``.
    """

    def decorate(func: F) -> F:
        func = click.option(
            "--json",
            "as_json",
            is_flag=True,
            help="Print one JSON object on stdout (same as --format json)."
            if csv
            else "Print one JSON object on stdout.",
        )(func)
        if csv:
            func = click.option(
                "--format",
                "fmt",
                type=click.Choice(["table", "json", "csv"]),
                default=default,
                show_default=True,
                help="Output format.",
            )(func)
        original = func

        def wrapper(*args: Any, as_json: bool = False, fmt: str = default, **kwargs: Any) -> Any:
            return original(*args, output="json" if as_json else fmt, **kwargs)

        wrapper.__name__ = getattr(func, "__name__", "command")
        wrapper.__doc__ = func.__doc__
        wrapper.__click_params__ = getattr(func, "__click_params__", [])  # type: ignore[attr-defined]
        return wrapper  # type: ignore[return-value]

    return decorate
