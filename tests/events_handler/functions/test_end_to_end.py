"""From an ARM write to the message: the lab's ARM announces a PATCH made through
azure-mgmt-keyvault, the lab's Event Grid delivers it (twice) to ``vault_changed`` through
azure-functions' own converter, and Teams hears once who did it."""

from __future__ import annotations

import json

import azure.functions as func
from azure.mgmt.keyvault import KeyVaultManagementClient
from azure.mgmt.keyvault.models import NetworkRuleSet, VaultPatchParameters, VaultPatchProperties

from lab.arm import GET_ROUTE
from lab.credential import LabCredential
from lab.estate import WALKTHROUGH_SUBSCRIPTION
from lab.eventgrid import EventGridEmulator, FunctionTarget
from lab.services import LabServices
from lab.tls import lab_pki
from tests.functions.test_function_app import Timer, call, functions, queue

FAST = 0.001  # Event Grid's retry schedule in milliseconds


def _widen(lab: LabServices) -> None:
    """Mallory adds an IP rule for the whole internet to kv-se-demo (one PATCH through the SDK)."""
    person = LabCredential(claims={"upn": "mallory@contoso.example", "name": "Mallory Example"})
    with KeyVaultManagementClient(
        person,
        WALKTHROUGH_SUBSCRIPTION,
        base_url=lab.arm.url,
        credential_scopes=[f"{lab.arm.url}/.default"],
        connection_verify=lab_pki().ca_path,
        retry_total=0,
    ) as client:
        current = client.vaults.get("rg-walkthrough", "kv-se-demo").properties.network_acls
        client.vaults.update(
            "rg-walkthrough",
            "kv-se-demo",
            VaultPatchParameters(
                properties=VaultPatchProperties(
                    network_acls=NetworkRuleSet(
                        default_action=current.default_action,
                        bypass=current.bypass,
                        ip_rules=[{"value": "0.0.0.0/0"}],
                        virtual_network_rules=current.virtual_network_rules,
                    )
                )
            ),
        )


def test_an_arm_write_reaches_teams_once_naming_the_person(
    lab: LabServices, app_settings: dict[str, str]
) -> None:
    call("scheduled_scan", Timer())  # the timer's scan: the stored state
    jobs = queue(app_settings)
    for message in jobs.receive_messages(max_messages=32):
        call("scan_worker", func.QueueMessage(id=message.id, body=message.content.encode()))
        jobs.delete_message(message)
    lab.sinks.clear()
    events = lab.subscribe(
        EventGridEmulator(
            target=FunctionTarget(functions()["vault_changed"]),
            duplicate_fraction=1.0,
            time_scale=FAST,
            seed=7,
        )
    )
    lab.arm.server.request_counts.clear()

    _widen(lab)
    events.wait_idle(30)

    assert len(events.attempts) == 2 and all(attempt.succeeded for attempt in events.attempts)
    assert lab.arm.server.request_counts[GET_ROUTE] == 2  # the SDK's GET before the PATCH, kvmon's one
    teams = lab.sinks.messages("teams")
    assert len(teams) == 1
    told = json.dumps(teams[0].json())
    assert "KV301" in told and "mallory@contoso.example" in told
    follow_ups = [json.loads(m.content) for m in jobs.receive_messages(max_messages=32)]
    assert [job.get("vault_id", "").rsplit("/", 1)[-1] for job in follow_ups] == ["kv-se-demo"]
