"""ResourceGraphChangeHistory through the real azure-mgmt-resourcegraph client against the lab's
Resource Graph, whose ``resourcechanges`` come from the writes the lab's ARM served."""

from __future__ import annotations

import datetime as dt

import pytest
from azure.core.exceptions import HttpResponseError
from azure.mgmt.resourcegraph import ResourceGraphClient
from azure.mgmt.resourcegraph.models import QueryRequest

from lab.arm import ArmEmulator
from lab.credential import LabCredential
from lab.estate import Estate
from lab.http import Fault, LinkFault, RecordingServer
from lab.resourcegraph import QUERY_ROUTE, ResourceGraphEmulator
from lab.tls import LabPki
from monitor.model import ActorSource, ErrorSource
from monitor.sources.change_history import VAULTS_PER_QUERY, ResourceGraphChangeHistory, build_change_query
from tests.changes.conftest import (
    CHANGER_APP_ID,
    add_firewalled_vaults,
    fast_history,
    open_firewall,
    subscription,
)

SUB_A, SUB_B = subscription(1), subscription(2)


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def test_a_patch_by_a_second_identity_is_named_with_client_operation_and_time(
    estate: Estate,
    arm: ArmEmulator,
    graph: ResourceGraphEmulator,
    history: ResourceGraphChangeHistory,
    pki: LabPki,
) -> None:
    [vault_id] = add_firewalled_vaults(estate, SUB_A, 1)
    before = now()
    open_firewall(arm.url, pki, vault_id)
    after = now()
    result = history.network_actors({vault_id: before})
    assert result.errors == [] and result.requests == 1
    actor = result.actors[vault_id.lower()]
    assert actor.source is ActorSource.RESOURCE_CHANGES
    # ARM stamps an application by its app id; Resource Graph's changedBy says the same.
    assert (actor.app_id, actor.principal_type, actor.upn, actor.name) == (
        CHANGER_APP_ID,
        "Application",
        None,
        None,
    )
    assert actor.client_type == "Unknown"  # Azure's word for a client it does not recognise
    assert actor.operation == "Microsoft.KeyVault/vaults/write"
    assert actor.changed_at is not None and before <= actor.changed_at <= after
    assert actor.correlation_id
    assert graph.server.request_counts[QUERY_ROUTE] == 1


def test_the_newest_network_change_is_named_and_later_tag_changes_do_not_count(
    estate: Estate, graph: ResourceGraphEmulator, history: ResourceGraphChangeHistory
) -> None:
    [vault_id] = add_firewalled_vaults(estate, SUB_A, 1)
    since = now()
    acls = estate.vault(vault_id)["properties"]["networkAcls"]  # type: ignore[index]
    estate.update_vault(
        vault_id, properties={"networkAcls": {**acls, "ipRules": []}}, modified_by="bob@contoso.example"
    )
    estate.update_vault(
        vault_id,
        properties={"publicNetworkAccess": "Disabled"},
        modified_by="carol@contoso.example",
        modified_by_type="User",
        client_type="Azure Portal",
    )
    estate.update_vault(vault_id, properties={}, tags={"owner": "dave"}, modified_by="dave@contoso.example")
    actor = history.network_actors({vault_id: since}).actors[vault_id.lower()]
    assert (actor.upn, actor.principal_type, actor.client_type) == (
        "carol@contoso.example",
        "User",
        "Azure Portal",
    )
    assert actor.describe() == "carol@contoso.example (User)"


def test_each_vault_is_judged_from_its_own_window(
    estate: Estate, history: ResourceGraphChangeHistory
) -> None:
    early, late = add_firewalled_vaults(estate, SUB_A, 2)
    for vault_id in (early, late):
        estate.update_vault(
            vault_id, properties={"publicNetworkAccess": "Disabled"}, modified_by="erin@contoso.example"
        )
    after_changes = now()
    # One query asks about both from the earliest window start; the later vault's change is older
    # than its own window, so it is not the change that made that vault differ.
    result = history.network_actors({early: after_changes - dt.timedelta(minutes=1), late: after_changes})
    assert list(result.actors) == [early.lower()]
    assert result.requests == 1


def test_a_vault_created_again_is_named_by_its_creator_and_an_untouched_one_by_nobody(
    estate: Estate, history: ResourceGraphChangeHistory
) -> None:
    recreated, untouched = add_firewalled_vaults(estate, SUB_A, 2)
    since = now()
    estate.remove_vault(recreated, modified_by="frank@contoso.example")
    estate.add_vault(
        subscription_id=SUB_A,
        resource_group="rg-app",
        name=recreated.rsplit("/", 1)[1],
        modified_by="frank@contoso.example",
        client_type="Azure CLI",
    )
    result = history.network_actors({recreated: since, untouched: since})
    assert list(result.actors) == [recreated.lower()]
    assert (result.actors[recreated.lower()].upn, result.actors[recreated.lower()].client_type) == (
        "frank@contoso.example",
        "Azure CLI",
    )


def test_many_vaults_go_in_batches_of_fifty(estate: Estate, history: ResourceGraphChangeHistory) -> None:
    ids = [vault for index in range(3) for vault in add_firewalled_vaults(estate, subscription(index), 40)]
    since = now()
    for vault_id in ids:
        estate.update_vault(
            vault_id, properties={"publicNetworkAccess": "Disabled"}, modified_by="gina@contoso.example"
        )
    result = history.network_actors(dict.fromkeys(ids, since))
    assert len(ids) == 120 and result.requests == 3 == -(-len(ids) // VAULTS_PER_QUERY)
    assert set(result.actors) == {vault_id.lower() for vault_id in ids} and result.errors == []


def test_a_change_younger_than_the_lag_is_not_there_yet(
    estate: Estate, graph: ResourceGraphEmulator, history: ResourceGraphChangeHistory
) -> None:
    [vault_id] = add_firewalled_vaults(estate, SUB_A, 1)
    since = now()
    estate.update_vault(
        vault_id, properties={"publicNetworkAccess": "Disabled"}, modified_by="hank@contoso.example"
    )
    graph.change_lag = dt.timedelta(minutes=5)
    assert history.network_actors({vault_id: since}).actors == {}
    later = now() + dt.timedelta(minutes=6)
    estate.clock = lambda: later
    assert history.network_actors({vault_id: since}).actors[vault_id.lower()].upn == "hank@contoso.example"


def test_an_unreadable_subscription_is_left_out_silently(
    estate: Estate, history: ResourceGraphChangeHistory
) -> None:
    [readable] = add_firewalled_vaults(estate, SUB_A, 1)
    estate.add_subscription(SUB_B, forbidden=True)
    [hidden] = add_firewalled_vaults(estate, SUB_B, 1)
    since = now()
    for vault_id in (readable, hidden):
        estate.update_vault(
            vault_id, properties={"publicNetworkAccess": "Disabled"}, modified_by="ivy@contoso.example"
        )
    result = history.network_actors({readable: since, hidden: since})
    assert list(result.actors) == [readable.lower()] and result.errors == []


@pytest.mark.parametrize(
    ("fault", "code", "words"),
    [
        (
            Fault(
                status=429,
                times=0,
                headers={"Retry-After": "0"},
                body={"error": {"code": "RateLimiting", "message": "throttled"}},
            ),
            "429",
            "RateLimiting",
        ),
        (
            Fault(
                status=403,
                body={"error": {"code": "AuthorizationFailed", "message": "no read on the subscription"}},
            ),
            "403",
            "AuthorizationFailed",
        ),
        (Fault(status=200, delay_s=2.5, times=0), None, "timed out"),
    ],
    ids=["throttled", "forbidden", "timeout"],
)
def test_a_fault_is_a_scan_error_per_subscription_and_names_nobody(
    estate: Estate, graph: ResourceGraphEmulator, pki: LabPki, fault: Fault, code: str | None, words: str
) -> None:
    ids = add_firewalled_vaults(estate, SUB_A, 2) + add_firewalled_vaults(estate, SUB_B, 1)
    since = now()
    for vault_id in ids:
        estate.update_vault(
            vault_id, properties={"publicNetworkAccess": "Disabled"}, modified_by="jack@contoso.example"
        )
    graph.fail_change_queries(fault)
    result = fast_history(graph.url, pki, timeout_s=0.5, retry_total=0).network_actors(
        dict.fromkeys(ids, since)
    )
    assert result.actors == {}
    assert [(e.source, e.scope, e.code) for e in result.errors] == [
        (ErrorSource.RESOURCE_GRAPH, SUB_A, code),
        (ErrorSource.RESOURCE_GRAPH, SUB_B, code),
    ]
    assert "who changed 2 vault(s) stays unknown" in result.errors[0].message
    assert words.lower() in result.errors[0].message.lower()


def test_a_change_query_redirected_elsewhere_or_looping_is_a_scan_error(
    estate: Estate, graph: ResourceGraphEmulator, pki: LabPki
) -> None:
    ids = add_firewalled_vaults(estate, SUB_A, 1)
    since = now()
    estate.update_vault(
        ids[0], properties={"publicNetworkAccess": "Disabled"}, modified_by="lea@contoso.example"
    )
    history = fast_history(graph.url, pki, retry_total=0)
    with RecordingServer() as elsewhere:
        graph.fail_change_queries(
            Fault(
                status=307,
                headers={"Location": f"{elsewhere.url}/providers/Microsoft.ResourceGraph/resources"},
            )
        )
        redirected = history.network_actors(dict.fromkeys(ids, since))
        assert elsewhere.requests == []
    graph.mislink(LinkFault.SELF)
    looped = history.network_actors(dict.fromkeys(ids, since))

    assert redirected.actors == {}
    # The loop's first page came from Resource Graph itself: what it said is kept, once.
    assert [actor.upn for actor in looped.actors.values()] == ["lea@contoso.example"]
    assert [(e.scope, e.code) for e in redirected.errors + looped.errors] == [
        (SUB_A, "RedirectElsewhere"),
        (SUB_A, "PageLoop"),
    ]
    assert "change query stopped: refused to follow a redirect" in redirected.errors[0].message
    assert "$skipToken repeated" in looped.errors[0].message


def test_an_id_that_is_no_vaults_is_an_error_and_the_others_are_asked(
    estate: Estate, history: ResourceGraphChangeHistory
) -> None:
    [vault_id] = add_firewalled_vaults(estate, SUB_A, 1)
    since = now()
    estate.update_vault(
        vault_id, properties={"publicNetworkAccess": "Disabled"}, modified_by="kim@contoso.example"
    )
    result = history.network_actors(
        {vault_id: since, "/subscriptions/x/resourceGroups/rg'/providers/other": since}
    )
    assert list(result.actors) == [vault_id.lower()]
    [error] = result.errors
    assert "change history not asked" in error.message


def test_the_emulator_answers_kvmons_change_query_only(graph: ResourceGraphEmulator, pki: LabPki) -> None:
    client = ResourceGraphClient(
        LabCredential(),
        base_url=graph.url,
        credential_scopes=[f"{graph.url}/.default"],
        connection_verify=pki.ca_path,
    )
    vault_id = f"/subscriptions/{SUB_A}/resourceGroups/rg-app/providers/Microsoft.KeyVault/vaults/kv-one"
    graph.estate.add_subscription(SUB_A)
    edited = build_change_query(vault_ids=[vault_id], since=now()).replace("arg_max", "arg_min")
    with client, pytest.raises(HttpResponseError) as raised:
        client.resources(QueryRequest(subscriptions=[SUB_A], query=edited))
    assert raised.value.status_code == 400
    assert raised.value.error is not None and raised.value.error.details[0].code == "InvalidQuery"
