"""The storage log rules ST2xx: read the storage services' access-log evidence (``facts.evidence``,
``StorageLogEvidence`` from StorageBlobLogs, StorageFileLogs, StorageQueueLogs and StorageTableLogs).

Key Vault's KV201-KV204 for accounts. Addresses were classified private or public by the reader with
the one shared ``AddressSpace`` (the port Storage writes after the address stripped by the query);
these checks only read that classification, and an empty caller address is never judged public.

What is documented, and what is not, about what Storage logs (the rationales rely on it):

- Documented: the tables' columns (Azure Monitor's table reference: ``CallerIpAddress`` "including the
  port number", ``StatusCode`` a string that "might be set to Unknown", ``StatusText`` "the status of
  the requested operation", with no list of values). The classic Storage Analytics log has its own
  status messages (Success, SASSuccess, ThrottlingError, ClientOtherError, ...: "Storage Analytics
  logged operations and status messages"). Azure Monitor's sample queries for StorageBlobLogs filter
  ``StatusText contains "ServerBusy"``, a REST error code: the resource logs' StatusText holds the
  response's error code, not those messages, though no page says so in words.
- Observed, not documented as such: a request the network rules refuse is answered 403 with
  ``x-ms-error-code: AuthorizationFailure`` (AZURE-NOTES.md), one the network admits but RBAC refuses
  403 ``AuthorizationPermissionMismatch``; kvmon reads the same words in ``StatusText``
  (``monitor.sources.storage.kql`` derives the outcome). No page found (the table references, the
  status messages, the Blob service error codes, Storage's network security pages) says that
  ``AuthorizationFailure`` has no other cause, or that every request the network refuses is logged
  (anonymous ones in particular).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator

from monitor.config.policy import Mode
from monitor.judge.perimeter import perimeter_may_govern
from monitor.judge.rules.access_logs import (
    Caller,
    admitted_public_hits,
    allowed_by_baseline,
    by_address,
    iso,
    private_path_identity_hits,
    public,
    window,
)
from monitor.judge.rules.base import Hit, Rule, RuleCategory, StorageFacts, rule
from monitor.judge.rules.storage.config import (
    ACCOUNT_ID,
    NETWORK_SECURITY,
    PRIVATE_ENDPOINTS,
    VIRTUAL_NETWORKS,
)
from monitor.model import EvidenceSource, Outcome, Service, Severity
from monitor.model_storage import STORAGE_LOG_TABLES, StorageRequestActivity

_LEARN = "https://learn.microsoft.com/en-us/azure"
MONITOR_BLOB_STORAGE = f"{_LEARN}/storage/blobs/monitor-blob-storage"
STORAGE_BLOB_LOGS = f"{_LEARN}/azure-monitor/reference/tables/storagebloblogs"
SAMPLE_QUERIES = f"{_LEARN}/azure-monitor/reference/queries/storagebloblogs"
STATUS_MESSAGES = "https://learn.microsoft.com/en-us/rest/api/storageservices/storage-analytics-logged-operations-and-status-messages"
BLOB_ERROR_CODES = "https://learn.microsoft.com/en-us/rest/api/storageservices/blob-service-error-codes"
DIAGNOSTIC_SETTINGS = f"{_LEARN}/azure-monitor/essentials/diagnostic-settings"

_AUTH_TYPES = "authentication_types"


def _by_address(activity: Iterable[StorageRequestActivity]) -> list[Caller]:
    return by_address(activity, lambda a: a.authentication_type)


def _tables(activity: Iterable[StorageRequestActivity]) -> list[str]:
    return sorted({a.source_table for a in activity})


@rule(
    id="ST201",
    severity=Severity.HIGH,
    title="Requests admitted from a public address the baseline does not allow",
    source=EvidenceSource.LOGS,
    category=RuleCategory.LOGS,
    service=Service.STORAGE,
    remediation_cli=(
        "az storage account update --name {name} --resource-group {resource_group} --default-action Deny  "
        "# and remove any IP rule that admits {subject}: az storage account network-rule remove "
        "--account-name {name} --resource-group {resource_group} --ip-address <rule>"
    ),
    remediation_bicep=(
        "properties: {\n"
        "  networkAcls: {\n"
        "    defaultAction: 'Deny'\n"
        "    ipRules: [ /* only the baseline's allowed_ip_ranges */ ]\n"
        "  }\n"
        "}"
    ),
    references=(MONITOR_BLOB_STORAGE, STORAGE_BLOB_LOGS, NETWORK_SECURITY),
    baseline_keys=("mode", "allowed_ip_ranges"),
)
def admitted_public_not_allowed(facts: StorageFacts) -> Iterator[Hit]:
    """The storage logs show what really got in. A public address the baseline does not list reached one of
    the account's services and was admitted by the network (a success, a 404, or a 403
    AuthorizationPermissionMismatch: RBAC refused what the network let through): the firewall is open
    (defaultAction Allow) or an IP rule is broader than intended. Storage logs no trusted-service or
    resource-instance marker, so such callers count by their address; an account whose baseline mode is
    'public' is exempt.
    """
    evidence, policy = facts.evidence, facts.policy
    if evidence is None or policy.mode == Mode.PUBLIC:
        return
    admitted = [
        a
        for a in evidence.activity
        if a.outcome is Outcome.ADMITTED and public(a) and not allowed_by_baseline(a.caller_address, policy)
    ]
    yield from admitted_public_hits(
        admitted,
        evidence=evidence,
        policy=policy,
        callers_of=_by_address,
        kinds_key=_AUTH_TYPES,
        extra=lambda mine: {"tables": _tables(mine)},
    )


@rule(
    id="ST202",
    severity=Severity.MEDIUM,
    title="Many requests from one address refused by the network rules",
    source=EvidenceSource.LOGS,
    category=RuleCategory.LOGS,
    service=Service.STORAGE,
    remediation_cli=(
        "# find the client at {subject}: if it is a legitimate workload, route it through an allowed "
        "subnet or the account's private endpoint (az network vnet subnet update --service-endpoints "
        "Microsoft.Storage ... / az network private-dns link vnet create ...); if not, no change to {name} "
        "is needed beyond keeping defaultAction Deny"
    ),
    remediation_bicep="// no account change: fix the client's network path (subnet service endpoint or private DNS zone link)",
    references=(MONITOR_BLOB_STORAGE, SAMPLE_QUERIES, STATUS_MESSAGES, BLOB_ERROR_CODES, NETWORK_SECURITY),
    baseline_keys=("logs.refused_threshold",),
)
def refused_by_network(facts: StorageFacts) -> Iterator[Hit]:
    """Repeated refusals from one caller address in the window mean a client that should reach the account
    is configured wrongly (wrong route, missing service endpoint or private DNS link) or someone is probing
    it. A refusal is a 403 whose StatusText is AuthorizationFailure, the code Storage answers a caller its
    network rules refuse with. That reading is observed, not documented: Microsoft's table reference lists
    no StatusText values (its sample queries match error codes such as ServerBusy in it), its list of
    error codes describes AuthorizationFailure only as "This request is not authorized to perform this
    operation", and no page found says it has no other cause or that every refused request is logged
    (anonymous ones may not be). Other 403s (AuthenticationFailed, KeyBasedAuthenticationNotPermitted)
    are not counted. The threshold is configurable (KVMON_REFUSED_THRESHOLD).
    """
    evidence = facts.evidence
    if evidence is None:
        return
    threshold = facts.logs_refused_threshold
    refused = [a for a in evidence.activity if a.outcome is Outcome.REFUSED_FIREWALL and a.caller_address]
    for caller in _by_address(refused):
        if caller.requests >= threshold:
            kind = "private" if caller.private else "public"
            texts = Counter[str]()
            for a in refused:
                if a.caller_address == caller.address:
                    texts[a.status_text or "(none)"] += a.count
            yield Hit(
                summary=(
                    f"{caller.requests} request(s) from {kind} address {caller.address} were refused by the "
                    f"network rules (threshold {threshold}): a misconfigured client or someone knocking"
                ),
                subject=caller.address,
                evidence={
                    **caller.evidence(_AUTH_TYPES),
                    **window(evidence),
                    "status_texts": dict(sorted(texts.items())),
                    "threshold": threshold,
                },
            )


@rule(
    id="ST203",
    severity=Severity.HIGH,
    title="An identity that must use a private path reached the account from a public address",
    source=EvidenceSource.LOGS,
    category=RuleCategory.LOGS,
    service=Service.STORAGE,
    remediation_cli=(
        "# the workload of {subject} leaves through a public address: enable the service endpoint on its "
        "subnet (az network vnet subnet update --resource-group <rg> --vnet-name <vnet> --name <subnet> "
        "--service-endpoints Microsoft.Storage) or link privatelink.<sub-resource>.core.windows.net to its "
        "VNet (az network private-dns link vnet create --resource-group <rg> --zone-name "
        "privatelink.blob.core.windows.net --name <link> --virtual-network <vnet> --registration-enabled false)"
    ),
    remediation_bicep=(
        "resource link 'Microsoft.Network/privateDnsZones/virtualNetworkLinks@2020-06-01' = {\n"
        "  parent: privateLinkZone // privatelink.<sub-resource>.core.windows.net\n"
        "  name: 'link-${vnet.name}'\n"
        "  location: 'global'\n"
        "  properties: { virtualNetwork: { id: vnet.id }, registrationEnabled: false }\n"
        "}"
    ),
    references=(VIRTUAL_NETWORKS, PRIVATE_ENDPOINTS, MONITOR_BLOB_STORAGE),
    baseline_keys=("private_path_identities",),
)
def private_path_identity_from_public(facts: StorageFacts) -> Iterator[Hit]:
    """The baseline names identities (app or object ids: the OAuth token's RequesterAppId and
    RequesterObjectId) whose traffic must arrive through a service endpoint or private endpoint. Seen from a
    public address, the workload's route or its private DNS zone for that sub-resource is missing (a private
    endpoint serves one sub-resource: blob's does not carry dfs or queue): its traffic crosses the internet,
    and it works only while the firewall is open. Requests by account key or SAS name no identity and are
    not judged here.
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
        extra=lambda seen: {"tables": _tables(seen)},
    )


@rule(
    id="ST204",
    severity=Severity.MEDIUM,
    title="No storage access-log rows although a workspace is configured",
    source=EvidenceSource.LOGS,
    category=RuleCategory.LOGS,
    service=Service.STORAGE,
    remediation_cli=(
        "az monitor diagnostic-settings create --name kvmon-storage --resource "
        f"{ACCOUNT_ID}/blobServices/default --workspace <workspace-resource-id> "
        '--logs \'[{{"category":"StorageRead","enabled":true}},{{"category":"StorageWrite","enabled":true}},'
        '{{"category":"StorageDelete","enabled":true}}]\'  # and the same on fileServices, queueServices, '
        "tableServices/default"
    ),
    remediation_bicep=(
        "resource blobLogs 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {\n"
        "  scope: blobService // and one each on the file, queue and table services\n"
        "  name: 'kvmon-storage'\n"
        "  properties: {\n"
        "    workspaceId: workspace.id\n"
        "    logs: [\n"
        "      { category: 'StorageRead', enabled: true }\n"
        "      { category: 'StorageWrite', enabled: true }\n"
        "      { category: 'StorageDelete', enabled: true }\n"
        "    ]\n"
        "  }\n"
        "}"
    ),
    references=(MONITOR_BLOB_STORAGE, DIAGNOSTIC_SETTINGS, STORAGE_BLOB_LOGS),
)
def no_rows(facts: StorageFacts) -> Iterator[Hit]:
    """An account that nobody calls still logs kvmon's own probes, so a window without a single row in any of
    the four tables means the audit trail is missing: a diagnostic setting belongs to each service
    (blobServices/default, fileServices, queueServices, tableServices), not to the account, and none sends
    here, or one sends elsewhere or without the StorageRead/Write/Delete categories. Without it the log rules
    see nothing. For an account a perimeter governs it can also mean the workspace sits outside the
    perimeter, whose resources log only to destinations inside it: no evidence, not no access. Never raised
    when the read was incomplete (throttled, failed or partial).
    """
    evidence = facts.evidence
    # Incomplete evidence cannot prove an absence: never conclude "no rows" from a failed read.
    if evidence is None or not evidence.complete or evidence.activity:
        return
    governed = perimeter_may_govern(facts.posture)
    yield Hit(
        summary=(
            f"no access-log rows ({', '.join(STORAGE_LOG_TABLES)}) for this account in workspace {evidence.workspace_id} "
            f"between {iso(evidence.window_start)} and {iso(evidence.window_end)}: no service's diagnostic "
            "setting sends here, or one is broken"
            + (
                "; a perimeter governs the account, so the workspace may sit outside it (its logs then never "
                "arrive): no evidence, not no access"
                if governed
                else ""
            )
        ),
        evidence={**window(evidence), "tables": list(STORAGE_LOG_TABLES), "perimeter_governed": governed},
    )


RULES: tuple[Rule[StorageFacts], ...] = (
    admitted_public_not_allowed,
    refused_by_network,
    private_path_identity_from_public,
    no_rows,
)
