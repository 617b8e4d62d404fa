"""The configuration rules KV0xx, each firing and not firing, plus Azure's published example shapes."""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from monitor.config.policy import VaultPolicy
from monitor.judge.evaluate import evaluate
from monitor.judge.rules.base import Hit, VaultFacts
from monitor.judge.rules.catalog import CATALOG, RULES_BY_ID
from monitor.judge.rules.keyvault import config as config_rules
from monitor.model import IpRule, PrivateEndpointConnection, Severity, VaultPosture, VirtualNetworkRule
from monitor.sources.keyvault.normalise import normalise_vault

SUB = "00000000-0000-0000-0000-00000000a001"
VAULT_ID = f"/subscriptions/{SUB}/resourceGroups/rg-test/providers/Microsoft.KeyVault/vaults/kv-test"
SUBNET = (
    f"/subscriptions/{SUB}/resourcegroups/rg-network/providers/microsoft.network/"
    "virtualnetworks/vnet-lab/subnets/serviceendpoint"
)
OTHER_SUBNET = SUBNET.replace("serviceendpoint", "default")
PE_ID = f"/subscriptions/{SUB}/resourceGroups/rg-network/providers/Microsoft.Network/privateEndpoints/pe"


def ip(text: str) -> IpRule:
    try:
        network: Any = ipaddress.ip_network(text, strict=False)
    except ValueError:
        network = None
    return IpRule(raw=text, network=network)


def connection(
    name: str = "c1", *, status: str = "Approved", provisioning: str = "Succeeded"
) -> PrivateEndpointConnection:
    return PrivateEndpointConnection(
        id=f"{VAULT_ID}/privateEndpointConnections/{name}",
        private_endpoint_id=PE_ID,
        status=status,
        provisioning_state=provisioning,
    )


def posture(**overrides: Any) -> VaultPosture:
    """A locked-down vault (public access Disabled, firewall Deny); tests change one thing."""
    base = VaultPosture(
        id=VAULT_ID,
        name="kv-test",
        subscription_id=SUB,
        resource_group="rg-test",
        location="westeurope",
        vault_uri="https://kv-test.vault.azure.net/",
        public_network_access="Disabled",
        network_acls_present=True,
        default_action="Deny",
        bypass="AzureServices",
    )
    return replace(base, **overrides)


def firewalled(**overrides: Any) -> VaultPosture:
    """Public access on, firewall denying by default: the IP rules decide."""
    return posture(public_network_access="Enabled", **overrides)


def hits(rule_id: str, vault: VaultPosture, policy: VaultPolicy | None = None) -> list[Hit]:
    facts = VaultFacts(posture=vault, policy=policy or VaultPolicy())
    return list(RULES_BY_ID[rule_id].check(facts))


# -- catalog shape -----------------------------------------------------------------------------------


def test_config_rules_are_the_issue_set_with_full_metadata() -> None:
    ids = [rule.id for rule in config_rules.RULES]
    assert ids == [f"KV0{n:02d}" for n in (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13)]
    for rule in config_rules.RULES:
        assert rule in CATALOG
        assert len(rule.rationale) > 80, rule.id
        assert rule.remediation_bicep.strip(), rule.id
        assert rule.references and all(r.startswith("https://learn.microsoft.com/") for r in rule.references)
        # The template must format with the placeholders Rule.remediation_for provides.
        text = rule.remediation_for(posture(), "subject-x")
        assert "{" not in text.replace("${", ""), (rule.id, text)
    az = [r for r in config_rules.RULES if r.remediation_cli.startswith("az ")]
    assert len(az) >= 10


def test_remediation_names_the_vault() -> None:
    assert RULES_BY_ID["KV001"].remediation_for(posture()) == (
        "az keyvault update --name kv-test --resource-group rg-test --default-action Deny --bypass AzureServices"
    )
    assert "--ip-address 0.0.0.0/0" in RULES_BY_ID["KV003"].remediation_for(posture(), "0.0.0.0/0")


# -- KV001 / KV002 ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "vault",
    [
        posture(public_network_access="Enabled", network_acls_present=False, default_action="Allow"),
        posture(public_network_access="Enabled", default_action="Allow"),
        posture(public_network_access="enabled", default_action="allow"),
        posture(public_network_access="SomethingNew", default_action="Allow"),
    ],
)
def test_kv001_fires_when_public_and_not_denied(vault: VaultPosture) -> None:
    [hit] = hits("KV001", vault)
    assert "defaultAction is" in hit.summary or "no networkAcls" in hit.summary
    assert hit.evidence["public_network_access"] == vault.public_network_access


@pytest.mark.parametrize(
    "vault",
    [
        posture(),
        posture(public_network_access="Disabled", default_action="Allow"),
        posture(
            public_network_access="SecuredByPerimeter", network_acls_present=False, default_action="Allow"
        ),
        posture(public_network_access="disabled", default_action="Allow"),
        firewalled(),
    ],
)
def test_kv001_quiet_when_disabled_or_denied(vault: VaultPosture) -> None:
    assert hits("KV001", vault) == []


def test_kv002_fires_with_vnet_rule_and_default_allow() -> None:
    vault = posture(
        public_network_access="Enabled",
        default_action="Allow",
        virtual_network_rules=(VirtualNetworkRule(SUBNET),),
    )
    [hit] = hits("KV002", vault)
    assert hit.evidence["virtual_network_rules"] == [SUBNET]
    assert "restrict nothing" in hit.summary


@pytest.mark.parametrize(
    "vault",
    [
        posture(
            public_network_access="Enabled", default_action="Allow"
        ),  # open, but no vnet rule: KV001 only
        firewalled(virtual_network_rules=(VirtualNetworkRule(SUBNET),)),  # vnet rule, default Deny
        posture(
            default_action="Allow", virtual_network_rules=(VirtualNetworkRule(SUBNET),)
        ),  # public Disabled
    ],
)
def test_kv002_quiet(vault: VaultPosture) -> None:
    assert hits("KV002", vault) == []


# -- KV003 / KV004 / KV005 ----------------------------------------------------------------------------


def test_kv003_whole_internet_is_critical() -> None:
    [hit] = hits("KV003", firewalled(ip_rules=(ip("0.0.0.0/0"),)))
    assert hit.severity is Severity.CRITICAL
    assert hit.subject == "0.0.0.0/0"
    [hit6] = hits("KV003", firewalled(ip_rules=(ip("::/0"),)))
    assert hit6.severity is Severity.CRITICAL


def test_kv003_broader_than_min_prefix_is_high_one_hit_per_rule() -> None:
    vault = firewalled(ip_rules=(ip("203.0.113.0/24"), ip("198.51.0.0/16"), ip("192.0.0.0/8")))
    found = hits("KV003", vault)
    assert [h.subject for h in found] == ["198.51.0.0/16", "192.0.0.0/8"]
    assert all(h.severity is None for h in found)  # the rule's default: high
    assert RULES_BY_ID["KV003"].severity is Severity.HIGH
    assert "broader than /24" in found[0].summary


def test_kv003_min_prefix_from_policy() -> None:
    vault = firewalled(ip_rules=(ip("203.0.113.0/24"),))
    assert hits("KV003", vault, VaultPolicy(min_prefix_length=24)) == []
    [hit] = hits("KV003", vault, VaultPolicy(min_prefix_length=28))
    assert "broader than /28" in hit.summary


def test_kv003_outside_allowed_ranges() -> None:
    allowed = (ipaddress.ip_network("203.0.113.0/24"),)
    vault = firewalled(ip_rules=(ip("203.0.113.16/28"), ip("198.51.100.7/32")))
    [hit] = hits("KV003", vault, VaultPolicy(allowed_ip_ranges=allowed))
    assert hit.subject == "198.51.100.7/32"
    assert "outside the baseline's allowed ranges (203.0.113.0/24)" in hit.summary


def test_kv003_both_reasons_in_one_hit() -> None:
    allowed = (ipaddress.ip_network("203.0.113.0/24"),)
    [hit] = hits("KV003", firewalled(ip_rules=(ip("198.0.0.0/8"),)), VaultPolicy(allowed_ip_ranges=allowed))
    assert "broader than /24 and outside" in hit.summary


@pytest.mark.parametrize(
    "vault",
    [
        posture(ip_rules=(ip("0.0.0.0/0"),)),  # public access Disabled: IP rules unused
        firewalled(default_action="Allow", ip_rules=(ip("0.0.0.0/0"),)),  # KV001's case, not KV003's
        firewalled(network_acls_present=False, default_action="Allow", ip_rules=(ip("0.0.0.0/0"),)),
        firewalled(ip_rules=(ip("124.56.78.91/32"), ip("203.0.113.0/24"))),
        firewalled(ip_rules=(ip("10.0.0.0/8"),)),  # reserved: admits nothing (KV005)
        firewalled(ip_rules=(ip("'10.91.4.0/24'"),)),  # unparsable (KV004)
    ],
)
def test_kv003_quiet(vault: VaultPosture) -> None:
    assert hits("KV003", vault) == []


def test_kv004_one_per_unparsable_rule() -> None:
    vault = firewalled(ip_rules=(ip("'10.91.4.0/24'"), ip("124.56.78.91/32"), ip("not-an-ip")))
    found = hits("KV004", vault)
    assert [h.subject for h in found] == ["'10.91.4.0/24'", "not-an-ip"]
    assert hits("KV004", firewalled(ip_rules=(ip("124.56.78.91/32"),))) == []


@pytest.mark.parametrize(
    ("rule", "reserved"),
    [
        ("10.1.0.0/16", "10.0.0.0/8"),
        ("172.20.0.0/16", "172.16.0.0/12"),
        ("192.168.1.7/32", "192.168.0.0/16"),
        ("100.64.5.0/24", "100.64.0.0/10"),
        ("127.30.0.5/32", "127.0.0.0/8"),
        ("169.254.169.254/32", "169.254.0.0/16"),
    ],
)
def test_kv005_reserved_ranges(rule: str, reserved: str) -> None:
    [hit] = hits("KV005", firewalled(ip_rules=(ip(rule),)))
    assert hit.subject == rule
    assert hit.evidence["reserved_range"] == reserved


@pytest.mark.parametrize("rule", ["203.0.113.0/24", "0.0.0.0/0", "8.0.0.0/7", "100.128.0.0/16", "not-an-ip"])
def test_kv005_quiet_for_public_or_straddling_or_unparsable(rule: str) -> None:
    assert hits("KV005", firewalled(ip_rules=(ip(rule),))) == []


# -- KV006 / KV007 -----------------------------------------------------------------------------------


def test_kv006_per_rule_with_ignore_missing() -> None:
    vault = firewalled(
        virtual_network_rules=(
            VirtualNetworkRule(SUBNET, ignore_missing_service_endpoint=True),
            VirtualNetworkRule(OTHER_SUBNET),
        )
    )
    [hit] = hits("KV006", vault)
    assert hit.subject == SUBNET
    assert hits("KV006", firewalled(virtual_network_rules=(VirtualNetworkRule(SUBNET),))) == []


def test_kv007_only_when_baseline_states_bypass() -> None:
    vault = firewalled(bypass="AzureServices")
    assert hits("KV007", vault) == []
    assert hits("KV007", vault, VaultPolicy(bypass="azureservices")) == []
    [hit] = hits("KV007", vault, VaultPolicy(bypass="None"))
    assert hit.evidence == {"expected": "None", "actual": "AzureServices"}


# -- KV008 / KV009 / KV010 ---------------------------------------------------------------------------


def test_kv008_medium_when_firewalled_high_when_also_open() -> None:
    [medium] = hits("KV008", firewalled(private_endpoint_connections=(connection(),)))
    assert medium.severity is None and RULES_BY_ID["KV008"].severity is Severity.MEDIUM
    open_vault = posture(
        public_network_access="Enabled", default_action="Allow", private_endpoint_connections=(connection(),)
    )
    [high] = hits("KV008", open_vault)
    assert high.severity is Severity.HIGH
    assert "admits everyone" in high.summary


@pytest.mark.parametrize(
    "vault",
    [
        posture(private_endpoint_connections=(connection(),)),  # public access Disabled
        posture(public_network_access="SecuredByPerimeter", private_endpoint_connections=(connection(),)),
        firewalled(private_endpoint_connections=(connection(status="Pending"),)),  # nothing approved
        firewalled(),
    ],
)
def test_kv008_quiet(vault: VaultPosture) -> None:
    assert hits("KV008", vault) == []


def test_kv009_one_per_unhealthy_connection() -> None:
    vault = posture(
        private_endpoint_connections=(
            connection("ok"),
            connection("pending", status="Pending"),
            connection("rejected", status="Rejected"),
            connection("gone", status="Disconnected"),
            connection("broken", provisioning="Failed"),
        )
    )
    found = hits("KV009", vault)
    assert [h.subject.rsplit("/", 1)[-1] for h in found] == ["pending", "rejected", "gone", "broken"]
    assert "provisioningState Failed" in found[-1].summary
    assert hits("KV009", posture(private_endpoint_connections=(connection(),))) == []


def test_kv010_private_link_expected_without_approved_connection() -> None:
    policy = VaultPolicy(entry="pl", mode="private-link")
    [none] = hits("KV010", posture(), policy)
    assert "no connections" in none.summary
    [pending] = hits("KV010", posture(private_endpoint_connections=(connection(status="Pending"),)), policy)
    assert "none Approved" in pending.summary
    assert hits("KV010", posture(private_endpoint_connections=(connection(),)), policy) == []
    assert hits("KV010", posture(), VaultPolicy(entry="se", mode="service-endpoint")) == []


# -- KV011 / KV013 -----------------------------------------------------------------------------------


def test_kv011_one_hit_per_differing_field_with_baseline_severity() -> None:
    policy = VaultPolicy(
        entry="se",
        default_action="Deny",
        public_network_access="Disabled",
        allowed_subnets=(SUBNET,),
        allowed_ip_ranges=(ipaddress.ip_network("203.0.113.0/24"),),
        drift_severity=Severity.HIGH,
    )
    vault = posture(
        public_network_access="Enabled",
        default_action="Allow",
        virtual_network_rules=(VirtualNetworkRule(OTHER_SUBNET),),
        ip_rules=(ip("198.51.100.0/24"),),
    )
    found = {h.subject: h for h in hits("KV011", vault, policy)}
    assert set(found) == {"default_action", "public_network_access", "allowed_subnets", "allowed_ip_ranges"}
    assert all(h.severity is Severity.HIGH for h in found.values())
    assert found["default_action"].summary == "default_action is Allow, the baseline expects Deny"
    assert found["allowed_subnets"].evidence["missing"] == [SUBNET]
    assert found["allowed_subnets"].evidence["unexpected"] == [OTHER_SUBNET]
    assert found["allowed_ip_ranges"].evidence["unexpected"] == ["198.51.100.0/24"]
    assert found["allowed_ip_ranges"].evidence["missing"] == ["203.0.113.0/24"]


def test_kv011_quiet_when_matching_or_unstated() -> None:
    policy = VaultPolicy(
        default_action="deny",
        public_network_access="enabled",
        allowed_subnets=(SUBNET,),
        allowed_ip_ranges=(ipaddress.ip_network("203.0.113.0/24"),),
    )
    vault = firewalled(
        virtual_network_rules=(VirtualNetworkRule(SUBNET.upper()),),  # ids compare case-insensitively
        ip_rules=(ip("203.0.113.16/28"),),
    )
    assert hits("KV011", vault, policy) == []
    assert hits("KV011", posture(default_action="Allow"), VaultPolicy()) == []
    # bypass differences are KV007's, never KV011's
    assert hits("KV011", posture(bypass="None"), VaultPolicy(bypass="AzureServices")) == []


def test_kv013_only_with_a_baseline_and_no_entry() -> None:
    assert len(hits("KV013", posture(), VaultPolicy(baseline_given=True))) == 1
    assert hits("KV013", posture(), VaultPolicy(baseline_given=True, entry="defaults")) == []
    assert hits("KV013", posture(), VaultPolicy()) == []


# -- Through evaluate, and Azure's published examples ------------------------------------------------


def test_evaluate_produces_findings_with_remediation() -> None:
    vault = posture(
        public_network_access="Enabled",
        default_action="Allow",
        virtual_network_rules=(VirtualNetworkRule(SUBNET),),
    )
    result = evaluate([VaultFacts(posture=vault, policy=VaultPolicy())], today=dt.date(2026, 1, 1))
    assert sorted(f.rule_id for f in result.findings) == ["KV001", "KV002"]
    kv002 = next(f for f in result.findings if f.rule_id == "KV002")
    assert kv002.remediation.startswith("az keyvault update --name kv-test --resource-group rg-test")


def _example_body(arm_examples: Path, name: str) -> dict[str, Any]:
    body: dict[str, Any] = json.loads((arm_examples / name).read_text())["body"]
    return body


def test_published_network_acls_example(arm_examples: Path) -> None:
    vault = normalise_vault(_example_body(arm_examples, "createVaultWithNetworkAcls.json"))
    facts = VaultFacts(posture=vault, policy=VaultPolicy())
    fired = {rule.id: list(rule.check(facts)) for rule in config_rules.RULES}
    # No publicNetworkAccess (= Enabled), defaultAction Deny: firewalled, not open.
    assert fired["KV001"] == [] and fired["KV002"] == [] and fired["KV008"] == []
    # The quoted rule is reported, never a crash; the /32 is fine.
    assert [h.subject for h in fired["KV004"]] == ["'10.91.4.0/24'"]
    assert fired["KV003"] == [] and fired["KV005"] == []


def test_published_get_vault_example_is_open(arm_examples: Path) -> None:
    vault = normalise_vault(_example_body(arm_examples, "getVault.json"))
    facts = VaultFacts(posture=vault, policy=VaultPolicy())
    assert len(list(RULES_BY_ID["KV001"].check(facts))) == 1
    assert list(RULES_BY_ID["KV002"].check(facts)) == []
    assert list(RULES_BY_ID["KV004"].check(facts)) == []


def test_published_list_example_vault_without_network_acls(arm_examples: Path) -> None:
    [body] = _example_body(arm_examples, "listVaultBySubscription.json")["value"]
    vault = normalise_vault(body)
    facts = VaultFacts(posture=vault, policy=VaultPolicy(baseline_given=True))
    assert len(list(RULES_BY_ID["KV001"].check(facts))) == 1
    assert len(list(RULES_BY_ID["KV013"].check(facts))) == 1


def test_published_private_endpoint_connection_shapes(arm_examples: Path) -> None:
    """The published connection list (two Approved connections) on an otherwise open vault."""
    body = _example_body(arm_examples, "getVault.json")
    connections = _example_body(arm_examples, "listPrivateEndpointConnection.json")["value"]
    vault = normalise_vault(
        {**body, "properties": {**body["properties"], "privateEndpointConnections": connections}}
    )
    facts = VaultFacts(posture=vault, policy=VaultPolicy(entry="pl", mode="private-link"))
    [kv008] = RULES_BY_ID["KV008"].check(facts)
    assert kv008.severity is Severity.HIGH  # KV001 holds too
    assert list(RULES_BY_ID["KV009"].check(facts)) == []
    assert list(RULES_BY_ID["KV010"].check(facts)) == []
    rejected = [
        {**c, "properties": {**c["properties"], "privateLinkServiceConnectionState": {"status": "Rejected"}}}
        for c in connections[:1]
    ]
    vault = normalise_vault(
        {**body, "properties": {**body["properties"], "privateEndpointConnections": rejected}}
    )
    facts = VaultFacts(posture=vault, policy=VaultPolicy(entry="pl", mode="private-link"))
    assert len(list(RULES_BY_ID["KV009"].check(facts))) == 1
    assert len(list(RULES_BY_ID["KV010"].check(facts))) == 1
    assert list(RULES_BY_ID["KV008"].check(facts)) == []
