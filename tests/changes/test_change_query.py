"""The ``resourcechanges`` query as text: what it asks, how it matches a network change's keys, its
batches, and the Kusto language service's verdict against Resource Graph's tables."""

from __future__ import annotations

import datetime as dt
import json
import re

import pytest

from monitor.sources.change_history import (
    NETWORK_KEY_PATTERN,
    VAULTS_PER_QUERY,
    build_change_query,
    kql_datetime,
)
from tests.kusto.test_kql import run_checker

SINCE = dt.datetime(2026, 12, 2, 16, 0, 30, 999_999, tzinfo=dt.UTC)


def vault_id(index: int, *, subscription: str = "00000000-0000-0000-0000-0000000000a1") -> str:
    return f"/subscriptions/{subscription}/resourceGroups/RG-App/providers/Microsoft.KeyVault/vaults/kv-{index:03d}"


def test_the_query_names_its_vaults_lower_cased_and_starts_at_the_second() -> None:
    query = build_change_query(vault_ids=[vault_id(1), vault_id(2), vault_id(1).upper()], since=SINCE)
    assert query.startswith("resourcechanges\n")
    assert "| where changeTime >= datetime(2026-12-02T16:00:30Z)\n" in query  # down to the second
    [listed] = re.findall(r"\| where targetResourceId in \((.*)\)\n", query)
    assert listed == ", ".join(json.dumps(vault_id(i).lower()) for i in (1, 2))
    # Newest per vault, and who made it.
    assert "| summarize arg_max(changeTime, *) by targetResourceId\n" in query
    for column in ("changedBy", "changedByType", "clientType", "operation", "correlationId"):
        assert f"{column} = tostring(properties.changeAttributes.{column})" in query
    assert query.endswith("| order by targetResourceId asc")


def test_a_create_counts_and_an_update_only_when_a_network_key_changed() -> None:
    query = build_change_query(vault_ids=[vault_id(1)], since=SINCE)
    assert "| where changeType == 'Create' or changedKeys matches regex @'" in query
    assert "changedKeys = tostring(bag_keys(properties.changes))" in query
    assert NETWORK_KEY_PATTERN in query


@pytest.mark.parametrize(
    ("keys", "network"),
    [
        (["properties.networkAcls.defaultAction"], True),
        (["tags.env", "properties.networkAcls.ipRules[0].value"], True),
        (["properties.networkAcls"], True),  # the whole object inserted
        (["properties.publicNetworkAccess"], True),
        (
            ["properties.privateEndpointConnections[1].properties.privateLinkServiceConnectionState.status"],
            True,
        ),
        (["properties.PublicNetworkAccess"], True),  # whatever case the provider writes
        (["properties.provisioningState", "tags.owner"], False),
        (["properties.networkAclsVersion"], False),  # a longer name is another property
        (["tags.properties.networkAcls"], False),  # a tag named like the property is a tag
        (["properties.enableRbacAuthorization"], False),
        ([], False),
    ],
)
def test_network_keys_are_matched_in_the_key_list(keys: list[str], network: bool) -> None:
    # Kusto's tostring() of bag_keys(): the keys as a compact JSON array.
    text = json.dumps(keys, separators=(",", ":"))
    assert bool(re.search(NETWORK_KEY_PATTERN.removeprefix("(?i)"), text, re.IGNORECASE)) is network


def test_ids_are_validated_and_batches_bounded() -> None:
    with pytest.raises(ValueError, match="not a Key Vault resource id"):
        build_change_query(vault_ids=[vault_id(1) + "') | take 1 //"], since=SINCE)
    with pytest.raises(ValueError, match="one vault at least"):
        build_change_query(vault_ids=[], since=SINCE)
    with pytest.raises(ValueError, match=f"at most {VAULTS_PER_QUERY}"):
        build_change_query(vault_ids=[vault_id(i) for i in range(VAULTS_PER_QUERY + 1)], since=SINCE)
    with pytest.raises(ValueError, match="timezone-aware"):
        kql_datetime(dt.datetime(2026, 12, 2))


def test_a_full_batch_of_the_longest_ids_stays_near_twelve_kilobytes() -> None:
    longest = [
        f"/subscriptions/{index:08d}-0000-0000-0000-000000000000/resourceGroups/{'r' * 90}"
        f"/providers/Microsoft.KeyVault/vaults/{'k' * 21}{index:03d}"
        for index in range(VAULTS_PER_QUERY)
    ]
    assert len(build_change_query(vault_ids=longest, since=SINCE)) < 12_500


@pytest.mark.node
def test_the_query_passes_the_kusto_language_service() -> None:
    good = build_change_query(vault_ids=[vault_id(1), vault_id(2)], since=SINCE)
    queries = {
        "good": good,
        # Controls: the checker catches a column the table lacks and an unknown function.
        "column": good.replace("properties.changes", "changes"),
        "function": good.replace("bag_keys(", "bag_names("),
    }
    checked = run_checker(queries, schema="resourcegraph")
    assert checked["good"]["diagnostics"] == []
    assert [name for name, _ in checked["good"]["columns"]] == [
        "targetResourceId",
        "changeTime",
        "changeType",
        "changedBy",
        "changedByType",
        "clientType",
        "operation",
        "correlationId",
    ]
    assert dict(checked["good"]["columns"])["changeTime"] == "datetime"
    for name in ("column", "function"):
        assert [d for d in checked[name]["diagnostics"] if d["severity"] == "Error"], name
