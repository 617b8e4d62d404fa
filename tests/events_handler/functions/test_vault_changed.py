"""``vault_changed`` as the host runs it: a delivered body split into events and decoded by
azure-functions' own ``EventGridEventInConverter``, the user function called from
``app.get_functions()``, against the lab's ARM, DNS, Key Vault and sinks, and Azurite."""

from __future__ import annotations

import json
from typing import Any

import azure.functions as func
import pytest
from azure.functions.eventgrid import EventGridEventInConverter
from azure.functions.meta import Datum
from azure.storage.queue import QueueClient, TextBase64DecodePolicy

from lab.arm import GET_ROUTE, PERIMETERS_ROUTE
from lab.azurite import DEV_ACCOUNT, DEV_ACCOUNT_KEY
from lab.http import Fault
from lab.services import LabServices
from monitor.app.events import EventRetry
from monitor.store import StoreUnavailable, store_from_environment
from tests.events_handler.payloads import MALLORY_IP, cloud_event, event_grid_event
from tests.functions.test_function_app import bindings, call

OTHER_SUBSCRIPTION = "00000000-0000-0000-0000-0000000000ff"


def deliver(body: list[dict[str, Any]]) -> list[Any]:
    """What the host does with a delivered array: one invocation per element, each decoded by the
    worker's converter."""
    results = []
    for element in body:
        event = EventGridEventInConverter.decode(Datum(json.dumps(element), "json"), trigger_metadata={})
        results.append(call("vault_changed", event))
    return results


def _vault(lab: LabServices, name: str) -> str:
    return str(lab.estate.vault_by_name(name)["id"])  # type: ignore[index]


def _jobs(environ: dict[str, str]) -> list[dict[str, Any]]:
    queue = QueueClient.from_connection_string(
        environ["AzureWebJobsStorage"],
        environ["KVMON_SCAN_QUEUE"],
        message_decode_policy=TextBase64DecodePolicy(),
    )
    messages = list(queue.receive_messages(max_messages=32))
    for message in messages:
        queue.delete_message(message)
    return [json.loads(message.content) for message in messages]


def test_vault_changed_is_an_event_grid_trigger() -> None:
    (trigger,) = bindings("vault_changed")
    assert trigger["type"] == "eventGridTrigger" and trigger["name"] == "event"


def test_an_event_is_told_at_once_naming_the_actor_and_its_probes_follow(
    lab: LabServices, app_settings: dict[str, str]
) -> None:
    vault = _vault(lab, "kv-se-demo")
    deliver([event_grid_event(vault)])  # kvmon's first sight of the vault: its stored posture
    _jobs(app_settings)
    lab.sinks.clear()
    current = lab.estate.vault(vault)
    assert current is not None
    acls = dict(current["properties"]["networkAcls"], ipRules=[{"value": "198.51.100.0/24"}])
    lab.estate.update_vault(vault, properties={"networkAcls": acls}, modified_by="mallory@contoso.example")
    event = event_grid_event(vault)
    lab.arm.server.request_counts.clear()

    deliver([event, event])  # Event Grid delivered the same event twice

    # One GET of the vault and one listing of its subscription's perimeters (none in the walkthrough).
    assert dict(lab.arm.server.request_counts) == {GET_ROUTE: 1, PERIMETERS_ROUTE: 1}
    teams = lab.sinks.messages("teams")
    assert len(teams) == 1
    told = json.dumps(teams[0].json())
    assert "KV301" in told and "mallory@contoso.example" in told and MALLORY_IP in told
    jobs = _jobs(app_settings)
    assert jobs == [{"subscription": vault.split("/")[2], "vault_id": vault}]

    lab.sinks.clear()
    call("scan_worker", func.QueueMessage(id="follow-up", body=json.dumps(jobs[0]).encode()))

    store = store_from_environment(app_settings)
    probe_findings = {
        r.finding.rule_id for r in store.load_findings().values() if r.finding.rule_id.startswith("KV1")
    }
    store.close()
    assert probe_findings, "the follow-up opened no probe finding"
    assert lab.sinks.messages("teams"), "the probes' verdict was not told"


def test_the_follow_up_confirms_the_config_alert_once(
    lab: LabServices, app_settings: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    channels = json.loads(app_settings["KVMON_CHANNELS"])
    channels.append({"name": "siem", "kind": "webhook", "url_setting": "KVMON_SIEM_URL"})
    monkeypatch.setenv("KVMON_CHANNELS", json.dumps(channels))
    monkeypatch.setenv("KVMON_SIEM_URL", lab.sinks.webhook_url())
    vault = _vault(lab, "kv-se-demo")  # the walkthrough's: open to the internet (defaultAction Allow)

    deliver([event_grid_event(vault)])  # the config alert: KV001 opened, not yet proven
    (alert,) = lab.sinks.messages("webhook")
    assert ("opened", "KV001", None) in {
        (c["kind"], c["rule_id"], c["confirmed_by"]) for c in alert.json()["changes"]
    }
    (job,) = _jobs(app_settings)
    lab.sinks.clear()

    follow_up = func.QueueMessage(id="follow-up", body=json.dumps(job).encode())
    call("scan_worker", follow_up)

    (proof,) = lab.sinks.messages("webhook")
    changes = {(c["kind"], c["rule_id"]): c for c in proof.json()["changes"]}
    assert ("opened", "KV101") in changes
    confirmed = changes[("confirmed", "KV001")]
    assert confirmed["event"] == "changed" and confirmed["confirmed_by"].startswith("KV101 [")
    assert "Confirmed by the probes: KV101" in json.dumps(lab.sinks.messages("teams")[0].json())
    store = store_from_environment(app_settings)
    (claim,) = [r for r in store.load_findings().values() if r.finding.rule_id == "KV001"]
    store.close()
    assert claim.confirmed_at is not None and claim.confirmed_by == confirmed["confirmed_by"]

    lab.sinks.clear()
    call("scan_worker", follow_up)  # the queue delivered the follow-up again: nothing new to tell
    assert lab.sinks.received == []


def test_a_cloud_event_is_handled_alike(lab: LabServices, app_settings: dict[str, str]) -> None:
    deliver([cloud_event(_vault(lab, "kv-pl-demo"))])

    assert lab.arm.server.request_counts[GET_ROUTE] >= 1
    assert lab.sinks.messages("slack")


@pytest.mark.parametrize(
    "event",
    [
        event_grid_event(
            f"/subscriptions/{OTHER_SUBSCRIPTION}/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/kv-far"
        ),
        event_grid_event(
            "/subscriptions/00000000-0000-0000-0000-00000000a001/resourceGroups/rg-walkthrough/providers/Microsoft.KeyVault/vaults/kv-se-demo",
            event_type="Microsoft.Resources.ResourceWriteFailure",
            status="Failed",
        ),
        {"id": "garbage", "eventType": 42, "data": "not an object"},
    ],
    ids=["out-of-scope", "failed-write", "garbage"],
)
def test_what_is_not_a_vault_change_in_scope_is_answered_without_a_get(
    lab: LabServices, app_settings: dict[str, str], event: dict[str, Any]
) -> None:
    before = lab.arm.server.total_requests

    deliver([event])  # returns: Event Grid must not retry these

    assert lab.arm.server.total_requests == before
    assert lab.sinks.received == []


def test_arm_throttling_fails_the_delivery_and_the_retry_is_handled(
    lab: LabServices, app_settings: dict[str, str]
) -> None:
    event = event_grid_event(_vault(lab, "kv-se-demo"))
    lab.arm.server.inject(
        r"(?i).*/vaults/kv-se-demo$",
        Fault(
            status=429,
            body={"error": {"code": "TooManyRequests", "message": "slow"}},
            headers={"Retry-After": "0"},
            times=0,
        ),
    )

    with pytest.raises(EventRetry, match="Event Grid will deliver the event again"):
        deliver([event])
    assert lab.sinks.received == []

    lab.arm.server.clear_faults()
    deliver([event])
    assert len(lab.sinks.messages("teams")) == 1


def test_the_store_down_fails_the_delivery(
    lab: LabServices, app_settings: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(
        "KVMON_STORAGE",
        f"DefaultEndpointsProtocol=http;AccountName={DEV_ACCOUNT};AccountKey={DEV_ACCOUNT_KEY};"
        f"TableEndpoint=http://127.0.0.1:9/{DEV_ACCOUNT}",
    )
    before = lab.arm.server.total_requests

    with pytest.raises(StoreUnavailable):
        deliver([event_grid_event(_vault(lab, "kv-se-demo"))])
    assert lab.arm.server.total_requests == before


def test_vault_changed_queue_reads_the_event_event_grid_wrote_to_the_queue(
    lab: LabServices, app_settings: dict[str, str]
) -> None:
    (trigger,) = bindings("vault_changed_queue")
    assert (trigger["type"], trigger["queueName"]) == ("queueTrigger", "%KVMON_EVENT_QUEUE%")
    vault = _vault(lab, "kv-se-demo")
    # Event Grid writes one event per message, in the subscription's schema (the host decodes the
    # Base64 before the function sees the body).
    body = json.dumps(event_grid_event(vault)).encode()
    call("vault_changed_queue", func.QueueMessage(id="q-1", body=body))
    assert any(job.get("vault_id") == vault for job in _jobs(app_settings))  # read, judged, probes queued

    lab.arm.server.request_counts.clear()
    call("vault_changed_queue", func.QueueMessage(id="q-2", body=body))  # redelivered: folded
    assert dict(lab.arm.server.request_counts) == {}


def test_an_event_message_that_failed_every_attempt_is_a_recorded_scan_error(
    lab: LabServices, app_settings: dict[str, str]
) -> None:
    (trigger,) = bindings("poison_vault_changes")
    assert (trigger["type"], trigger["queueName"]) == ("queueTrigger", "%KVMON_EVENT_QUEUE%-poison")
    vault = _vault(lab, "kv-se-demo")
    event = event_grid_event(vault, event_id="e-poisoned")

    call("poison_vault_changes", func.QueueMessage(id="q-9", body=json.dumps(event).encode()))
    call("poison_vault_changes", func.QueueMessage(id="q-10", body=b"not an event"))

    store = store_from_environment(app_settings)
    runs = store.scan_runs(limit=5)
    store.close()
    errors = {(e.source, e.scope, e.message) for run in runs for e in run.errors}
    assert {run.trigger for run in runs} == {"event"}
    assert (
        "event",
        vault,
        f"event e-poisoned for {vault} failed on every attempt and was moved to the poison queue; "
        "the next scheduled scan reads the vault",
    ) in errors
    assert any(scope == "event queue" and message.startswith("message q-10 ") for _, scope, message in errors)
