"""Storage accounts' records: the second service beside Key Vault.

``StorageAccountPosture`` is a storage account's network and access configuration as ARM reports it
(``Microsoft.Storage/storageAccounts``, api-version 2025-06-01), with exactly the fields kvmon judges;
the fixed sets Azure defines are enums. It keeps ``VaultPosture``'s discipline: Azure's defaults are
applied by the normaliser (``monitor.sources.storage.normalise``) and documented on each field, what
could not be read is named in ``problems`` and, where a field holds a default nobody saw, in
``unread``; the Network Security Perimeter reading is the shared ``PerimeterReading``.

These records live beside ``monitor.model`` rather than in it: model.py holds what every stage shares
for every service, and each service's own configuration record sits in a module of its own, so the
next service of the series is one more module and Key Vault's records do not change. Pure: no I/O.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from monitor.model import (
    DnsStep,
    IpRule,
    Outcome,
    PerimeterReading,
    PrivateEndpointConnection,
    TlsStep,
    unread_covers,
)

STORAGE_ACCOUNT_TYPE = "Microsoft.Storage/storageAccounts"
# Azure's rule for a storage account's name: 3-24 characters, lower-case letters and digits only.
STORAGE_ACCOUNT_NAME = re.compile(r"[a-z0-9]{3,24}")


class PublicNetworkAccess(StrEnum):
    """``properties.publicNetworkAccess``. The values Azure writes keep Azure's spelling, so the
    shared perimeter table (``monitor.judge.perimeter``) reads them as it reads a vault's text."""

    ENABLED = "Enabled"
    DISABLED = "Disabled"
    SECURED_BY_PERIMETER = "SecuredByPerimeter"
    # Not in the document: the firewall (networkAcls) decides, as with Enabled.
    ABSENT = "absent"
    # A value kvmon does not know: its path is in ``unread`` and no rule judges the exposure.
    UNKNOWN = "unknown"


class DefaultAction(StrEnum):
    """``networkAcls.defaultAction``: what the firewall does with a caller no rule matches."""

    ALLOW = "Allow"
    DENY = "Deny"


class StorageBypass(StrEnum):
    """One member of ``networkAcls.bypass``, a comma-separated set ("Logging, Metrics")."""

    NONE = "None"
    LOGGING = "Logging"
    METRICS = "Metrics"
    AZURE_SERVICES = "AzureServices"


class RuleAction(StrEnum):
    """The action of an IP or virtual network rule; Azure knows only Allow."""

    ALLOW = "Allow"


class VirtualNetworkRuleState(StrEnum):
    """``virtualNetworkRules[].state``. NetworkSourceDeleted: the subnet was deleted; a new subnet of
    the same name gets no access through the old rule."""

    PROVISIONING = "Provisioning"
    DEPROVISIONING = "Deprovisioning"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    NETWORK_SOURCE_DELETED = "NetworkSourceDeleted"


class StorageSubresource(StrEnum):
    """A private endpoint's target sub-resource (its ``groupId``): one endpoint serves one. The
    secondaries are the read-access geo-redundant endpoints; Azure Files has no secondary."""

    BLOB = "blob"
    BLOB_SECONDARY = "blob_secondary"
    DFS = "dfs"
    DFS_SECONDARY = "dfs_secondary"
    FILE = "file"
    QUEUE = "queue"
    QUEUE_SECONDARY = "queue_secondary"
    TABLE = "table"
    TABLE_SECONDARY = "table_secondary"
    WEB = "web"
    WEB_SECONDARY = "web_secondary"


# The sub-resources ``properties.primaryEndpoints`` lists by name.
PRIMARY_SUBRESOURCES: tuple[StorageSubresource, ...] = (
    StorageSubresource.BLOB,
    StorageSubresource.DFS,
    StorageSubresource.FILE,
    StorageSubresource.QUEUE,
    StorageSubresource.TABLE,
    StorageSubresource.WEB,
)


class TlsVersion(StrEnum):
    """``properties.minimumTlsVersion``."""

    TLS1_0 = "TLS1_0"
    TLS1_1 = "TLS1_1"
    TLS1_2 = "TLS1_2"
    TLS1_3 = "TLS1_3"

    @property
    def rank(self) -> int:
        return tuple(TlsVersion).index(self)


class AllowedCopyScope(StrEnum):
    """``properties.allowedCopyScope``; absent: copies to and from any account."""

    PRIVATE_LINK = "PrivateLink"
    AAD = "AAD"


class DnsEndpointType(StrEnum):
    """``properties.dnsEndpointType``; absent: Standard. AzureDnsZone names the endpoints with a DNS
    zone identifier (``<account>.z[0-9][0-9].<sub>.storage.azure.net``)."""

    STANDARD = "Standard"
    AZURE_DNS_ZONE = "AzureDnsZone"


@dataclass(frozen=True)
class StorageIpRule:
    """One ``networkAcls.ipRules[]`` (or ``ipv6Rules[]``) entry: the address or range as written and
    its action (None when absent: Allow, Azure's default)."""

    value: IpRule
    action: RuleAction | None = None

    @property
    def raw(self) -> str:
        return self.value.raw


@dataclass(frozen=True)
class StorageVirtualNetworkRule:
    subnet_id: str
    action: RuleAction | None = None  # absent: Allow
    state: VirtualNetworkRuleState | None = None  # absent, or a value kvmon does not know (noted)

    @property
    def key(self) -> str:
        """Subnet ids compare case-insensitively (ARM lower-cases them on write)."""
        return self.subnet_id.lower()


@dataclass(frozen=True)
class ResourceAccessRule:
    """A resource instance rule: that resource (its managed identity, from that tenant) reaches the
    account through the firewall, even with publicNetworkAccess Disabled."""

    tenant_id: str | None
    resource_id: str


@dataclass(frozen=True)
class StoragePrivateEndpointConnection:
    """A private endpoint connection and the sub-resource its endpoint serves.

    The account's document does not name the sub-resource: Azure lists it on the private endpoint
    (``Microsoft.Network/privateEndpoints``, ``privateLinkServiceConnections[].properties.groupIds``).
    ``subresource`` is None until a reader joins it in (or a document carries ``groupIds``): then no
    rule says which sub-resource is or is not private (ST018 says it cannot tell).
    """

    connection: PrivateEndpointConnection
    subresource: StorageSubresource | None = None

    @property
    def id(self) -> str:
        return self.connection.id

    @property
    def working(self) -> bool:
        return self.connection.working


@dataclass(frozen=True)
class StorageAccountPosture:
    """A storage account's network and access configuration, normalised from ARM."""

    id: str
    name: str
    subscription_id: str
    resource_group: str
    location: str
    public_network_access: PublicNetworkAccess = PublicNetworkAccess.ABSENT
    network_acls_present: bool = False
    default_action: DefaultAction = DefaultAction.ALLOW  # absent or no networkAcls: Allow
    bypass: frozenset[StorageBypass] = frozenset({StorageBypass.AZURE_SERVICES})  # absent: AzureServices
    ip_rules: tuple[StorageIpRule, ...] = ()
    ipv6_rules: tuple[StorageIpRule, ...] = ()
    virtual_network_rules: tuple[StorageVirtualNetworkRule, ...] = ()
    resource_access_rules: tuple[ResourceAccessRule, ...] = ()
    private_endpoint_connections: tuple[StoragePrivateEndpointConnection, ...] = ()
    # The primary endpoint URL of each sub-resource the account offers (its kind decides which).
    primary_endpoints: Mapping[StorageSubresource, str] = field(default_factory=dict)
    allow_blob_public_access: bool | None = None  # absent: false ("the default interpretation")
    allow_shared_key_access: bool | None = None  # absent: true ("null, which is equivalent to true")
    minimum_tls_version: TlsVersion | None = None  # absent: TLS 1.0 ("the default interpretation")
    supports_https_traffic_only: bool | None = None  # absent: true (the default since 2019-04-01)
    allowed_copy_scope: AllowedCopyScope | None = None  # absent: any account
    dns_endpoint_type: DnsEndpointType | None = None  # absent: Standard
    tags: Mapping[str, str] = field(default_factory=dict)
    last_modified_by: str | None = None
    last_modified_by_type: str | None = None
    last_modified_at: dt.datetime | None = None
    problems: tuple[str, ...] = ()
    perimeter: PerimeterReading = field(default_factory=PerimeterReading)
    unread: frozenset[str] = frozenset()

    def could_not_read(self, path: str) -> bool:
        return unread_covers(self.unread, path)

    @property
    def key(self) -> str:
        """Resource ids compare case-insensitively."""
        return self.id.lower()

    @property
    def public_access_disabled(self) -> bool:
        return self.public_network_access in (
            PublicNetworkAccess.DISABLED,
            PublicNetworkAccess.SECURED_BY_PERIMETER,
        )

    @property
    def trusted_services_bypass(self) -> bool:
        """AzureServices is in networkAcls.bypass: Microsoft's trusted services pass the firewall."""
        return StorageBypass.AZURE_SERVICES in self.bypass

    @property
    def shared_key_allowed(self) -> bool:
        return self.allow_shared_key_access is not False

    @property
    def blob_public_access_allowed(self) -> bool:
        return self.allow_blob_public_access is True

    @property
    def effective_minimum_tls(self) -> TlsVersion:
        return self.minimum_tls_version or TlsVersion.TLS1_0

    @property
    def https_only(self) -> bool:
        return self.supports_https_traffic_only is not False


class StorageVerdict(StrEnum):
    """What a storage endpoint's data plane said to a probe about its network rules.

    Its own set rather than Key Vault's ``Verdict``: Storage's refusal (AuthorizationFailure) does not
    say which rule refused (public access disabled or the firewall), and Storage gives that code for
    some other failures too, so "refused" is all an answer can prove.
    """

    ADMITTED = "admitted"  # AuthorizationPermissionMismatch (no data role), or the list itself
    REFUSED = "refused"  # AuthorizationFailure
    UNREACHABLE = "unreachable"  # DNS, TCP or TLS did not get as far as a request
    UNKNOWN = "unknown"  # an answer that proves neither: the step's message says what was seen


@dataclass(frozen=True)
class StorageDataPlaneStep:
    verdict: StorageVerdict = StorageVerdict.UNKNOWN
    status_code: int | None = None
    error_code: str | None = None  # exactly as the answer gave it (x-ms-error-code, else the XML Code)
    request_id: str | None = None  # the service's x-ms-request-id: the access log's correlation
    message: str | None = None  # the first line of Storage's message, or why the verdict is unknown


@dataclass(frozen=True)
class StorageProbeResult:
    """One endpoint (sub-resource) of one storage account probed from one vantage point."""

    account_id: str
    account_name: str
    subresource: StorageSubresource
    vantage: str
    hostname: str
    started_at: dt.datetime
    # Sent as x-ms-client-request-id, unique per probe: Storage logs it (StorageBlobLogs'
    # ClientRequestId), so the probe's own request can be found in the account's log.
    client_request_id: str
    dns: DnsStep | None = None
    tls: TlsStep | None = None
    data_plane: StorageDataPlaneStep = field(default_factory=StorageDataPlaneStep)
    # Set when this result cannot speak for the account's IP rules: an outside vantage point in the
    # account's region (Storage does not apply IP rules to its region's callers), or one whose
    # region nobody stated while the account has IP rules.
    ip_rules_untested: str | None = None
    duration_ms: float | None = None

    @property
    def verdict(self) -> StorageVerdict:
        return self.data_plane.verdict


# ---------------------------------------------------------------------------
# Access logs
# ---------------------------------------------------------------------------


# The resource-specific tables the storage services' diagnostic settings write, one per service.
STORAGE_LOG_TABLES: tuple[str, ...] = (
    "StorageBlobLogs",
    "StorageFileLogs",
    "StorageQueueLogs",
    "StorageTableLogs",
)


@dataclass(frozen=True)
class StorageRequestActivity:
    """Requests of one kind from one caller address to one account in the window, summarised
    server-side from the storage services' resource logs (``monitor.sources.storage.kql``).

    A record of its own rather than Key Vault's ``CallerActivity``: Storage logs no address
    authorisation type or subnet, and says instead what Key Vault's log does not (the status text,
    the authentication type, the TLS version, a client request id to find a probe's request by).
    """

    account_id: str  # lower-cased resource id, derived from the row's service resource id
    source_table: str  # StorageBlobLogs | StorageFileLogs | StorageQueueLogs | StorageTableLogs
    caller_address: str  # without its port; "" when the row names none
    address_private: bool
    outcome: Outcome
    status_code: str | None  # a string in the table ("Unknown" for an interrupted request)
    status_text: str | None
    authentication_type: str | None  # OAuth | SAS | AccountKey | Anonymous | ...
    identity: str | None  # RequesterAppId, else RequesterObjectId
    identity_object_id: str | None
    tls_version: str | None
    count: int
    first_seen: dt.datetime | None
    last_seen: dt.datetime | None
    sample_client_request_id: str | None = None
    sample_uri: str | None = None  # the path only: a SAS query string never leaves the workspace


@dataclass(frozen=True)
class StorageLogEvidence:
    """What one workspace's storage logs say about one account over a window (``LogEvidence``'s
    sibling: the same window, completeness and notes, with the account's activity)."""

    account_id: str  # lower-cased resource id
    workspace_id: str
    window_start: dt.datetime
    window_end: dt.datetime
    activity: tuple[StorageRequestActivity, ...] = ()
    complete: bool = True
    notes: tuple[str, ...] = ()
