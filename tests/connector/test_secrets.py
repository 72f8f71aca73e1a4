"""connector.secrets: Secret never renders; redact() and the logging filter scrub tokens."""

from __future__ import annotations

import io
import logging
import pickle

import pytest

from connector.secrets import (
    MASK,
    RedactingFilter,
    Secret,
    install_log_redaction,
    redact,
    register_secret,
)

TOKEN = "SecretsTestTok3nAa1Bb2Cc3Dd4Ee5"


def test_secret_never_renders() -> None:
    secret = Secret(TOKEN)
    assert secret.reveal() == TOKEN
    for text in (str(secret), repr(secret), f"{secret}", f"{secret:>40}", "%s" % (secret,)):  # noqa: UP031
        assert TOKEN not in text
        assert MASK in text


def test_secret_equality_hash_and_truth() -> None:
    assert Secret(TOKEN) == Secret(TOKEN)
    assert Secret(TOKEN) != Secret(TOKEN + "x")
    assert Secret(TOKEN) != TOKEN
    assert hash(Secret(TOKEN)) == hash(Secret(TOKEN))
    assert not Secret("")
    assert Secret(TOKEN)


def test_secret_refuses_non_strings_and_pickling() -> None:
    with pytest.raises(TypeError):
        Secret(123)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        pickle.dumps(Secret(TOKEN))


def test_redact_masks_registered_values_and_token_params() -> None:
    Secret(TOKEN)
    assert redact(f"GET /x?supplier_id=1&token={TOKEN}&page=2") == (
        "GET /x?supplier_id=1&token=***&page=2"
    )
    assert TOKEN not in redact(f"reason: {TOKEN} is wrong")
    # unregistered values are caught by the parameter pattern, whatever the case
    assert redact("TOKEN=abcdef&x=1") == "TOKEN=***&x=1"
    assert redact("x-auth-token: deadbeef") == "x-auth-token: ***"
    assert redact("nothing here") == "nothing here"


def test_register_ignores_very_short_values() -> None:
    register_secret("ab")
    assert redact("abc ab") == "abc ab"


def _capture(logger: logging.Logger) -> tuple[io.StringIO, logging.Handler]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(name)s %(message)s"))
    handler.addFilter(RedactingFilter())
    logger.addHandler(handler)
    return stream, handler


def test_filter_redacts_args_and_tracebacks() -> None:
    Secret(TOKEN)
    logger = logging.getLogger("tests.secrets.filter")
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    stream, handler = _capture(logger)
    try:
        logger.info("url=%s", f"/api?token={TOKEN}")
        try:
            raise RuntimeError(f"failed with {TOKEN}")
        except RuntimeError:
            logger.exception("boom")
    finally:
        logger.removeHandler(handler)
    output = stream.getvalue()
    assert TOKEN not in output
    assert "url=/api?token=***" in output
    assert "RuntimeError: failed with ***" in output


def test_install_is_idempotent_and_covers_urllib3() -> None:
    install_log_redaction()
    install_log_redaction()
    pool = logging.getLogger("urllib3.connectionpool")
    assert sum(isinstance(f, RedactingFilter) for f in pool.filters) == 1
    Secret(TOKEN)
    record = pool.makeRecord(
        pool.name, logging.DEBUG, __file__, 1, '"GET %s HTTP/1.1" 200', (f"/a?token={TOKEN}",), None
    )
    assert pool.filter(record)
    assert TOKEN not in record.getMessage()


def test_redaction_covers_child_loggers_and_handlers_added_later() -> None:
    """A filter on a named logger misses its children and later handlers; the factory doesn't."""
    import io
    import logging

    from connector.secrets import Secret, install_log_redaction

    canary = "CanaryChildLogger0123456789abcd"
    Secret(canary)
    install_log_redaction()
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)  # added after installation
    logger = logging.getLogger("urllib3.util.retry.child_for_test")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        logger.debug("GET /api/v4/get_orders?supplier_id=1&token=%s&page=2", canary)
        logger.warning("plain %s mention", canary)
    finally:
        logger.removeHandler(handler)
    text = stream.getvalue()
    assert "get_orders" in text
    assert "plain" in text
    assert canary not in text
