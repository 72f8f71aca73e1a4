"""Configuration loading: the example file, env tokens, and a corpus of broken files."""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

import pytest

from connector.config import ConnectorConfig, GpnSettings, load_config
from connector.errors import ConfigError
from connector.models import AccountOptions
from connector.secrets import Secret

REPO = Path(__file__).resolve().parents[2]
ENV = {"US_TOKEN": "us-token-value-1234", "UK_TOKEN": "uk-token-value-5678"}

MINIMAL = """
[[accounts]]
name = "us"
supplier_id = "100"
token_env = "US_TOKEN"
"""


def write(tmp_path: Path, text: str, name: str = "connector.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_example_config_loads(tmp_path: Path) -> None:
    path = tmp_path / "connector.example.toml"
    shutil.copy(REPO / "connector.example.toml", path)
    # Only the US token: the disabled UK account must not make the config (or "all") fail.
    cfg = load_config(path, {"GROUPON_US_TOKEN": "t-us-0001"})
    assert [a.name for a in cfg.accounts] == ["us-main"]
    assert cfg.disabled == ("uk",)
    assert cfg.missing_tokens == {}
    (us,) = cfg.accounts
    assert us.supplier_id == "90001"  # the simulator's default account
    assert us.base_url == "http://127.0.0.1:8000"  # mock-ci-server's default address
    assert us.token == Secret("t-us-0001")
    assert us.token.reveal() == "t-us-0001"
    assert us.options.merchant_level == 5
    assert us.options.closures == ("2026-12-24",)
    assert cfg.data_dir == tmp_path / "data"
    assert us.data_dir == cfg.data_dir
    assert cfg.gpn is None
    assert "t-us-0001" not in repr(cfg)
    with pytest.raises(ConfigError, match="'uk' is disabled"):
        cfg.account("uk")


def test_example_uk_account_once_enabled(tmp_path: Path) -> None:
    text = (
        (REPO / "connector.example.toml").read_text().replace("enabled = false", "enabled = true")
    )
    env = {"GROUPON_US_TOKEN": "t-us-0001", "GROUPON_UK_TOKEN": "t-uk-0002"}
    cfg = load_config(write(tmp_path, text), env)
    uk = cfg.account("uk")
    assert uk.region == "UK"  # the carrier list of the UK ...
    assert uk.options.holiday_region == "GB-ENG"  # ... the public holidays of England
    assert uk.options.window_mode is True
    assert uk.options.requests_per_second == 2.0


def test_minimal_defaults(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, MINIMAL), ENV)
    account = cfg.account("us")
    assert account.channel == "groupon"
    assert account.region == "US"
    assert account.api_version == "v4"
    assert account.base_url == "https://scm.commerceinterface.com"
    assert account.options == AccountOptions()
    assert account.mappings_dir is None
    assert cfg.path == tmp_path / "connector.toml"


def test_relative_folders_resolve_against_the_config_folder(tmp_path: Path) -> None:
    (tmp_path / "conf" / "maps" / "carriers").mkdir(parents=True)
    (tmp_path / "conf" / "maps" / "carriers" / "US.csv").write_text("code,carrier_name\nups,UPS\n")
    text = '[connector]\ndata_dir = "state"\nmappings_dir = "maps"\n' + MINIMAL
    (tmp_path / "conf").mkdir(exist_ok=True)
    cfg = load_config(write(tmp_path / "conf", text), ENV)
    assert cfg.data_dir == tmp_path / "conf" / "state"
    assert cfg.mappings_dir == tmp_path / "conf" / "maps"
    assert cfg.accounts[0].mappings_dir == cfg.mappings_dir


def test_gb_region_and_int_supplier_id(tmp_path: Path) -> None:
    text = MINIMAL.replace('supplier_id = "100"', 'supplier_id = 100\nregion = "gb"')
    account = load_config(write(tmp_path, text), ENV).accounts[0]
    assert account.region == "UK"
    assert account.supplier_id == "100"


def test_other_channels_skip_groupon_checks(tmp_path: Path) -> None:
    text = MINIMAL.replace('name = "us"', 'name = "x"\nchannel = "acme"\nregion = "Mars"')
    text = text.replace("[[accounts]]", '[[accounts]]\napi_version = "2099"')
    account = load_config(write(tmp_path, text), ENV).accounts[0]
    assert (account.channel, account.region, account.api_version) == ("acme", "Mars", "2099")


def test_gpn_settings(tmp_path: Path) -> None:
    text = MINIMAL + '\n[gpn]\nclient_id = "abc"\ntoken_env = "UK_TOKEN"\nauth = "sec1"\n'
    cfg = load_config(write(tmp_path, text), ENV)
    assert cfg.gpn == GpnSettings(
        "abc", Secret(ENV["UK_TOKEN"]), "https://partner-api.groupon.com", "SEC1"
    )


def test_unknown_account_lists_known(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, MINIMAL), ENV)
    with pytest.raises(ConfigError, match=r"no account named 'eu' \(known accounts: 'us'\)"):
        cfg.account("eu")
    bare = ConnectorConfig(None, tmp_path, None, ())
    with pytest.raises(ConfigError, match="known accounts: none"):
        bare.account("us")


def test_all_problems_are_reported_together(tmp_path: Path) -> None:
    text = MINIMAL.replace('name = "us"', 'name = "us"\nregoin = "US"\napi_version = "v3"')
    text += "[accounts.options]\nmerchant_level = 9\n"
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text), ENV)
    message = str(info.value)
    assert message.startswith(f"3 problem(s) in {tmp_path / 'connector.toml'}:")
    assert "account #1 ('us') key 'regoin': unknown key; did you mean 'region'?" in message
    assert "account #1 ('us') key 'api_version': 'v3' is not supported" in message
    assert "key 'merchant_level': must be 1..5, not 9" in message


# --------------------------------------------------------------------------- hostile corpus

A2 = '\n[[accounts]]\nname = "uk"\nsupplier_id = "200"\nregion = "UK"\ntoken_env = "UK_TOKEN"\n'

# (case id, file text, expected fragment: the location and the fix)
HOSTILE: list[tuple[str, str, str]] = [
    ("malformed-toml", 'x = 1\n[[accounts]\nname = "us"\n', "not valid TOML: "),
    ("toml-missing-value", "[connector]\ndata_dir =\n", "(at line 2, column 11)"),
    ("no-accounts", '[connector]\ndata_dir = "d"\n', "[[accounts]]: no accounts configured"),
    (
        "unknown-top-key",
        MINIMAL + "\n[conector]\n",
        "top level key 'conector': unknown key; did you mean 'connector'?",
    ),
    (
        "unknown-connector-key",
        '[connector]\ndatadir = "x"\n' + MINIMAL,
        "[connector] key 'datadir': unknown key; did you mean 'data_dir'?",
    ),
    (
        "unknown-account-key",
        MINIMAL + 'suplier_id = "1"\n',
        "account #1 ('us') key 'suplier_id': unknown key; did you mean 'supplier_id'?",
    ),
    (
        "literal-token",
        MINIMAL + 'token = "abc"\n',
        "account #1 ('us') key 'token': tokens must not be written in the config file; "
        "put it in an environment variable and name it in token_env",
    ),
    (
        "literal-token-gpn",
        MINIMAL + '[gpn]\nclient_id = "c"\ntoken = "x"\ntoken_env = "US_TOKEN"\n',
        "[gpn] key 'token': tokens must not be written",
    ),
    (
        "missing-name",
        '[[accounts]]\nsupplier_id = "1"\ntoken_env = "US_TOKEN"\n',
        "account #1 key 'name': is required",
    ),
    ("empty-name", MINIMAL.replace('"us"', '""'), "account #1 key 'name': must not be empty"),
    (
        "name-wrong-type",
        MINIMAL.replace('"us"', "7"),
        "account #1 key 'name': must be a string, not a whole number",
    ),
    (
        "bad-name-chars",
        MINIMAL.replace('"us"', '"us main/1"'),
        "account #1 ('us main/1') key 'name': use letters",
    ),
    (
        "duplicate-name",
        MINIMAL + A2.replace('"uk"', '"US"'),
        "account #2 ('US') key 'name': duplicate account name (already used by account #1)",
    ),
    (
        "missing-supplier",
        MINIMAL.replace('supplier_id = "100"', ""),
        "account #1 ('us') key 'supplier_id': is required",
    ),
    (
        "supplier-wrong-type",
        MINIMAL.replace('"100"', "[1]"),
        "account #1 ('us') key 'supplier_id': must be a string, not a list",
    ),
    (
        "missing-token-env",
        MINIMAL.replace('token_env = "US_TOKEN"', ""),
        "account #1 ('us') key 'token_env': is required",
    ),
    (
        "token-env-not-a-name",
        MINIMAL.replace('"US_TOKEN"', '"abc def"'),
        "account #1 ('us') key 'token_env': must be the NAME of an environment variable",
    ),
    (
        "bad-region",
        MINIMAL + 'region = "USA"\n',
        "account #1 ('us') key 'region': 'USA' is not a two-letter country code",
    ),
    (
        "region-without-list",
        MINIMAL + 'region = "JP"\n',
        "account #1 ('us') key 'region': no approved carrier list for JP",
    ),
    (
        "region-wrong-type",
        MINIMAL + "region = 1\n",
        "account #1 ('us') key 'region': must be a string, not a whole number",
    ),
    (
        "bad-api-version",
        MINIMAL + 'api_version = "v5"\n',
        "account #1 ('us') key 'api_version': 'v5' is not supported; use one of v2, v4",
    ),
    (
        "bad-base-url",
        MINIMAL + 'base_url = "scm.example"\n',
        "account #1 ('us') key 'base_url': must start with https://",
    ),
    (
        "options-not-table",
        MINIMAL + 'options = "x"\n',
        "account #1 ('us') [accounts.options]: must be a table, not a string",
    ),
    (
        "unknown-option",
        MINIMAL + "[accounts.options]\nmerchant_levl = 2\n",
        "account #1 ('us') [accounts.options] key 'merchant_levl': "
        "unknown key; did you mean 'merchant_level'?",
    ),
    (
        "option-int-as-string",
        MINIMAL + '[accounts.options]\nack_batch_size = "50"\n',
        "key 'ack_batch_size': must be a whole number, not a string",
    ),
    (
        "option-bool-as-int",
        MINIMAL + "[accounts.options]\nmark_exported = 1\n",
        "key 'mark_exported': must be true or false, not a whole number",
    ),
    (
        "option-int-as-bool",
        MINIMAL + "[accounts.options]\nmax_retries = true\n",
        "key 'max_retries': must be a whole number, not true/false",
    ),
    (
        "option-float-as-string",
        MINIMAL + '[accounts.options]\ntimeout_seconds = "5"\n',
        "key 'timeout_seconds': must be a number, not a string",
    ),
    (
        "option-list-of-ints",
        MINIMAL + "[accounts.options]\nclosures = [20261224]\n",
        "key 'closures': must be a list of strings, not a list",
    ),
    (
        "option-bad-date",
        MINIMAL + '[accounts.options]\nclosures = ["2026-13-01"]\n',
        "key 'closures': '2026-13-01' is not a date written YYYY-MM-DD",
    ),
    (
        "option-bad-choice",
        MINIMAL + '[accounts.options]\nsku_fallback = "skip"\n',
        "key 'sku_fallback': must be one of hold, bom_sku, sku, not 'skip'",
    ),
    (
        "option-window-24h",
        MINIMAL + "[accounts.options]\nwindow_hours = 24\n",
        "key 'window_hours': must be 1..23, not 24",
    ),
    (
        "option-bad-cutoff",
        MINIMAL + '[accounts.options]\ncutoff = "5pm"\n',
        "key 'cutoff': must be a 24-hour time HH:MM, not '5pm'",
    ),
    (
        "option-bad-zone",
        MINIMAL + '[accounts.options]\ntimezone = "Central"\n',
        "key 'timezone': 'Central' is not an IANA time zone",
    ),
    (
        "option-negative",
        MINIMAL + "[accounts.options]\nrequests_per_second = -1\n",
        "key 'requests_per_second': must be at least 0, not -1.0",
    ),
    ("accounts-not-array", 'accounts = "us"\n', "accounts: must be an array of tables"),
    (
        "connector-not-table",
        "connector = 3\n" + MINIMAL,
        "[connector]: must be a table, not a whole number",
    ),
    (
        "mappings-dir-missing",
        '[connector]\nmappings_dir = "nope"\n' + MINIMAL,
        "[connector] key 'mappings_dir': folder ",
    ),
    (
        "gpn-missing-client",
        MINIMAL + '[gpn]\ntoken_env = "US_TOKEN"\n',
        "[gpn] key 'client_id': is required",
    ),
    (
        "gpn-bad-auth",
        MINIMAL + '[gpn]\nclient_id = "c"\ntoken_env = "US_TOKEN"\nauth = "SEC3"\n',
        "[gpn] key 'auth': must be SEC1 or SEC2, not 'SEC3'",
    ),
]


@pytest.mark.parametrize(("text", "fragment"), [pytest.param(t, f, id=i) for i, t, f in HOSTILE])
def test_hostile_config_is_located_exactly(tmp_path: Path, text: str, fragment: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path, ENV)
    message = str(info.value)
    assert str(path) in message
    assert fragment in message, message


@pytest.mark.parametrize(
    ("text", "missing", "fragment"),
    [
        (
            "MINIMAL_NOPE",
            "us",
            "account #1 ('us') key 'token_env': environment variable NOPE_TOKEN is not set; "
            "set it to the access token",
        ),
        (
            "SECOND_EU",
            "uk",
            "account #2 ('uk') key 'token_env': environment variable EU_TOKEN is not set",
        ),
    ],
)
def test_unset_token_variable_is_reported_when_that_account_is_used(
    tmp_path: Path, text: str, missing: str, fragment: str
) -> None:
    """An unset variable does not make the whole file unusable (status, sla and files work
    without tokens); a command that calls Groupon for that account gets a located error."""
    source = {
        "MINIMAL_NOPE": MINIMAL.replace("US_TOKEN", "NOPE_TOKEN"),
        "SECOND_EU": MINIMAL + A2.replace("UK_TOKEN", "EU_TOKEN"),
    }[text]
    path = write(tmp_path, source)
    config = load_config(path, ENV)
    assert not config.account(missing).token  # an empty Secret, never a guess
    with pytest.raises(ConfigError) as info:
        config.require_token(missing)
    assert str(path) in str(info.value)
    assert fragment in str(info.value)
    others = [a.name for a in config.accounts if a.name != missing]
    for name in others:
        config.require_token(name)  # the other accounts are usable


def test_hostile_config_corpus_is_big_enough() -> None:
    assert len(HOSTILE) >= 25


def test_toml_error_gives_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path, '[[accounts]]\nname = "us"\nsupplier_id = "1\n')
    with pytest.raises(ConfigError, match=r"\(at line 3, column \d+\)"):
        load_config(path, ENV)


def test_missing_and_non_utf8_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="configuration file not found"):
        load_config(tmp_path / "absent.toml", ENV)
    bad = tmp_path / "bad.toml"
    bad.write_bytes(b"# caf\xe9\n")
    with pytest.raises(ConfigError, match="not valid UTF-8 at byte 6"):
        load_config(bad, ENV)


# --------------------------------------------------------------------------- tokens stay secret

CANARY = "@CANARY@"


def fresh_canary() -> str:
    """A never-seen value per test, so no earlier test's secret registration can mask it."""
    return "CANARYtok" + uuid.uuid4().hex


@pytest.mark.parametrize(
    "text",
    [
        pytest.param(MINIMAL + f'token = "{CANARY}"\n', id="literal-token"),
        pytest.param(MINIMAL.replace('"US_TOKEN"', f'"{CANARY}"'), id="token-in-token_env"),
        pytest.param(MINIMAL.replace('"US_TOKEN"', f'"{CANARY} x"'), id="token-in-token_env-space"),
        pytest.param(MINIMAL + f'tokn = "{CANARY}"\n', id="misspelt-token-key"),
        pytest.param(f'{MINIMAL}[accounts.options]\ncutoff = "{CANARY}"\n', id="option-value"),
        pytest.param(MINIMAL + f'region = "{CANARY}"\napi_version = "x"\n', id="region-value"),
        pytest.param(MINIMAL.replace('"us"', f'"{CANARY}"') + 'api_version = "x"\n', id="name"),
        pytest.param(
            MINIMAL + f'[gpn]\nclient_id = "c"\ntoken = "{CANARY}"\ntoken_env = "CANARY_ENV"\n',
            id="gpn-literal",
        ),
    ],
)
def test_canary_token_never_in_config_errors(tmp_path: Path, text: str) -> None:
    canary = fresh_canary()
    env = {**ENV, "US_TOKEN": canary, "CANARY_ENV": canary}
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text.replace(CANARY, canary)), env)
    assert canary not in str(info.value)
    assert canary not in repr(info.value)
    assert "account #1" in str(info.value) or "[gpn]" in str(info.value)


def test_canary_token_never_in_loaded_config_repr(tmp_path: Path) -> None:
    canary = fresh_canary()
    cfg = load_config(write(tmp_path, MINIMAL), {"US_TOKEN": canary})
    assert cfg.accounts[0].token.reveal() == canary
    assert canary not in repr(cfg)
    assert canary not in str(cfg.accounts[0])
