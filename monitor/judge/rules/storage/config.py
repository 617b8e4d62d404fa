"""The storage account configuration rules ST0xx: read the ARM posture and the baseline policy.

Each check is a pure function of ``StorageFacts`` (the posture as ARM reports it, Azure's defaults
applied by the normaliser, and the baseline's ``VaultPolicy`` of the account's entry). Where they differ
from Key Vault's KV0xx it is for Storage's own semantics (Microsoft's storage network security pages,
summarised in the rationales): IP rules take public IPv4 addresses only (RFC 1918 refused, no /31 or
/32) and do not apply to callers in the account's own region; trusted-service access and resource
instance rules stay in effect after public network access is Disabled; Disabled with defaultAction
left at Allow is closed; a private endpoint serves one sub-resource.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from monitor.config.policy import Mode
from monitor.judge.perimeter import (
    EffectiveExposure,
    InboundSet,
    broad_prefix_reasons,
    effective_exposure,
    within_any,
)
from monitor.judge.rules.base import Exposure, Hit, Rule, RuleCategory, StorageFacts, rule
from monitor.judge.rules.firewall import (
    dead_under_perimeter,
    perimeter_evidence,
    public_exposure,
    reserved_range_of,
    set_difference_summary,
)
from monitor.model import EvidenceSource, IPNetwork, Service, Severity
from monitor.model_storage import (
    PublicNetworkAccess,
    StorageAccountPosture,
    StorageBypass,
    StorageIpRule,
    StorageSubresource,
    TlsVersion,
    VirtualNetworkRuleState,
)

_LEARN = "https://learn.microsoft.com/en-us/azure"
NETWORK_SECURITY = f"{_LEARN}/storage/common/storage-network-security"
NETWORK_LIMITATIONS = f"{_LEARN}/storage/common/storage-network-security-limitations"
IP_RULES = f"{_LEARN}/storage/common/storage-network-security-ip-address-range"
VIRTUAL_NETWORKS = f"{_LEARN}/storage/common/storage-network-security-virtual-networks"
TRUSTED_SERVICES = f"{_LEARN}/storage/common/storage-network-security-trusted-azure-services"
RESOURCE_INSTANCES = f"{_LEARN}/storage/common/storage-network-security-resource-instances"
PRIVATE_ENDPOINTS = f"{_LEARN}/storage/common/storage-private-endpoints"
ANONYMOUS_ACCESS = f"{_LEARN}/storage/blobs/anonymous-read-access-prevent"
SHARED_KEY = f"{_LEARN}/storage/common/shared-key-authorization-prevent"
MINIMUM_TLS = f"{_LEARN}/storage/common/transport-layer-security-configure-minimum-version"
SECURE_TRANSFER = f"{_LEARN}/storage/common/storage-require-secure-transfer"
BICEP_ACCOUNTS = f"{_LEARN}/templates/microsoft.storage/storageaccounts"
CLI_ACCOUNT = "https://learn.microsoft.com/en-us/cli/azure/storage/account"
CLI_NETWORK_RULE = "https://learn.microsoft.com/en-us/cli/azure/storage/account/network-rule"
CLI_PRIVATE_ENDPOINT_CONNECTION = (
    "https://learn.microsoft.com/en-us/cli/azure/network/private-endpoint-connection"
)
CLI_PRIVATE_ENDPOINT = "https://learn.microsoft.com/en-us/cli/azure/network/private-endpoint"

_UPDATE = "az storage account update --name {name} --resource-group {resource_group}"
_NETWORK_RULE_REMOVE = (
    "az storage account network-rule remove --account-name {name} --resource-group {resource_group}"
)
ACCOUNT_ID = "/subscriptions/{subscription}/resourceGroups/{resource_group}/providers/Microsoft.Storage/storageAccounts/{name}"

_UNHEALTHY_STATUSES = ("pending", "rejected", "disconnected")
_BROKEN_SUBNET_STATES = (VirtualNetworkRuleState.NETWORK_SOURCE_DELETED, VirtualNetworkRuleState.FAILED)


def _exposure(facts: StorageFacts) -> EffectiveExposure:
    return effective_exposure(posture=facts.posture, policy=facts.policy)


def _firewall_in_force(posture: StorageAccountPosture) -> bool:
    """Public access on and the firewall denying by default: IP rules are what admits callers."""
    return (
        not posture.public_access_disabled
        and posture.network_acls_present
        and posture.default_action == "Deny"
    )


def _publicly_open(posture: StorageAccountPosture) -> bool:
    """The account's own settings admit every address (a perimeter may override them)."""
    return not posture.public_access_disabled and (
        not posture.network_acls_present or posture.default_action != "Deny"
    )


def _access_text(posture: StorageAccountPosture) -> str:
    if posture.public_network_access is PublicNetworkAccess.ABSENT:
        return "publicNetworkAccess is absent (the firewall decides)"
    return f"publicNetworkAccess is {posture.public_network_access.value}"


def _open_reason(posture: StorageAccountPosture) -> str:
    if not posture.network_acls_present:
        return f"{_access_text(posture)} and there are no networkAcls"
    return f"{_access_text(posture)} and networkAcls.defaultAction is {posture.default_action.value}"


def _open_evidence(posture: StorageAccountPosture) -> dict[str, Any]:
    return {
        "public_network_access": posture.public_network_access.value,
        "network_acls_present": posture.network_acls_present,
        "default_action": posture.default_action.value,
    }


def _all_ip_rules(posture: StorageAccountPosture) -> Iterator[tuple[str, int, StorageIpRule]]:
    """Every IP rule with the list it is in and the address family that list takes."""
    for rule_ in posture.ip_rules:
        yield "ipRules", 4, rule_
    for rule_ in posture.ipv6_rules:
        yield "ipv6Rules", 6, rule_


def _parsed_rules(posture: StorageAccountPosture) -> Iterator[tuple[StorageIpRule, IPNetwork]]:
    for _, version, ip_rule in _all_ip_rules(posture):
        network = ip_rule.value.network
        if network is not None and network.version == version:
            yield ip_rule, network


def _endpoints(posture: StorageAccountPosture) -> str:
    return ", ".join(sub.value for sub in posture.primary_endpoints) or "its endpoints"


# -- checks ----------------------------------------------------------------------------------------


@rule(
    id="ST001",
    severity=Severity.HIGH,
    title="Public network access is open to every address",
    source=EvidenceSource.CONFIGURATION,
    category=RuleCategory.CONFIGURATION,
    exposure=Exposure.CLAIMED,
    service=Service.STORAGE,
    remediation_cli=f"{_UPDATE} --default-action Deny --bypass AzureServices  # or --public-network-access Disabled",
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
    references=(NETWORK_SECURITY, NETWORK_LIMITATIONS, CLI_ACCOUNT, BICEP_ACCOUNTS),
)
def public_network_open(facts: StorageFacts) -> Iterator[Hit]:
    """With publicNetworkAccess Enabled or absent and no networkAcls, or a defaultAction other than Deny,
    every endpoint of the account (blob, dfs, file, queue, table, web) answers any address on the
    internet; a leaked account key or SAS token is then usable from anywhere. publicNetworkAccess
    Disabled closes the public endpoints whatever defaultAction says: a template that leaves
    defaultAction at Allow with public access Disabled is not open (Azure Policy 34c877ad, Prowler and
    Cloud Custodian report such an account as open; kvmon does not). Under a Network Security Perimeter
    in Learning or Enforced mode the perimeter's inbound rules decide instead, as for Key Vault (KV001).
    """
    posture = facts.posture
    if posture.could_not_read("properties.publicNetworkAccess") or posture.could_not_read(
        "properties.networkAcls.defaultAction"
    ):
        return  # Azure's defaults stand in for what could not be read: no evidence of an open account
    exposure = _exposure(facts)
    yield from public_exposure(
        exposure,
        open_reason=_open_reason(posture),
        evidence={**_open_evidence(posture), **perimeter_evidence(posture, exposure)},
        resource="account",
        reaches=_endpoints(posture),
    )


@rule(
    id="ST002",
    severity=Severity.HIGH,
    title="Virtual network rules give no protection while the default action admits everyone",
    source=EvidenceSource.CONFIGURATION,
    category=RuleCategory.CONFIGURATION,
    exposure=Exposure.CLAIMED,
    service=Service.STORAGE,
    remediation_cli=f"{_UPDATE} --default-action Deny",
    remediation_bicep=(
        "networkAcls: {\n"
        "  defaultAction: 'Deny'\n"
        "  bypass: 'AzureServices'\n"
        "  virtualNetworkRules: [\n"
        "    { id: serviceEndpointSubnet.id, action: 'Allow' }\n"
        "  ]\n"
        "}"
    ),
    references=(VIRTUAL_NETWORKS, NETWORK_SECURITY, CLI_ACCOUNT),
)
def service_endpoint_without_deny(facts: StorageFacts) -> Iterator[Hit]:
    """A Microsoft.Storage service endpoint and a virtual network rule only change the source address the
    account sees from that subnet (a private one). While defaultAction is Allow (or networkAcls are
    absent) and public access is on, every other address is still admitted: the rule looks like
    isolation and provides none. Under a perimeter that replaces the firewall the rules are dead
    configuration instead (information).
    """
    posture = facts.posture
    if posture.could_not_read("properties.networkAcls") or not (
        _publicly_open(posture) and posture.virtual_network_rules
    ):
        return
    subnets = [subnet_rule.subnet_id for subnet_rule in posture.virtual_network_rules]
    hit = Hit(
        summary=(
            f"{len(subnets)} virtual network rule(s) exist but {_open_reason(posture)}: the rules restrict nothing"
        ),
        evidence={**_open_evidence(posture), "virtual_network_rules": subnets},
    )
    yield from dead_under_perimeter(_exposure(facts), (hit,))


@rule(
    id="ST003",
    severity=Severity.HIGH,
    title="IP rule admits too much",
    source=EvidenceSource.CONFIGURATION,
    category=RuleCategory.CONFIGURATION,
    exposure=Exposure.CLAIMED,
    service=Service.STORAGE,
    remediation_cli=f"{_NETWORK_RULE_REMOVE} --ip-address {{subject}}",
    remediation_bicep=(
        "networkAcls: {\n"
        "  defaultAction: 'Deny'\n"
        "  ipRules: [\n"
        "    { value: '203.0.113.0/28', action: 'Allow' } // the narrowest range the callers need\n"
        "  ]\n"
        "}"
    ),
    references=(IP_RULES, NETWORK_LIMITATIONS, CLI_NETWORK_RULE),
    baseline_keys=("min_prefix_length", "allowed_ip_ranges"),
)
def ip_rule_too_broad(facts: StorageFacts) -> Iterator[Hit]:
    """With the firewall denying by default, IP rules decide who on the internet gets in. A range broader
    than the baseline's minimum prefix length, or outside its allowed ranges, admits networks nobody
    vouched for; 0.0.0.0/0 admits the whole internet while the account looks firewalled. IP rules do
    not apply to callers in the account's own Azure region (they arrive with private Azure addresses)
    nor to clients in a paired region with a service endpoint: an IP rule cannot admit or refuse an
    Azure service by its public outbound range, so a range written for that purpose admits only
    strangers.
    """
    yield from dead_under_perimeter(_exposure(facts), _broad_ip_rules(facts))


def _broad_ip_rules(facts: StorageFacts) -> Iterator[Hit]:
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
            continue  # admits nothing at all: ST005's business
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
    id="ST004",
    severity=Severity.MEDIUM,
    title="IP rule cannot be parsed or is of the wrong address family",
    source=EvidenceSource.CONFIGURATION,
    category=RuleCategory.CONFIGURATION,
    service=Service.STORAGE,
    remediation_cli=f"{_NETWORK_RULE_REMOVE} --ip-address {{subject}}",
    remediation_bicep=(
        "networkAcls: {\n"
        "  ipRules: [ { value: '203.0.113.7', action: 'Allow' } ]          // IPv4 only\n"
        "  ipv6Rules: [ { value: '2001:db8:85a3::/64', action: 'Allow' } ] // IPv6 only\n"
        "}"
    ),
    references=(IP_RULES, BICEP_ACCOUNTS, CLI_NETWORK_RULE),
)
def ip_rule_unparsable(facts: StorageFacts) -> Iterator[Hit]:
    """A rule value that is not an address or CIDR range, or an IPv6 range among ipRules (IPv4 only) or an
    IPv4 one among ipv6Rules, does not admit what its author meant; Azure refuses such a rule when it is
    written, so finding one means the document was edited or produced elsewhere.
    """

    def hits() -> Iterator[Hit]:
        for field_name, version, ip_rule in _all_ip_rules(facts.posture):
            network = ip_rule.value.network
            if network is None:
                problem = "is not an address or CIDR range"
            elif network.version != version:
                problem = f"is IPv{network.version}, but {field_name} takes IPv{version} only"
            else:
                continue
            yield Hit(
                summary=f"IP rule {ip_rule.raw!r} in networkAcls.{field_name} {problem}",
                subject=ip_rule.raw,
                evidence={"ip_rule": ip_rule.raw, "field": field_name},
            )

    yield from dead_under_perimeter(_exposure(facts), hits())


@rule(
    id="ST005",
    severity=Severity.LOW,
    title="IP rule covers a private or reserved range and admits nothing",
    source=EvidenceSource.CONFIGURATION,
    category=RuleCategory.CONFIGURATION,
    service=Service.STORAGE,
    remediation_cli=f"{_NETWORK_RULE_REMOVE} --ip-address {{subject}}",
    remediation_bicep=(
        "// Reach the account from the VNet with a virtual network rule or a private endpoint\n"
        "networkAcls: {\n"
        "  defaultAction: 'Deny'\n"
        "  virtualNetworkRules: [ { id: appSubnet.id, action: 'Allow' } ]\n"
        "}"
    ),
    references=(IP_RULES, NETWORK_LIMITATIONS, VIRTUAL_NETWORKS),
)
def ip_rule_reserved_range(facts: StorageFacts) -> Iterator[Hit]:
    """Storage IP rules take public internet addresses only: Azure refuses ranges reserved for private
    networks (RFC 1918), and traffic from private, shared (100.64.0.0/10), loopback or link-local space
    reaches an account only through a service endpoint or private endpoint, which IP rules do not
    govern. Such a rule admits nothing and suggests access that does not exist.
    """

    def hits() -> Iterator[Hit]:
        for ip_rule, network in _parsed_rules(facts.posture):
            reserved = reserved_range_of(network)
            if reserved is not None and network.prefixlen > 0:
                yield Hit(
                    summary=(
                        f"IP rule {ip_rule.raw} lies in reserved range {reserved}: Storage IP rules take "
                        "public addresses only, so it admits nothing"
                    ),
                    subject=ip_rule.raw,
                    evidence={
                        "ip_rule": ip_rule.raw,
                        "network": str(network),
                        "reserved_range": str(reserved),
                    },
                )

    yield from dead_under_perimeter(_exposure(facts), hits())


@rule(
    id="ST006",
    severity=Severity.LOW,
    title="IP rule uses a /31 or /32 prefix, which Storage does not support",
    source=EvidenceSource.CONFIGURATION,
    category=RuleCategory.CONFIGURATION,
    service=Service.STORAGE,
    remediation_cli=(
        f"{_NETWORK_RULE_REMOVE} --ip-address {{subject}}  # then add each address alone: "
        "az storage account network-rule add --account-name {name} --resource-group {resource_group} "
        "--ip-address <address>"
    ),
    remediation_bicep="networkAcls: {\n  ipRules: [ { value: '203.0.113.7', action: 'Allow' } ] // no /32\n}",
    references=(IP_RULES, NETWORK_LIMITATIONS),
)
def ip_rule_small_prefix(facts: StorageFacts) -> Iterator[Hit]:
    """Small address ranges with /31 or /32 prefixes are not supported in Storage IP rules: a single
    address is written without a prefix, and a /31 as its two addresses. Azure refuses such a rule when
    it is written, so one in the document was produced elsewhere, and what it admits is not what its
    author meant.
    """

    def hits() -> Iterator[Hit]:
        for field_name, _, ip_rule in _all_ip_rules(facts.posture):
            network = ip_rule.value.network
            if network is None or network.version != 4 or "/" not in ip_rule.raw:
                continue
            if network.prefixlen in (31, 32):
                yield Hit(
                    summary=(
                        f"IP rule {ip_rule.raw} in networkAcls.{field_name} has a /{network.prefixlen} prefix: "
                        "write its address(es) without a prefix"
                    ),
                    subject=ip_rule.raw,
                    evidence={"ip_rule": ip_rule.raw, "prefix_length": network.prefixlen},
                )

    yield from dead_under_perimeter(_exposure(facts), hits())


@rule(
    id="ST007",
    severity=Severity.MEDIUM,
    title="Virtual network rule is not in force",
    source=EvidenceSource.CONFIGURATION,
    category=RuleCategory.CONFIGURATION,
    service=Service.STORAGE,
    remediation_cli=(
        f"{_NETWORK_RULE_REMOVE} --subnet {{subject}} && az storage account network-rule add --account-name "
        "{name} --resource-group {resource_group} --subnet <the subnet's id now>"
    ),
    remediation_bicep=(
        "networkAcls: {\n"
        "  virtualNetworkRules: [ { id: appSubnet.id, action: 'Allow' } ] // the subnet as it exists now\n"
        "}\n"
        "// and on the subnet: serviceEndpoints: [ { service: 'Microsoft.Storage' } ]"
    ),
    references=(VIRTUAL_NETWORKS, CLI_NETWORK_RULE),
)
def virtual_network_rule_not_succeeded(facts: StorageFacts) -> Iterator[Hit]:
    """A virtual network rule admits its subnet only in state Succeeded. NetworkSourceDeleted means the
    subnet (or its VNet) was deleted: a new subnet created with the same name gets no access through the
    old rule, so the workload that was moved there is refused (or falls back to a broad IP rule) while
    the configuration still looks right. Failed rules never took effect; Provisioning and
    Deprovisioning ones are on their way (low).
    """

    def hits() -> Iterator[Hit]:
        for subnet_rule in facts.posture.virtual_network_rules:
            state = subnet_rule.state
            if state is None or state is VirtualNetworkRuleState.SUCCEEDED:
                continue
            broken = state in _BROKEN_SUBNET_STATES
            yield Hit(
                summary=(
                    f"virtual network rule for {subnet_rule.subnet_id} is {state.value}"
                    + (
                        ": the subnet was deleted; a subnet of the same name gets no access through this rule"
                        if state is VirtualNetworkRuleState.NETWORK_SOURCE_DELETED
                        else ": it admits nothing"
                        if broken
                        else ": not yet (or no longer) in force"
                    )
                ),
                subject=subnet_rule.subnet_id,
                evidence={"subnet_id": subnet_rule.subnet_id, "state": state.value},
                severity=None if broken else Severity.LOW,
            )

    yield from dead_under_perimeter(_exposure(facts), hits())


def _bypass_text(bypass: frozenset[StorageBypass]) -> str:
    return ", ".join(member.value for member in StorageBypass if member in bypass)


@rule(
    id="ST008",
    severity=Severity.LOW,
    title="Firewall bypass differs from the baseline",
    source=EvidenceSource.CONFIGURATION,
    category=RuleCategory.BASELINE,
    service=Service.STORAGE,
    remediation_cli=f"{_UPDATE} --bypass AzureServices Logging Metrics  # or None: as the baseline states",
    remediation_bicep="networkAcls: {\n  bypass: 'AzureServices' // or 'Logging, Metrics', 'None': as the baseline states\n}",
    references=(TRUSTED_SERVICES, NETWORK_SECURITY, CLI_ACCOUNT),
    baseline_keys=("bypass",),
)
def bypass_differs(facts: StorageFacts) -> Iterator[Hit]:
    """networkAcls.bypass names who passes the firewall without a rule: AzureServices lets Microsoft's
    trusted services in (they still need authorisation), Logging and Metrics let anyone read the
    account's classic logs and metrics. When the baseline states the set, a different one is an
    unreviewed change of who passes the firewall.
    """
    expected = facts.policy.storage_bypass
    actual = facts.posture.bypass
    if (
        expected is None
        or expected == actual
        or facts.posture.could_not_read("properties.networkAcls.bypass")
    ):
        return
    yield Hit(
        summary=f"networkAcls.bypass is {_bypass_text(actual)}, the baseline expects {_bypass_text(expected)}",
        evidence={"expected": _bypass_text(expected), "actual": _bypass_text(actual)},
    )


@rule(
    id="ST009",
    severity=Severity.MEDIUM,
    title="Private endpoint exists but public access is not disabled",
    source=EvidenceSource.CONFIGURATION,
    category=RuleCategory.CONFIGURATION,
    exposure=Exposure.CLAIMED,
    service=Service.STORAGE,
    remediation_cli=f"{_UPDATE} --public-network-access Disabled",
    remediation_bicep="properties: {\n  publicNetworkAccess: 'Disabled'\n}",
    references=(PRIVATE_ENDPOINTS, NETWORK_SECURITY, CLI_ACCOUNT),
)
def private_endpoint_not_enforced(facts: StorageFacts) -> Iterator[Hit]:
    """An approved private endpoint gives the VNet a private path to one sub-resource, but as long as
    publicNetworkAccess is not Disabled every public endpoint keeps answering as well: the private link
    adds a path without removing one, and with the firewall admitting everyone (ST001) the account is
    fully public despite it. Only working connections count (Approved, provisioning not Failed).
    """
    posture = facts.posture
    working = [c.id for c in posture.private_endpoint_connections if c.working]
    exposure = _exposure(facts)
    if not working or exposure.inbound in (InboundSet.CLOSED, InboundSet.UNKNOWN):
        return
    if exposure.perimeter_in_force:
        tail = f"{exposure.reason}" + (": the public path is open to the public" if exposure.public else "")
    elif _publicly_open(posture):
        tail = f"{_open_reason(posture)}: the public path admits everyone"
    else:
        tail = f"{_access_text(posture)}; the public path stays open to the firewall's rules"
    yield Hit(
        summary=f"{len(working)} approved private endpoint connection(s), but {tail}",
        evidence={
            **_open_evidence(posture),
            "approved_connections": working,
            **perimeter_evidence(posture, exposure),
        },
        severity=Severity.HIGH if exposure.public else None,
    )


@rule(
    id="ST010",
    severity=Severity.MEDIUM,
    title="Private endpoint connection is not healthy",
    source=EvidenceSource.CONFIGURATION,
    category=RuleCategory.CONFIGURATION,
    service=Service.STORAGE,
    remediation_cli='az network private-endpoint-connection approve --id {subject} --description "Approved after review"',
    remediation_bicep=(
        "resource pec 'Microsoft.Storage/storageAccounts/privateEndpointConnections@2025-06-01' = {\n"
        "  parent: account\n"
        "  name: connectionName\n"
        "  properties: {\n"
        "    privateLinkServiceConnectionState: { status: 'Approved', description: 'reviewed' }\n"
        "  }\n"
        "}"
    ),
    references=(PRIVATE_ENDPOINTS, CLI_PRIVATE_ENDPOINT_CONNECTION),
)
def private_endpoint_unhealthy(facts: StorageFacts) -> Iterator[Hit]:
    """A connection that is Pending, Rejected or Disconnected, or whose provisioning failed, carries no
    traffic: clients whose DNS points at that endpoint fail, or fall back to the public endpoint of the
    sub-resource. Approve a Pending connection that is expected; delete and recreate a Rejected or
    Disconnected one.
    """
    for item in facts.posture.private_endpoint_connections:
        connection = item.connection
        status = (connection.status or "").lower()
        failed = (connection.provisioning_state or "").lower() == "failed"
        if status not in _UNHEALTHY_STATUSES and not failed:
            continue
        problems = []
        if status in _UNHEALTHY_STATUSES:
            problems.append(f"status {connection.status}")
        if failed:
            problems.append("provisioningState Failed")
        serves = f" ({item.subresource.value})" if item.subresource else ""
        yield Hit(
            summary=(
                f"private endpoint connection {connection.id.rsplit('/', 1)[-1]}{serves} has "
                f"{' and '.join(problems)}: clients using it cannot reach the account privately"
            ),
            subject=connection.id,
            evidence={
                "connection_id": connection.id,
                "private_endpoint_id": connection.private_endpoint_id,
                "status": connection.status,
                "provisioning_state": connection.provisioning_state,
                "subresource": item.subresource.value if item.subresource else None,
            },
        )


def _in_use(facts: StorageFacts) -> tuple[StorageSubresource, ...]:
    """The sub-resources workloads use: the baseline's ``subresources``, else every primary endpoint."""
    return facts.policy.subresources or tuple(facts.posture.primary_endpoints)


def _uncovered(facts: StorageFacts) -> list[StorageSubresource]:
    served = {c.subresource for c in facts.posture.private_endpoint_connections if c.working}
    return [sub for sub in _in_use(facts) if sub not in served]


def _connections_unread(facts: StorageFacts) -> bool:
    """The connections, or the endpoints that say what is in use, could not be read: no verdict."""
    return facts.posture.could_not_read("properties.privateEndpointConnections") or (
        not facts.policy.subresources and facts.posture.could_not_read("properties.primaryEndpoints")
    )


def _unnamed_working(facts: StorageFacts) -> list[str]:
    return [c.id for c in facts.posture.private_endpoint_connections if c.working and c.subresource is None]


@rule(
    id="ST011",
    severity=Severity.HIGH,
    title="Baseline expects private link but a sub-resource in use has no approved endpoint",
    source=EvidenceSource.CONFIGURATION,
    category=RuleCategory.BASELINE,
    service=Service.STORAGE,
    remediation_cli=(
        "az network private-endpoint create --name pe-{name}-{subject} --resource-group {resource_group} "
        "--vnet-name <vnet> --subnet <subnet> --connection-name pe-{name}-{subject} --group-id {subject} "
        f"--private-connection-resource-id {ACCOUNT_ID}"
    ),
    remediation_bicep=(
        "resource pe 'Microsoft.Network/privateEndpoints@2023-11-01' = {\n"
        "  name: 'pe-${account.name}-dfs'\n"
        "  location: location\n"
        "  properties: {\n"
        "    subnet: { id: privateLinkSubnet.id }\n"
        "    privateLinkServiceConnections: [\n"
        "      { name: 'dfs', properties: { privateLinkServiceId: account.id, groupIds: [ 'dfs' ] } }\n"
        "    ]\n"
        "  }\n"
        "}\n"
        "// one endpoint per sub-resource (blob, dfs, file, queue, table, web), each with its\n"
        "// privatelink.<sub>.core.windows.net zone linked to the VNet"
    ),
    references=(PRIVATE_ENDPOINTS, CLI_PRIVATE_ENDPOINT),
    baseline_keys=("mode", "subresources"),
)
def subresource_without_private_endpoint(facts: StorageFacts) -> Iterator[Hit]:
    """A storage private endpoint serves one sub-resource: an endpoint for blob does not make dfs, file,
    queue, table or web private, and Azure Data Lake Storage Gen2 needs both blob and dfs. The baseline
    says this account is reached through private endpoints; a sub-resource in use (the baseline's
    subresources, else every endpoint the account lists in primaryEndpoints) without a working one is
    either reached over its public endpoint (high) or, with public access closed, not reachable at all.
    Only sub-resources proven uncovered are reported: connections whose sub-resource the document does
    not name leave the question open (ST018).
    """
    if facts.policy.mode != Mode.PRIVATE_LINK or _unnamed_working(facts) or _connections_unread(facts):
        return
    posture = facts.posture
    exposure = _exposure(facts)
    public_path = exposure.inbound not in (InboundSet.CLOSED, InboundSet.UNKNOWN)
    for subresource in _uncovered(facts):
        url = posture.primary_endpoints.get(subresource)
        where = f" ({url})" if url else ""
        consequence = (
            "its clients reach it over the public endpoint"
            if public_path
            else "with public access closed its clients cannot reach it at all"
        )
        yield Hit(
            summary=(
                f"baseline entry {facts.policy.entry!r} expects private-link; the {subresource.value} "
                f"endpoint{where} has no approved private endpoint: {consequence}"
            ),
            subject=subresource.value,
            evidence={
                "entry": facts.policy.entry,
                "subresource": subresource.value,
                "endpoint": url,
                "served": sorted(
                    c.subresource.value
                    for c in posture.private_endpoint_connections
                    if c.working and c.subresource is not None
                ),
                "public_path": public_path,
            },
            severity=None if public_path else Severity.MEDIUM,
        )


@rule(
    id="ST012",
    severity=Severity.LOW,
    title="Trusted-service access or resource instance rules survive publicNetworkAccess Disabled",
    source=EvidenceSource.CONFIGURATION,
    category=RuleCategory.CONFIGURATION,
    service=Service.STORAGE,
    remediation_cli=(
        f"{_UPDATE} --bypass None  # trusted services; a resource instance rule: {_NETWORK_RULE_REMOVE} "
        "--resource-id {subject} --tenant-id <tenant>"
    ),
    remediation_bicep=(
        "properties: {\n"
        "  publicNetworkAccess: 'Disabled'\n"
        "  networkAcls: { defaultAction: 'Deny', bypass: 'None', resourceAccessRules: [] }\n"
        "}"
    ),
    references=(TRUSTED_SERVICES, RESOURCE_INSTANCES, NETWORK_LIMITATIONS),
)
def exceptions_survive_disabled(facts: StorageFacts) -> Iterator[Hit]:
    """publicNetworkAccess Disabled reads as "private endpoints only", but for Storage the trusted-service
    exception (bypass AzureServices) and resource instance rules stay in effect: Microsoft's trusted
    services, and the named resources' managed identities, still reach the account over its public
    endpoints. That may be intended (backup, a Synapse workspace); the finding says who is still let in.
    """
    posture = facts.posture
    if posture.public_network_access is not PublicNetworkAccess.DISABLED:
        return
    if posture.could_not_read("properties.networkAcls"):
        return
    exposure = _exposure(facts)
    if exposure.inbound is not InboundSet.CLOSED:
        return  # a perimeter decides (or the exposure is unknown): the perimeter rules' business
    if exposure.trusted_bypass_applies:
        yield Hit(
            summary="publicNetworkAccess is Disabled, but bypass AzureServices still lets Microsoft's trusted services in",
            subject="AzureServices",
            evidence={"bypass": _bypass_text(posture.bypass)},
        )
    for access_rule in posture.resource_access_rules:
        yield Hit(
            summary=(
                f"publicNetworkAccess is Disabled, but resource instance rule {access_rule.resource_id} "
                f"(tenant {access_rule.tenant_id or 'unstated'}) still lets that resource in"
            ),
            subject=access_rule.resource_id,
            evidence={"resource_id": access_rule.resource_id, "tenant_id": access_rule.tenant_id},
        )


@rule(
    id="ST013",
    severity=Severity.MEDIUM,
    title="Anonymous blob access is allowed",
    source=EvidenceSource.CONFIGURATION,
    category=RuleCategory.CONFIGURATION,
    service=Service.STORAGE,
    remediation_cli=f"{_UPDATE} --allow-blob-public-access false",
    remediation_bicep="properties: {\n  allowBlobPublicAccess: false\n}",
    references=(ANONYMOUS_ACCESS, CLI_ACCOUNT, BICEP_ACCOUNTS),
)
def anonymous_blob_access(facts: StorageFacts) -> Iterator[Hit]:
    """allowBlobPublicAccess true lets anyone with a container's or blob's URL read it without credentials
    once the container is set to public access: one property change on a container away from a data
    leak, and no key or token to revoke. When the account's network path is also open to everyone
    (ST001) nothing else stands in the way (high).
    """
    posture = facts.posture
    if not posture.blob_public_access_allowed or posture.could_not_read("properties.allowBlobPublicAccess"):
        return
    exposure = _exposure(facts)
    yield Hit(
        summary=(
            "allowBlobPublicAccess is true: a container set to public access is readable without credentials"
            + (" from any address on the internet" if exposure.public else "")
        ),
        evidence={"allow_blob_public_access": True, "open_to_public": exposure.public},
        severity=Severity.HIGH if exposure.public else None,
    )


@rule(
    id="ST014",
    severity=Severity.MEDIUM,
    title="Shared-key access is allowed where the baseline forbids it",
    source=EvidenceSource.CONFIGURATION,
    category=RuleCategory.BASELINE,
    service=Service.STORAGE,
    remediation_cli=f"{_UPDATE} --allow-shared-key-access false",
    remediation_bicep="properties: {\n  allowSharedKeyAccess: false\n}",
    references=(SHARED_KEY, CLI_ACCOUNT, BICEP_ACCOUNTS),
    baseline_keys=("allow_shared_key_access",),
)
def shared_key_allowed(facts: StorageFacts) -> Iterator[Hit]:
    """Shared-key authorisation (the account keys, and the SAS tokens signed with them) is a credential
    that is not tied to an identity, not logged with one, and valid until the key is rotated. The
    baseline forbids it for this account: allowSharedKeyAccess true, or absent (Azure reads absent as
    true), leaves it on.
    """
    posture = facts.posture
    if facts.policy.allow_shared_key_access is not False or not posture.shared_key_allowed:
        return
    if posture.could_not_read("properties.allowSharedKeyAccess"):
        return
    shown = "absent (Azure reads it as true)" if posture.allow_shared_key_access is None else "true"
    yield Hit(
        summary=f"allowSharedKeyAccess is {shown}; the baseline entry {facts.policy.entry!r} forbids shared-key access",
        evidence={"allow_shared_key_access": posture.allow_shared_key_access, "entry": facts.policy.entry},
    )


@rule(
    id="ST015",
    severity=Severity.MEDIUM,
    title="TLS below 1.2 or unencrypted HTTP is accepted",
    source=EvidenceSource.CONFIGURATION,
    category=RuleCategory.CONFIGURATION,
    service=Service.STORAGE,
    remediation_cli=f"{_UPDATE} --min-tls-version TLS1_2 --https-only true",
    remediation_bicep="properties: {\n  minimumTlsVersion: 'TLS1_2'\n  supportsHttpsTrafficOnly: true\n}",
    references=(MINIMUM_TLS, SECURE_TRANSFER, CLI_ACCOUNT),
)
def weak_transport(facts: StorageFacts) -> Iterator[Hit]:
    """A minimumTlsVersion below TLS1_2 (absent reads as TLS 1.0) accepts protocol versions with known
    weaknesses, and supportsHttpsTrafficOnly false accepts plain HTTP, in which a SAS token or the data
    itself crosses the network readable by anyone on the path.
    """
    posture = facts.posture
    if not posture.could_not_read("properties.minimumTlsVersion") and (
        posture.effective_minimum_tls.rank < TlsVersion.TLS1_2.rank
    ):
        shown = (
            "absent (Azure reads it as TLS1_0)"
            if posture.minimum_tls_version is None
            else posture.effective_minimum_tls.value
        )
        yield Hit(
            summary=f"minimumTlsVersion is {shown}: requests over TLS below 1.2 are accepted",
            subject="minimumTlsVersion",
            evidence={"minimum_tls_version": posture.minimum_tls_version},
        )
    if not posture.could_not_read("properties.supportsHttpsTrafficOnly") and not posture.https_only:
        yield Hit(
            summary="supportsHttpsTrafficOnly is false: requests over plain HTTP are accepted",
            subject="supportsHttpsTrafficOnly",
            evidence={"supports_https_traffic_only": False},
        )


@rule(
    id="ST016",
    severity=Severity.MEDIUM,
    title="Network configuration differs from the baseline",
    source=EvidenceSource.CONFIGURATION,
    category=RuleCategory.BASELINE,
    service=Service.STORAGE,
    remediation_cli=(
        f"{_UPDATE} --default-action <expected> --public-network-access <expected>  "
        "# subnets and IP ranges: az storage account network-rule add|remove --account-name {name} "
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
    references=(NETWORK_SECURITY, CLI_ACCOUNT, CLI_NETWORK_RULE),
    baseline_keys=(
        "expect.default_action",
        "expect.public_network_access",
        "allowed_subnets",
        "allowed_ip_ranges",
        "drift_severity",
    ),
)
def baseline_drift(facts: StorageFacts) -> Iterator[Hit]:
    """The baseline states the expected default action, public network access, allowed subnets and allowed
    IP ranges (IPv4 and IPv6 rules together). A difference is either an unreviewed change or a baseline
    out of date; both need a decision. Bypass differences are ST008's. The severity comes from the
    baseline entry's drift_severity.
    """
    posture, policy = facts.posture, facts.policy
    severity = policy.drift_severity
    for field_name, path, expected, actual in (
        (
            "default_action",
            "properties.networkAcls.defaultAction",
            policy.default_action,
            posture.default_action,
        ),
        (
            "public_network_access",
            "properties.publicNetworkAccess",
            policy.public_network_access,
            posture.public_network_access,
        ),
    ):
        if expected is None or posture.could_not_read(path) or expected.lower() == actual.value.lower():
            continue
        yield Hit(
            summary=f"{field_name} is {actual.value}, the baseline expects {expected}",
            subject=field_name,
            evidence={"field": field_name, "expected": expected, "actual": actual.value},
            severity=severity,
        )
    if policy.allowed_subnets and not posture.could_not_read("properties.networkAcls.virtualNetworkRules"):
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
    if policy.allowed_ip_ranges and not posture.could_not_read("properties.networkAcls.ipRules"):
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
    id="ST017",
    severity=Severity.INFO,
    title="Storage account is covered by no baseline entry",
    source=EvidenceSource.CONFIGURATION,
    category=RuleCategory.BASELINE,
    service=Service.STORAGE,
    remediation_cli=(
        "# add an entry with 'service: storage' to the baseline matching {name} (name glob, resource id or "
        'tag), or one matching name "*" last'
    ),
    remediation_bicep="// not a resource change: extend the baseline YAML",
    references=(NETWORK_SECURITY,),
    baseline_keys=("entries",),
)
def no_baseline_entry(facts: StorageFacts) -> Iterator[Hit]:
    """A baseline was given but no storage entry matches this account (the baseline's defaults are Key
    Vault's), so nothing states what its exposure should be: the baseline-driven rules cannot judge it.
    """
    if facts.policy.baseline_given and facts.policy.entry is None:
        yield Hit(
            summary="no baseline entry with 'service: storage' matches this account",
            evidence={"account": facts.posture.name, "tags": dict(facts.posture.tags)},
        )


@rule(
    id="ST018",
    severity=Severity.LOW,
    title="Private endpoint connections name no sub-resource: the private link expectation is unjudged",
    source=EvidenceSource.CONFIGURATION,
    category=RuleCategory.BASELINE,
    service=Service.STORAGE,
    remediation_cli=(
        "az network private-endpoint show --ids <private endpoint id> "
        '--query "privateLinkServiceConnections[].groupIds"  # for each connection of {name}'
    ),
    remediation_bicep="// not a resource change: kvmon reads the sub-resource from each private endpoint",
    references=(PRIVATE_ENDPOINTS,),
    baseline_keys=("mode", "subresources"),
)
def subresources_unknown(facts: StorageFacts) -> Iterator[Hit]:
    """The account's document lists its private endpoint connections but not the sub-resource each
    endpoint serves (Azure keeps it on the private endpoint, privateLinkServiceConnections[].groupIds).
    Until it is read there, kvmon cannot tell which of the sub-resources in use are private, so ST011
    does not judge them: this says so rather than guessing either way.
    """
    if facts.policy.mode != Mode.PRIVATE_LINK or _connections_unread(facts):
        return
    unnamed = _unnamed_working(facts)
    undecided = _uncovered(facts)
    if unnamed and undecided:
        yield Hit(
            summary=(
                f"{len(unnamed)} working private endpoint connection(s) name no sub-resource: whether "
                f"{', '.join(sub.value for sub in undecided)} have a private endpoint is unknown"
            ),
            evidence={"connections": unnamed, "undecided": [sub.value for sub in undecided]},
        )


RULES: tuple[Rule[StorageFacts], ...] = (
    public_network_open,
    service_endpoint_without_deny,
    ip_rule_too_broad,
    ip_rule_unparsable,
    ip_rule_reserved_range,
    ip_rule_small_prefix,
    virtual_network_rule_not_succeeded,
    bypass_differs,
    private_endpoint_not_enforced,
    private_endpoint_unhealthy,
    subresource_without_private_endpoint,
    exceptions_survive_disabled,
    anonymous_blob_access,
    shared_key_allowed,
    weak_transport,
    baseline_drift,
    no_baseline_entry,
    subresources_unknown,
)
