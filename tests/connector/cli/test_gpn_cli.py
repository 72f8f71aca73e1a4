"""``ci-connector gpn transactions`` through CliRunner (GPN answered by `responses`)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import responses
from click.testing import CliRunner, Result

from connector.cli.context import CliContext
from connector.cli.gpn import COLUMNS, gpn
from connector.config import ConnectorConfig, GpnSettings
from connector.secrets import Secret

BASE = "https://gpn.cli.test"
URL = f"{BASE}/v3/transactions"
CANARY = "CANARY-cli-token-0d9e77"
ROWS = [
    {
        "transactionId": "T1",
        "transactionType": "SALE",
        "transactionStatus": "COMMISSIONABLE",
        "transactionDate": "2024-03-02T10:00:00+00:00",
        "lastModifiedDate": "2024-03-03T10:00:00+00:00",
        "orderId": "9001",
        "grossAmount": "25.00",
        "payableAmount": 250,
        "currency": "USD",
        "isNewUser": True,
    },
    {
        "transactionId": "T2",
        "transactionType": "BONUS",
        "transactionStatus": "INVOICED",
        "transactionDate": None,
        "lastModifiedDate": "2024-03-04T00:00:00+00:00",
        "payableAmount": 1000,
        "currency": "USD",
        "transactionDetails": "Spring bonus",
        "invoiceId": "INV-3",
    },
]


def ctx(auth: str = "SEC2", gpn_settings: bool = True) -> CliContext:
    settings = GpnSettings(client_id="aff-9", token=Secret(CANARY), base_url=BASE, auth=auth)
    config = ConnectorConfig(
        path=None,
        data_dir=Path("data"),
        mappings_dir=None,
        accounts=(),
        gpn=settings if gpn_settings else None,
    )
    return CliContext(config_path=Path("test.toml"), _config=config)


def run(args: list[str], obj: CliContext | None = None) -> Result:
    return CliRunner().invoke(gpn, ["transactions", *args], obj=obj or ctx())


def sent() -> list[dict[str, str]]:
    return [
        {k: v[0] for k, v in parse_qs(urlsplit(c.request.url).query).items()}
        for c in responses.calls
    ]


@responses.activate
def test_table_output() -> None:
    responses.get(URL, json={"transactions": ROWS, "total": 2})
    result = run(["--from", "2024-03-01", "--to", "2024-03-05", "--summary"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split() == [
        "id", "type", "status", "date", "(UTC)", "modified", "(UTC)", "order", "gross",
        "payable", "cur",
    ]  # fmt: skip
    assert lines[1].split() == [
        "T1", "SALE", "COMMISSIONABLE", "2024-03-02", "10:00", "2024-03-03", "10:00", "9001",
        "25.00", "2.50", "USD",
    ]  # fmt: skip
    assert "2 transaction(s); 2 row(s) read in 1 window(s)" in result.output
    assert "BONUS/INVOICED" in result.output
    p = sent()[0]
    assert (p["startDate"], p["endDate"]) == ("2024-03-01T00:00:00", "2024-03-05T23:59:59")
    assert responses.calls[0].request.headers["x-auth-version"] == "SEC2"


@responses.activate
def test_csv_output() -> None:
    responses.get(URL, json={"transactions": ROWS, "total": 2})
    result = run(["--from", "2024-03-01", "--to", "2024-03-05", "--format", "csv"])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.output)))
    assert tuple(rows[0]) == COLUMNS
    assert [r["transactionId"] for r in rows] == ["T1", "T2"]
    assert rows[0]["payableAmount"] == "2.50"
    assert rows[0]["payableMinor"] == "250"
    assert rows[1]["transactionDate"] == ""
    assert rows[1]["transactionDetails"] == "Spring bonus"


@responses.activate
def test_json_output_with_filters_and_time_zone() -> None:
    responses.get(URL, json={"transactions": ROWS, "total": 2, "summary": {"count": 2}})
    args = ["--from", "2024-03-01T06:00:00", "--to", "2024-03-05", "--type", "sale"]
    args += ["--status", "commissionable", "--invoice", "INV-3", "--timezone", "Europe/Paris"]
    args += ["--summary", "--auth", "sec1", "--format", "json"]
    result = run(args)
    assert result.exit_code == 0, result.output
    body = json.loads(result.output)
    assert body["count"] == 2
    assert body["transactions"][0]["lastModifiedDate"] == "2024-03-03T11:00:00+01:00"
    assert body["totals"]["SALE/COMMISSIONABLE"] == {
        "count": 1,
        "payable": "2.50",
        "currency": "USD",
    }
    assert body["server_summaries"] == [{"count": 2}]
    p = sent()[0]
    assert p["transactionType"] == "SALE"
    assert p["transactionStatus"] == "COMMISSIONABLE"
    assert p["invoiceId"] == "INV-3"
    assert p["timeZone"] == "Europe/Paris"
    assert p["startDate"] == "2024-03-01T06:00:00"
    assert responses.calls[0].request.headers["x-auth-version"] == "SEC1"
    assert CANARY not in result.output


@pytest.mark.parametrize("auth", ["sec1", "sec2"])
@responses.activate
def test_auth_error_is_clean_and_token_free(auth: str) -> None:
    page = "<html><body><h2>HTTP ERROR 401</h2></body></html>"
    responses.get(URL, body=page, status=401, content_type="text/html")
    result = run(["--from", "2024-03-01", "--to", "2024-03-02", "--auth", auth])
    assert result.exit_code == 1
    assert "Error: GPN refused the credentials (HTTP 401)" in result.output
    assert CANARY not in result.output
    assert "Traceback" not in result.output


@responses.activate
def test_server_error_message_is_shown() -> None:
    error: dict[str, Any] = {"error": {"httpCode": 400, "message": "invoiceId='x': unknown"}}
    responses.get(URL, json=error, status=400)
    result = run(["--from", "2024-03-01", "--to", "2024-03-02"])
    assert result.exit_code == 1
    assert "HTTP 400" in result.output
    assert "invoiceId='x': unknown" in result.output


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--from", "March"], "'March' is not YYYY-MM-DD"),
        (["--from", "2024-03-05", "--to", "2024-03-01"], "is before --from"),
        (["--from", "2024-03-01", "--timezone", "Nowhere/Land"], "unknown time zone"),
        (["--from", "2024-03-01", "--type", "GIFT"], "'GIFT' is not one of"),
    ],
)
def test_usage_errors(args: list[str], needle: str) -> None:
    result = run(args)
    assert result.exit_code == 2
    assert needle in result.output


def test_missing_gpn_table() -> None:
    result = run(["--from", "2024-03-01"], ctx(gpn_settings=False))
    assert result.exit_code == 1
    assert "no [gpn] table in test.toml" in result.output


def test_help_has_an_example() -> None:
    result = CliRunner().invoke(gpn, ["transactions", "--help"])
    assert result.exit_code == 0
    assert "Example:" in result.output
    assert "ci-connector gpn transactions --from 2024-03-01" in result.output
