"""The Network Security Perimeter rules (KV014-KV019, KV206): read the vault's association as the posture
carries it and the effective exposure ``monitor.judge.perimeter`` decides from it."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

from monitor.judge.perimeter import InboundSet, effective_exposure, open_entries
from monitor.judge.rules.base import Exposure, Hit, Rule, RuleCategory, VaultFacts, rule
from monitor.judge.rules.keyvault.config import CREATE_PRIVATE_ENDPOINT
from monitor.model import (
    EvidenceSource,
    Outcome,
    PerimeterAccessMode,
    PerimeterAssociation,
    PerimeterLookup,
    Severity,
)

_LEARN = "https://learn.microsoft.com/en-us/azure"
NSP_CONCEPTS = f"{_LEARN}/private-link/network-security-perimeter-concepts"
NSP_TRANSITION = f"{_LEARN}/private-link/network-security-perimeter-transition"
KEY_VAULT_TRUSTED_SERVICES = f"{_LEARN}/key-vault/general/overview-trusted-services"
KEY_VAULT_NETWORK_SECURITY = f"{_LEARN}/key-vault/general/network-security"
BICEP_ACCESS_RULES = f"{_LEARN}/templates/microsoft.network/networksecurityperimeters/profiles/accessrules"
BICEP_ASSOCIATIONS = f"{_LEARN}/templates/microsoft.network/networksecurityperimeters/resourceassociations"
CLI_PERIMETER = "https://learn.microsoft.com/en-us/cli/azure/network/perimeter"

_PERIMETER_ARGS = "--perimeter-name <perimeter> --resource-group <perimeter-resource-group>"


def _association_evidence(association: PerimeterAssociation) -> dict[str, object]:
    return {
        "perimeter_id": association.perimeter_id,
        "profile_id": association.profile_id,
        "access_mode": association.access_mode_text,
        "access_rules_version": association.access_rules_version,
    }


def _associated(facts: VaultFacts) -> PerimeterAssociation | None:
    return facts.posture.perimeter.association


@rule(
    id="KV014",
    severity=Severity.MEDIUM,
    title="Perimeter association is in a transitional access mode",
    source=EvidenceSource.CONFIGURATION,
    category=RuleCategory.CONFIGURATION,
    remediation_cli=f"az network perimeter association update {_PERIMETER_ARGS} --name <association> --access-mode Enforced",
    remediation_bicep=(
        "resource association 'Microsoft.Network/networkSecurityPerimeters/resourceAssociations@2024-07-01' = {\n"
        "  parent: perimeter\n"
        "  name: 'assoc-${vault.name}'\n"
        "  properties: {\n"
        "    privateLinkResource: { id: vault.id }\n"
        "    profile: { id: profile.id }\n"
        "    accessMode: 'Enforced'\n"
        "  }\n"
        "}"
    ),
    references=(NSP_TRANSITION, NSP_CONCEPTS, CLI_PERIMETER, BICEP_ASSOCIATIONS),
)
def transitional_access_mode(facts: VaultFacts) -> Iterator[Hit]:
    """Learning (now called Transition) and Audit are meant for onboarding, not as a posture: in
    Learning mode the perimeter's rules and the vault's own firewall both admit, and a perimeter
    re-opens a vault whose publicNetworkAccess is Disabled; in Audit mode the perimeter only logs. The
    vault is then governed by neither layer alone, and whoever reads one of them is misled.
    """
    association = _associated(facts)
    if association is None or association.access_mode not in (
        PerimeterAccessMode.LEARNING,
        PerimeterAccessMode.AUDIT,
    ):
        return
    exposure = effective_exposure(posture=facts.posture, policy=facts.policy)
    yield Hit(
        summary=(
            f"the association with perimeter {association.perimeter_name} is in "
            f"{association.access_mode_text} mode: {exposure.reason}"
        ),
        evidence={**_association_evidence(association), "perimeter": exposure.as_evidence()},
    )


@rule(
    id="KV015",
    severity=Severity.HIGH,
    title="Perimeter inbound rule admits the public",
    source=EvidenceSource.CONFIGURATION,
    category=RuleCategory.CONFIGURATION,
    exposure=Exposure.CLAIMED,
    remediation_cli=(
        f"az network perimeter profile access-rule update {_PERIMETER_ARGS} --profile-name <profile> "
        "--name <rule> --address-prefixes <narrow-cidr>  # the entry: {subject}"
    ),
    remediation_bicep=(
        "resource inbound 'Microsoft.Network/networkSecurityPerimeters/profiles/accessRules@2024-07-01' = {\n"
        "  parent: profile\n"
        "  name: 'office'\n"
        "  properties: {\n"
        "    direction: 'Inbound'\n"
        "    addressPrefixes: [ '203.0.113.0/28' ] // the narrowest ranges the callers need\n"
        "  }\n"
        "}"
    ),
    references=(NSP_CONCEPTS, KEY_VAULT_NETWORK_SECURITY, CLI_PERIMETER, BICEP_ACCESS_RULES),
    baseline_keys=("min_prefix_length", "allowed_ip_ranges"),
)
def broad_perimeter_rule(facts: VaultFacts) -> Iterator[Hit]:
    """A perimeter's inbound rules admit public callers to every resource associated with its profile.
    0.0.0.0/0 or ::/0, a range broader than the baseline allows, a service tag (every address of a
    shared cloud range) or a subscription entry (any caller holding a token from that subscription, from
    any address) opens the vault to the public; in Learning or Enforced mode this holds even with
    publicNetworkAccess Disabled. In Audit mode the rule is not enforced yet, but is what enforcing
    will admit.
    """
    association = _associated(facts)
    if association is None:
        return
    exposure = effective_exposure(posture=facts.posture, policy=facts.policy)
    in_force = exposure.perimeter_in_force
    for entry in open_entries(association, facts.policy):
        yield Hit(
            summary=(
                f"{entry.describe()} of perimeter {association.perimeter_name}: "
                + ("the vault is open to the public" if in_force else "not in force yet (Audit mode)")
            ),
            subject=f"{entry.rule}/{entry.kind}/{entry.value}",
            evidence={
                **_association_evidence(association),
                "rule": entry.rule,
                "entry": entry.kind,
                "value": entry.value,
                "reason": entry.reason,
                "in_force": in_force,
            },
            severity=None if in_force else Severity.MEDIUM,
        )


@rule(
    id="KV016",
    severity=Severity.INFO,
    title="SecuredByPerimeter without a perimeter association: locked to private endpoints",
    source=EvidenceSource.CONFIGURATION,
    category=RuleCategory.CONFIGURATION,
    remediation_cli=(
        f"az network perimeter association create {_PERIMETER_ARGS} --name assoc-{{name}} "
        '--private-link-resource "{{id:/subscriptions/{subscription}/resourceGroups/{resource_group}/'
        'providers/Microsoft.KeyVault/vaults/{name}}}" --profile "{{id:<profile-id>}}" --access-mode Enforced'
    ),
    remediation_bicep=(
        "resource association 'Microsoft.Network/networkSecurityPerimeters/resourceAssociations@2024-07-01' = {\n"
        "  parent: perimeter\n"
        "  name: 'assoc-${vault.name}'\n"
        "  properties: {\n"
        "    privateLinkResource: { id: vault.id }\n"
        "    profile: { id: profile.id }\n"
        "    accessMode: 'Enforced'\n"
        "  }\n"
        "}"
    ),
    references=(NSP_CONCEPTS, KEY_VAULT_NETWORK_SECURITY, CLI_PERIMETER, BICEP_ASSOCIATIONS),
)
def secured_by_perimeter_without_association(facts: VaultFacts) -> Iterator[Hit]:
    """publicNetworkAccess SecuredByPerimeter on a vault associated with no perimeter admits private
    endpoints only, without the trusted-services bypass: the vault is locked, which may be the intent,
    but callers that relied on its firewall or on the bypass (disk encryption, backup) are refused, and
    the setting says a perimeter governs it when none does.
    """
    posture = facts.posture
    if posture.public_network_access.strip().lower() != "securedbyperimeter":
        return
    if posture.perimeter.lookup != PerimeterLookup.NONE:
        return
    exposure = effective_exposure(posture=posture, policy=facts.policy)
    yield Hit(
        summary="publicNetworkAccess is SecuredByPerimeter and the vault is associated with no perimeter: "
        "private endpoints only, no trusted-service bypass",
        evidence={
            "public_network_access": posture.public_network_access,
            "perimeter": exposure.as_evidence(),
        },
    )


@rule(
    id="KV017",
    severity=Severity.MEDIUM,
    title="Perimeter configuration has provisioning issues",
    source=EvidenceSource.CONFIGURATION,
    category=RuleCategory.CONFIGURATION,
    remediation_cli=(
        "az network perimeter association show "
        f"{_PERIMETER_ARGS} --name <association>  # then fix what the issue {{subject}} names"
    ),
    remediation_bicep="// not a vault property: fix the perimeter, profile or access rule the issue names",
    references=(NSP_CONCEPTS, CLI_PERIMETER),
)
def perimeter_provisioning_issues(facts: VaultFacts) -> Iterator[Hit]:
    """Azure reports the parts of a perimeter's configuration it could not apply to the vault
    (a propagation failure, a missing perimeter or identity configuration). Until resolved, what the
    vault admits differs from what the perimeter's rules say; an Error issue weighs more than a Warning.
    """
    association = _associated(facts)
    if association is None:
        return
    for issue in association.provisioning_issues:
        yield Hit(
            summary=(
                f"perimeter {association.perimeter_name} reports provisioning issue {issue.name}"
                f" ({issue.issue_type or 'type unknown'}, {issue.severity or 'severity unknown'})"
                + (f": {issue.description}" if issue.description else "")
            ),
            subject=issue.name,
            evidence={
                **_association_evidence(association),
                "issue": issue.name,
                "issue_type": issue.issue_type,
                "issue_severity": issue.severity,
                "description": issue.description,
            },
            severity=Severity.LOW if (issue.severity or "").lower() == "warning" else None,
        )


@rule(
    id="KV018",
    severity=Severity.MEDIUM,
    title="Perimeter association cannot be read: exposure unknown",
    source=EvidenceSource.CONFIGURATION,
    category=RuleCategory.CONFIGURATION,
    remediation_cli=(
        "az network perimeter list --subscription {subscription}  "
        "# scan with a reader that sees the perimeter: kvmon's identity needs Reader on its subscription"
    ),
    remediation_bicep="// not a resource change: give kvmon's identity Reader where the perimeter lives",
    references=(NSP_CONCEPTS, KEY_VAULT_NETWORK_SECURITY, CLI_PERIMETER),
)
def perimeter_unreadable(facts: VaultFacts) -> Iterator[Hit]:
    """A perimeter's access mode and rules can override the vault's firewall and its publicNetworkAccess.
    When kvmon cannot read the association (no permission, a perimeter in another subscription, an API
    error), was not given it for a vault that is SecuredByPerimeter, or reads an access mode it does not
    know, what the vault admits is unknown, and kvmon says so rather than calling it closed: the probes
    and the logs decide.
    """
    exposure = effective_exposure(posture=facts.posture, policy=facts.policy)
    # Audit under SecuredByPerimeter is unknown too, but read: KV014 says why.
    if exposure.error is not None and not exposure.inferred:
        yield Hit(summary=exposure.error, evidence={"perimeter": exposure.as_evidence()})


@rule(
    id="KV019",
    severity=Severity.MEDIUM,
    title="Service Endpoint rules are ineffective under the perimeter",
    source=EvidenceSource.CONFIGURATION,
    category=RuleCategory.CONFIGURATION,
    remediation_cli=CREATE_PRIVATE_ENDPOINT,
    remediation_bicep=(
        "resource pe 'Microsoft.Network/privateEndpoints@2023-11-01' = {\n"
        "  name: 'pe-${vault.name}'\n"
        "  location: location\n"
        "  properties: {\n"
        "    subnet: { id: appSubnet.id }\n"
        "    privateLinkServiceConnections: [\n"
        "      { name: 'vault', properties: { privateLinkServiceId: vault.id, groupIds: [ 'vault' ] } }\n"
        "    ]\n"
        "  }\n"
        "}"
    ),
    references=(NSP_CONCEPTS, KEY_VAULT_NETWORK_SECURITY, BICEP_ASSOCIATIONS),
)
def service_endpoints_under_perimeter(facts: VaultFacts) -> Iterator[Hit]:
    """Network Security Perimeter does not support Service Endpoint traffic: once a vault is associated
    in Learning or Enforced mode, callers arriving from a subnet's Microsoft.KeyVault service endpoint
    can be refused even by a 0.0.0.0/0 perimeter rule. The vault's virtual network rules then admit
    nobody; those workloads need a private endpoint.
    """
    posture = facts.posture
    exposure = effective_exposure(posture=posture, policy=facts.policy)
    if not exposure.perimeter_in_force or not posture.virtual_network_rules:
        return
    subnets = [subnet_rule.subnet_id for subnet_rule in posture.virtual_network_rules]
    yield Hit(
        summary=(
            f"{len(subnets)} virtual network rule(s), but {exposure.reason}: Service Endpoint traffic is "
            "not supported under a perimeter, so those subnets' callers can be refused"
        ),
        evidence={"virtual_network_rules": subnets, "perimeter": exposure.as_evidence()},
    )


@rule(
    id="KV206",
    severity=Severity.MEDIUM,
    title="Trusted Azure services use the vault, but the perimeter voids their bypass",
    source=EvidenceSource.LOGS,
    category=RuleCategory.LOGS,
    remediation_cli=(
        f"az network perimeter association create {_PERIMETER_ARGS} --name <association> "
        '--private-link-resource "{{id:<the service\'s resource id>}}" --profile "{{id:<profile id>}}" '
        "--access-mode Learning  # the storage account, SQL server or disk encryption set that uses the keys"
    ),
    remediation_bicep=(
        "resource dependant 'Microsoft.Network/networkSecurityPerimeters/resourceAssociations@2024-07-01' = {\n"
        "  parent: perimeter\n"
        "  name: 'assoc-${storage.name}' // the service that uses the vault's keys\n"
        "  properties: {\n"
        "    privateLinkResource: { id: storage.id }\n"
        "    profile: { id: profile.id }\n"
        "    accessMode: 'Learning'\n"
        "  }\n"
        "}"
    ),
    references=(KEY_VAULT_TRUSTED_SERVICES, NSP_CONCEPTS, KEY_VAULT_NETWORK_SECURITY, BICEP_ASSOCIATIONS),
)
def trusted_services_lose_the_bypass(facts: VaultFacts) -> Iterator[Hit]:
    """Where only a perimeter's rules admit (Learning with publicNetworkAccess Disabled, Enforced,
    SecuredByPerimeter), the vault's trusted-services bypass no longer applies. Services that reach the
    vault through it, above all those unwrapping customer-managed keys (Storage, SQL, disk encryption),
    are then refused unless they are associated with the same perimeter or a rule admits them, and
    the data they encrypt becomes unreadable. The configuration cannot say which services depend on
    the vault; the access log can: requests authorised as TrustedService in the window. Refused ones
    mean the outage has begun.
    """
    evidence, posture = facts.evidence, facts.posture
    if evidence is None:
        return
    exposure = effective_exposure(posture=posture, policy=facts.policy)
    voided = exposure.perimeter_in_force or posture.public_network_access.lower() == "securedbyperimeter"
    if exposure.trusted_bypass_applies or exposure.inbound == InboundSet.UNKNOWN or not voided:
        return
    trusted = [a for a in evidence.activity if a.address_auth_type == "TrustedService"]
    if not trusted:
        return
    admitted = sum(a.count for a in trusted if a.outcome is Outcome.ADMITTED)
    refused = sum(a.count for a in trusted if a.outcome is not Outcome.ADMITTED)
    identities = Counter[str]()
    for activity in trusted:
        identities[activity.identity or "(none)"] += activity.count
    yield Hit(
        summary=(
            f"{admitted + refused} request(s) from trusted Azure services ({refused} not admitted) "
            f"between {evidence.window_start.isoformat()} and {evidence.window_end.isoformat()}, but "
            f"{exposure.reason}: the trusted-services bypass does not apply, so those services are "
            "refused unless the perimeter admits them"
        ),
        evidence={
            "admitted": admitted,
            "not_admitted": refused,
            "identities": [{"identity": i, "requests": n} for i, n in identities.most_common(5)],
            "bypass": posture.bypass,
            "perimeter": exposure.as_evidence(),
        },
        severity=Severity.HIGH if refused else None,
    )


RULES: tuple[Rule, ...] = (
    transitional_access_mode,
    broad_perimeter_rule,
    secured_by_perimeter_without_association,
    perimeter_provisioning_issues,
    perimeter_unreadable,
    service_endpoints_under_perimeter,
    trusted_services_lose_the_bypass,
)
