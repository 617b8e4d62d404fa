"""The storage probe rules ST1xx: read what each vantage point saw of each endpoint (``facts.probes``).

Each result is judged against what the baseline expects of its vantage point
(``VaultPolicy.expectation_for``, the same defaults per mode as Key Vault's). An endpoint is a
sub-resource (blob, dfs, ...): each has its own DNS name and private endpoints, so every hit's
subject is the vantage point and the sub-resource, ``internet/blob``. Only conclusive verdicts are
judged; a probe that proved nothing is the scan's error to report, not a finding. Pure.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from monitor.config.policy import DnsAnswer, Reach, Vantage, VantageExpectation
from monitor.judge.rules.base import Exposure, Hit, RuleCategory, StorageFacts, rule
from monitor.judge.rules.storage.config import (
    _UPDATE,
    IP_RULES,
    NETWORK_SECURITY,
    PRIVATE_ENDPOINTS,
    VIRTUAL_NETWORKS,
)
from monitor.model import EvidenceSource, Service, Severity
from monitor.model_storage import StorageProbeResult, StorageVerdict
from monitor.naming.storage import private_link_zone

PRIVATE_ENDPOINT_DNS = "https://learn.microsoft.com/en-us/azure/private-link/private-endpoint-dns"


def _answered(facts: StorageFacts) -> Iterator[tuple[StorageProbeResult, Vantage, VantageExpectation]]:
    """Results from configured vantage points, with what each should see."""
    vantages = {v.name.lower(): v for v in facts.vantages}
    subnets = tuple(subnet_rule.key for subnet_rule in facts.posture.virtual_network_rules)
    for result in facts.probes:
        vantage = vantages.get(result.vantage.lower())
        if vantage is not None:
            yield result, vantage, facts.policy.expectation_for(vantage, vault_subnets=subnets)


def _subject(result: StorageProbeResult) -> str:
    return f"{result.vantage}/{result.subresource.value}"


def _evidence(result: StorageProbeResult, **extra: Any) -> dict[str, Any]:
    evidence: dict[str, Any] = {
        "vantage": result.vantage,
        "subresource": result.subresource.value,
        "hostname": result.hostname,
        "probed_at": result.started_at.isoformat(),
        "verdict": result.verdict.value,
        "status_code": result.data_plane.status_code,
        "error_code": result.data_plane.error_code,
        "client_request_id": result.client_request_id,
        "dns_chain": list(result.dns.chain) if result.dns else [],
        "dns_addresses": list(result.dns.addresses) if result.dns else [],
    }
    evidence.update(extra)
    return evidence


@rule(
    id="ST101",
    severity=Severity.HIGH,
    title="A storage endpoint admitted a vantage point it should refuse",
    source=EvidenceSource.PROBES,
    category=RuleCategory.PROBES,
    exposure=Exposure.PROVEN,
    service=Service.STORAGE,
    baseline_keys=("mode", "vantages"),
    remediation_cli=f"{_UPDATE} --default-action Deny  # or --public-network-access Disabled",
    remediation_bicep="networkAcls: {\n  defaultAction: 'Deny'\n}\npublicNetworkAccess: 'Disabled'",
    references=(NETWORK_SECURITY, IP_RULES, VIRTUAL_NETWORKS),
)
def admitted_where_refused(facts: StorageFacts) -> Iterator[Hit]:
    """The configuration says who Storage should admit; a probe shows who it does. A vantage point
    the baseline expects refused got 403 AuthorizationPermissionMismatch (or the list itself): the
    network let it through and only authorisation stood between it and the data, so anyone there
    with a data role, a SAS or the account key reads it. This proves what the configuration
    findings only claim.
    """
    for result, vantage, expected in _answered(facts):
        if expected.reach == Reach.REFUSED and result.verdict is StorageVerdict.ADMITTED:
            yield Hit(
                summary=f"{result.hostname} admitted {vantage.name} ({result.data_plane.error_code or 'listed'}), "
                "which the baseline expects refused",
                subject=_subject(result),
                evidence=_evidence(result),
            )


@rule(
    id="ST102",
    severity=Severity.MEDIUM,
    title="A storage endpoint refused a vantage point it should admit",
    source=EvidenceSource.PROBES,
    category=RuleCategory.PROBES,
    service=Service.STORAGE,
    baseline_keys=("mode", "vantages"),
    remediation_cli=(
        "az storage account network-rule add --account-name {name} --resource-group {resource_group} "
        "--subnet <the vantage point's subnet id>"
    ),
    remediation_bicep=(
        "networkAcls: {\n  defaultAction: 'Deny'\n  virtualNetworkRules: [\n"
        "    { id: '<the vantage point's subnet id>', action: 'Allow' }\n  ]\n}"
    ),
    references=(NETWORK_SECURITY, VIRTUAL_NETWORKS, PRIVATE_ENDPOINTS),
)
def refused_where_admitted(facts: StorageFacts) -> Iterator[Hit]:
    """A workload at a vantage point the baseline expects admitted cannot reach the account: its
    requests fail with 403 AuthorizationFailure. Storage gives that code for a network refusal and
    for some other authorisation failures, so the finding quotes it rather than naming a rule; the
    usual causes are a missing virtual network rule or service endpoint, public access disabled
    without a private endpoint for this sub-resource, or DNS that does not lead to the endpoint.
    """
    for result, vantage, expected in _answered(facts):
        if expected.reach == Reach.ADMITTED and result.verdict is StorageVerdict.REFUSED:
            yield Hit(
                summary=f"{result.hostname} refused {vantage.name} with {result.data_plane.error_code}, "
                "where the baseline expects it admitted",
                subject=_subject(result),
                evidence=_evidence(result),
            )


@rule(
    id="ST103",
    severity=Severity.MEDIUM,
    title="A storage endpoint's name resolves to the wrong kind of address",
    source=EvidenceSource.PROBES,
    category=RuleCategory.PROBES,
    service=Service.STORAGE,
    baseline_keys=("mode", "vantages"),
    remediation_cli=(
        "az network private-dns link vnet create --resource-group <zone group> "
        "--zone-name <privatelink zone> --name <link> --virtual-network <vnet id> --registration-enabled false"
    ),
    remediation_bicep=(
        "resource link 'Microsoft.Network/privateDnsZones/virtualNetworkLinks@2024-06-01' = {\n"
        "  parent: zone // privatelink.<sub-resource>.core.windows.net\n"
        "  location: 'global'\n"
        "  properties: { virtualNetwork: { id: vnet.id }, registrationEnabled: false }\n"
        "}"
    ),
    references=(PRIVATE_ENDPOINT_DNS, PRIVATE_ENDPOINTS),
)
def dns_not_as_expected(facts: StorageFacts) -> Iterator[Hit]:
    """Each sub-resource has its own private DNS zone (privatelink.blob..., privatelink.dfs...): a
    private endpoint for blob does nothing for dfs, and a VNet linked to one zone still resolves
    the others publicly, so a client there goes to the public front end and is refused or, worse,
    admitted by the firewall. The rule compares the address kind each vantage point got with the
    one the baseline expects there, per sub-resource.
    """
    for result, vantage, expected in _answered(facts):
        dns = result.dns
        if expected.dns is None or dns is None or not dns.answered:
            continue
        private = dns.resolves_private
        if (expected.dns == DnsAnswer.PRIVATE) == private:
            continue
        zone = private_link_zone(result.subresource, result.hostname.split(".", 2)[2])
        got = "a private address" if private else "a public address"
        yield Hit(
            summary=f"{result.hostname} resolves to {got} ({', '.join(dns.addresses)}) from {vantage.name}, "
            f"where the baseline expects {expected.dns.value}"
            + ("" if private or dns.private_link_in_chain else f"; the chain does not pass through {zone}"),
            subject=_subject(result),
            evidence=_evidence(
                result, private_link_zone=zone, private_link_in_chain=dns.private_link_in_chain
            ),
        )


@rule(
    id="ST104",
    severity=Severity.INFO,
    title="An outside probe could not test the account's IP rules",
    source=EvidenceSource.PROBES,
    category=RuleCategory.PROBES,
    service=Service.STORAGE,
    remediation_cli=(
        "Probe from a vantage point outside Azure or in another region, and state each vantage point's "
        'region in KVMON_VANTAGES ({{"name": ..., "inside": false, "region": "westeurope"}})'
    ),
    remediation_bicep="No template change: the vantage point, not the account, is the gap.",
    references=(IP_RULES,),
)
def ip_rules_untested(facts: StorageFacts) -> Iterator[Hit]:
    """Storage does not apply IP rules to callers in the account's own region: they arrive with
    Azure's private addresses. A probe from an outside vantage point in that region is refused or
    admitted without the IP rules being consulted, so its verdict says nothing of them; nor does one
    from a vantage point whose region nobody stated. The IP rules stay untested by probes until a
    vantage point elsewhere probes the account.
    """
    seen: set[str] = set()
    for result, vantage, _ in _answered(facts):
        if result.ip_rules_untested is None or vantage.name in seen:
            continue
        seen.add(vantage.name)
        yield Hit(
            summary=result.ip_rules_untested,
            subject=vantage.name,
            evidence=_evidence(result, region=vantage.region, account_location=facts.posture.location),
        )


RULES = (admitted_where_refused, refused_where_admitted, dns_not_as_expected, ip_rules_untested)
