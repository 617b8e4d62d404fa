"""The storage rules ST0xx on postures built from the schema, and on Azure's published examples:
where Storage differs from Key Vault (Disabled with defaultAction Allow is closed, exceptions survive
Disabled, one sub-resource per private endpoint, IP rules' limits), each rule decides right."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from typing import Any

import pytest

from monitor.config.policy import Mode, VaultPolicy
from monitor.judge.evaluate import evaluate
from monitor.judge.rules.base import StorageFacts
from monitor.model import (
    Finding,
    IpRule,
    PerimeterAssociation,
    PerimeterLookup,
    PerimeterReading,
    PrivateEndpointConnection,
    Severity,
)
from monitor.model_storage import (
    DefaultAction,
    PublicNetworkAccess,
    ResourceAccessRule,
    StorageAccountPosture,
    StorageBypass,
    StorageIpRule,
    StoragePrivateEndpointConnection,
    StorageSubresource,
    StorageVirtualNetworkRule,
    TlsVersion,
    VirtualNetworkRuleState,
)
from monitor.netaddr import parse_network
from monitor.sources.storage.normalise import normalise_storage_account
from tests.judge.test_perimeter import EVERYONE, NARROW, association
from tests.storage.conftest import example

TODAY = dt.date(2026, 1, 15)
ACCOUNT_ID = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/stapp"
SUBNET = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/virtualNetworks/v/subnets/app"
SYNAPSE = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Synapse/workspaces/ws"
ENDPOINTS = {
    sub: f"https://stapp.{sub.value}.core.windows.net/"
    for sub in (StorageSubresource.BLOB, StorageSubresource.DFS)
}
PRIVATE_LINK = VaultPolicy(entry="lake", mode=Mode.PRIVATE_LINK)


def ip(text: str) -> StorageIpRule:
    try:
        network = parse_network(text)
    except ValueError:
        network = None
    return StorageIpRule(IpRule(text, network))


def connection(
    subresource: StorageSubresource | None = StorageSubresource.BLOB,
    status: str = "Approved",
    provisioning_state: str = "Succeeded",
) -> StoragePrivateEndpointConnection:
    name = subresource.value if subresource else "unnamed"
    return StoragePrivateEndpointConnection(
        PrivateEndpointConnection(
            id=f"{ACCOUNT_ID}/privateEndpointConnections/pe-{name}",
            private_endpoint_id=f"/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/privateEndpoints/pe-{name}",
            status=status,
            provisioning_state=provisioning_state,
        ),
        subresource,
    )


def account(**fields: Any) -> StorageAccountPosture:
    """An account whose firewall admits everyone (no networkAcls, publicNetworkAccess absent),
    secure otherwise (TLS 1.2, HTTPS only, no anonymous access): each rule's case changes one thing."""
    base: dict[str, Any] = {
        "id": ACCOUNT_ID,
        "name": "stapp",
        "subscription_id": "s",
        "resource_group": "rg",
        "location": "westeurope",
        "primary_endpoints": ENDPOINTS,
        "minimum_tls_version": TlsVersion.TLS1_2,
        "supports_https_traffic_only": True,
        "allow_blob_public_access": False,
    }
    return StorageAccountPosture(**{**base, **fields})


def firewalled(**fields: Any) -> StorageAccountPosture:
    return account(
        **{
            "public_network_access": PublicNetworkAccess.ENABLED,
            "network_acls_present": True,
            "default_action": DefaultAction.DENY,
            **fields,
        }
    )


def closed(**fields: Any) -> StorageAccountPosture:
    return account(
        **{"public_network_access": PublicNetworkAccess.DISABLED, "network_acls_present": True, **fields}
    )


def in_perimeter(posture: StorageAccountPosture, found: PerimeterAssociation) -> StorageAccountPosture:
    return replace(posture, perimeter=PerimeterReading(lookup=PerimeterLookup.ASSOCIATED, association=found))


def judged(posture: StorageAccountPosture, policy: VaultPolicy | None = None, **facts: Any) -> list[Finding]:
    return evaluate(
        [StorageFacts(posture=posture, policy=policy or VaultPolicy(), **facts)], today=TODAY
    ).findings


def of(rule_id: str, findings: list[Finding]) -> list[Finding]:
    return [finding for finding in findings if finding.rule_id == rule_id]


# -- ST001 --------------------------------------------------------------------------------------------


def test_no_network_acls_and_no_public_network_access_is_open() -> None:
    [finding] = of("ST001", judged(account()))
    assert (
        "publicNetworkAccess is absent (the firewall decides) and there are no networkAcls" in finding.summary
    )
    assert "blob, dfs" in finding.summary and finding.vault_name == "stapp"
    assert finding.remediation.startswith("az storage account update --name stapp --resource-group rg")


def test_disabled_with_default_allow_is_not_open() -> None:
    """The published example: what Azure Policy, Prowler and Custodian call open, and is not."""
    published = normalise_storage_account(example("StorageAccountUpdateDisablePublicNetworkAccess"))
    assert published.default_action is DefaultAction.ALLOW
    findings = judged(published)
    assert of("ST001", findings) == [] and of("ST002", findings) == []


def test_secured_by_perimeter_without_a_perimeter_read_is_unknown_not_open() -> None:
    findings = judged(account(public_network_access=PublicNetworkAccess.SECURED_BY_PERIMETER))
    assert of("ST001", findings) == []


def test_an_unreadable_public_network_access_is_not_judged() -> None:
    garbled = account(
        public_network_access=PublicNetworkAccess.UNKNOWN,
        unread=frozenset({"properties.publicNetworkAccess"}),
    )
    assert of("ST001", judged(garbled)) == []


def test_a_learning_perimeter_reopens_a_disabled_account() -> None:
    [finding] = of("ST001", judged(in_perimeter(closed(), association("Learning", EVERYONE))))
    assert "0.0.0.0/0 in perimeter rule allow-all" in finding.summary
    assert finding.evidence["perimeter"]["effective_inbound"] == "rules"


def test_an_enforced_perimeter_closes_an_open_firewall_and_kills_its_rules() -> None:
    posture = in_perimeter(
        account(virtual_network_rules=(StorageVirtualNetworkRule(SUBNET),)), association("Enforced", NARROW)
    )
    findings = judged(posture)
    assert of("ST001", findings) == []
    [dead] = of("ST002", findings)
    assert dead.severity is Severity.INFO and dead.summary.startswith("dead configuration: ")


# -- IP rules ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "rule_id", "severity"),
    [
        ("0.0.0.0/0", "ST003", Severity.CRITICAL),
        ("52.0.0.0/8", "ST003", Severity.HIGH),
        ("'203.0.113.7'", "ST004", Severity.MEDIUM),
        ("2001:db8::/64", "ST004", Severity.MEDIUM),  # IPv6 among ipRules
        ("10.1.0.0/16", "ST005", Severity.LOW),
        ("203.0.113.7/32", "ST006", Severity.LOW),
        ("203.0.113.6/31", "ST006", Severity.LOW),
    ],
)
def test_ip_rule_findings(value: str, rule_id: str, severity: Severity) -> None:
    findings = judged(firewalled(ip_rules=(ip(value),)))
    [finding] = of(rule_id, findings)
    assert finding.severity is severity and finding.subject == value
    assert {f.rule_id for f in findings} & {"ST003", "ST004", "ST005", "ST006"} == {rule_id}


def test_a_single_address_without_a_prefix_is_what_storage_wants() -> None:
    assert judged(firewalled(ip_rules=(ip("203.0.113.7"),))) == []


def test_an_ipv6_everything_rule_is_critical() -> None:
    [finding] = of("ST003", judged(firewalled(ipv6_rules=(ip("::/0"),))))
    assert finding.severity is Severity.CRITICAL


def test_the_published_ipv6_rule_is_no_finding() -> None:
    published = normalise_storage_account(example("StorageAccountLeverageIPv6Ability"))
    findings = judged(published)
    assert {f.rule_id for f in findings} <= {"ST015"}  # the example's TLS is absent: TLS 1.0


# -- virtual network rules -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("state", "severity"),
    [
        (VirtualNetworkRuleState.NETWORK_SOURCE_DELETED, Severity.MEDIUM),
        (VirtualNetworkRuleState.FAILED, Severity.MEDIUM),
        (VirtualNetworkRuleState.PROVISIONING, Severity.LOW),
        (VirtualNetworkRuleState.DEPROVISIONING, Severity.LOW),
    ],
)
def test_a_subnet_rule_not_succeeded(state: VirtualNetworkRuleState, severity: Severity) -> None:
    [finding] = of(
        "ST007", judged(firewalled(virtual_network_rules=(StorageVirtualNetworkRule(SUBNET, state=state),)))
    )
    assert finding.severity is severity and finding.subject == SUBNET and state.value in finding.summary


@pytest.mark.parametrize("state", [VirtualNetworkRuleState.SUCCEEDED, None])
def test_a_subnet_rule_succeeded_or_without_state_is_quiet(state: VirtualNetworkRuleState | None) -> None:
    assert (
        of(
            "ST007",
            judged(firewalled(virtual_network_rules=(StorageVirtualNetworkRule(SUBNET, state=state),))),
        )
        == []
    )


def test_service_endpoint_rule_with_default_allow() -> None:
    [finding] = of(
        "ST002",
        judged(
            account(network_acls_present=True, virtual_network_rules=(StorageVirtualNetworkRule(SUBNET),))
        ),
    )
    assert "1 virtual network rule(s) exist but" in finding.summary and "restrict nothing" in finding.summary


# -- bypass, exceptions ------------------------------------------------------------------------------


def test_bypass_set_differs_from_the_baseline() -> None:
    policy = VaultPolicy(entry="e", storage_bypass=frozenset({StorageBypass.LOGGING, StorageBypass.METRICS}))
    [finding] = of("ST008", judged(firewalled(), policy))
    assert finding.summary == "networkAcls.bypass is AzureServices, the baseline expects Logging, Metrics"
    assert (
        of(
            "ST008",
            judged(firewalled(bypass=frozenset({StorageBypass.METRICS, StorageBypass.LOGGING})), policy),
        )
        == []
    )


def test_exceptions_that_survive_disabled_in_the_published_example() -> None:
    published = normalise_storage_account(example("StorageAccountUpdateDisablePublicNetworkAccess"))
    findings = of("ST012", judged(published))
    assert sorted(f.subject for f in findings) == sorted(
        [
            "AzureServices",
            "/subscriptions/a7e99807-abbf-4642-bdec-2c809a96a8bc/resourceGroups/res9407/providers/"
            "Microsoft.Synapse/workspaces/testworkspace",
        ]
    )


def test_no_exception_is_reported_while_public_access_is_on_or_none_exists() -> None:
    rules = (ResourceAccessRule("t", SYNAPSE),)
    assert of("ST012", judged(firewalled(resource_access_rules=rules))) == []
    assert of("ST012", judged(closed(bypass=frozenset({StorageBypass.NONE})))) == []


# -- private endpoints ------------------------------------------------------------------------------


def test_blob_private_and_dfs_public() -> None:
    """The walkthrough's mistake: an endpoint for blob while dfs stays public."""
    findings = judged(
        firewalled(private_endpoint_connections=(connection(StorageSubresource.BLOB),)), PRIVATE_LINK
    )
    [missing] = of("ST011", findings)
    assert missing.subject == "dfs" and missing.severity is Severity.HIGH
    assert (
        "the dfs endpoint (https://stapp.dfs.core.windows.net/) has no approved private endpoint"
        in missing.summary
    )
    assert missing.remediation.endswith("/providers/Microsoft.Storage/storageAccounts/stapp")
    assert "--group-id dfs" in missing.remediation
    [public] = of("ST009", findings)
    assert public.severity is Severity.MEDIUM  # the firewall denies by default


def test_with_public_access_closed_a_missing_endpoint_is_unreachable_not_public() -> None:
    [missing] = of(
        "ST011",
        judged(closed(private_endpoint_connections=(connection(StorageSubresource.BLOB),)), PRIVATE_LINK),
    )
    assert missing.severity is Severity.MEDIUM and "cannot reach it at all" in missing.summary


def test_the_baseline_names_the_sub_resources_in_use() -> None:
    policy = replace(PRIVATE_LINK, subresources=(StorageSubresource.BLOB,))
    assert (
        of(
            "ST011",
            judged(closed(private_endpoint_connections=(connection(StorageSubresource.BLOB),)), policy),
        )
        == []
    )


def test_an_unhealthy_connection_counts_for_no_sub_resource() -> None:
    pending = connection(StorageSubresource.DFS, status="Pending")
    findings = judged(
        closed(private_endpoint_connections=(connection(StorageSubresource.BLOB), pending)), PRIVATE_LINK
    )
    assert [f.subject for f in of("ST011", findings)] == ["dfs"]
    [unhealthy] = of("ST010", findings)
    assert "(dfs) has status Pending" in unhealthy.summary


def test_connections_without_a_sub_resource_leave_it_unknown() -> None:
    """The account's own document never names the sub-resource: ST011 does not guess, ST018 says so."""
    published = example("StorageAccountGetProperties")
    published["properties"]["privateEndpointConnections"] = example(
        "StorageAccountListPrivateEndpointConnections"
    )["value"]
    findings = judged(normalise_storage_account(published), PRIVATE_LINK)
    assert of("ST011", findings) == []
    [unknown] = of("ST018", findings)
    assert "2 working private endpoint connection(s) name no sub-resource" in unknown.summary
    assert "blob, dfs, file, queue, table, web" in unknown.summary


def test_private_endpoint_with_an_open_firewall_is_high() -> None:
    [finding] = of("ST009", judged(account(private_endpoint_connections=(connection(),))))
    assert finding.severity is Severity.HIGH and "admits everyone" in finding.summary


# -- access settings -----------------------------------------------------------------------------------


def test_anonymous_blob_access() -> None:
    [quiet] = of("ST013", judged(firewalled(allow_blob_public_access=True)))
    assert quiet.severity is Severity.MEDIUM
    [loud] = of("ST013", judged(account(allow_blob_public_access=True)))
    assert loud.severity is Severity.HIGH and "from any address on the internet" in loud.summary
    assert of("ST013", judged(firewalled(allow_blob_public_access=None))) == []  # absent reads as false


def test_shared_key_where_the_baseline_forbids_it() -> None:
    forbids = VaultPolicy(entry="e", allow_shared_key_access=False)
    [absent] = of("ST014", judged(firewalled(), forbids))
    assert "absent (Azure reads it as true)" in absent.summary
    assert of("ST014", judged(firewalled(allow_shared_key_access=False), forbids)) == []
    assert of("ST014", judged(firewalled(allow_shared_key_access=True))) == []  # no baseline: not judged


def test_tls_and_http() -> None:
    findings = of("ST015", judged(firewalled(minimum_tls_version=None, supports_https_traffic_only=False)))
    assert {f.subject: f.summary for f in findings} == {
        "minimumTlsVersion": "minimumTlsVersion is absent (Azure reads it as TLS1_0): requests over TLS below 1.2 are accepted",
        "supportsHttpsTrafficOnly": "supportsHttpsTrafficOnly is false: requests over plain HTTP are accepted",
    }
    assert of("ST015", judged(firewalled(minimum_tls_version=TlsVersion.TLS1_3))) == []


# -- the baseline --------------------------------------------------------------------------------------


def test_drift_from_the_baseline() -> None:
    policy = VaultPolicy(
        entry="e",
        default_action="Deny",
        public_network_access="Disabled",
        allowed_subnets=(SUBNET.lower(),),
        allowed_ip_ranges=(parse_network("203.0.113.0/24"),),
        drift_severity=Severity.HIGH,
    )
    findings = of("ST016", judged(firewalled(ip_rules=(ip("198.51.100.0/24"),)), policy))
    assert {f.subject for f in findings} == {"public_network_access", "allowed_subnets", "allowed_ip_ranges"}
    assert all(f.severity is Severity.HIGH for f in findings)


def test_no_storage_entry() -> None:
    [finding] = of("ST017", judged(firewalled(), VaultPolicy(baseline_given=True)))
    assert "service: storage" in finding.summary


def test_key_vault_rules_never_judge_an_account_and_storage_rules_never_a_vault() -> None:
    assert all(f.rule_id.startswith("ST") for f in judged(account(allow_blob_public_access=True)))


@pytest.mark.parametrize(
    "gap", ["properties", "properties.privateEndpointConnections", "properties.primaryEndpoints"]
)
def test_no_private_link_verdict_from_what_could_not_be_read(gap: str) -> None:
    garbled = closed(
        unread=frozenset({gap}),
        primary_endpoints={} if gap != "properties.privateEndpointConnections" else ENDPOINTS,
    )
    findings = judged(garbled, replace(PRIVATE_LINK, subresources=()))
    assert of("ST011", findings) == [] and of("ST018", findings) == []


def test_a_garbled_document_gives_no_verdict_at_all() -> None:
    """properties missing: every field holds Azure's default, which nobody saw."""
    garbled = normalise_storage_account({"id": ACCOUNT_ID, "type": "Microsoft.Storage/storageAccounts"})
    policy = VaultPolicy(
        entry="e",
        mode=Mode.PRIVATE_LINK,
        subresources=(StorageSubresource.BLOB,),
        allow_shared_key_access=False,
    )
    assert judged(garbled, policy) == []
