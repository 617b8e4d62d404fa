"""Each kind of error an HTTP function raises gets the status of its kind, through the real
azure-functions request and response types: 400 input, 500 configuration (naming the setting),
502 source, 503 store, 500 and one generic line for anything else; never a traceback or a secret."""

from __future__ import annotations

import datetime as dt
import logging
import os
import re

import pytest

from lab.services import LabServices
from monitor.errors import ConfigurationError, InputError
from monitor.store import store_from_environment
from tests.functions.test_function_app import answer, call, http


def test_an_input_error_is_a_400_with_its_message(app_settings, monkeypatch) -> None:
    def refuses(*_: object, **__: object) -> None:
        raise InputError("vault_name: not a Key Vault name")

    monkeypatch.setattr("monitor.app.monitor_functions.run_scan", refuses)
    status, document = answer(
        call("check_vault", http("GET", "/api/vaults/kv-se-demo/check", route={"name": "kv-se-demo"}))
    )
    assert status == 400
    assert document["error"] == {"code": "BadRequest", "message": "vault_name: not a Key Vault name"}


def test_a_missing_baseline_is_a_500_naming_the_file(app_settings, monkeypatch, tmp_path) -> None:
    missing = tmp_path / "baseline.yaml"
    monkeypatch.setenv("KVMON_BASELINE", str(missing))
    status, document = answer(
        call("check_vault", http("GET", "/api/vaults/kv-se-demo/check", route={"name": "kv-se-demo"}))
    )
    assert (status, document["error"]["code"]) == (500, "Misconfigured")
    assert str(missing) in document["error"]["message"]
    assert "Traceback" not in document["error"]["message"]


def test_a_configuration_error_quoting_a_webhook_url_answers_it_redacted(app_settings, monkeypatch) -> None:
    url = os.environ["KVMON_TEAMS_URL"]

    def misconfigured(*_: object, **__: object) -> None:
        raise ConfigurationError(f"KVMON_TEAMS_URL: {url} answered 404")

    monkeypatch.setattr("monitor.app.runtime.build_runtime", misconfigured)
    response = call("check_vault", http("GET", "/api/vaults/kv-se-demo/check", route={"name": "kv-se-demo"}))
    status, document = answer(response)
    assert (status, document["error"]["code"]) == (500, "Misconfigured")
    assert document["error"]["message"].startswith("KVMON_TEAMS_URL: [redacted]")
    assert url not in response.get_body().decode()


def test_an_unreadable_stored_report_is_a_502(app_settings) -> None:
    store = store_from_environment(app_settings)
    store.save_report("20260101T000000Z-x", {"schema": "kvmon.report/v0"}, started_at=dt.datetime.now(dt.UTC))

    status, document = answer(call("report", http("GET", "/api/report")))
    assert (status, document["error"]["code"]) == (502, "SourceUnreadable")
    assert "kvmon.report/v0" in document["error"]["message"]


def test_a_store_that_is_down_is_a_503(lab: LabServices, app_settings) -> None:
    assert lab.azurite is not None
    lab.azurite.stop()
    try:
        response = call("findings", http("GET", "/api/findings"))
    finally:
        lab.azurite.restart()
    status, document = answer(response)
    assert (status, document["error"]["code"]) == (503, "StoreUnavailable")
    account_key = re.search(r"AccountKey=([^;]+)", app_settings["AzureWebJobsStorage"])
    assert account_key is not None and account_key.group(1) not in response.get_body().decode()


def test_an_unexpected_failure_is_a_500_with_one_generic_line_and_the_traceback_logged(
    app_settings, monkeypatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(*_: object, **__: object) -> None:
        raise RuntimeError("token=eyJhbGciOi.secret")

    monkeypatch.setattr("monitor.app.monitor_functions.store_from_environment", broken)
    with caplog.at_level(logging.ERROR, logger="kvmon.functions"):
        response = call("findings", http("GET", "/api/findings"))
    status, document = answer(response)
    assert (status, document["error"]["code"]) == (500, "InternalError")
    assert document["error"]["message"] == "the request failed; the function's log has the details"
    assert "secret" not in response.get_body().decode()
    (record,) = [r for r in caplog.records if r.name == "kvmon.functions"]
    assert record.getMessage() == "findings failed" and record.exc_info is not None


def test_the_probe_function_answers_a_bad_setting_the_same_way(app_settings, monkeypatch) -> None:
    monkeypatch.setenv("KVMON_PROBE_PORT", "70000")
    status, document = answer(call("probe", http("POST", "/api/probe", body=b'{"vaults": ["kv-se-demo"]}')))
    assert (status, document["error"]["code"]) == (500, "Misconfigured")
    assert document["error"]["message"].startswith("KVMON_PROBE_PORT")
