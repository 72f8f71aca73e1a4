"""Issue 9, deliverable 5: secrets in the configuration.

A token pasted into any other key is refused without being echoed (before: ``region`` and
``timezone`` errors repeated the value); ``token_file`` is an alternative to environment
variables and, like ssh with a private key, refuses a file others can read.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import pytest

from connector.config import load_config, looks_like_token
from connector.errors import ConfigError

ENV = {"US_TOKEN": "us-token-value-1234"}
MINIMAL = """
[[accounts]]
name = "us"
supplier_id = "100"
token_env = "US_TOKEN"
"""
CANARY = "@CANARY@"


def canary() -> str:
    """A random token-shaped value never registered as a secret before."""
    return "cAn4" + secrets.token_urlsafe(24).replace("-", "x").replace("_", "Y") + "9z"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "connector.toml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("text", "where"),
    [
        (MINIMAL + f'region = "{CANARY}"\n', "key 'region'"),
        (f'{MINIMAL}[accounts.options]\ntimezone = "{CANARY}"\n', "key 'timezone'"),
        (f'{MINIMAL}[accounts.options]\ncutoff = "{CANARY}"\n', "key 'cutoff'"),
        (f'{MINIMAL}[accounts.options]\nclosures = ["2024-12-24", "{CANARY}"]\n', "'closures'"),
        (MINIMAL + f'api_version = "{CANARY}"\n', "key 'api_version'"),
        (MINIMAL.replace('"100"', f'"{CANARY}"'), "key 'supplier_id'"),
        (MINIMAL.replace('"us"', f'"{CANARY}"'), "key 'name'"),
        (MINIMAL + f'base_url = "https://ci.example/{CANARY}"\n', "key 'base_url'"),
        (MINIMAL + f'{CANARY} = "x"\n', "a key looks like an access token"),
        (f'[connector]\ndata_dir = "{CANARY}"\n{MINIMAL}', "key 'data_dir'"),
        (MINIMAL + f'[gpn]\nclient_id = "{CANARY}"\ntoken_env = "US_TOKEN"\n', "[gpn]"),
    ],
)
def test_token_pasted_into_any_key_is_refused_unechoed(
    tmp_path: Path, text: str, where: str
) -> None:
    token = canary()
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text.replace(CANARY, token)), ENV)
    message = str(caught.value)
    assert token not in message
    assert token not in repr(caught.value)
    assert "looks like an access token" in message
    assert where in message


def test_the_accounts_own_token_is_recognised_whatever_it_looks_like(tmp_path: Path) -> None:
    # A plain-looking token (no digits) is still recognised in another key: it is the value
    # of this file's token_env variable.
    token = "plainlowercasetokenvalue"
    assert not looks_like_token(token)
    text = MINIMAL + f'[accounts.options]\ntimezone = "{token}"\n'
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text), {"US_TOKEN": token})
    assert token not in str(caught.value)
    assert "key 'timezone'" in str(caught.value)


def test_base_url_with_a_query_or_credentials_is_refused(tmp_path: Path) -> None:
    for url in ("https://ci.example/?token=abc", "https://user:pw@ci.example"):
        with pytest.raises(ConfigError, match="no user:password@, query string"):
            load_config(write(tmp_path, MINIMAL + f'base_url = "{url}"\n'), ENV)


def test_plain_http_only_for_loopback_hosts(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="would send the token unencrypted"):
        load_config(write(tmp_path, MINIMAL + 'base_url = "http://ci.example.com"\n'), ENV)
    for url in ("http://127.0.0.1:5000", "http://localhost:8080", "http://[::1]:9000"):
        config = load_config(write(tmp_path, MINIMAL + f'base_url = "{url}"\n'), ENV)
        assert config.accounts[0].base_url == url


@pytest.mark.parametrize(
    "value",
    [
        "America/Chicago",
        "America/Argentina/Buenos_Aires",
        "scm.commerceinterface.com",
        "GROUPON_US_TOKEN_2024",
        "2024-12-24",
        "AmericaChicagoWarehouse",
        "6c0a2b1e-1111-2222-3333-444455556666",
        "/var/lib/ci-connector/data2024",
    ],
)
def test_ordinary_values_do_not_look_like_tokens(value: str) -> None:
    assert not looks_like_token(value)


# --- token_file ---------------------------------------------------------------------------


def _token_file(tmp_path: Path, mode: int, content: str) -> Path:
    path = tmp_path / "us.token"
    path.write_text(content, encoding="utf-8")
    path.chmod(mode)
    return path


FILE_CONFIG = MINIMAL.replace('token_env = "US_TOKEN"', 'token_file = "us.token"')


def test_token_file_readable_by_owner_only_is_used(tmp_path: Path) -> None:
    token = canary()
    _token_file(tmp_path, 0o600, token + "\n")
    config = load_config(write(tmp_path, FILE_CONFIG), {})
    assert config.accounts[0].token.reveal() == token
    assert token not in repr(config)
    config.require_token("us")


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660])
def test_token_file_others_can_read_is_refused(tmp_path: Path, mode: int) -> None:
    token = canary()
    path = _token_file(tmp_path, mode, token)
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, FILE_CONFIG), {})
    message = str(caught.value)
    assert f"permissions {mode:04o}" in message
    assert "too open" in message
    assert f"chmod 600 {path}" in message
    assert token not in message


def test_token_file_missing_or_empty_is_reported_when_used(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, FILE_CONFIG), {})
    with pytest.raises(ConfigError, match=r"us\.token does not exist"):
        config.require_token("us")
    _token_file(tmp_path, 0o600, "\n")
    config = load_config(write(tmp_path, FILE_CONFIG), {})
    with pytest.raises(ConfigError, match="is empty"):
        config.require_token("us")


def test_token_file_problems(tmp_path: Path) -> None:
    token = canary()
    _token_file(tmp_path, 0o600, f"{token}\nsecond line\n")
    with pytest.raises(ConfigError, match="only the token, on one line") as caught:
        load_config(write(tmp_path, FILE_CONFIG), {})
    assert token not in str(caught.value)
    both = FILE_CONFIG + 'token_env = "US_TOKEN"\n'
    with pytest.raises(ConfigError, match="token_env or token_file, not both"):
        load_config(write(tmp_path, both), ENV)


def test_gpn_token_file(tmp_path: Path) -> None:
    token = canary()
    _token_file(tmp_path, 0o600, token)
    text = MINIMAL + '[gpn]\nclient_id = "c"\ntoken_file = "us.token"\n'
    config = load_config(write(tmp_path, text), ENV)
    assert config.gpn is not None
    assert config.gpn.token.reveal() == token
