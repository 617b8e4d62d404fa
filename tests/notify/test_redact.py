"""Secrets never show: not in repr, str or f-strings, and not in any piece an HTTP library quotes."""

from __future__ import annotations

import logging
import pickle

import pytest

from monitor.config.secret import REDACTED, Secret
from monitor.outputs.notify.redact import redact, redacting_logs

TEAMS_URL = (
    "https://prod-07.westeurope.logic.azure.com:443/workflows/0a1b2c3d4e5f6789/triggers/manual/paths/invoke"
    "?api-version=2016-06-01&sp=%2Ftriggers%2Fmanual%2Frun&sv=1.0&sig=S3cr3tSig-Xy9_abcdef"
)


def test_a_secret_shows_nothing() -> None:
    secret = Secret(TEAMS_URL)
    for shown in (repr(secret), str(secret), f"{secret}", f"{secret!r}", "%s" % secret):  # noqa: UP031
        assert "0a1b2c3d" not in shown and "S3cr3t" not in shown
    assert secret.reveal() == TEAMS_URL
    assert secret == Secret(TEAMS_URL) and secret != Secret(TEAMS_URL + "x")
    with pytest.raises(TypeError):
        pickle.dumps(secret)
    with pytest.raises(ValueError):
        Secret("  ")


@pytest.mark.parametrize(
    "message",
    [
        f"POST {TEAMS_URL} failed",
        # urllib3 quotes the path and query alone
        "HTTPSConnectionPool(host='prod-07.westeurope.logic.azure.com', port=443): Max retries exceeded with url: "
        "/workflows/0a1b2c3d4e5f6789/triggers/manual/paths/invoke?api-version=2016-06-01&sp=%2Ftriggers%2Fmanual%2Frun&sv=1.0&sig=S3cr3tSig-Xy9_abcdef",
        # or a piece of it, sometimes decoded
        "workflow 0a1b2c3d4e5f6789 rejected signature S3cr3tSig-Xy9_abcdef for sp=/triggers/manual/run",
    ],
)
def test_redact_hides_every_piece_of_a_url(message: str) -> None:
    cleaned = redact(message, [Secret(TEAMS_URL)])
    assert REDACTED in cleaned
    for piece in (
        "0a1b2c3d4e5f6789",
        "S3cr3tSig-Xy9_abcdef",
        "%2Ftriggers%2Fmanual%2Frun",
        "/triggers/manual/run",
    ):
        assert piece not in cleaned


def test_redact_keeps_what_is_not_secret() -> None:
    cleaned = redact(
        "cannot reach prod-07.westeurope.logic.azure.com: the triggers are manual", [Secret(TEAMS_URL), None]
    )
    assert cleaned == "cannot reach prod-07.westeurope.logic.azure.com: the triggers are manual"
    assert redact("signed with hmac-key-42!", [Secret("hmac-key-42")]) == f"signed with {REDACTED}!"


def test_redacting_logs_cleans_records_of_the_http_stack(caplog: pytest.LogCaptureFixture) -> None:
    secret = Secret(TEAMS_URL)
    http_logger = logging.getLogger("urllib3.connectionpool")
    with caplog.at_level(logging.DEBUG):
        with redacting_logs([secret]):
            http_logger.debug(
                '%s "POST %s HTTP/1.1" 500 0', "https://host:443", TEAMS_URL.split(":443", 1)[1]
            )
        http_logger.debug("after: %s", "plain")
    assert "0a1b2c3d4e5f6789" not in caplog.text and "S3cr3tSig" not in caplog.text
    assert "after: plain" in caplog.text
    assert not http_logger.filters  # the filter is gone afterwards
