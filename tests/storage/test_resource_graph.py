"""StorageResourceGraphInventory through the real azure-mgmt-resourcegraph client against the lab's
Resource Graph (on the lab ARM's endpoint, as in Azure): the same postures as StorageArmInventory
but for systemData, the private endpoints' groupIds joined in from the same query, and the vault
query's paging and error discipline."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from lab.arm import ArmEmulator
from lab.credential import LabCredential
from lab.estate import Estate
from lab.http import LinkFault
from lab.resourcegraph import QUERY_ROUTE, ResourceGraphEmulator
from lab.tls import LabPki
from monitor.model_storage import StorageSubresource
from monitor.sources.arm import ArmConnection
from monitor.sources.storage.arm import StorageArmInventory
from monitor.sources.storage.resource_graph import StorageResourceGraphInventory, build_account_query
from tests.kusto.test_kql import run_checker
from tests.storage.test_arm_inventory import SUB_A, SUB_B, SUB_FORBIDDEN, SUBNET, account_id, add_accounts


@pytest.fixture
def estate() -> Estate:
    estate = Estate()
    estate.add_subscription(SUB_A)
    estate.add_subscription(SUB_B)
    estate.add_subscription(SUB_FORBIDDEN, forbidden=True)
    return estate


@pytest.fixture(scope="module")
def _servers() -> Iterator[tuple[ArmEmulator, ResourceGraphEmulator]]:
    with ArmEmulator(Estate(), page_size=4) as arm:
        yield arm, ResourceGraphEmulator(Estate(), page_size=4, quota=1000, server=arm.server).start()


@pytest.fixture
def graph(
    _servers: tuple[ArmEmulator, ResourceGraphEmulator], estate: Estate
) -> Iterator[ResourceGraphEmulator]:
    arm, emulator = _servers
    arm.estate = estate
    emulator.reset(estate)
    arm.server.request_counts.clear()
    yield emulator
    arm.server.clear_faults()


@pytest.fixture
def connection(graph: ResourceGraphEmulator, pki: LabPki) -> ArmConnection:
    return ArmConnection(arm_endpoint=graph.url, connection_verify=pki.ca_path, retry_backoff_factor=0.0)


def with_endpoints(estate: Estate) -> list[str]:
    names = add_accounts(estate, SUB_A, 5)
    estate.add_storage_private_endpoint(
        account_id(SUB_A, names[0]),
        subresource="blob",
        address="127.10.1.4",
        subnet_id=SUBNET,
        name="pe-blob",
    )
    estate.add_storage_private_endpoint(
        account_id(SUB_A, names[0]), subresource="dfs", address="127.10.1.5", subnet_id=SUBNET, name="pe-dfs"
    )
    estate.add_storage_private_endpoint(
        account_id(SUB_A, names[3]),
        subresource="file",
        address="127.10.1.6",
        subnet_id=SUBNET,
        name="pe-file",
    )
    return names + add_accounts(estate, SUB_B, 2)


def test_the_same_postures_as_arm_but_for_system_data(
    estate: Estate, graph: ResourceGraphEmulator, connection: ArmConnection
) -> None:
    names = with_endpoints(estate)
    by_graph = StorageResourceGraphInventory(LabCredential(), connection).list_accounts([SUB_B, SUB_A])
    by_arm = StorageArmInventory(LabCredential(), connection).list_accounts([SUB_B, SUB_A])
    assert by_graph.errors == by_arm.errors == []
    assert by_graph.subscriptions_complete == by_arm.subscriptions_complete == {SUB_A, SUB_B}
    # The subscriptions' order as given, like the ARM reader.
    assert [p.name for p in by_graph.postures] == names[5:] + names[:5]

    def without_system_data(posture: object) -> dict[str, object]:
        fields = dict(vars(posture))
        for name in ("last_modified_by", "last_modified_by_type", "last_modified_at"):
            fields.pop(name)
        return fields

    assert list(map(without_system_data, by_graph.postures)) == list(
        map(without_system_data, by_arm.postures)
    )
    assert all(p.last_modified_by is None for p in by_graph.postures)  # Resources has no systemData
    by_name = {p.name: p for p in by_graph.postures}
    assert [c.subresource for c in by_name[names[0]].private_endpoint_connections] == [
        StorageSubresource.BLOB,
        StorageSubresource.DFS,
    ]
    assert [c.subresource for c in by_name[names[3]].private_endpoint_connections] == [
        StorageSubresource.FILE
    ]
    # One query: 7 accounts, 3 endpoints and 2 subscription rows in pages of 4 rows.
    assert by_graph.pages == by_graph.requests == 3 == graph.server.request_counts[QUERY_ROUTE]


def test_an_endpoint_in_a_subscription_not_scanned_leaves_the_sub_resource_unknown(
    estate: Estate, graph: ResourceGraphEmulator, connection: ArmConnection
) -> None:
    [name] = add_accounts(estate, SUB_A, 1)
    estate.add_storage_private_endpoint(
        account_id(SUB_A, name),
        subresource="blob",
        address="127.10.1.4",
        subnet_id=SUBNET.replace(SUB_A, SUB_B),
    )
    inventory = StorageResourceGraphInventory(LabCredential(), connection)
    [alone] = inventory.list_accounts([SUB_A]).postures
    assert [c.subresource for c in alone.private_endpoint_connections] == [None]  # ST018 says so
    [both] = inventory.list_accounts([SUB_A, SUB_B]).postures
    assert [c.subresource for c in both.private_endpoint_connections] == [StorageSubresource.BLOB]


def test_a_subscription_it_cannot_read_is_left_out_and_never_complete(
    estate: Estate, graph: ResourceGraphEmulator, connection: ArmConnection
) -> None:
    names = add_accounts(estate, SUB_A, 2)
    add_accounts(estate, SUB_FORBIDDEN, 2)
    unknown = "00000000-0000-0000-0000-00000000dead"
    result = StorageResourceGraphInventory(LabCredential(), connection).list_accounts(
        [SUB_A, SUB_FORBIDDEN, unknown]
    )
    assert [p.name for p in result.postures] == names
    assert result.subscriptions_complete == {SUB_A}
    assert [(e.source, e.scope, e.code) for e in result.errors] == [
        ("resource-graph", SUB_FORBIDDEN, "SubscriptionNotVisible"),
        ("resource-graph", unknown, "SubscriptionNotVisible"),
    ]


def test_an_account_without_an_id_is_an_error_and_hides_no_other(
    estate: Estate, graph: ResourceGraphEmulator, connection: ArmConnection
) -> None:
    names = add_accounts(estate, SUB_A, 3)
    add_accounts(estate, SUB_B, 1)
    estate.storage_accounts[account_id(SUB_A, names[1]).lower()]["id"] = None
    result = StorageResourceGraphInventory(LabCredential(), connection).list_accounts([SUB_A, SUB_B])
    assert [p.name for p in result.postures] == [names[0], names[2], f"st{SUB_B[-2:]}000"]
    [error] = result.errors
    assert (error.source, error.scope) == ("resource-graph", SUB_A)
    assert "unusable" in error.message and "'id'" in error.message
    assert result.subscriptions_complete == {SUB_B}


def test_a_truncated_answer_completes_nothing(
    estate: Estate, graph: ResourceGraphEmulator, connection: ArmConnection
) -> None:
    add_accounts(estate, SUB_A, 3)
    add_accounts(estate, SUB_B, 3)
    graph.truncate_after(3)
    result = StorageResourceGraphInventory(LabCredential(), connection).list_accounts([SUB_A, SUB_B])
    assert len(result.postures) == 2  # the subscription row and two accounts of SUB_A came back
    assert result.subscriptions_complete == set()
    assert {(e.scope, e.code) for e in result.errors} == {
        (SUB_A, "ResultTruncated"),
        (SUB_B, "ResultTruncated"),
    }
    assert (
        "3 of 8 rows" in result.errors[0].message
        and "storage accounts read are kept" in result.errors[0].message
    )


def test_a_repeated_skip_token_stops_the_query(
    estate: Estate, graph: ResourceGraphEmulator, connection: ArmConnection
) -> None:
    add_accounts(estate, SUB_A, 6)
    graph.mislink(LinkFault.SELF)
    result = StorageResourceGraphInventory(LabCredential(), connection).list_accounts([SUB_A])
    assert result.subscriptions_complete == set()
    [error] = result.errors
    assert error.scope == SUB_A and "page 2 gave the $skipToken page 1 gave" in error.message
    assert result.requests == 2


def test_bad_options_are_refused() -> None:
    connection = ArmConnection(arm_endpoint="https://127.0.0.1:1")
    with pytest.raises(ValueError, match="page_size"):
        StorageResourceGraphInventory(LabCredential(), connection, page_size=1001)
    with pytest.raises(ValueError, match="max_pages"):
        StorageResourceGraphInventory(LabCredential(), connection, max_pages=0)


@pytest.mark.node
def test_the_query_passes_the_kusto_language_service() -> None:
    [checked] = run_checker({"accounts": build_account_query()}, schema="resourcegraph").values()
    assert checked["diagnostics"] == [], checked
    assert [name for name, _ in checked["columns"]][:10] == [
        "id",
        "name",
        "type",
        "kind",
        "sku",
        "location",
        "resourceGroup",
        "subscriptionId",
        "tags",
        "properties",
    ]
