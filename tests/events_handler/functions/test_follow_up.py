"""The probe follow-up of an event: a scan-job message naming one vault, run by the queue worker."""

from __future__ import annotations

import json

import azure.functions as func

from lab.estate import WALKTHROUGH_SUBSCRIPTION
from lab.services import LabServices
from monitor.app.monitor_functions import ScanJob
from monitor.model import ScanTrigger
from monitor.store import store_from_environment
from tests.functions.test_function_app import call

PROBE_RULES = {"KV101", "KV102", "KV103", "KV104", "KV105", "KV106"}


def test_a_follow_up_probes_one_vault_with_one_get(lab: LabServices, app_settings: dict[str, str]) -> None:
    vault = str(lab.estate.vault_by_name("kv-se-demo")["id"])  # type: ignore[index]
    job = ScanJob(subscription=WALKTHROUGH_SUBSCRIPTION, vault_id=vault)
    lab.arm.server.request_counts.clear()

    call("scan_worker", func.QueueMessage(id="m-f", body=job.message().encode()))

    # One GET of the vault, and its subscription's perimeters (the walkthrough has none: one listing).
    assert dict(lab.arm.server.request_counts) == {
        "arm.vaults.get": 1,
        "arm.network_security_perimeters.list_by_subscription": 1,
    }
    store = store_from_environment(app_settings)
    (run,) = store.scan_runs(limit=1)
    assert run.vault == vault and run.trigger is ScanTrigger.QUEUE and run.counts["vaults"] == 1
    opened = {r.finding.rule_id for r in store.load_findings().values() if r.finding.vault_id == vault}
    assert opened & PROBE_RULES, opened
    assert {"teams", "slack"} <= {item.service for item in lab.sinks.received}
    store.close()


def test_a_follow_up_naming_a_vault_of_another_subscription_is_dropped(app_settings: dict[str, str]) -> None:
    body = json.dumps(
        {
            "subscription": WALKTHROUGH_SUBSCRIPTION,
            "vault_id": "/subscriptions/00000000-0000-0000-0000-0000000000ff/resourceGroups/rg"
            "/providers/Microsoft.KeyVault/vaults/kv-x",
        }
    ).encode()

    call("scan_worker", func.QueueMessage(id="m-g", body=body))

    store = store_from_environment(app_settings)
    (run,) = store.scan_runs(limit=1)
    assert "malformed scan job dropped" in run.errors[0].message
    store.close()
