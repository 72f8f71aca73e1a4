"""``make bench-validation``: cost per record of validating CI records on the import hot path.

``python -m benchmarks.validation [--records 5000] [--repeats 5]`` generates ``--records``
records with the simulator's own generator, in process (the seeded listing ``make bench``
imports), and times, on the same records, each way of turning a raw record into the
connector's :class:`~connector.ci.records.ParsedRecord`:

* ``marshmallow``: the tolerant schemas (:func:`connector.ci.schemas.parse_record_tolerant`);
* ``msgspec convert``: dict -> Structs -> the same rules (:func:`connector.ci.fast.parse_fast`,
  the production fast path, unicode check included);
* ``msgspec decode``: JSON bytes of the record -> Structs -> the same rules (as if the page
  body were decoded straight into Structs);
* ``pydantic v2``: strict models of the same fields -> the same rules, only when pydantic is
  installed (it is not a dependency: ``pip install pydantic`` to include it);
* ``parse_record``: the public function (fast path, marshmallow for what it defers).

It also times the importer's whole per-record staging work (record text + parse + the
ledger's positional fields) before (sorted ``json.dumps`` + marshmallow + ``_record_head`` /
``_line_fields``) and now (``record_text`` + ``ledger_fields``; also on records out of a page
msgspec decoded, whose text needs no read-back check), and the decoding of page bodies
(``json.loads`` vs msgspec, per record), and checks every variant gives results identical to
marshmallow's (the decoders: to ``json.loads``'s) on every record (the count is printed).

CPU time (``time.process_time``) over all records, best and median of ``--repeats`` runs.
Prints a table and, as the LAST line, a JSON object with every figure and ``target_met``
(staging now <= 40 us per record). A missed target is printed as missed.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from typing import Annotated, Any

import msgspec

from benchmarks.bench_import import listing_pages, running_simulator
from connector.ci import fast
from connector.ci.records import MAX_TEXT, ParsedRecord, RecordProblem
from connector.ci.schemas import parse_record, parse_record_tolerant
from connector.importer import _line_fields, _record_head, _record_text

TARGET_STAGE_US = 40.0

Result = ParsedRecord | RecordProblem | None


def _progress(message: str) -> None:
    print(f"[bench-validation {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def simulator_records(count: int) -> list[dict[str, Any]]:
    """``count`` records of the seeded benchmark listing, read in process."""
    with running_simulator(count) as sim:
        records = [record for page in listing_pages(sim) for record in page]
    return records[:count]


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


# --- candidates --------------------------------------------------------------------------------


def _pydantic_parser() -> tuple[Callable[[Any], Result], str] | None:
    """Strict pydantic v2 models of the fields fast.py reads, then fast.py's rules (duck
    typed: the models have the same attribute names). None when pydantic is missing."""
    try:
        pd: Any = importlib.import_module("pydantic")
    except ImportError:
        return None
    text: Any = Annotated[str, pd.StringConstraints(max_length=MAX_TEXT)]
    required: Any = Annotated[str, pd.StringConstraints(min_length=1, max_length=MAX_TEXT)]
    money: Any = int | float | str
    opt_text: Any = text | None
    address = {
        "address2": (opt_text, ""),
        "city": (opt_text, ""),
        "state": (opt_text, None),
        "zip": (opt_text, ""),
        "country": (opt_text, None),
        "phone": (opt_text, ""),
    }
    billing = pd.create_model("Billing", name=(opt_text, ""), address1=(opt_text, ""), **address)
    customer = pd.create_model(
        "Customer",
        name=(required, ...),
        address1=(required, ...),
        billing_address=(billing | None, None),
        **address,
    )
    line = pd.create_model(
        "Line",
        ci_lineitemid=(int | str, ...),
        sku=(required, ...),
        name=(text, ...),
        quantity=(int | str, ...),
        unit_price=(money, ...),
        fulfillment_lineitem_id=(int | str | None, None),
        bom_sku=(opt_text, None),
        groupon_cost=(money | None, None),
        discount=(money | None, None),
        status=(opt_text, ""),
        ship_by_date=(opt_text, None),
        order_line_item_uuid=(opt_text, None),
        voucher_code=(opt_text, ""),
        gift_message=(opt_text, ""),
    )
    amount = pd.create_model("Amount", total=(money | None, None))
    shipping = pd.create_model("Shipping", method=(opt_text, None))
    record = pd.create_model(
        "Record",
        orderid=(required, ...),
        date=(text, ...),
        line_items=(pd.conlist(line, min_length=1), ...),
        customer=(customer, ...),
        parent_orderid=(opt_text, None),
        amount=(amount | None, None),
        shipping=(shipping | None, None),
        supplier=(opt_text, ""),
    )
    validate = record.model_validate

    def parse(raw: Any) -> Result:
        try:
            model = validate(raw, strict=True)
        except Exception:
            return None
        return fast.build_parsed(model)

    return parse, str(pd.VERSION)


def candidates(
    records: Sequence[dict[str, Any]],
) -> list[tuple[str, Callable[[Any], Result], list[Any]]]:
    """(name, parser, inputs) per candidate; inputs are the records, or their JSON bytes."""
    as_bytes = [msgspec.json.encode(r) for r in records]
    decoder = msgspec.json.Decoder(fast.RecordStruct)

    def msgspec_decode(data: bytes) -> Result:
        try:
            return fast.build_parsed(decoder.decode(data))
        except msgspec.ValidationError:
            return None

    rows: list[tuple[str, Callable[[Any], Result], list[Any]]] = [
        ("marshmallow (tolerant schemas)", parse_record_tolerant, list(records)),
        ("msgspec convert dict -> Structs + rules", fast.parse_fast, list(records)),
        ("msgspec decode bytes -> Structs + rules", msgspec_decode, as_bytes),
    ]
    pydantic = _pydantic_parser()
    if pydantic is not None:
        parse, version = pydantic
        rows.append((f"pydantic {version} strict models + rules", parse, list(records)))
    else:
        _progress("pydantic not installed: its row is left out (pip install pydantic)")
    rows.append(("parse_record (fast path + fallback)", parse_record, list(records)))
    return rows


def stage_before(raw: Any) -> tuple[str, list[list[Any]] | str]:
    """The importer's per-record work before: sorted json text, marshmallow, field lists."""
    text = _record_text(raw)
    result = parse_record_tolerant(raw)
    if isinstance(result, RecordProblem):
        return text, result.reason
    head = _record_head(result)
    return text, [head + _line_fields(line) for line in result.lines]


def stage_now(raw: Any, plain: bool = False) -> tuple[str, list[list[Any]] | str] | None:
    """The importer's per-record hot path now (None: it would take the fallback); ``plain``:
    the record came from a page msgspec decoded (``OrdersPage.plain_json``)."""
    text = fast.record_text(raw, plain)
    staged = None if text is None else fast.ledger_fields(raw)
    if text is None or staged is None:
        return None
    return text, staged[1]


# --- timing ------------------------------------------------------------------------------------


def time_per_item(func: Callable[[Any], Any], inputs: Sequence[Any], repeats: int) -> list[float]:
    """CPU microseconds per item of ``func`` over ``inputs``, one figure per repeat."""
    runs = []
    for _ in range(repeats):
        started = time.process_time()
        for item in inputs:
            func(item)
        runs.append((time.process_time() - started) / len(inputs) * 1e6)
    return runs


def _same_staging(before: tuple[str, Any], now: tuple[str, Any] | None) -> bool:
    if now is None:
        return False
    # The text may differ in key order and escapes; it must read back to the same record.
    return bool(json.loads(before[0]) == json.loads(now[0]) and before[1] == now[1])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0] if __doc__ else "")
    parser.add_argument("--records", type=int, default=5000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)

    _progress(f"generating {args.records} records with the simulator's generator")
    records = simulator_records(args.records)
    expected = [parse_record_tolerant(r) for r in records]
    ok = sum(isinstance(e, ParsedRecord) for e in expected)
    _progress(f"{len(records)} records, {ok} valid; timing {args.repeats} runs each")

    figures: dict[str, Any] = {"records": len(records), "valid_records": ok}
    rows: list[tuple[str, float, float, int]] = []
    all_identical = True
    for name, func, inputs in candidates(records):
        identical = sum(func(i) == e for i, e in zip(inputs, expected, strict=True))
        all_identical &= identical == len(records)
        runs = time_per_item(func, inputs, args.repeats)
        rows.append((name, min(runs), statistics.median(runs), identical))
        figures[name] = {"us_best": min(runs), "us_median": statistics.median(runs)}
        figures[name]["identical"] = identical

    before = [stage_before(r) for r in records]
    staged_same = sum(_same_staging(b, stage_now(r)) for b, r in zip(before, records, strict=True))
    all_identical &= staged_same == len(records)
    # The real import reads records out of page bodies the client decoded with msgspec.
    plain = [msgspec.json.decode(json.dumps(r)) for r in records]
    plain_same = sum(
        _same_staging(b, stage_now(r, plain=True)) for b, r in zip(before, plain, strict=True)
    )
    all_identical &= plain_same == len(records)
    staging: list[tuple[str, Callable[[Any], Any], list[Any], int]] = [
        (
            "importer staging before (json sort_keys + marshmallow + lists)",
            stage_before,
            records,
            staged_same,
        ),
        ("importer staging now (record_text + ledger_fields)", stage_now, records, staged_same),
        (
            "importer staging now, msgspec-decoded page (no read-back)",
            lambda raw: stage_now(raw, plain=True),
            plain,
            plain_same,
        ),
    ]
    for name, stage, inputs, same in staging:
        runs = time_per_item(stage, inputs, args.repeats)
        rows.append((name, min(runs), statistics.median(runs), same))
        figures[name] = {"us_best": min(runs), "us_median": statistics.median(runs)}
        figures[name]["identical"] = same

    # The page bodies themselves (250 records each), decoded in the client's worker thread.
    bodies = [
        json.dumps({"meta": {}, "data": records[i : i + 250], "success": True}).encode()
        for i in range(0, len(records), 250)
    ]
    decoders: list[tuple[str, Callable[[bytes], Any]]] = [
        ("get_orders page body, json.loads (per record)", json.loads),
        ("get_orders page body, msgspec (per record)", msgspec.json.decode),
    ]
    for name, decode in decoders:
        # Records decoded equal to what json.loads makes of the same body.
        decoded_same = sum(len(json.loads(b)["data"]) for b in bodies if decode(b) == json.loads(b))
        all_identical &= decoded_same == len(records)
        runs = [t * len(bodies) / len(records) for t in time_per_item(decode, bodies, args.repeats)]
        rows.append((name, min(runs), statistics.median(runs), decoded_same))
        figures[name] = {"us_best": min(runs), "us_median": statistics.median(runs)}
        figures[name]["identical"] = decoded_same

    width = max(len(r[0]) for r in rows)
    print(f"{'per record (CPU)':<{width}}  {'best us':>8}  {'median us':>9}  identical")
    for name, best, median, identical in rows:
        print(f"{name:<{width}}  {best:8.1f}  {median:9.1f}  {identical}/{len(records)}")
    stage_now_us = figures["importer staging now (record_text + ledger_fields)"]["us_median"]
    figures.update(
        {
            "staging_now_us_per_record": stage_now_us,
            "target_stage_us": TARGET_STAGE_US,
            "target_met": stage_now_us <= TARGET_STAGE_US,
            "all_identical": all_identical,
            "machine": f"{_cpu_model()}, {os.cpu_count()} cores",
            "python": platform.python_version(),
            "msgspec": msgspec.__version__,
        }
    )
    verdict = "met" if figures["target_met"] else "MISSED"
    print(f"staging now {stage_now_us:.1f} us/record: target <= {TARGET_STAGE_US:.0f} {verdict}")
    if not all_identical:
        print("NOT IDENTICAL: some variant disagrees with marshmallow (see the counts)")
    print(json.dumps(figures, default=str))
    return 0 if all_identical else 1


if __name__ == "__main__":
    sys.exit(main())
