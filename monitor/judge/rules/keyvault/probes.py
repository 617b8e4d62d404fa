"""The probe rules KV1xx: read what each vantage point saw (``facts.probes``).

Each result is judged against what the baseline expects of its vantage point
(``VaultPolicy.expectation_for``). Addresses are classified with the scan's one address space
(``facts.address_space``), so a remote vantage point's results are judged like local ones.
Every hit's subject is the vantage point's name: the same place, the same finding tomorrow.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

from monitor.config.policy import DnsAnswer, Mode, Reach, Vantage, VantageExpectation
from monitor.judge.rules.base import Exposure, Hit, Rule, RuleCategory, VaultFacts, rule
from monitor.model import EvidenceSource, ProbeResult, Severity, VaultPosture, Verdict
from monitor.naming.keyvault import private_link_zone

_LEARN = "https://learn.microsoft.com/en-us/azure"
NETWORK_SECURITY = f"{_LEARN}/key-vault/general/network-security"
PRIVATE_LINK_DIAGNOSTICS = f"{_LEARN}/key-vault/general/private-link-diagnostics"
PRIVATE_ENDPOINT_DNS = f"{_LEARN}/private-link/private-endpoint-dns"
SERVICE_ENDPOINTS = f"{_LEARN}/key-vault/general/overview-vnet-service-endpoints"
VNET_INTEGRATION = f"{_LEARN}/azure-functions/functions-networking-options"
KEY_VAULT_TLS = f"{_LEARN}/key-vault/general/security-features"


# -- what the rules share ------------------------------------------------------------------------


def _answered(facts: VaultFacts) -> Iterator[tuple[ProbeResult, Vantage, VantageExpectation]]:
    """Results from configured vantage points that answered, with what each should see."""
    vantages = {v.name.lower(): v for v in facts.vantages}
    subnets = tuple(subnet_rule.key for subnet_rule in facts.posture.virtual_network_rules)
    for result in facts.probes:
        vantage = vantages.get(result.vantage.lower())
        if vantage is None or result.vantage_error is not None:
            continue
        yield result, vantage, facts.policy.expectation_for(vantage, vault_subnets=subnets)


def _has_working_private_endpoint(posture: VaultPosture) -> bool:
    return any(c.working for c in posture.private_endpoint_connections)


def _seen(result: ProbeResult, facts: VaultFacts) -> tuple[str | None, bool | None]:
    address = result.seen_address
    return address, (facts.address_space.is_private(address) if address else None)


def _evidence(result: ProbeResult, facts: VaultFacts, **extra: Any) -> dict[str, Any]:
    seen, seen_private = _seen(result, facts)
    evidence: dict[str, Any] = {
        "vantage": result.vantage,
        "hostname": result.hostname,
        "probed_at": result.started_at.isoformat(),
        "verdict": result.verdict.value,
        "dns_addresses": list(result.dns.addresses) if result.dns else [],
        "seen_address": seen,
        "seen_address_private": seen_private,
    }
    if result.data_plane is not None:
        evidence["status_code"] = result.data_plane.status_code
        evidence["inner_code"] = result.data_plane.inner_code
    evidence.update(extra)
    return evidence


def _where(vantage: Vantage) -> str:
    if vantage.inside is None:
        return "place not stated"
    return "inside the VNet" if vantage.inside else "outside the VNet"


def _refusal(result: ProbeResult) -> str:
    step = result.data_plane
    if step is None:
        return result.verdict.value
    if step.verdict.refused:
        code = f" ({step.inner_code})" if step.inner_code else ""
        client = f", client address {step.client_address}" if step.client_address else ""
        return f"refused{code}{client}"
    return f"unreachable: {step.message}" if step.message else "unreachable"


# -- checks --------------------------------------------------------------------------------------


@rule(
    id="KV101",
    severity=Severity.CRITICAL,
    title="Admitted from a vantage point that should be refused",
    source=EvidenceSource.PROBES,
    category=RuleCategory.PROBES,
    exposure=Exposure.PROVEN,
    remediation_cli=(
        "az keyvault update --name {name} --resource-group {resource_group} --subscription {subscription} "
        "--default-action Deny"
    ),
    remediation_bicep=(
        "resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = { name: '<name>' properties: { "
        "networkAcls: { defaultAction: 'Deny', bypass: 'None' } publicNetworkAccess: 'Disabled' } }"
    ),
    references=(NETWORK_SECURITY, SERVICE_ENDPOINTS),
    baseline_keys=("mode", "allowed_subnets", "vantages"),
)
def admitted_should_be_refused(facts: VaultFacts) -> Iterator[Hit]:
    """A live data-plane call from this place got through the vault's network checks although the baseline
    says it must be refused: the vault is exposed right now, whatever the configuration was meant to do
    (typically a Service Endpoint added while defaultAction stayed Allow, or public network access left
    Enabled beside a Private Endpoint).
    """
    for result, vantage, expected in _answered(facts):
        if expected.reach == Reach.REFUSED and result.verdict is Verdict.ADMITTED:
            seen, _ = _seen(result, facts)
            yield Hit(
                summary=(
                    f"admitted from {vantage.name} ({_where(vantage)}), which should be refused"
                    + (f"; the vault saw {seen}" if seen else "")
                ),
                subject=vantage.name,
                evidence=_evidence(
                    result, facts, expected_reach=expected.reach, vantage_inside=vantage.inside
                ),
            )


@rule(
    id="KV102",
    severity=Severity.HIGH,
    title="Refused or unreachable from a vantage point that should be admitted",
    source=EvidenceSource.PROBES,
    category=RuleCategory.PROBES,
    remediation_cli=(
        "az keyvault network-rule add --name {name} --resource-group {resource_group} "
        "--subscription {subscription} --subnet <subnet id of vantage point {subject}>"
    ),
    remediation_bicep=(
        "networkAcls: { defaultAction: 'Deny', virtualNetworkRules: [ { id: '<subnet id of vantage "
        "point>' } ] }"
    ),
    references=(NETWORK_SECURITY, PRIVATE_LINK_DIAGNOSTICS),
    baseline_keys=("mode", "allowed_subnets", "vantages"),
)
def refused_should_be_admitted(facts: VaultFacts) -> Iterator[Hit]:
    """A workload in this place cannot use the vault although the baseline says it must: a missing virtual
    network rule, Service Endpoint, Private Endpoint or route breaks the application.
    """
    for result, vantage, expected in _answered(facts):
        if expected.reach == Reach.ADMITTED and (
            result.verdict.refused or result.verdict is Verdict.UNREACHABLE
        ):
            yield Hit(
                summary=f"{_refusal(result)} from {vantage.name}, which should be admitted",
                subject=vantage.name,
                evidence=_evidence(result, facts, expected_reach=expected.reach),
            )


@rule(
    id="KV103",
    severity=Severity.HIGH,
    title="Private Link vault resolves to a public address inside the VNet",
    source=EvidenceSource.PROBES,
    category=RuleCategory.PROBES,
    remediation_cli=(
        "az network private-dns link vnet create --resource-group <private DNS zone resource group> "
        "--zone-name privatelink.vaultcore.azure.net --name link-{subject} "
        "--virtual-network <VNet id of vantage point {subject}> --registration-enabled false"
    ),
    remediation_bicep=(
        "resource link 'Microsoft.Network/privateDnsZones/virtualNetworkLinks@2020-06-01' = { parent: "
        "zone name: 'link-<vnet>' location: 'global' properties: { virtualNetwork: { id: '<vnet id>' } "
        "registrationEnabled: false } }"
    ),
    references=(PRIVATE_ENDPOINT_DNS, PRIVATE_LINK_DIAGNOSTICS),
    baseline_keys=("mode", "vantages"),
)
def private_link_resolves_public_inside(facts: VaultFacts) -> Iterator[Hit]:
    """Clients in this VNet resolve the vault's public address, so their traffic never uses the Private
    Endpoint: the private DNS zone is missing, not linked to the VNet, or holds the wrong record. They
    fail once public access is disabled, or leave through the public path meanwhile. An Approved
    connection whose provisioning Failed is no Private Endpoint to resolve to: KV009 reports it, and
    this rule does not blame the zone for it.
    """
    private_endpoint = _has_working_private_endpoint(facts.posture)
    if not private_endpoint and any(c.approved for c in facts.posture.private_endpoint_connections):
        # Approved but provisioning Failed: there is no private path to resolve to, and KV009
        # reports the connection; the private DNS zone is not to blame.
        return
    for result, vantage, expected in _answered(facts):
        dns = result.dns
        if vantage.inside is not True or dns is None or not dns.addresses:
            continue
        expected_dns = expected.dns or (DnsAnswer.PRIVATE if private_endpoint else None)
        if expected_dns != DnsAnswer.PRIVATE:
            continue
        public = [a for a in dns.addresses if not facts.address_space.is_private(a)]
        if not public:
            continue
        zone = (
            private_link_zone(result.hostname.split(".", 1)[1]) if "." in result.hostname else "privatelink"
        )
        yield Hit(
            summary=(
                f"{result.hostname} resolves to public {', '.join(public)} from {vantage.name} inside the VNet: "
                f"the private DNS zone {zone} is missing, not linked to that VNet, or has the wrong record"
            ),
            subject=vantage.name,
            evidence=_evidence(
                result,
                facts,
                dns_chain=list(dns.chain),
                private_link_in_chain=dns.private_link_in_chain,
                private_dns_zone=zone,
            ),
        )


@rule(
    id="KV104",
    severity=Severity.LOW,
    title="Vault resolves to a private address outside the VNet",
    source=EvidenceSource.PROBES,
    category=RuleCategory.PROBES,
    remediation_cli=(
        "az network private-dns link vnet list --resource-group <private DNS zone resource group> "
        "--zone-name privatelink.vaultcore.azure.net --output table"
    ),
    remediation_bicep="// Link the privatelink.vaultcore zone only to VNets whose clients use the Private Endpoint.",
    references=(PRIVATE_ENDPOINT_DNS,),
)
def private_address_outside(facts: VaultFacts) -> Iterator[Hit]:
    """A resolver outside the VNet answers from the private link zone: clients there get an address they
    cannot reach, and the zone's records leak beyond the network they describe.
    """
    for result, vantage, _ in _answered(facts):
        dns = result.dns
        if vantage.inside is not False or dns is None:
            continue
        private = [a for a in dns.addresses if facts.address_space.is_private(a)]
        if private:
            yield Hit(
                summary=(
                    f"{result.hostname} resolves to private {', '.join(private)} from {vantage.name}, "
                    "outside the VNet: its resolver answers from a private zone it should not see"
                ),
                subject=vantage.name,
                evidence=_evidence(result, facts, dns_chain=list(dns.chain)),
            )


@rule(
    id="KV105",
    severity=Severity.HIGH,
    title="Vault saw a public source address on a path that should be private",
    source=EvidenceSource.PROBES,
    category=RuleCategory.PROBES,
    remediation_cli=(
        "az network vnet subnet update --ids <subnet id of vantage point {subject}> "
        "--service-endpoints Microsoft.KeyVault"
    ),
    remediation_bicep=(
        "properties: { serviceEndpoints: [ { service: 'Microsoft.KeyVault' } ] } // on the subnet of the "
        "vantage point"
    ),
    references=(SERVICE_ENDPOINTS, PRIVATE_LINK_DIAGNOSTICS),
    baseline_keys=("mode", "allowed_subnets", "vantages"),
)
def public_source_on_private_path(facts: VaultFacts) -> Iterator[Hit]:
    """Traffic from this place should reach the vault through a Service Endpoint or Private Endpoint and
    arrive with a private address, but the vault saw a public one: the endpoint or route is missing and
    traffic leaves through the public path (allowed only while the firewall lets it).
    """
    posture, policy = facts.posture, facts.policy
    endpoint_subnets = set(policy.allowed_subnets) | {
        subnet_rule.key for subnet_rule in posture.virtual_network_rules
    }
    private_endpoint = policy.mode == Mode.PRIVATE_LINK or _has_working_private_endpoint(posture)
    for result, vantage, expected in _answered(facts):
        if vantage.inside is not True or expected.reach != Reach.ADMITTED:
            continue
        via_service_endpoint = (
            bool(vantage.subnet_id) and (vantage.subnet_id or "").lower() in endpoint_subnets
        )
        if not (via_service_endpoint or private_endpoint):
            continue
        seen, seen_private = _seen(result, facts)
        if seen is None or seen_private:
            continue
        path = "its Service Endpoint" if via_service_endpoint else "the Private Endpoint"
        yield Hit(
            summary=(
                f"the vault saw public address {seen} from {vantage.name}, which should arrive through {path} "
                "with a private address"
            ),
            subject=vantage.name,
            evidence=_evidence(result, facts, expected_path=path),
        )


@rule(
    id="KV106",
    severity=Severity.MEDIUM,
    title="Vantage point did not answer",
    source=EvidenceSource.PROBES,
    category=RuleCategory.PROBES,
    remediation_cli=(
        "az functionapp show --resource-group <resource group of vantage point {subject}> "
        "--name <function app of vantage point {subject}> --query state"
    ),
    remediation_bicep="// Keep the vantage point's Function App running and its function key in the monitor's settings.",
    references=(VNET_INTEGRATION,),
)
def vantage_silent(facts: VaultFacts) -> Iterator[Hit]:
    """A vantage point that does not answer (endpoint down, timed out, or results older than two scan
    intervals) is a blind spot: exposure from that place goes unseen. Silence is not compliance.
    """
    hits: dict[str, Hit] = {}
    oldest = facts.scan_started_at - 2 * facts.scan_interval if facts.scan_started_at is not None else None
    for result in facts.probes:
        key = result.vantage.lower()
        if key in hits:
            continue
        if result.vantage_error is not None:
            hits[key] = Hit(
                summary=f"vantage point {result.vantage} did not answer: {result.vantage_error}",
                subject=result.vantage,
                evidence={"vantage": result.vantage, "error": result.vantage_error},
            )
        elif oldest is not None and result.started_at < oldest:
            age = facts.scan_started_at - result.started_at if facts.scan_started_at else dt.timedelta(0)
            hits[key] = Hit(
                summary=(
                    f"the latest result from vantage point {result.vantage} is {_age(age)} old, "
                    f"older than two scan intervals ({_age(2 * facts.scan_interval)})"
                ),
                subject=result.vantage,
                evidence={"vantage": result.vantage, "probed_at": result.started_at.isoformat()},
            )
    if facts.probes:
        # Probes ran for this vault, so a configured vantage point without a result is blind.
        answered = {r.vantage.lower() for r in facts.probes}
        for vantage in facts.vantages:
            key = vantage.name.lower()
            if key not in answered and key not in hits:
                hits[key] = Hit(
                    summary=f"vantage point {vantage.name} returned no result for this vault",
                    subject=vantage.name,
                    evidence={"vantage": vantage.name, "error": "no result"},
                )
    yield from hits.values()


@rule(
    id="KV107",
    severity=Severity.HIGH,
    title="TLS certificate not valid for the vault's name",
    source=EvidenceSource.PROBES,
    category=RuleCategory.PROBES,
    remediation_cli=(
        "openssl s_client -connect <address from the finding>:443 -servername {name}.vault.azure.net "
        "-showcerts  # run at vantage point {subject}"
    ),
    remediation_bicep="// Exempt *.vault.azure.net from TLS inspection on the vantage point's egress path.",
    references=(KEY_VAULT_TLS, PRIVATE_LINK_DIAGNOSTICS),
)
def certificate_invalid(facts: VaultFacts) -> Iterator[Hit]:
    """From this place, the server answering at the vault's address presents a certificate that does not
    verify for the vault's name: a TLS-intercepting middlebox, a wrong DNS record pointing elsewhere, or
    an untrusted CA. Clients there either fail or trust the wrong server.
    """
    for result in facts.probes:
        tls = result.tls
        if result.vantage_error is None and tls is not None and tls.certificate_valid is False:
            yield Hit(
                summary=(
                    f"TLS from {result.vantage} to {tls.address}:{tls.port}: "
                    f"{tls.certificate_error or 'certificate not valid for ' + result.hostname}"
                ),
                subject=result.vantage,
                evidence={
                    "vantage": result.vantage,
                    "hostname": result.hostname,
                    "address": tls.address,
                    "port": tls.port,
                    "certificate_error": tls.certificate_error,
                    "probed_at": result.started_at.isoformat(),
                },
            )


def _age(delta: dt.timedelta) -> str:
    minutes = int(delta.total_seconds() // 60)
    return f"{minutes // 60}h{minutes % 60:02d}m" if minutes >= 60 else f"{minutes}m"


RULES: tuple[Rule, ...] = (
    admitted_should_be_refused,
    refused_should_be_admitted,
    private_link_resolves_public_inside,
    private_address_outside,
    public_source_on_private_path,
    vantage_silent,
    certificate_invalid,
)
