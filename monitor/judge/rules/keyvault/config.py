"""The configuration rules KV0xx: read the ARM posture and the baseline policy.

Each check is a pure function of ``VaultFacts`` (the posture as ARM reports it, Azure's defaults
already applied by the normaliser, and the baseline's ``VaultPolicy``).
"""

from __future__ import annotations

from collections.abc import Iterator

from monitor.config.policy import Mode
from monitor.judge.perimeter import (
    EffectiveExposure,
    InboundSet,
    broad_prefix_reasons,
    effective_exposure,
    within_any,
)
from monitor.judge.rules.base import Exposure, Hit, Rule, RuleCategory, VaultFacts, rule
from monitor.judge.rules.firewall import (
    dead_under_perimeter,
    perimeter_evidence,
    public_exposure,
    reserved_range_of,
    set_difference_summary,
)
from monitor.model import EvidenceSource, IPNetwork, IpRule, Severity, VaultPosture

_LEARN = "https://learn.microsoft.com/en-us/azure"
NETWORK_SECURITY = f"{_LEARN}/key-vault/general/network-security"
SERVICE_ENDPOINTS = f"{_LEARN}/key-vault/general/overview-vnet-service-endpoints"
PRIVATE_LINK = f"{_LEARN}/key-vault/general/private-link-service"
PRIVATE_LINK_DIAGNOSTICS = f"{_LEARN}/key-vault/general/private-link-diagnostics"
BICEP_VAULTS = f"{_LEARN}/templates/microsoft.keyvault/vaults"
PRIVATE_ENDPOINT_CONNECTIONS_API = (
    "https://learn.microsoft.com/en-us/rest/api/keyvault/keyvault/private-endpoint-connections/put"
)
CLI_KEYVAULT = "https://learn.microsoft.com/en-us/cli/azure/keyvault"
# The command that gives a vault a private endpoint (KV010; KV019 under a perimeter).
CREATE_PRIVATE_ENDPOINT = (
    "az network private-endpoint create --name pe-{name} --resource-group {resource_group} "
    "--vnet-name <vnet> --subnet <subnet> --connection-name pe-{name} --group-id vault "
    "--private-connection-resource-id "
    "/subscriptions/{subscription}/resourceGroups/{resource_group}/providers/Microsoft.KeyVault/vaults/{name}"
)
CLI_NETWORK_RULE = "https://learn.microsoft.com/en-us/cli/azure/keyvault/network-rule"
CLI_PRIVATE_ENDPOINT_CONNECTION = (
    "https://learn.microsoft.com/en-us/cli/azure/network/private-endpoint-connection"
)

_UNHEALTHY_STATUSES = ("pending", "rejected", "disconnected")


def _firewall_in_force(posture: VaultPosture) -> bool:
    """Public access on and the firewall denying by default: IP rules are what admits callers."""
    return (
        not posture.public_access_disabled
        and posture.network_acls_present
        and posture.default_action.lower() == "deny"
    )


def _parsed_rules(posture: VaultPosture) -> Iterator[tuple[IpRule, IPNetwork]]:
    for ip_rule in posture.ip_rules:
        if ip_rule.network is not None:
            yield ip_rule, ip_rule.network


def _open_evidence(posture: VaultPosture) -> dict[str, object]:
    return {
        "public_network_access": posture.public_network_access,
        "network_acls_present": posture.network_acls_present,
        "default_action": posture.default_action,
    }


def _exposure(facts: VaultFacts) -> EffectiveExposure:
    return effective_exposure(posture=facts.posture, policy=facts.policy)


def _open_reason(posture: VaultPosture) -> str:
    if not posture.network_acls_present:
        return f"publicNetworkAccess is {posture.public_network_access} and there are no networkAcls"
    return (
        f"publicNetworkAccess is {posture.public_network_access} and "
        f"networkAcls.defaultAction is {posture.default_action}"
    )


_UPDATE = "az keyvault update --name {name} --resource-group {resource_group}"


# -- checks ----------------------------------------------------------------------------------------


@rule(
    id="KV001",
    severity=Severity.HIGH,
    title="Public network access is open to every address",
    source=EvidenceSource.CONFIGURATION,
    category=RuleCategory.CONFIGURATION,
    exposure=Exposure.CLAIMED,
    remediation_cli=f"{_UPDATE} --default-action Deny --bypass AzureServices",
    remediation_bicep=(
        "properties: {\n"
        "  publicNetworkAccess: 'Disabled' // or 'Enabled' with the firewall below\n"
        "  networkAcls: {\n"
        "    defaultAction: 'Deny'\n"
        "    bypass: 'AzureServices'\n"
        "    ipRules: []\n"
        "    virtualNetworkRules: []\n"
        "  }\n"
        "}"
    ),
    references=(NETWORK_SECURITY, CLI_KEYVAULT, BICEP_VAULTS),
)
def public_network_open(facts: VaultFacts) -> Iterator[Hit]:
    """With publicNetworkAccess not Disabled and no networkAcls, or a defaultAction other than Deny, the
    vault's data plane answers any address on the internet. Authentication still applies, but a leaked
    token, secret or misassigned role is then usable from anywhere; the firewall is the layer that
    limits where a stolen credential works. Under a Network Security Perimeter in Learning or Enforced
    mode the perimeter's inbound rules decide instead: an everything range, a range broader than the
    baseline, a service tag or a subscription entry opens the vault even when publicNetworkAccess is
    Disabled, and an Enforced perimeter closes a vault whose firewall admits everyone.
    """
    posture = facts.posture
    if posture.could_not_read("properties.publicNetworkAccess") or posture.could_not_read(
        "properties.networkAcls.defaultAction"
    ):
        return  # Azure's defaults stand in for what could not be read: no evidence of an open vault
    exposure = _exposure(facts)
    yield from public_exposure(
        exposure,
        open_reason=_open_reason(posture),
        evidence={**_open_evidence(posture), **perimeter_evidence(posture, exposure)},
        resource="vault",
        reaches="the data plane",
    )


@rule(
    id="KV002",
    severity=Severity.HIGH,
    title="Virtual network rules give no protection while the default action admits everyone",
    source=EvidenceSource.CONFIGURATION,
    category=RuleCategory.CONFIGURATION,
    exposure=Exposure.CLAIMED,
    remediation_cli=f"{_UPDATE} --default-action Deny",
    remediation_bicep=(
        "networkAcls: {\n"
        "  defaultAction: 'Deny'\n"
        "  bypass: 'AzureServices'\n"
        "  virtualNetworkRules: [\n"
        "    { id: serviceEndpointSubnet.id, ignoreMissingVnetServiceEndpoint: false }\n"
        "  ]\n"
        "}"
    ),
    references=(SERVICE_ENDPOINTS, NETWORK_SECURITY, CLI_KEYVAULT),
)
def service_endpoint_without_deny(facts: VaultFacts) -> Iterator[Hit]:
    """A Service Endpoint plus a virtual network rule only changes the source address the vault sees from
    that subnet. While defaultAction is Allow (or networkAcls are absent) and public access is on, every
    other address is still admitted: the rule looks like isolation and provides none.
    """
    yield from dead_under_perimeter(_exposure(facts), _vnet_rules_without_deny(facts.posture))


def _vnet_rules_without_deny(posture: VaultPosture) -> Iterator[Hit]:
    if posture.publicly_open and posture.virtual_network_rules:
        subnets = [subnet_rule.subnet_id for subnet_rule in posture.virtual_network_rules]
        yield Hit(
            summary=(
                f"{len(subnets)} virtual network rule(s) exist but {_open_reason(posture)}: "
                "the rules restrict nothing"
            ),
            evidence={**_open_evidence(posture), "virtual_network_rules": subnets},
        )


@rule(
    id="KV003",
    severity=Severity.HIGH,
    title="IP rule admits too much",
    source=EvidenceSource.CONFIGURATION,
    category=RuleCategory.CONFIGURATION,
    exposure=Exposure.CLAIMED,
    remediation_cli=(
        "az keyvault network-rule remove --name {name} --resource-group {resource_group} "
        "--ip-address {subject}"
    ),
    remediation_bicep=(
        "networkAcls: {\n"
        "  defaultAction: 'Deny'\n"
        "  ipRules: [\n"
        "    { value: '203.0.113.0/28' } // the narrowest range the callers need\n"
        "  ]\n"
        "}"
    ),
    references=(NETWORK_SECURITY, CLI_NETWORK_RULE, BICEP_VAULTS),
    baseline_keys=("min_prefix_length", "allowed_ip_ranges"),
)
def ip_rule_too_broad(facts: VaultFacts) -> Iterator[Hit]:
    """With the firewall denying by default, IP rules decide who on the internet gets in. A range broader
    than the baseline's minimum prefix length, or outside its allowed ranges, admits networks nobody
    vouched for (shared cloud egress, whole ISPs); 0.0.0.0/0 admits the whole internet while the vault
    looks firewalled. Rules wholly inside reserved ranges admit nothing and are reported by KV005
    instead.
    """
    yield from dead_under_perimeter(_exposure(facts), _broad_ip_rules(facts))


def _broad_ip_rules(facts: VaultFacts) -> Iterator[Hit]:
    posture, policy = facts.posture, facts.policy
    if not _firewall_in_force(posture):
        return
    for ip_rule, network in _parsed_rules(posture):
        if network.prefixlen == 0:
            yield Hit(
                summary=f"IP rule {ip_rule.raw} admits every address on the internet",
                subject=ip_rule.raw,
                evidence={"ip_rule": ip_rule.raw, "network": str(network)},
                severity=Severity.CRITICAL,
            )
            continue
        if reserved_range_of(network) is not None:
            continue  # admits nothing at all: KV005's business, not "too much"
        reasons = broad_prefix_reasons(network, policy)
        if reasons:
            yield Hit(
                summary=f"IP rule {ip_rule.raw} is {' and '.join(reasons)}",
                subject=ip_rule.raw,
                evidence={
                    "ip_rule": ip_rule.raw,
                    "network": str(network),
                    "addresses": network.num_addresses,
                    "min_prefix_length": policy.min_prefix_length,
                    "allowed_ip_ranges": [str(r) for r in policy.allowed_ip_ranges],
                },
            )


@rule(
    id="KV004",
    severity=Severity.MEDIUM,
    title="IP rule cannot be parsed",
    source=EvidenceSource.CONFIGURATION,
    category=RuleCategory.CONFIGURATION,
    remediation_cli=(
        "az keyvault network-rule remove --name {name} --resource-group {resource_group} "
        "--ip-address {subject}"
    ),
    remediation_bicep=(
        "networkAcls: {\n"
        "  ipRules: [\n"
        "    { value: '10.91.4.0/24' } // a bare address or CIDR, no quotes inside the value\n"
        "  ]\n"
        "}"
    ),
    references=(NETWORK_SECURITY, CLI_NETWORK_RULE, BICEP_VAULTS),
)
def ip_rule_unparsable(facts: VaultFacts) -> Iterator[Hit]:
    """A rule value that is not an IPv4 address or CIDR range (Azure's own published example carries one
    wrapped in quotes) does not admit what its author meant, and tools that parse networkAcls strictly
    may fail on the whole subscription because of it.
    """
    yield from dead_under_perimeter(
        _exposure(facts),
        (
            Hit(
                summary=f"IP rule {ip_rule.raw!r} is not an IPv4 address or CIDR range",
                subject=ip_rule.raw,
                evidence={"ip_rule": ip_rule.raw},
            )
            for ip_rule in facts.posture.ip_rules
            if not ip_rule.parsed
        ),
    )


@rule(
    id="KV005",
    severity=Severity.LOW,
    title="IP rule covers a private or reserved range and admits nothing",
    source=EvidenceSource.CONFIGURATION,
    category=RuleCategory.CONFIGURATION,
    remediation_cli=(
        "az keyvault network-rule remove --name {name} --resource-group {resource_group} "
        "--ip-address {subject}"
    ),
    remediation_bicep=(
        "// Reach the vault from the VNet with a virtual network rule or a private endpoint\n"
        "networkAcls: {\n"
        "  defaultAction: 'Deny'\n"
        "  virtualNetworkRules: [ { id: appSubnet.id } ]\n"
        "}"
    ),
    references=(NETWORK_SECURITY, SERVICE_ENDPOINTS, CLI_NETWORK_RULE),
)
def ip_rule_reserved_range(facts: VaultFacts) -> Iterator[Hit]:
    """Key Vault IP rules match the public address a request comes from. Traffic from RFC 1918, shared
    (100.64.0.0/10), loopback or link-local space reaches a vault only through a Service Endpoint or
    Private Endpoint, which IP rules do not govern, so such a rule admits nothing and suggests access
    that does not exist.
    """
    yield from dead_under_perimeter(_exposure(facts), _reserved_ip_rules(facts.posture))


def _reserved_ip_rules(posture: VaultPosture) -> Iterator[Hit]:
    for ip_rule, network in _parsed_rules(posture):
        reserved = reserved_range_of(network)
        if reserved is not None:
            yield Hit(
                summary=(
                    f"IP rule {ip_rule.raw} lies in reserved range {reserved}: Key Vault IP rules match "
                    "public addresses only, so it admits nothing"
                ),
                subject=ip_rule.raw,
                evidence={"ip_rule": ip_rule.raw, "network": str(network), "reserved_range": str(reserved)},
            )


@rule(
    id="KV006",
    severity=Severity.MEDIUM,
    title="Virtual network rule ignores a missing service endpoint",
    source=EvidenceSource.CONFIGURATION,
    category=RuleCategory.CONFIGURATION,
    remediation_cli=(
        "az network vnet subnet update --ids {subject} --service-endpoints Microsoft.KeyVault && "
        "az keyvault network-rule remove --name {name} --resource-group {resource_group} --subnet {subject} && "
        "az keyvault network-rule add --name {name} --resource-group {resource_group} --subnet {subject}"
    ),
    remediation_bicep=(
        "networkAcls: {\n"
        "  virtualNetworkRules: [\n"
        "    { id: appSubnet.id, ignoreMissingVnetServiceEndpoint: false }\n"
        "  ]\n"
        "}\n"
        "// and on the subnet: serviceEndpoints: [ { service: 'Microsoft.KeyVault' } ]"
    ),
    references=(SERVICE_ENDPOINTS, CLI_NETWORK_RULE, BICEP_VAULTS),
)
def ignore_missing_service_endpoint(facts: VaultFacts) -> Iterator[Hit]:
    """ignoreMissingVnetServiceEndpoint=true lets a rule be saved for a subnet without the
    Microsoft.KeyVault service endpoint. Until the endpoint exists, that subnet's traffic leaves through
    its public address and is refused (or, worse, admitted by a broad IP rule), and nothing in the
    vault's configuration shows it.
    """
    yield from dead_under_perimeter(_exposure(facts), _ignoring_missing_endpoint(facts.posture))


def _ignoring_missing_endpoint(posture: VaultPosture) -> Iterator[Hit]:
    for subnet_rule in posture.virtual_network_rules:
        if subnet_rule.ignore_missing_service_endpoint:
            yield Hit(
                summary=(
                    f"virtual network rule for {subnet_rule.subnet_id} was added with "
                    "ignoreMissingVnetServiceEndpoint=true: the subnet may have no Microsoft.KeyVault "
                    "service endpoint, so its traffic arrives from a public address and is refused"
                ),
                subject=subnet_rule.subnet_id,
                evidence={"subnet_id": subnet_rule.subnet_id, "ignore_missing_vnet_service_endpoint": True},
            )


@rule(
    id="KV007",
    severity=Severity.LOW,
    title="Trusted Azure services bypass differs from the baseline",
    source=EvidenceSource.CONFIGURATION,
    category=RuleCategory.BASELINE,
    remediation_cli=f"{_UPDATE} --bypass AzureServices  # or None, as the baseline states",
    remediation_bicep="networkAcls: {\n  bypass: 'AzureServices' // or 'None', as the baseline states\n}",
    references=(SERVICE_ENDPOINTS, NETWORK_SECURITY, CLI_KEYVAULT),
    baseline_keys=("bypass",),
)
def bypass_differs(facts: VaultFacts) -> Iterator[Hit]:
    """bypass=AzureServices lets Microsoft's trusted services through the firewall (they still need a token
    and permissions). Some workloads need it (disk encryption, backup), others must not have it; when
    the baseline states a value, a different one is an unreviewed change of who passes the firewall.
    """
    expected = facts.policy.bypass
    actual = facts.posture.bypass
    if expected is not None and expected.lower() != actual.lower():
        yield Hit(
            summary=f"networkAcls.bypass is {actual}, the baseline expects {expected}",
            evidence={"expected": expected, "actual": actual},
        )


@rule(
    id="KV008",
    severity=Severity.MEDIUM,
    title="Private endpoint exists but public access is not disabled",
    source=EvidenceSource.CONFIGURATION,
    category=RuleCategory.CONFIGURATION,
    exposure=Exposure.CLAIMED,
    remediation_cli=f"{_UPDATE} --public-network-access Disabled",
    remediation_bicep="properties: {\n  publicNetworkAccess: 'Disabled'\n}",
    references=(PRIVATE_LINK, PRIVATE_LINK_DIAGNOSTICS, CLI_KEYVAULT),
)
def private_endpoint_not_enforced(facts: VaultFacts) -> Iterator[Hit]:
    """An approved private endpoint gives the VNet a private path, but as long as publicNetworkAccess is
    not Disabled the public endpoint keeps answering as well. The private link then adds a path without
    removing one; when the firewall also admits everyone (KV001), the vault is fully public despite the
    private endpoint. A perimeter in Learning or Enforced mode keeps a public path too, Disabled or not:
    its inbound rules admit. Only a working connection counts (Approved, provisioning not Failed): a
    failed one adds no private path, and KV009 reports it.
    """
    posture = facts.posture
    approved = [c.id for c in posture.private_endpoint_connections if c.working]
    exposure = _exposure(facts)
    if not approved or exposure.inbound in (InboundSet.CLOSED, InboundSet.UNKNOWN):
        return
    if exposure.perimeter_in_force:
        yield Hit(
            summary=(
                f"{len(approved)} approved private endpoint connection(s), but {exposure.reason}"
                + (": the public path is open to the public" if exposure.public else "")
            ),
            evidence={
                **_open_evidence(posture),
                "approved_connections": approved,
                **perimeter_evidence(posture, exposure),
            },
            severity=Severity.HIGH if exposure.public else None,
        )
        return
    also_open = posture.publicly_open
    if also_open:
        acls = (
            f"networkAcls.defaultAction is {posture.default_action}"
            if posture.network_acls_present
            else "there are no networkAcls"
        )
        tail = f" and {acls}: the public path admits everyone"
    else:
        tail = "; the public path stays open to the firewall's rules"
    yield Hit(
        summary=(
            f"{len(approved)} approved private endpoint connection(s), but publicNetworkAccess is "
            f"{posture.public_network_access}{tail}"
        ),
        evidence={
            **_open_evidence(posture),
            "approved_connections": approved,
            **perimeter_evidence(posture, exposure),
        },
        severity=Severity.HIGH if also_open else None,
    )


@rule(
    id="KV009",
    severity=Severity.MEDIUM,
    title="Private endpoint connection is not healthy",
    source=EvidenceSource.CONFIGURATION,
    category=RuleCategory.CONFIGURATION,
    remediation_cli=(
        'az network private-endpoint-connection approve --id {subject} --description "Approved after review"'
    ),
    remediation_bicep=(
        "resource pec 'Microsoft.KeyVault/vaults/privateEndpointConnections@2023-07-01' = {\n"
        "  parent: vault\n"
        "  name: connectionName\n"
        "  properties: {\n"
        "    privateLinkServiceConnectionState: { status: 'Approved', description: 'reviewed' }\n"
        "  }\n"
        "}"
    ),
    references=(PRIVATE_LINK, PRIVATE_ENDPOINT_CONNECTIONS_API, CLI_PRIVATE_ENDPOINT_CONNECTION),
)
def private_endpoint_unhealthy(facts: VaultFacts) -> Iterator[Hit]:
    """A connection that is Pending, Rejected or Disconnected, or whose provisioning failed, carries no
    traffic: clients whose DNS points at that endpoint fail, or fall back to the public path. Approve a
    Pending connection that is expected; delete and recreate a Rejected or Disconnected one. An
    Approved connection whose provisioning failed is reported here only: KV008, KV010, KV103 and KV105
    count it as no private endpoint.
    """
    for connection in facts.posture.private_endpoint_connections:
        status = (connection.status or "").lower()
        failed = (connection.provisioning_state or "").lower() == "failed"
        if status in _UNHEALTHY_STATUSES or failed:
            problems = []
            if status in _UNHEALTHY_STATUSES:
                problems.append(f"status {connection.status}")
            if failed:
                problems.append("provisioningState Failed")
            yield Hit(
                summary=(
                    f"private endpoint connection {connection.id.rsplit('/', 1)[-1]} has "
                    f"{' and '.join(problems)}: clients using it cannot reach the vault privately"
                ),
                subject=connection.id,
                evidence={
                    "connection_id": connection.id,
                    "private_endpoint_id": connection.private_endpoint_id,
                    "status": connection.status,
                    "provisioning_state": connection.provisioning_state,
                },
            )


@rule(
    id="KV010",
    severity=Severity.HIGH,
    title="Baseline expects private link but no connection is approved",
    source=EvidenceSource.CONFIGURATION,
    category=RuleCategory.BASELINE,
    remediation_cli=CREATE_PRIVATE_ENDPOINT,
    remediation_bicep=(
        "resource pe 'Microsoft.Network/privateEndpoints@2023-11-01' = {\n"
        "  name: 'pe-${vault.name}'\n"
        "  location: location\n"
        "  properties: {\n"
        "    subnet: { id: privateLinkSubnet.id }\n"
        "    privateLinkServiceConnections: [\n"
        "      { name: 'vault', properties: { privateLinkServiceId: vault.id, groupIds: [ 'vault' ] } }\n"
        "    ]\n"
        "  }\n"
        "}"
    ),
    references=(PRIVATE_LINK, PRIVATE_LINK_DIAGNOSTICS),
    baseline_keys=("mode",),
)
def private_link_expected_not_approved(facts: VaultFacts) -> Iterator[Hit]:
    """The baseline says this vault is reached through a private endpoint. Without a working connection
    (Approved, provisioning not Failed) there is no private path: workloads either fail or have been
    pointed at the public endpoint instead.
    """
    if facts.policy.mode != Mode.PRIVATE_LINK:
        return
    connections = facts.posture.private_endpoint_connections
    if any(c.working for c in connections):
        return
    states = {c.id: c.status for c in connections}
    found = (
        f"{len(connections)} connection(s), none Approved and provisioned"
        if connections
        else "no connections"
    )
    yield Hit(
        summary=f"baseline entry {facts.policy.entry!r} expects private-link; the vault has {found}",
        evidence={"entry": facts.policy.entry, "mode": facts.policy.mode, "connections": states},
    )


@rule(
    id="KV011",
    severity=Severity.MEDIUM,
    title="Network configuration differs from the baseline",
    source=EvidenceSource.CONFIGURATION,
    category=RuleCategory.BASELINE,
    remediation_cli=(
        f"{_UPDATE} --default-action <expected> --public-network-access <expected>  "
        "# subnets and IP ranges: az keyvault network-rule add|remove --name {name} "
        "--resource-group {resource_group} --subnet <id> | --ip-address <cidr>; field: {subject}"
    ),
    remediation_bicep=(
        "properties: {\n"
        "  publicNetworkAccess: '<expected>'\n"
        "  networkAcls: {\n"
        "    defaultAction: '<expected>'\n"
        "    ipRules: [ /* the baseline's allowed_ip_ranges */ ]\n"
        "    virtualNetworkRules: [ /* the baseline's allowed_subnets */ ]\n"
        "  }\n"
        "}"
    ),
    references=(NETWORK_SECURITY, CLI_KEYVAULT, CLI_NETWORK_RULE),
    baseline_keys=(
        "expect.default_action",
        "expect.public_network_access",
        "allowed_subnets",
        "allowed_ip_ranges",
        "drift_severity",
    ),
)
def baseline_drift(facts: VaultFacts) -> Iterator[Hit]:
    """The baseline states the expected default action, public network access, allowed subnets and allowed
    IP ranges. A difference is either an unreviewed change or a baseline out of date; both need a
    decision. Bypass differences are KV007's. The severity comes from the baseline entry's
    drift_severity.
    """
    posture, policy = facts.posture, facts.policy
    severity = policy.drift_severity
    for field_name, expected, actual in (
        ("default_action", policy.default_action, posture.default_action),
        ("public_network_access", policy.public_network_access, posture.public_network_access),
    ):
        if expected is not None and expected.lower() != actual.lower():
            yield Hit(
                summary=f"{field_name} is {actual}, the baseline expects {expected}",
                subject=field_name,
                evidence={"field": field_name, "expected": expected, "actual": actual},
                severity=severity,
            )
    if policy.allowed_subnets:
        actual_subnets = {subnet_rule.key for subnet_rule in posture.virtual_network_rules}
        expected_subnets = set(policy.allowed_subnets)
        missing = sorted(expected_subnets - actual_subnets)
        unexpected = sorted(actual_subnets - expected_subnets)
        if missing or unexpected:
            yield Hit(
                summary=set_difference_summary("virtual network rules", missing, unexpected),
                subject="allowed_subnets",
                evidence={
                    "field": "allowed_subnets",
                    "expected": sorted(expected_subnets),
                    "actual": sorted(actual_subnets),
                    "missing": missing,
                    "unexpected": unexpected,
                },
                severity=severity,
            )
    if policy.allowed_ip_ranges:
        networks = [network for _, network in _parsed_rules(posture)]
        unexpected = [str(n) for n in networks if not within_any(n, policy.allowed_ip_ranges)]
        missing = [
            str(allowed)
            for allowed in policy.allowed_ip_ranges
            if not any(n.version == allowed.version and n.overlaps(allowed) for n in networks)
        ]
        if missing or unexpected:
            yield Hit(
                summary=set_difference_summary("IP rules", missing, unexpected),
                subject="allowed_ip_ranges",
                evidence={
                    "field": "allowed_ip_ranges",
                    "expected": [str(r) for r in policy.allowed_ip_ranges],
                    "actual": [str(n) for n in networks],
                    "missing": missing,
                    "unexpected": unexpected,
                },
                severity=severity,
            )


@rule(
    id="KV013",
    severity=Severity.INFO,
    title="Vault is covered by no baseline entry",
    source=EvidenceSource.CONFIGURATION,
    category=RuleCategory.BASELINE,
    remediation_cli="# add an entry to the baseline matching {name} (name glob, resource id or tag), or a defaults section",
    remediation_bicep="// not a resource change: extend the baseline YAML",
    references=(NETWORK_SECURITY,),
    baseline_keys=("entries", "defaults"),
)
def no_baseline_entry(facts: VaultFacts) -> Iterator[Hit]:
    """A baseline was given but no entry matches this vault and there are no defaults, so nothing states
    what its network exposure should be: the baseline-driven rules and vantage expectations cannot judge
    it.
    """
    if facts.policy.baseline_given and facts.policy.entry is None:
        yield Hit(
            summary="no baseline entry matches this vault and the baseline has no defaults",
            evidence={"vault": facts.posture.name, "tags": dict(facts.posture.tags)},
        )


RULES: tuple[Rule, ...] = (
    public_network_open,
    service_endpoint_without_deny,
    ip_rule_too_broad,
    ip_rule_unparsable,
    ip_rule_reserved_range,
    ignore_missing_service_endpoint,
    bypass_differs,
    private_endpoint_not_enforced,
    private_endpoint_unhealthy,
    private_link_expected_not_approved,
    baseline_drift,
    no_baseline_entry,
)
