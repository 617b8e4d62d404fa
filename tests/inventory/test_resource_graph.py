"""ResourceGraphInventory through the real azure-mgmt-resourcegraph client against the lab's
Resource Graph (served on the lab ARM's endpoint, as in Azure), the auto choice between the two
inventory sources, the synthetic estates and the query checked by the Kusto language service."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator

import pytest

from lab.arm import LIST_ROUTE, ArmEmulator
from lab.credential import LabCredential
from lab.estate import Estate
from lab.estate_factory import (
    KINDS,
    IndexedEstate,
    subscription_id_for,
    synthetic_estate,
    synthetic_vaults,
)
from lab.http import Fault
from lab.resourcegraph import QUERY_ROUTE, ResourceGraphEmulator
from lab.tls import LabPki
from monitor.app.runtime import build_inventory
from monitor.config.settings import Settings
from monitor.sources.arm import ArmInventory
from monitor.sources.inventory import ThresholdInventory
from monitor.sources.resource_graph import (
    ResourceGraphInventory,
    build_vault_query,
    parse_resets_after,
)
from tests.inventory.conftest import SUB_A, SUB_B, SUB_FORBIDDEN, add_vaults
from tests.kusto.test_kql import run_checker

QUERY_PATH = "^/providers/Microsoft.ResourceGraph/resources$"


@pytest.fixture(scope="module")
def _servers() -> Iterator[tuple[ArmEmulator, ResourceGraphEmulator]]:
    with ArmEmulator(Estate(), page_size=4) as arm:
        # A quota no test reaches by accident; the quota tests make their own emulator.
        yield arm, ResourceGraphEmulator(Estate(), page_size=4, quota=1000, server=arm.server).start()


@pytest.fixture
def graph(
    _servers: tuple[ArmEmulator, ResourceGraphEmulator], estate: Estate
) -> Iterator[ResourceGraphEmulator]:
    """The ARM server with Resource Graph on it (one per module), a fresh world per test."""
    arm, emulator = _servers
    arm.estate = estate
    emulator.reset(estate)
    emulator.quota, emulator.quota_window_s = 1000, 5.0  # the quota tests lower it
    arm.server.request_counts.clear()
    yield emulator
    arm.server.clear_faults()


@pytest.fixture
def arm(_servers: tuple[ArmEmulator, ResourceGraphEmulator], graph: ResourceGraphEmulator) -> ArmEmulator:
    return _servers[0]


def graph_inventory(graph: ResourceGraphEmulator, pki: LabPki, **overrides: object) -> ResourceGraphInventory:
    options: dict[str, object] = {
        "arm_endpoint": graph.url,
        "connection_verify": pki.ca_path,
        "timeout_s": 10,
        "retry_total": 3,
        "retry_backoff_factor": 0.0,  # Retry-After is still honoured
        **overrides,
    }
    return ResourceGraphInventory(LabCredential(), **options)  # type: ignore[arg-type]


def test_pages_are_followed_through_skip_tokens(
    estate: Estate, graph: ResourceGraphEmulator, pki: LabPki
) -> None:
    names_a = add_vaults(estate, SUB_A, 6)
    names_b = add_vaults(estate, SUB_B, 3)
    result = graph_inventory(graph, pki).list_vaults([SUB_B, SUB_A])
    # 9 vaults + 2 subscription rows, 4 rows a page: 3 pages, in the subscriptions' order given.
    assert [p.name for p in result.postures] == names_b + names_a
    assert result.errors == []
    assert result.subscriptions_complete == {SUB_A, SUB_B}
    assert (result.pages, result.requests) == (3, 3)
    assert graph.server.request_counts[QUERY_ROUTE] == 3
    first = result.postures[-1]
    assert (first.subscription_id, first.resource_group, first.default_action) == (SUB_A, "rg-app", "Deny")
    assert str(first.ip_rules[0].network) == "203.0.113.0/24"


def test_the_same_postures_as_arm_but_for_system_data(
    graph: ResourceGraphEmulator, arm: ArmEmulator, pki: LabPki
) -> None:
    estate = synthetic_estate(vaults=60, subscriptions=3, seed=7)
    graph.reset(estate)
    arm.estate = estate
    subscriptions = [subscription_id_for(i) for i in range(3)]
    by_graph = graph_inventory(graph, pki).list_vaults(subscriptions)
    by_arm = ArmInventory(LabCredential(), arm_endpoint=arm.url, connection_verify=pki.ca_path).list_vaults(
        subscriptions
    )
    assert by_graph.errors == by_arm.errors == []
    assert by_graph.subscriptions_complete == by_arm.subscriptions_complete == set(subscriptions)

    def without_system_data(posture: object) -> dict[str, object]:
        fields = dict(vars(posture))
        for name in ("last_modified_by", "last_modified_by_type", "last_modified_at"):
            fields.pop(name)
        return fields

    assert sorted(map(without_system_data, by_graph.postures), key=str) == sorted(
        map(without_system_data, by_arm.postures), key=str
    )
    assert all(p.last_modified_by is None for p in by_graph.postures)  # Resources has no systemData
    # One Resource Graph query: 60 vaults and 3 subscription rows in pages of 4 rows; ARM pages
    # each subscription's 20 vaults in pages of 4.
    assert by_graph.requests == by_graph.pages == 16
    assert by_arm.requests == 3 * 5


def test_throttling_waits_as_retry_after_says(
    estate: Estate, graph: ResourceGraphEmulator, pki: LabPki
) -> None:
    names = add_vaults(estate, SUB_A, 2)
    graph.server.inject(
        QUERY_PATH,
        Fault(
            status=429,
            headers={"Retry-After": "1"},
            body={"error": {"code": "RateLimiting", "message": "throttled"}},
        ),
    )
    started = time.monotonic()
    result = graph_inventory(graph, pki).list_vaults([SUB_A])
    waited = time.monotonic() - started
    assert [p.name for p in result.postures] == names
    assert result.errors == [] and result.subscriptions_complete == {SUB_A}
    assert (result.requests, result.pages) == (2, 1)
    assert waited >= 1.0  # no backoff is configured: only the honoured Retry-After waits


def test_throttled_past_the_retries_leaves_every_subscription_incomplete(
    estate: Estate, graph: ResourceGraphEmulator, pki: LabPki
) -> None:
    add_vaults(estate, SUB_A, 2)
    graph.server.inject(QUERY_PATH, Fault(status=429, times=0))
    result = graph_inventory(graph, pki, retry_total=1).list_vaults([SUB_A, SUB_B])
    assert result.postures == [] and result.subscriptions_complete == set()
    assert [(e.source, e.scope, e.code) for e in result.errors] == [
        ("resource-graph", SUB_A, "429"),
        ("resource-graph", SUB_B, "429"),
    ]


def test_a_spent_quota_is_waited_for_before_the_next_page(
    estate: Estate, graph: ResourceGraphEmulator, pki: LabPki
) -> None:
    names = add_vaults(estate, SUB_A, 7)  # 8 rows, 4 a page: two pages
    graph.quota, graph.quota_window_s = 1, 1.0
    started = time.monotonic()
    result = graph_inventory(graph, pki).list_vaults([SUB_A])
    waited = time.monotonic() - started
    assert [p.name for p in result.postures] == names and result.errors == []
    # The first answer said: no quota left, resets in 1 s. kvmon waited instead of being refused.
    assert (result.requests, result.pages) == (2, 2)
    assert waited >= 0.9
    assert result.quota_remaining == 0


def test_emulator_quota_refuses_with_429_and_the_retry_policy_recovers(
    estate: Estate, graph: ResourceGraphEmulator, pki: LabPki
) -> None:
    names = add_vaults(estate, SUB_A, 1)
    graph.quota, graph.quota_window_s = 1, 1.0
    inventory = graph_inventory(graph, pki)
    assert inventory.list_vaults([SUB_A]).requests == 1
    result = inventory.list_vaults([SUB_A])  # the quota is spent: 429 RateLimiting, Retry-After 1
    assert [p.name for p in result.postures] == names and result.errors == []
    assert result.requests == 2


def test_a_subscription_it_cannot_read_is_left_out_and_never_complete(
    estate: Estate, graph: ResourceGraphEmulator, pki: LabPki
) -> None:
    names = add_vaults(estate, SUB_A, 2)
    add_vaults(estate, SUB_FORBIDDEN, 2)
    unknown = "00000000-0000-0000-0000-00000000dead"
    result = graph_inventory(graph, pki).list_vaults([SUB_A, SUB_FORBIDDEN, unknown])
    assert [p.name for p in result.postures] == names
    assert result.subscriptions_complete == {SUB_A}
    assert [(e.scope, e.code) for e in result.errors] == [
        (SUB_FORBIDDEN, "SubscriptionNotVisible"),
        (unknown, "SubscriptionNotVisible"),
    ]


def test_only_unreadable_subscriptions_is_resource_graphs_400(
    estate: Estate, graph: ResourceGraphEmulator, pki: LabPki
) -> None:
    add_vaults(estate, SUB_FORBIDDEN, 1)
    result = graph_inventory(graph, pki).list_vaults([SUB_FORBIDDEN])
    [error] = result.errors
    assert (error.scope, error.code) == (SUB_FORBIDDEN, "400")
    assert "NoValidSubscriptionsInQueryRequest" in error.message
    assert result.postures == [] and result.subscriptions_complete == set()


def test_a_malformed_vault_is_an_error_and_hides_no_other(
    estate: Estate, graph: ResourceGraphEmulator, pki: LabPki
) -> None:
    names = add_vaults(estate, SUB_A, 3)
    add_vaults(estate, SUB_B, 1)
    broken = estate.vault_by_name(names[1])
    assert broken is not None
    estate.vaults[broken["id"].lower()]["id"] = None  # a row without an id is no vault at all
    odd = estate.vaults[estate.subscriptions[SUB_A][2]]
    odd["properties"]["networkAcls"] = {"defaultAction": "Deny", "ipRules": "203.0.113.9"}
    result = graph_inventory(graph, pki).list_vaults([SUB_A, SUB_B])
    assert [p.name for p in result.postures] == [names[0], names[2], f"kv-{SUB_B[-2:]}-000"]
    assert any("expected a list" in problem for problem in result.postures[1].problems)
    [error] = result.errors
    assert (error.source, error.scope) == ("resource-graph", SUB_A)
    assert "unusable" in error.message and "'id'" in error.message
    assert result.subscriptions_complete == {SUB_B}  # SUB_A's unusable vault could be gone or not


def test_a_truncated_answer_completes_nothing(
    estate: Estate, graph: ResourceGraphEmulator, pki: LabPki
) -> None:
    add_vaults(estate, SUB_A, 3)
    add_vaults(estate, SUB_B, 3)
    graph.truncate_after(3)
    result = graph_inventory(graph, pki).list_vaults([SUB_A, SUB_B])
    assert len(result.postures) == 2  # the subscription row and two vaults of SUB_A came back
    assert result.subscriptions_complete == set()
    assert {(e.scope, e.code) for e in result.errors} == {
        (SUB_A, "ResultTruncated"),
        (SUB_B, "ResultTruncated"),
    }
    assert "3 of 8 rows" in result.errors[0].message


def test_find_vault_filters_by_name_in_the_query(
    estate: Estate, graph: ResourceGraphEmulator, pki: LabPki
) -> None:
    names = add_vaults(estate, SUB_A, 9)
    result = graph_inventory(graph, pki).find_vault(names[5].upper(), [SUB_A])
    assert [p.name for p in result.postures] == [names[5]]
    assert result.subscriptions_complete == {SUB_A} and result.requests == 1
    with pytest.raises(ValueError, match="not a Key Vault name"):
        graph_inventory(graph, pki).find_vault("kv' | take 1 //", [SUB_A])


def test_the_emulator_answers_kvmons_query_only(graph: ResourceGraphEmulator, pki: LabPki) -> None:
    from azure.core.exceptions import HttpResponseError
    from azure.mgmt.resourcegraph import ResourceGraphClient
    from azure.mgmt.resourcegraph.models import QueryRequest

    client = ResourceGraphClient(
        LabCredential(),
        base_url=graph.url,
        credential_scopes=[f"{graph.url}/.default"],
        connection_verify=pki.ca_path,
    )
    with client, pytest.raises(HttpResponseError) as raised:
        client.resources(QueryRequest(subscriptions=[SUB_A], query="Resources | take 5"))
    assert raised.value.status_code == 400
    assert raised.value.error is not None and raised.value.error.details[0].code == "InvalidQuery"


def test_quota_reset_header_is_read_as_hh_mm_ss() -> None:
    assert parse_resets_after("00:00:03") == 3.0
    assert parse_resets_after("01:02:03.5") == 3723.5
    assert parse_resets_after("soon") is None and parse_resets_after(None) is None


@pytest.mark.node
def test_the_query_passes_the_kusto_language_service() -> None:
    queries = {"all": build_vault_query(), "one": build_vault_query(name="kv-team-01")}
    for checked in run_checker(queries, schema="resourcegraph").values():
        assert checked["diagnostics"] == [], checked
        assert [name for name, _ in checked["columns"]] == [
            "id",
            "name",
            "type",
            "location",
            "resourceGroup",
            "subscriptionId",
            "tags",
            "properties",
        ]
    # The checker does catch a column Resources lacks.
    bad = run_checker(
        {"bad": build_vault_query().replace("properties", "systemData")}, schema="resourcegraph"
    )
    assert "systemData" in bad["bad"]["diagnostics"][0]["message"]


# -- choosing the source ------------------------------------------------------------------------


def settings_for(url: str, pki: LabPki, **environ: str) -> Settings:
    return Settings.from_environ({"KVMON_ARM_ENDPOINT": url, "KVMON_CA_BUNDLE": pki.ca_path, **environ})


def test_auto_uses_resource_graph_from_the_threshold_on(
    estate: Estate, graph: ResourceGraphEmulator, pki: LabPki
) -> None:
    for index in range(3):
        add_vaults(estate, subscription_id_for(index), 2)
    settings = settings_for(graph.url, pki, KVMON_RESOURCE_GRAPH_THRESHOLD="3")
    inventory = build_inventory(settings, credential=LabCredential())
    assert isinstance(inventory, ThresholdInventory)

    two = inventory.list_vaults([subscription_id_for(0), subscription_id_for(1)])
    assert len(two.postures) == 4
    assert (graph.server.request_counts[LIST_ROUTE], graph.server.request_counts[QUERY_ROUTE]) == (2, 0)

    graph.server.request_counts.clear()
    three = inventory.list_vaults([subscription_id_for(i) for i in range(3)])
    assert len(three.postures) == 6 and three.errors == []
    assert (graph.server.request_counts[LIST_ROUTE], graph.server.request_counts[QUERY_ROUTE]) == (0, 3)

    graph.server.request_counts.clear()
    # A duplicate is one subscription: still below the threshold.
    inventory.find_vault(
        "kv-00-000", [subscription_id_for(0), subscription_id_for(0).upper(), subscription_id_for(1)]
    )
    assert graph.server.request_counts[QUERY_ROUTE] == 0


def test_the_setting_forces_either_source(graph: ResourceGraphEmulator, pki: LabPki) -> None:
    def built(source: str) -> object:
        return build_inventory(
            settings_for(graph.url, pki, KVMON_INVENTORY_SOURCE=source), credential=LabCredential()
        )

    assert isinstance(built("arm"), ArmInventory)
    assert isinstance(built("resource-graph"), ResourceGraphInventory)
    default = built("auto")
    assert isinstance(default, ThresholdInventory) and default.threshold == 20


# -- synthetic estates --------------------------------------------------------------------------


def test_synthetic_estates_are_deterministic_and_mixed() -> None:
    first = synthetic_estate(vaults=1000, subscriptions=10, seed=3)
    again = synthetic_estate(vaults=1000, subscriptions=10, seed=3)
    vaults = synthetic_vaults(first)
    assert [(v.name, v.workspace_id) for v in vaults] == [
        (v.name, v.workspace_id) for v in synthetic_vaults(again)
    ]
    assert len(first.subscriptions) == 10 and all(len(keys) == 100 for keys in first.subscriptions.values())
    kinds = Counter(v.kind for v in vaults)
    assert set(kinds) == set(KINDS) and min(kinds.values()) >= 20
    assert 50 <= sum(v.workspace_id is None for v in vaults) <= 150  # about one in ten logs nowhere
    assert len({v.workspace_id for v in vaults} - {None}) == 1  # one workspace per ten subscriptions
    endpoints = list(first.private_endpoint_addresses.values())
    assert len(endpoints) == len(set(endpoints)) == sum(kinds[k] for k in KINDS if k.startswith("pl-"))


def test_indexed_estate_answers_as_the_plain_one() -> None:
    estate = synthetic_estate(vaults=200, subscriptions=4, seed=1)
    assert isinstance(estate, IndexedEstate)
    sources = ("127.30.0.5", "127.10.2.5", "127.10.1.4", "127.11.1.4")
    for vault in synthetic_vaults(estate)[::7]:
        assert estate.vault_by_name(vault.name.upper()) == Estate.vault_by_name(estate, vault.name)
        for source in sources:
            assert estate.resolve(f"{vault.name}.vault.lab.test", source_address=source) == Estate.resolve(
                estate, f"{vault.name}.vault.lab.test", source_address=source
            )
    for address in [*list(estate.private_endpoint_addresses.values())[::5], "127.10.2.99"]:
        assert estate.private_endpoint_at(address) == Estate.private_endpoint_at(estate, address)
    gone = synthetic_vaults(estate)[0]
    estate.remove_vault(gone.id)
    assert estate.vault_by_name(gone.name) is None
