"""ST301/ST302: a storage account's configuration against the stored one, each kind of change judged
(loosening, tightening, neutral), never from a field that could not be read."""

from __future__ import annotations

from dataclasses import replace

import pytest

from monitor.config.policy import VaultPolicy
from monitor.judge.drift import Direction, storage_network_diff
from monitor.judge.evaluate import evaluate
from monitor.judge.rules.base import StorageFacts
from monitor.model import ActorSource, ChangeActor, Severity
from monitor.model_storage import (
    AllowedCopyScope,
    DefaultAction,
    PublicNetworkAccess,
    ResourceAccessRule,
    StorageBypass,
    StorageSubresource,
    StorageVirtualNetworkRule,
    TlsVersion,
    VirtualNetworkRuleState,
)
from tests.storage.test_rules import SUBNET, SYNAPSE, TODAY, connection, firewalled, ip, of

BEFORE = firewalled(
    ip_rules=(ip("203.0.113.0/24"),),
    virtual_network_rules=(StorageVirtualNetworkRule(SUBNET, state=VirtualNetworkRuleState.SUCCEEDED),),
    allowed_copy_scope=AllowedCopyScope.AAD,
    allow_shared_key_access=False,
)


def changes(after, before=BEFORE):  # type: ignore[no-untyped-def]
    return [
        (c.field, c.change, c.before, c.after, c.direction)
        for c in storage_network_diff(before, after).changes
    ]


@pytest.mark.parametrize(
    ("after", "expected"),
    [
        (
            replace(BEFORE, default_action=DefaultAction.ALLOW),
            [("networkAcls.defaultAction", "changed", "Deny", "Allow", Direction.LOOSENING)],
        ),
        (
            replace(BEFORE, public_network_access=PublicNetworkAccess.DISABLED),
            [("publicNetworkAccess", "changed", "Enabled", "Disabled", Direction.TIGHTENING)],
        ),
        (
            replace(BEFORE, bypass=frozenset({StorageBypass.AZURE_SERVICES, StorageBypass.LOGGING})),
            [("networkAcls.bypass", "added", None, "Logging", Direction.LOOSENING)],
        ),
        (
            replace(BEFORE, bypass=frozenset({StorageBypass.NONE})),
            [("networkAcls.bypass", "removed", "AzureServices", None, Direction.TIGHTENING)],
        ),
        (
            replace(BEFORE, ip_rules=(ip("203.0.113.0/24"), ip("198.51.100.0/24"))),
            [("networkAcls.ipRules", "added", None, "198.51.100.0/24", Direction.LOOSENING)],
        ),
        (
            replace(BEFORE, ipv6_rules=(ip("2001:db8::/64"),)),
            [("networkAcls.ipv6Rules", "added", None, "2001:db8::/64", Direction.LOOSENING)],
        ),
        (
            replace(
                BEFORE,
                virtual_network_rules=(
                    StorageVirtualNetworkRule(SUBNET, state=VirtualNetworkRuleState.NETWORK_SOURCE_DELETED),
                ),
            ),
            [
                (
                    "networkAcls.virtualNetworkRules.state",
                    "changed",
                    f"{SUBNET}: Succeeded",
                    f"{SUBNET}: NetworkSourceDeleted",
                    Direction.NEUTRAL,
                )
            ],
        ),
        (
            replace(BEFORE, resource_access_rules=(ResourceAccessRule("t", SYNAPSE),)),
            [("networkAcls.resourceAccessRules", "added", None, SYNAPSE, Direction.LOOSENING)],
        ),
        (
            replace(BEFORE, private_endpoint_connections=(connection(StorageSubresource.BLOB),)),
            [("privateEndpointConnections", "added", None, "pe-blob [Approved]", Direction.LOOSENING)],
        ),
        (
            replace(BEFORE, allow_blob_public_access=True),
            [("allowBlobPublicAccess", "changed", "false", "true", Direction.LOOSENING)],
        ),
        (
            replace(BEFORE, allow_shared_key_access=None),  # absent reads as true
            [("allowSharedKeyAccess", "changed", "false", "true", Direction.LOOSENING)],
        ),
        (
            replace(BEFORE, supports_https_traffic_only=False),
            [("supportsHttpsTrafficOnly", "changed", "true", "false", Direction.LOOSENING)],
        ),
        (
            replace(BEFORE, minimum_tls_version=TlsVersion.TLS1_0),
            [("minimumTlsVersion", "changed", "TLS1_2", "TLS1_0", Direction.LOOSENING)],
        ),
        (
            replace(BEFORE, allowed_copy_scope=None),
            [("allowedCopyScope", "changed", "AAD", "absent", Direction.LOOSENING)],
        ),
        (replace(BEFORE, public_network_access=PublicNetworkAccess.ENABLED), []),
    ],
)
def test_each_kind_of_change(after, expected) -> None:  # type: ignore[no-untyped-def]
    assert changes(after) == expected


def test_a_field_unread_on_either_side_is_no_change() -> None:
    garbled = replace(
        BEFORE,
        default_action=DefaultAction.ALLOW,
        unread=frozenset({"properties.networkAcls.defaultAction"}),
    )
    assert changes(garbled) == [] and changes(BEFORE, before=garbled) == []


def judged(facts: StorageFacts):  # type: ignore[no-untyped-def]
    return evaluate([facts], today=TODAY).findings


def test_st301_names_who_changed_it_and_is_high_when_it_loosens() -> None:
    actor = ChangeActor(source=ActorSource.EVENT, upn="bob@contoso.example", principal_type="User")
    after = replace(BEFORE, default_action=DefaultAction.ALLOW)
    [finding] = of(
        "ST301", judged(StorageFacts(posture=after, policy=VaultPolicy(), previous=BEFORE, actor=actor))
    )
    assert finding.severity is Severity.HIGH
    assert finding.summary.startswith(
        "networkAcls.defaultAction Deny → Allow (loosening) (changed by bob@contoso.example (User)"
    )
    assert "storageAccounts/write" in finding.remediation and "/storageAccounts/stapp" in finding.remediation


def test_st301_is_information_when_it_only_tightens() -> None:
    after = replace(BEFORE, public_network_access=PublicNetworkAccess.DISABLED)
    [finding] = of("ST301", judged(StorageFacts(posture=after, policy=VaultPolicy(), previous=BEFORE)))
    assert finding.severity is Severity.INFO


def test_st302_an_account_that_appeared() -> None:
    [finding] = of(
        "ST302", judged(StorageFacts(posture=BEFORE, policy=VaultPolicy(), first_scan_of_scope=False))
    )
    assert finding.subject == "appeared" and "storage account stapp appeared" in finding.summary
    assert of("ST302", judged(StorageFacts(posture=BEFORE, policy=VaultPolicy()))) == []
