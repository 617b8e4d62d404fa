"""The catalog: what it refuses when it is built, and every rule in it firing on one case and
staying quiet on another, through ``evaluate`` and the real catalog."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest

from monitor.config.policy import VaultPolicy
from monitor.judge.evaluate import evaluate
from monitor.judge.rules.base import Exposure, Hit, Rule, RuleCategory, StorageFacts, VaultFacts, rule
from monitor.judge.rules.catalog import RULES_BY_ID, InvalidRule, build_catalog
from monitor.model import (
    EvidenceSource,
    LogEvidence,
    Outcome,
    PerimeterProvisioningIssue,
    ProbeResult,
    Service,
    Severity,
    VaultPosture,
    Verdict,
    VirtualNetworkRule,
)
from monitor.model_storage import (
    ResourceAccessRule,
    StorageBypass,
    StorageSubresource,
    StorageVerdict,
    StorageVirtualNetworkRule,
    TlsVersion,
    VirtualNetworkRuleState,
)
from monitor.netaddr import parse_network
from tests.judge.test_perimeter import EVERYONE, NARROW, association, perimetered, unreadable
from tests.logs.test_perimeter_rules import REOPENED, seen
from tests.logs.test_perimeter_rules import logged as perimeter_logged
from tests.logs.test_rules import APP_ID, POSTURE, activity, evidence
from tests.logs.test_storage_rules import activity as request_activity
from tests.logs.test_storage_rules import evidence as storage_evidence
from tests.logs.test_storage_rules import logged as storage_logged
from tests.probes.test_probe_rules import INTERNET, NOW, PL, SE, VANTAGES, _posture, _result
from tests.probes.test_storage_probe_rules import storage_probed, storage_result
from tests.rules.test_config_rules import SUBNET, connection, firewalled, ip, posture
from tests.storage import test_rules as st


@rule(
    id="KV900",
    severity=Severity.LOW,
    title="A rule for these tests",
    source=EvidenceSource.CONFIGURATION,
    category=RuleCategory.CONFIGURATION,
    remediation_cli="az keyvault show --name {name} --resource-group {resource_group}  # {subject}",
    remediation_bicep="// none",
    references=("https://learn.microsoft.com/azure/key-vault/general/network-security",),
)
def sample(facts: VaultFacts) -> Iterator[Hit]:
    """Why it matters, written over
    two lines of the docstring."""
    yield from ()


CHECK = f"{__name__}.sample"


def test_a_valid_rule_joins_with_its_docstring_as_a_one_line_rationale() -> None:
    assert build_catalog([sample]) == (sample,)
    assert sample.rationale == "Why it matters, written over two lines of the docstring."


def test_the_catalog_is_in_id_order_whatever_the_family_order() -> None:
    later = replace(sample, id="KV950")
    assert build_catalog([later], [sample]) == (sample, later)


BAD: dict[str, tuple[dict[str, Any], str]] = {
    "id too short": ({"id": "KV90"}, "the id must be KV and three digits"),
    "id too long": ({"id": "KV9000"}, "the id must be KV and three digits"),
    "id lower case": ({"id": "kv900"}, "the id must be KV and three digits"),
    "id of another prefix": ({"id": "SA001"}, "the id must be KV and three digits"),
    "id of another service": ({"id": "ST001"}, "the id must be KV and three digits"),
    "storage rule with a vault id": (
        {"service": Service.STORAGE, "id": "KV900"},
        "the id must be ST and three digits",
    ),
    "service as text": ({"service": "storage"}, "the service 'storage' is not a Service"),
    "severity as text": ({"severity": "high"}, "the severity 'high' is not a Severity"),
    "source as text": ({"source": "probes"}, "the source 'probes' is not an EvidenceSource"),
    "category as text": ({"category": "drift"}, "the category 'drift' is not a RuleCategory"),
    "no rationale": ({"rationale": ""}, "no rationale: write it as the check's docstring"),
    "exposure as text": ({"exposure": "claimed"}, "the exposure 'claimed' is not an Exposure"),
    "proof from the configuration": (
        {"exposure": Exposure.PROVEN, "source": EvidenceSource.CONFIGURATION},
        "only a rule that reads the probes proves an exposure",
    ),
    "claim from the probes": (
        {"exposure": Exposure.CLAIMED, "source": EvidenceSource.PROBES},
        "only a rule that reads the configuration claims an exposure",
    ),
    "unknown placeholder": (
        {"remediation_cli": "az keyvault show --name {vault} --subscription {subscription}"},
        "the CLI remediation uses unknown placeholders ['vault']: use name, resource_group, "
        "subject, subscription (double braces for a literal)",
    ),
    "unbalanced brace": (
        {"remediation_cli": "az keyvault show --name {name"},
        "the CLI remediation is not a valid template (expected '}' before end of string)",
    ),
    "no references": ({"references": ()}, "no references: name at least one https URL"),
    "plain http": (
        {"references": ("http://learn.microsoft.com/azure/key-vault/",)},
        "the reference 'http://learn.microsoft.com/azure/key-vault/' is not an https URL",
    ),
    "no scheme": (
        {"references": ("learn.microsoft.com/azure/key-vault/",)},
        "the reference 'learn.microsoft.com/azure/key-vault/' is not an https URL",
    ),
    "no host": ({"references": ("https:///azure",)}, "the reference 'https:///azure' is not an https URL"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_a_faulty_rule_is_refused_naming_the_rule_its_check_and_the_problem(case: str) -> None:
    changes, problem = BAD[case]
    faulty = replace(sample, **changes)
    with pytest.raises(InvalidRule) as caught:
        build_catalog([faulty])
    assert str(caught.value) == f"rule {faulty.id!r} ({CHECK}): {problem}"


def test_a_check_without_docstring_has_no_rationale() -> None:
    def undocumented(facts: VaultFacts) -> Iterator[Hit]:
        yield from ()

    bare: Rule = rule(
        id="KV901",
        severity=Severity.INFO,
        title="No docstring",
        source=EvidenceSource.LOGS,
        category=RuleCategory.LOGS,
        remediation_cli="# nothing",
        remediation_bicep="// nothing",
        references=("https://learn.microsoft.com/azure/key-vault/general/logging",),
    )(undocumented)
    with pytest.raises(InvalidRule, match=r"^rule 'KV901' \(.*undocumented\): no rationale"):
        build_catalog([bare])


def test_literal_braces_in_a_remediation_are_allowed() -> None:
    literal = replace(sample, remediation_cli="az monitor diagnostic-settings create --logs '[{{\"a\":1}}]'")
    assert build_catalog([literal]) == (literal,)


def other(facts: VaultFacts) -> Iterator[Hit]:
    yield from ()


def test_an_id_used_twice_is_refused_naming_both_checks() -> None:
    twin = replace(sample, check=other)
    with pytest.raises(InvalidRule) as caught:
        build_catalog([sample], [twin])
    assert (
        str(caught.value)
        == f"rule 'KV900' ({__name__}.other): the id is already used by rule 'KV900' ({CHECK})"
    )


# -- every rule: one case where it fires, one where it stays quiet -----------------------------------


def configured(vault: VaultPosture, policy: VaultPolicy | None = None, **facts: Any) -> VaultFacts:
    return VaultFacts(posture=vault, policy=policy or VaultPolicy(), **facts)


def probed(*results: ProbeResult, policy: VaultPolicy | None = None) -> VaultFacts:
    """The vantage points configured are those that answered: none is silent (KV106) by accident."""
    answered = {result.vantage for result in results}
    return VaultFacts(
        posture=_posture(),
        policy=policy or VaultPolicy(mode="service-endpoint"),
        probes=results,
        vantages=tuple(vantage for vantage in VANTAGES if vantage.name in answered),
        scan_started_at=NOW,
    )


def logged(found: LogEvidence, policy: VaultPolicy | None = None) -> VaultFacts:
    return VaultFacts(
        posture=POSTURE, policy=policy or VaultPolicy(), evidence=found, logs_refused_threshold=10
    )


def stored(account: Any, policy: VaultPolicy | None = None, **facts: Any) -> StorageFacts:
    return StorageFacts(posture=account, policy=policy or VaultPolicy(), **facts)


OPEN = {"public_network_access": "Enabled", "default_action": "Allow"}
PRIVATE_LINK = VaultPolicy(entry="pl", mode="private-link")
REFUSED = Outcome.REFUSED_FIREWALL

# rule id -> (facts on which it fires, the nearest facts on which it stays quiet)
CASES: dict[str, tuple[VaultFacts | StorageFacts, VaultFacts | StorageFacts]] = {
    "KV001": (configured(posture(**OPEN)), configured(firewalled())),
    "KV002": (
        configured(posture(**OPEN, virtual_network_rules=(VirtualNetworkRule(SUBNET),))),
        configured(firewalled(virtual_network_rules=(VirtualNetworkRule(SUBNET),))),
    ),
    "KV003": (
        configured(firewalled(ip_rules=(ip("0.0.0.0/0"),))),
        configured(firewalled(ip_rules=(ip("203.0.113.0/28"),))),
    ),
    "KV004": (
        configured(posture(ip_rules=(ip('"203.0.113.7"'),))),
        configured(posture(ip_rules=(ip("203.0.113.7"),))),
    ),
    "KV005": (
        configured(posture(ip_rules=(ip("10.0.0.0/24"),))),
        configured(posture(ip_rules=(ip("203.0.113.0/24"),))),
    ),
    "KV006": (
        configured(
            posture(virtual_network_rules=(VirtualNetworkRule(SUBNET, ignore_missing_service_endpoint=True),))
        ),
        configured(posture(virtual_network_rules=(VirtualNetworkRule(SUBNET),))),
    ),
    "KV007": (
        configured(posture(), VaultPolicy(bypass="None")),
        configured(posture(), VaultPolicy(bypass="AzureServices")),
    ),
    "KV008": (
        configured(firewalled(private_endpoint_connections=(connection(),))),
        configured(posture(private_endpoint_connections=(connection(),))),
    ),
    "KV009": (
        configured(posture(private_endpoint_connections=(connection(status="Pending"),))),
        configured(posture(private_endpoint_connections=(connection(),))),
    ),
    "KV010": (
        configured(posture(private_endpoint_connections=(connection(status="Pending"),)), PRIVATE_LINK),
        configured(posture(private_endpoint_connections=(connection(),)), PRIVATE_LINK),
    ),
    "KV011": (
        configured(posture(), VaultPolicy(entry="e", default_action="Allow")),
        configured(posture(), VaultPolicy(entry="e", default_action="Deny")),
    ),
    "KV013": (
        configured(posture(), VaultPolicy(baseline_given=True)),
        configured(posture(), VaultPolicy(entry="defaults", baseline_given=True)),
    ),
    "KV014": (
        configured(perimetered(posture(), association("Learning", NARROW))),
        configured(perimetered(posture(), association("Enforced", NARROW))),
    ),
    "KV015": (
        configured(perimetered(posture(), association("Enforced", EVERYONE))),
        configured(perimetered(posture(), association("Enforced", NARROW))),
    ),
    "KV016": (
        configured(perimetered(posture(public_network_access="SecuredByPerimeter"), None)),
        configured(
            perimetered(posture(public_network_access="SecuredByPerimeter"), association("Enforced", NARROW))
        ),
    ),
    "KV017": (
        configured(
            perimetered(
                posture(),
                association(
                    "Enforced",
                    provisioning_issues=(
                        PerimeterProvisioningIssue("issue1", "ConfigurationPropagationFailure"),
                    ),
                ),
            )
        ),
        configured(perimetered(posture(), association("Enforced"))),
    ),
    "KV018": (configured(unreadable(posture())), configured(perimetered(posture(), None))),
    "KV019": (
        configured(
            perimetered(
                firewalled(virtual_network_rules=(VirtualNetworkRule(SUBNET),)),
                association("Enforced", NARROW),
            )
        ),
        configured(perimetered(firewalled(virtual_network_rules=(VirtualNetworkRule(SUBNET),)), None)),
    ),
    "KV101": (
        probed(_result(INTERNET, seen="52.1.1.1")),
        probed(_result(INTERNET, verdict=Verdict.REFUSED_FIREWALL)),
    ),
    "KV102": (
        probed(_result(SE, verdict=Verdict.REFUSED_FIREWALL, client_address="52.1.1.1")),
        probed(_result(SE, seen="10.1.1.4")),
    ),
    "KV103": (
        probed(_result(PL), policy=PRIVATE_LINK),
        probed(_result(PL, addresses=("10.2.0.10",)), policy=PRIVATE_LINK),
    ),
    "KV104": (probed(_result(INTERNET, addresses=("10.2.0.10",))), probed(_result(INTERNET))),
    "KV105": (probed(_result(SE, seen="52.1.1.1")), probed(_result(SE, seen="10.1.1.4"))),
    "KV106": (
        probed(_result(INTERNET, vantage_error="timed out")),
        probed(_result(INTERNET)),
    ),
    "KV107": (probed(_result(PL, certificate_valid=False)), probed(_result(PL))),
    "KV201": (
        logged(evidence(activity("203.0.113.7"))),
        logged(
            evidence(activity("203.0.113.7")),
            VaultPolicy(allowed_ip_ranges=(parse_network("203.0.113.0/24"),)),
        ),
    ),
    "KV202": (
        logged(evidence(activity("198.51.100.9", outcome=REFUSED, count=10))),
        logged(evidence(activity("198.51.100.9", outcome=REFUSED, count=9))),
    ),
    "KV203": (
        logged(evidence(activity("203.0.113.7")), VaultPolicy(private_path_identities=(APP_ID,))),
        logged(evidence(activity("10.1.1.4", private=True)), VaultPolicy(private_path_identities=(APP_ID,))),
    ),
    "KV204": (logged(evidence()), logged(evidence(complete=False))),
    "KV205": (
        configured(REOPENED, perimeter_evidence=perimeter_logged(seen("203.0.113.7"))),
        configured(
            REOPENED,
            VaultPolicy(allowed_ip_ranges=(parse_network("203.0.113.0/24"),)),
            perimeter_evidence=perimeter_logged(seen("203.0.113.7")),
        ),
    ),
    "KV207": (
        configured(REOPENED, perimeter_evidence=perimeter_logged()),
        configured(perimetered(posture(), None), perimeter_evidence=perimeter_logged()),
    ),
    "KV206": (
        configured(
            perimetered(posture(), association("Enforced", NARROW)),
            evidence=evidence(activity("52.1.1.1", auth_type="TrustedService", outcome=REFUSED)),
        ),
        configured(posture(), evidence=evidence(activity("52.1.1.1", auth_type="TrustedService"))),
    ),
    "KV301": (
        configured(firewalled(), previous=posture()),
        configured(posture(), previous=posture()),
    ),
    "KV302": (
        configured(posture(), first_scan_of_scope=False),
        configured(posture(), first_scan_of_scope=True),
    ),
    "KV303": (
        configured(firewalled(), previous=posture(), event_feed=True),
        configured(firewalled(), previous=posture(), event_feed=False),
    ),
    # Storage accounts
    "ST001": (stored(st.account()), stored(st.closed())),
    "ST002": (
        stored(
            st.account(
                network_acls_present=True, virtual_network_rules=(StorageVirtualNetworkRule(st.SUBNET),)
            )
        ),
        stored(st.firewalled(virtual_network_rules=(StorageVirtualNetworkRule(st.SUBNET),))),
    ),
    "ST003": (
        stored(st.firewalled(ip_rules=(st.ip("0.0.0.0/0"),))),
        stored(st.firewalled(ip_rules=(st.ip("203.0.113.0/28"),))),
    ),
    "ST004": (
        stored(st.firewalled(ip_rules=(st.ip("2001:db8::/64"),))),
        stored(st.firewalled(ipv6_rules=(st.ip("2001:db8::/64"),))),
    ),
    "ST005": (
        stored(st.firewalled(ip_rules=(st.ip("10.0.0.0/24"),))),
        stored(st.firewalled(ip_rules=(st.ip("203.0.113.0/24"),))),
    ),
    "ST006": (
        stored(st.firewalled(ip_rules=(st.ip("203.0.113.7/32"),))),
        stored(st.firewalled(ip_rules=(st.ip("203.0.113.7"),))),
    ),
    "ST007": (
        stored(
            st.firewalled(
                virtual_network_rules=(
                    StorageVirtualNetworkRule(
                        st.SUBNET, state=VirtualNetworkRuleState.NETWORK_SOURCE_DELETED
                    ),
                )
            )
        ),
        stored(
            st.firewalled(
                virtual_network_rules=(
                    StorageVirtualNetworkRule(st.SUBNET, state=VirtualNetworkRuleState.SUCCEEDED),
                )
            )
        ),
    ),
    "ST008": (
        stored(st.firewalled(), VaultPolicy(storage_bypass=frozenset({StorageBypass.NONE}))),
        stored(st.firewalled(), VaultPolicy(storage_bypass=frozenset({StorageBypass.AZURE_SERVICES}))),
    ),
    "ST009": (
        stored(st.firewalled(private_endpoint_connections=(st.connection(),))),
        stored(st.closed(private_endpoint_connections=(st.connection(),))),
    ),
    "ST010": (
        stored(st.closed(private_endpoint_connections=(st.connection(status="Rejected"),))),
        stored(st.closed(private_endpoint_connections=(st.connection(),))),
    ),
    "ST011": (
        stored(
            st.closed(private_endpoint_connections=(st.connection(StorageSubresource.BLOB),)), st.PRIVATE_LINK
        ),
        stored(
            st.closed(
                private_endpoint_connections=(
                    st.connection(StorageSubresource.BLOB),
                    st.connection(StorageSubresource.DFS),
                )
            ),
            st.PRIVATE_LINK,
        ),
    ),
    "ST012": (
        stored(
            st.closed(
                resource_access_rules=(ResourceAccessRule("t", st.SYNAPSE),),
                bypass=frozenset({StorageBypass.NONE}),
            )
        ),
        stored(st.firewalled(resource_access_rules=(ResourceAccessRule("t", st.SYNAPSE),))),
    ),
    "ST013": (
        stored(st.firewalled(allow_blob_public_access=True)),
        stored(st.firewalled(allow_blob_public_access=False)),
    ),
    "ST014": (
        stored(st.firewalled(allow_shared_key_access=True), VaultPolicy(allow_shared_key_access=False)),
        stored(st.firewalled(allow_shared_key_access=False), VaultPolicy(allow_shared_key_access=False)),
    ),
    "ST015": (
        stored(st.firewalled(minimum_tls_version=TlsVersion.TLS1_1)),
        stored(st.firewalled(minimum_tls_version=TlsVersion.TLS1_2)),
    ),
    "ST016": (
        stored(st.firewalled(), VaultPolicy(entry="e", public_network_access="Disabled")),
        stored(st.closed(), VaultPolicy(entry="e", public_network_access="Disabled")),
    ),
    "ST017": (
        stored(st.firewalled(), VaultPolicy(baseline_given=True)),
        stored(st.firewalled(), VaultPolicy(entry="everything", baseline_given=True)),
    ),
    "ST101": (
        storage_probed(storage_result(INTERNET, StorageVerdict.ADMITTED)),
        storage_probed(storage_result(INTERNET, StorageVerdict.REFUSED)),
    ),
    "ST102": (
        storage_probed(storage_result(PL, StorageVerdict.REFUSED, addresses=("10.1.2.60",))),
        storage_probed(storage_result(PL, StorageVerdict.ADMITTED, addresses=("10.1.2.60",))),
    ),
    "ST103": (
        storage_probed(storage_result(PL, StorageVerdict.ADMITTED)),
        storage_probed(storage_result(PL, StorageVerdict.ADMITTED, addresses=("10.1.2.60",))),
    ),
    "ST104": (
        storage_probed(storage_result(INTERNET, StorageVerdict.REFUSED, untested="in the account's region")),
        storage_probed(storage_result(INTERNET, StorageVerdict.REFUSED)),
    ),
    "ST201": (
        storage_logged(storage_evidence(request_activity("203.0.113.7"))),
        storage_logged(
            storage_evidence(request_activity("203.0.113.7")),
            VaultPolicy(allowed_ip_ranges=(parse_network("203.0.113.0/24"),)),
        ),
    ),
    "ST202": (
        storage_logged(storage_evidence(request_activity("198.51.100.9", outcome=REFUSED, count=10))),
        storage_logged(storage_evidence(request_activity("198.51.100.9", outcome=REFUSED, count=9))),
    ),
    "ST203": (
        storage_logged(
            storage_evidence(request_activity("203.0.113.7")), VaultPolicy(private_path_identities=(APP_ID,))
        ),
        storage_logged(
            storage_evidence(request_activity("10.1.1.4", private=True)),
            VaultPolicy(private_path_identities=(APP_ID,)),
        ),
    ),
    "ST204": (storage_logged(storage_evidence()), storage_logged(storage_evidence(complete=False))),
    "ST301": (
        stored(st.account(), previous=st.firewalled()),
        stored(st.firewalled(), previous=st.firewalled()),
    ),
    "ST302": (
        stored(st.firewalled(), first_scan_of_scope=False),
        stored(st.firewalled(), first_scan_of_scope=True),
    ),
    "ST018": (
        stored(st.closed(private_endpoint_connections=(st.connection(None),)), st.PRIVATE_LINK),
        stored(st.closed(private_endpoint_connections=(st.connection(None),)), VaultPolicy(entry="e")),
    ),
}


def fired(facts: VaultFacts | StorageFacts) -> set[str]:
    return {finding.rule_id for finding in evaluate([facts], today=NOW.date()).findings}


def test_every_rule_in_the_catalog_has_a_case() -> None:
    assert set(CASES) == set(RULES_BY_ID)


@pytest.mark.parametrize("rule_id", sorted(CASES))
def test_the_rule_fires_on_its_case(rule_id: str) -> None:
    fires, _ = CASES[rule_id]
    assert rule_id in fired(fires)


@pytest.mark.parametrize("rule_id", sorted(CASES))
def test_the_rule_stays_quiet_on_the_nearest_harmless_case(rule_id: str) -> None:
    _, quiet = CASES[rule_id]
    assert rule_id not in fired(quiet)


def test_the_catalog_shows_remediations_with_single_braces_and_placeholders_kept() -> None:
    shown = RULES_BY_ID["KV016"].remediation_shown
    assert (
        '--private-link-resource "{id:/subscriptions/{subscription}/resourceGroups/{resource_group}/' in shown
    )
    assert "{{" not in shown and shown.endswith('--profile "{id:<profile-id>}" --access-mode Enforced')
    assert RULES_BY_ID["KV016"].as_dict()["remediation"] == shown
    assert RULES_BY_ID["KV001"].remediation_shown == RULES_BY_ID["KV001"].remediation_cli
