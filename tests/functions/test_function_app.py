"""The Functions app as the host sees it: indexed once, each function called with azure.functions
objects, against the lab's ARM, DNS, Key Vault, Log Analytics and webhook sinks, and Azurite."""

from __future__ import annotations

import json
import threading
from typing import Any

import azure.functions as func
import pytest
from azure.storage.queue import QueueClient, QueueServiceClient, TextBase64DecodePolicy

from lab.estate import WALKTHROUGH_SUBSCRIPTION
from lab.services import LabServices

SECOND_SUBSCRIPTION = "00000000-0000-0000-0000-00000000a002"

_INDEX_LOCK = threading.Lock()
_FUNCTIONS: dict[str, Any] = {}


def functions() -> dict[str, Any]:
    """``app.get_functions()`` once per app object, as the host does."""
    with _INDEX_LOCK:
        if not _FUNCTIONS:
            from function_app import app

            _FUNCTIONS.update({f.get_function_name(): f for f in app.get_functions()})
    return _FUNCTIONS


def bindings(name: str) -> list[dict[str, Any]]:
    return json.loads(functions()[name].get_function_json())["bindings"]


def call(name: str, *args: Any) -> Any:
    return functions()[name].get_user_function()(*args)


def http(
    method: str,
    url: str,
    *,
    route: dict[str, str] | None = None,
    params: dict[str, str] | None = None,
    body: bytes = b"",
) -> func.HttpRequest:
    return func.HttpRequest(method=method, url=url, route_params=route or {}, params=params or {}, body=body)


def answer(response: func.HttpResponse) -> tuple[int, Any]:
    body = response.get_body().decode()
    return response.status_code, json.loads(body) if response.mimetype == "application/json" else body


class Timer:
    past_due = False


# -- indexing ------------------------------------------------------------------------------------


def test_every_function_has_its_trigger_route_and_auth_level() -> None:
    triggers = {name: bindings(name)[0] for name in functions()}

    assert triggers["scheduled_scan"]["type"] == "timerTrigger"
    assert triggers["scheduled_scan"]["schedule"] == "%KVMON_SCAN_SCHEDULE%"
    assert triggers["scan_worker"] | {} == {
        "direction": "IN",
        "type": "queueTrigger",
        "name": "message",
        "queueName": "%KVMON_SCAN_QUEUE%",
        "connection": "AzureWebJobsStorage",
    }
    assert triggers["poison_scan_jobs"]["queueName"] == "%KVMON_SCAN_QUEUE%-poison"
    routes = {
        name: (t["route"], t["methods"], t["authLevel"])
        for name, t in triggers.items()
        if t["type"] == "httpTrigger"
    }
    assert routes == {
        "check_vault": ("vaults/{name}/check", ["GET"], "FUNCTION"),
        "probe": ("probe", ["POST"], "FUNCTION"),
        "findings": ("findings", ["GET"], "FUNCTION"),
        "report": ("report", ["GET"], "FUNCTION"),
        "health": ("health", ["GET"], "ANONYMOUS"),
    }


def test_host_json_retries_a_job_five_times_then_poisons_it() -> None:
    from tests.conftest import REPO

    host = json.loads((REPO / "host.json").read_text())
    assert host["version"] == "2.0"
    assert host["extensionBundle"]["version"] == "[4.*, 5.0.0)"
    assert host["extensions"]["queues"]["maxDequeueCount"] == 5


# -- the scheduled scan and its workers ----------------------------------------------------------


def queue(environ: dict[str, str], name: str = "kvmon-scan-jobs") -> QueueClient:
    return QueueClient.from_connection_string(
        environ["AzureWebJobsStorage"], name, message_decode_policy=TextBase64DecodePolicy()
    )


def test_the_timer_enqueues_one_job_per_subscription(app_settings, monkeypatch) -> None:
    monkeypatch.setenv("KVMON_SUBSCRIPTIONS", f"{WALKTHROUGH_SUBSCRIPTION},{SECOND_SUBSCRIPTION}")

    call("scheduled_scan", Timer())

    jobs = [json.loads(m.content) for m in queue(app_settings).receive_messages(max_messages=32)]
    assert sorted(job["subscription"] for job in jobs) == sorted(
        [WALKTHROUGH_SUBSCRIPTION, SECOND_SUBSCRIPTION]
    )


def test_the_worker_scans_the_subscription_of_a_real_queued_job(lab: LabServices, app_settings) -> None:
    call("scheduled_scan", Timer())
    (message,) = list(queue(app_settings).receive_messages(max_messages=32))

    call("scan_worker", func.QueueMessage(id=message.id, body=message.content.encode()))

    status, document = answer(call("findings", http("GET", "/api/findings", params={"status": "open"})))
    assert status == 200
    found = {(f["vault"], f["rule"]) for f in document["findings"]}
    assert {("kv-se-demo", "KV001"), ("kv-se-demo", "KV101"), ("kv-pl-demo", "KV103")} <= found
    teams = lab.sinks.messages("teams")
    assert len(teams) == 1  # one scan, one message per channel


def test_with_findings_in_another_account_the_jobs_land_where_the_worker_listens(
    lab: LabServices, app_settings, monkeypatch
) -> None:
    """Findings in their own account (KVMON_STORAGE): the timer's jobs still go to the storage the
    queue trigger names, and the worker fed from there writes its findings to KVMON_STORAGE."""
    from azure.data.tables import TableServiceClient

    from lab.azurite import Azurite

    with Azurite.start() as findings_account:
        monkeypatch.setenv("KVMON_STORAGE", findings_account.connection_string)
        trigger = bindings("scan_worker")[0]

        call("scheduled_scan", Timer())

        listened = queue({"AzureWebJobsStorage": app_settings[trigger["connection"]]})
        (message,) = list(listened.receive_messages(max_messages=32))
        with QueueServiceClient.from_connection_string(findings_account.connection_string) as queues:
            assert [q.name for q in queues.list_queues()] == []  # nothing enqueued beside the findings
        call("scan_worker", func.QueueMessage(id=message.id, body=message.content.encode()))

        with TableServiceClient.from_connection_string(findings_account.connection_string) as tables:
            assert any(t.name.startswith("kvmon") for t in tables.list_tables())
        status, document = answer(call("findings", http("GET", "/api/findings", params={"status": "open"})))
        assert status == 200 and ("kv-se-demo", "KV001") in {
            (f["vault"], f["rule"]) for f in document["findings"]
        }


def test_a_job_that_failed_every_attempt_is_a_recorded_scan_error(app_settings) -> None:
    body = json.dumps({"subscription": WALKTHROUGH_SUBSCRIPTION}).encode()

    call("poison_scan_jobs", func.QueueMessage(id="m-1", body=body))

    from monitor.store import store_from_environment

    (run,) = store_from_environment(app_settings).scan_runs(limit=5)
    assert run.errors[0].source == "queue" and run.errors[0].scope == WALKTHROUGH_SUBSCRIPTION
    assert "poison" in run.errors[0].message


def test_a_malformed_job_is_recorded_not_retried(app_settings) -> None:
    call("scan_worker", func.QueueMessage(id="m-2", body=b"not json"))

    from monitor.store import store_from_environment

    (run,) = store_from_environment(app_settings).scan_runs(limit=5)
    assert "malformed scan job" in run.errors[0].message


def test_the_worker_fails_loudly_while_the_store_is_down_and_loses_nothing_after(
    lab: LabServices, app_settings
) -> None:
    assert lab.azurite is not None
    body = json.dumps({"subscription": WALKTHROUGH_SUBSCRIPTION}).encode()
    lab.azurite.stop()
    try:
        with pytest.raises(Exception, match=r"(?i)store|connect|refused"):
            call("scan_worker", func.QueueMessage(id="m-3", body=body))
    finally:
        lab.azurite.restart()

    # The platform delivers the message again; this time everything is recorded.
    call("scan_worker", func.QueueMessage(id="m-3", body=body))
    status, document = answer(call("findings", http("GET", "/api/findings")))
    assert status == 200
    keys = [(f["vault"], f["rule"], f["subject"]) for f in document["findings"]]
    assert ("kv-se-demo", "KV001", "") in keys
    assert len(keys) == len(set(keys))


# -- HTTP ----------------------------------------------------------------------------------------


def test_check_returns_posture_probes_evidence_and_findings(app_settings) -> None:
    status, document = answer(
        call("check_vault", http("GET", "/api/vaults/kv-se-demo/check", route={"name": "kv-se-demo"}))
    )

    assert status == 200
    assert document["vault"]["name"] == "kv-se-demo"
    assert document["probes"]["internet"]["data_plane"]["verdict"] == "admitted"
    assert document["probes"]["se-subnet"]["data_plane"]["verdict"] == "admitted"
    assert {"KV001", "KV002", "KV101"} <= {f["rule"] for f in document["findings"]}
    assert {c["change"] for c in document["changes"]} == {"opened"}
    assert document["perimeter_evidence"] == []  # no KVMON_NSP_WORKSPACES


def test_check_answers_with_the_perimeter_log_evidence(lab: LabServices, app_settings, monkeypatch) -> None:
    """KVMON_NSP_WORKSPACES set: the check reads the perimeter's log too and answers with it."""
    from lab.loganalytics import PerimeterAccessRecord

    vault = lab.estate.vault_by_name("kv-se-demo")
    assert vault is not None
    monkeypatch.setenv("KVMON_NSP_WORKSPACES", "nsp-workspace")
    lab.logs.record_perimeter_access(
        "nsp-workspace",
        PerimeterAccessRecord(
            time=lab.estate.now(),
            vault_id=vault["id"],
            perimeter_id=vault["id"].split("/providers/")[0]
            + "/providers/Microsoft.Network/networkSecurityPerimeters/nsp",
            category="NspPublicInboundPerimeterRulesAllowed",
            source_address="203.0.113.7",
            matched_rule="allow-all",
        ),
    )
    status, document = answer(
        call("check_vault", http("GET", "/api/vaults/kv-se-demo/check", route={"name": "kv-se-demo"}))
    )
    assert status == 200
    (evidence,) = document["perimeter_evidence"]
    assert evidence["workspace_id"] == "nsp-workspace" and evidence["complete"] is True
    (row,) = evidence["access"]
    assert (row["source_address"], row["matched_rule"]) == ("203.0.113.7", "allow-all")
    assert "KV205" in {f["rule"] for f in document["findings"]}


def test_check_stores_but_notifies_only_when_asked(lab: LabServices, app_settings) -> None:
    request = http("GET", "/api/vaults/kv-pl-demo/check", route={"name": "kv-pl-demo"})
    assert answer(call("check_vault", request))[0] == 200
    assert lab.sinks.messages("teams") == []

    lab.estate.update_vault(
        lab.estate.vault_by_name("kv-pl-demo")["id"], properties={"publicNetworkAccess": "Disabled"}
    )
    asked = http(
        "GET", "/api/vaults/kv-pl-demo/check", route={"name": "kv-pl-demo"}, params={"notify": "true"}
    )
    status, document = answer(call("check_vault", asked))
    assert status == 200
    assert ("resolved", "KV008") in {(c["change"], c["rule"]) for c in document["changes"]}
    assert len(lab.sinks.messages("teams")) == 1


@pytest.mark.parametrize(
    ("name", "status", "code"),
    [
        ("kv-nope", 404, "VaultNotFound"),
        ("a", 400, "InvalidVaultName"),
        ("bad--name", 400, "InvalidVaultName"),
        ("kv-se-demo.evil.example", 400, "InvalidVaultName"),
        ("../../etc", 400, "InvalidVaultName"),
    ],
)
def test_check_refuses_bad_names_and_answers_unknown_vaults_404(app_settings, name, status, code) -> None:
    got, document = answer(
        call("check_vault", http("GET", f"/api/vaults/{name}/check", route={"name": name}))
    )
    assert (got, document["error"]["code"]) == (status, code)


def test_check_refuses_a_subscription_outside_the_scope(app_settings) -> None:
    request = http(
        "GET",
        "/api/vaults/kv-se-demo/check",
        route={"name": "kv-se-demo"},
        params={"subscription": SECOND_SUBSCRIPTION},
    )
    status, document = answer(call("check_vault", request))
    assert (status, document["error"]["code"]) == (400, "OutOfScope")


def test_probe_endpoint_probes_from_this_vantage_point(app_settings, monkeypatch) -> None:
    monkeypatch.setenv("KVMON_VANTAGE", "internet")
    status, document = answer(call("probe", http("POST", "/api/probe", body=b'{"vaults": ["kv-se-demo"]}')))

    assert status == 200 and document["vantage"] == "internet"
    (result,) = document["results"]
    assert result["data_plane"]["verdict"] == "admitted"
    assert result["data_plane"]["client_address"] is None or result["health"]["seen_address"] == "127.30.0.5"


@pytest.mark.parametrize(
    "body",
    [
        b'{"vaults": ["evil.example.com"]}',
        b'{"vaults": ["kv.vault.azure.net:8443"]}',
        b"{not json",
        b'{"vaults": []}',
    ],
)
def test_probe_endpoint_refuses_names_outside_the_scope(app_settings, body) -> None:
    status, document = answer(call("probe", http("POST", "/api/probe", body=body)))
    assert status == 400 and document["error"]["code"] == "BadRequest"


def test_report_serves_the_latest_scan_as_html(app_settings) -> None:
    call("check_vault", http("GET", "/api/vaults/kv-se-demo/check", route={"name": "kv-se-demo"}))

    response = call("report", http("GET", "/api/report"))
    assert response.status_code == 200 and response.mimetype == "text/html"
    assert "kv-se-demo" in response.get_body().decode()


def test_health_answers_and_reveals_nothing_about_vaults(app_settings) -> None:
    status, document = answer(call("health", http("GET", "/api/health")))
    assert status == 200 and document == {"status": "ok", "service": "kvmon"}


def test_a_probe_deployment_answers_only_probe_and_health(app_settings, monkeypatch) -> None:
    monkeypatch.setenv("KVMON_ROLE", "probe")
    status, document = answer(call("findings", http("GET", "/api/findings")))
    assert (status, document["error"]["code"]) == (404, "NotAMonitor")
    assert call("scheduled_scan", Timer()) is None


def test_a_bad_setting_is_a_500_naming_the_setting(app_settings, monkeypatch) -> None:
    monkeypatch.setenv("KVMON_PROBE_TIMEOUT", "soon")
    status, document = answer(call("findings", http("GET", "/api/findings")))
    assert status == 500 and "KVMON_PROBE_TIMEOUT" in document["error"]["message"]
