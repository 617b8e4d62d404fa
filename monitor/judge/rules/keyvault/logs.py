"""The log rules KV2xx: read the access-log evidence (``facts.evidence``) and the perimeter's
access log (``facts.perimeter_evidence``, KV205 and KV207).

What the vault logged is the decisive evidence of the walkthrough: which addresses really got in,
which were refused, and whether workloads that should arrive privately did. Addresses were
classified private or public by the reader with the one shared ``AddressSpace``; these checks
only read that classification. A caller address that is empty (events without one) is never
judged public. What a Network Security Perimeter logged says which of its rules let a public
caller in; its categories, not the address, say whether the caller came from the public side.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from monitor.config.policy import Mode
from monitor.judge.perimeter import perimeter_may_govern
from monitor.judge.rules.access_logs import (
    TOP,
    Caller,
    admitted_public_hits,
    allowed_by_baseline,
    by_address,
    earliest,
    iso,
    latest,
    private_path_identity_hits,
    public,
    ranges,
    window,
)
from monitor.judge.rules.base import Hit, Rule, RuleCategory, VaultFacts, rule
from monitor.model import (
    CallerActivity,
    EvidenceSource,
    Outcome,
    PerimeterAccess,
    PerimeterLogCategory,
    Severity,
)

_LEARN = "https://learn.microsoft.com/en-us/azure"
KEY_VAULT_LOGGING = f"{_LEARN}/key-vault/general/logging"
AZKV_AUDIT_LOGS = f"{_LEARN}/azure-monitor/reference/tables/azkvauditlogs"
DIAGNOSTIC_SETTINGS = f"{_LEARN}/azure-monitor/essentials/diagnostic-settings"
NETWORK_SECURITY = f"{_LEARN}/key-vault/general/network-security"
SERVICE_ENDPOINTS = f"{_LEARN}/key-vault/general/overview-vnet-service-endpoints"
PRIVATE_LINK_DIAGNOSTICS = f"{_LEARN}/key-vault/general/private-link-diagnostics"
NSP_DIAGNOSTIC_LOGS = f"{_LEARN}/private-link/network-security-perimeter-diagnostic-logs"
NSP_ACCESS_LOGS = f"{_LEARN}/azure-monitor/reference/tables/nspaccesslogs"
NSP_CONCEPTS = f"{_LEARN}/private-link/network-security-perimeter-concepts"
CLI_PERIMETER = "https://learn.microsoft.com/en-us/cli/azure/network/perimeter"

_AUTH_TYPES = "address_auth_types"


def _by_address(activity: Iterable[CallerActivity]) -> list[Caller]:
    return by_address(activity, lambda a: a.address_auth_type)


_VAULT_ID = (
    "/subscriptions/{subscription}/resourceGroups/{resource_group}/providers/Microsoft.KeyVault/vaults/{name}"
)


# -- checks ----------------------------------------------------------------------------------------


@rule(
    id="KV201",
    severity=Severity.HIGH,
    title="Requests admitted from a public address the baseline does not allow",
    source=EvidenceSource.LOGS,
    category=RuleCategory.LOGS,
    remediation_cli=(
        "az keyvault update --name {name} --resource-group {resource_group} --default-action Deny  "
        "# and remove any IP rule that admits {subject}: az keyvault network-rule remove --name {name} "
        "--resource-group {resource_group} --ip-address <rule>"
    ),
    remediation_bicep=(
        "properties: {\n"
        "  networkAcls: {\n"
        "    defaultAction: 'Deny'\n"
        "    ipRules: [ /* only the baseline's allowed_ip_ranges */ ]\n"
        "  }\n"
        "}"
    ),
    references=(KEY_VAULT_LOGGING, NETWORK_SECURITY),
    baseline_keys=("mode", "allowed_ip_ranges"),
)
def admitted_public_not_allowed(facts: VaultFacts) -> Iterator[Hit]:
    """The access log shows what really got in. A public address the baseline does not list reached the
    vault's data plane and was admitted by the network: the firewall is open (default Allow) or an IP
    rule is broader than intended. Trusted-service bypass traffic is judged by the bypass setting
    (KV007), and a vault whose baseline mode is 'public' is exempt.
    """
    evidence, policy = facts.evidence, facts.policy
    if evidence is None or policy.mode == Mode.PUBLIC:
        return
    admitted = [
        a
        for a in evidence.activity
        if a.outcome is Outcome.ADMITTED
        and public(a)
        and a.address_auth_type != "TrustedService"
        and not allowed_by_baseline(a.caller_address, policy)
    ]
    yield from admitted_public_hits(
        admitted, evidence=evidence, policy=policy, callers_of=_by_address, kinds_key=_AUTH_TYPES
    )


@rule(
    id="KV202",
    severity=Severity.MEDIUM,
    title="Many requests from one address refused by the firewall",
    source=EvidenceSource.LOGS,
    category=RuleCategory.LOGS,
    remediation_cli=(
        "# find the client at {subject}: if it is a legitimate workload, route it through an allowed "
        "subnet or the private endpoint (az network vnet subnet update --service-endpoints "
        "Microsoft.KeyVault ... / az network private-dns link vnet create ...); if not, no change "
        "to {name} is needed beyond keeping defaultAction Deny"
    ),
    remediation_bicep="// no vault change: fix the client's network path (subnet service endpoint or private DNS zone link)",
    references=(KEY_VAULT_LOGGING, NETWORK_SECURITY, SERVICE_ENDPOINTS),
    baseline_keys=("logs.refused_threshold",),
)
def refused_by_firewall(facts: VaultFacts) -> Iterator[Hit]:
    """Repeated refusals from one caller address in the window mean a client that should reach the vault is
    configured wrongly (wrong route, missing service endpoint or private DNS link: its traffic arrives
    from an unexpected address), or someone is probing the vault. The threshold is configurable
    (KVMON_REFUSED_THRESHOLD).
    """
    evidence = facts.evidence
    if evidence is None:
        return
    threshold = facts.logs_refused_threshold
    refused = [a for a in evidence.activity if a.outcome is Outcome.REFUSED_FIREWALL and a.caller_address]
    for caller in _by_address(refused):
        if caller.requests >= threshold:
            kind = "private" if caller.private else "public"
            yield Hit(
                summary=(
                    f"{caller.requests} request(s) from {kind} address {caller.address} were refused by the "
                    f"network rules (threshold {threshold}): a misconfigured client or someone knocking"
                ),
                subject=caller.address,
                evidence={**caller.evidence(_AUTH_TYPES), **window(evidence), "threshold": threshold},
            )


@rule(
    id="KV203",
    severity=Severity.HIGH,
    title="An identity that must use a private path reached the vault from a public address",
    source=EvidenceSource.LOGS,
    category=RuleCategory.LOGS,
    remediation_cli=(
        "# the workload of {subject} leaves through a public address: enable the service endpoint on "
        "its subnet (az network vnet subnet update --resource-group <rg> --vnet-name <vnet> --name "
        "<subnet> --service-endpoints Microsoft.KeyVault) or link privatelink.vaultcore.azure.net to "
        "its VNet (az network private-dns link vnet create --resource-group <rg> --zone-name "
        "privatelink.vaultcore.azure.net --name <link> --virtual-network <vnet> --registration-enabled false)"
    ),
    remediation_bicep=(
        "resource link 'Microsoft.Network/privateDnsZones/virtualNetworkLinks@2020-06-01' = {\n"
        "  parent: privateLinkZone\n"
        "  name: 'link-${vnet.name}'\n"
        "  location: 'global'\n"
        "  properties: { virtualNetwork: { id: vnet.id }, registrationEnabled: false }\n"
        "}"
    ),
    references=(SERVICE_ENDPOINTS, PRIVATE_LINK_DIAGNOSTICS, KEY_VAULT_LOGGING),
    baseline_keys=("private_path_identities",),
)
def private_path_identity_from_public(facts: VaultFacts) -> Iterator[Hit]:
    """The baseline names identities (app or object ids) whose traffic must arrive through a Service
    Endpoint or Private Endpoint. Seen from a public address, the workload's route or endpoint is
    missing: its traffic crosses the internet, and it works only while the firewall is open (or fails
    once it is closed).
    """
    evidence, policy = facts.evidence, facts.policy
    if evidence is None or not policy.private_path_identities:
        return
    yield from private_path_identity_hits(
        evidence.activity,
        identities=policy.private_path_identities,
        evidence=evidence,
        callers_of=_by_address,
        kinds_key=_AUTH_TYPES,
    )


@rule(
    id="KV204",
    severity=Severity.MEDIUM,
    title="No access-log rows although a workspace is configured",
    source=EvidenceSource.LOGS,
    category=RuleCategory.LOGS,
    remediation_cli=(
        "az monitor diagnostic-settings create --name kvmon-audit --resource "
        f"{_VAULT_ID} --workspace <workspace-resource-id> --export-to-resource-specific true "
        '--logs \'[{{"category":"AuditEvent","enabled":true}}]\''
    ),
    remediation_bicep=(
        "resource audit 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {\n"
        "  scope: vault\n"
        "  name: 'kvmon-audit'\n"
        "  properties: {\n"
        "    workspaceId: workspace.id\n"
        "    logAnalyticsDestinationType: 'Dedicated'\n"
        "    logs: [ { category: 'AuditEvent', enabled: true } ]\n"
        "  }\n"
        "}"
    ),
    references=(KEY_VAULT_LOGGING, DIAGNOSTIC_SETTINGS, AZKV_AUDIT_LOGS),
)
def no_rows(facts: VaultFacts) -> Iterator[Hit]:
    """A vault that nobody calls still logs kvmon's own probes, so a window without a single row means the
    audit trail is missing: no diagnostic setting, one that sends to another workspace, or one without
    the AuditEvent category. Without it the log rules see nothing. For a vault a perimeter governs it can
    also mean the workspace sits outside the perimeter, whose resources log only to destinations inside
    it: no evidence, and kvmon resolves no log finding of the vault on it. Never raised when the read
    was incomplete (throttled, failed or partial).
    """
    evidence = facts.evidence
    # Incomplete evidence cannot prove an absence: never conclude "no rows" from a failed read.
    if evidence is None or not evidence.complete or evidence.activity:
        return
    governed = perimeter_may_govern(facts.posture)
    yield Hit(
        summary=(
            f"no access-log rows for this vault in workspace {evidence.workspace_id} between "
            f"{iso(evidence.window_start)} and {iso(evidence.window_end)}: the diagnostic setting "
            "is missing, sends elsewhere, or is broken" + (_OUTSIDE_PERIMETER if governed else "")
        ),
        evidence={**window(evidence), "perimeter_governed": governed},
    )


# What an empty log of a perimeter-governed vault may mean, said where it is reported.
_OUTSIDE_PERIMETER = (
    "; a perimeter governs the vault, so the workspace may sit outside it (its logs then never "
    "arrive): no evidence, not no access"
)


_PERIMETER_ARGS = "--perimeter-name <perimeter> --resource-group <perimeter-resource-group>"


@dataclass
class _Source:
    """One public source's admissions by perimeter rules on one vault, over every rule and identity."""

    subject: str  # the address, else the app id, else "(no source)"
    address: str
    requests: int = 0
    first_seen: dt.datetime | None = None
    last_seen: dt.datetime | None = None
    rules: Counter[str] = field(default_factory=Counter)
    app_ids: Counter[str] = field(default_factory=Counter)
    profiles: set[str] = field(default_factory=set)
    versions: set[str] = field(default_factory=set)

    def add(self, access: PerimeterAccess) -> None:
        self.requests += access.count
        self.first_seen = earliest(self.first_seen, access.first_seen)
        self.last_seen = latest(self.last_seen, access.last_seen)
        self.rules[access.matched_rule or "(not named)"] += access.count
        if access.source_app_id:
            self.app_ids[access.source_app_id] += access.count
        self.profiles.update([access.profile] if access.profile else [])
        self.versions.update([access.access_rules_version] if access.access_rules_version else [])

    def evidence(self) -> dict[str, object]:
        return {
            "source_address": self.address or None,
            "requests": self.requests,
            "first_seen": iso(self.first_seen),
            "last_seen": iso(self.last_seen),
            "matched_rules": [{"rule": r, "requests": n} for r, n in self.rules.most_common(TOP)],
            "source_app_ids": [{"app_id": a, "requests": n} for a, n in self.app_ids.most_common(TOP)],
            "profiles": sorted(self.profiles),
            "access_rules_versions": sorted(self.versions),
        }


def _by_source(access: Iterable[PerimeterAccess]) -> list[_Source]:
    sources: dict[str, _Source] = {}
    for item in access:
        subject = item.source_address or item.source_app_id or "(no source)"
        sources.setdefault(subject, _Source(subject, item.source_address)).add(item)
    return sorted(sources.values(), key=lambda s: (-s.requests, s.subject))


@rule(
    id="KV205",
    severity=Severity.HIGH,
    title="Public callers admitted by a perimeter rule the baseline does not allow",
    source=EvidenceSource.PERIMETER_LOGS,
    category=RuleCategory.LOGS,
    remediation_cli=(
        f"az network perimeter profile access-rule update {_PERIMETER_ARGS} --profile-name <profile> "
        "--name <matched rule> --address-prefixes <narrow-cidr>  # or delete the rule; it admitted {subject}"
    ),
    remediation_bicep=(
        "resource inbound 'Microsoft.Network/networkSecurityPerimeters/profiles/accessRules@2024-07-01' = {\n"
        "  parent: profile\n"
        "  name: '<matched rule>'\n"
        "  properties: {\n"
        "    direction: 'Inbound'\n"
        "    addressPrefixes: [ /* only the baseline's allowed_ip_ranges */ ]\n"
        "  }\n"
        "}"
    ),
    references=(NSP_DIAGNOSTIC_LOGS, NSP_ACCESS_LOGS, NSP_CONCEPTS, CLI_PERIMETER),
    baseline_keys=("mode", "allowed_ip_ranges"),
)
def admitted_by_perimeter_rule(facts: VaultFacts) -> Iterator[Hit]:
    """The perimeter's access log says who really got in through it: a public source the baseline does
    not allow was admitted by an inbound access rule of the vault's perimeter
    (NspPublicInboundPerimeterRulesAllowed). The perimeter opened the vault, whatever its own firewall
    says, and in Learning (Transition) mode even one whose publicNetworkAccess is Disabled; configuration
    scanners that read publicNetworkAccess call such a vault closed. The log names the rule that matched.
    Admissions by the vault's own firewall in Learning mode (NspPublicInboundResourceRulesAllowed) are
    KV201's to judge from the vault's audit log; a vault whose baseline mode is 'public' is exempt.
    """
    found, policy = facts.perimeter_evidence, facts.policy
    if found is None or policy.mode == Mode.PUBLIC:
        return
    admitted = [
        item
        for item in found.access
        if item.category is PerimeterLogCategory.PUBLIC_PERIMETER_RULES_ALLOWED
        and not (item.source_address and allowed_by_baseline(item.source_address, policy))
    ]
    sources = _by_source(admitted)
    top = [{"source": s.subject, "requests": s.requests} for s in sources[:TOP]]
    for source in sources:
        rules = ", ".join(source.rules) or "(not named)"
        yield Hit(
            summary=(
                f"{source.requests} request(s) from public source {source.subject} were admitted by "
                f"perimeter rule(s) {rules} between {iso(source.first_seen)} and {iso(source.last_seen)}; "
                f"the baseline allows {ranges(policy)}"
            ),
            subject=source.subject,
            evidence={
                **source.evidence(),
                **window(found),
                "allowed_ip_ranges": [str(r) for r in policy.allowed_ip_ranges],
                "top_public_sources": top,
            },
        )


@rule(
    id="KV207",
    severity=Severity.MEDIUM,
    title="No perimeter access-log rows for a vault a perimeter governs: no evidence",
    source=EvidenceSource.PERIMETER_LOGS,
    category=RuleCategory.LOGS,
    remediation_cli=(
        "az monitor diagnostic-settings create --name kvmon-nsp --resource <perimeter-resource-id> "
        "--workspace <workspace-resource-id> --logs '["
        + ",".join(
            f'{{{{"category":"{category.value}","enabled":true}}}}' for category in PerimeterLogCategory
        )
        + "]'  # and associate the workspace with the perimeter: az network perimeter association create "
        f"{_PERIMETER_ARGS} --name assoc-workspace "
        '--private-link-resource "{{id:<workspace-resource-id>}}" --profile "{{id:<profile-id>}}" --access-mode Enforced'
    ),
    remediation_bicep=(
        "resource nspLogs 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {\n"
        "  scope: perimeter\n"
        "  name: 'kvmon-nsp'\n"
        "  properties: {\n"
        "    workspaceId: workspace.id\n"
        "    logs: [\n"
        + "".join(
            f"      {{ category: '{category.value}', enabled: true }}\n" for category in PerimeterLogCategory
        )
        + "    ]\n"
        "  }\n"
        "}"
    ),
    references=(NSP_DIAGNOSTIC_LOGS, NSP_ACCESS_LOGS, DIAGNOSTIC_SETTINGS),
)
def no_perimeter_rows(facts: VaultFacts) -> Iterator[Hit]:
    """A vault associated with a Network Security Perimeter has its inbound decisions logged, kvmon's own
    probes included, by the perimeter's diagnostic settings. A window without a single row for it is no
    evidence, not "nobody got in": the perimeter has no diagnostic setting to this workspace, or the
    workspace sits outside the perimeter (Microsoft: log destinations must be within the same perimeter
    as the resource), so its logs never arrive, and KV205 cannot see who a perimeter rule admits. kvmon
    resolves no perimeter-log finding of the vault on it. Never raised when the read was incomplete, or
    for a vault no perimeter governs.
    """
    found = facts.perimeter_evidence
    if found is None or not found.complete or found.access or not perimeter_may_govern(facts.posture):
        return
    yield Hit(
        summary=(
            f"no perimeter access-log rows (NSPAccessLogs) for this vault in workspace {found.workspace_id} "
            f"between {iso(found.window_start)} and {iso(found.window_end)}, although a perimeter governs "
            "it: the perimeter sends no diagnostic setting here, or the workspace sits outside the perimeter; "
            "no evidence, not no access"
        ),
        evidence=window(found),
    )


RULES: tuple[Rule, ...] = (
    admitted_public_not_allowed,
    refused_by_firewall,
    private_path_identity_from_public,
    no_rows,
    admitted_by_perimeter_rule,
    no_perimeter_rows,
)
