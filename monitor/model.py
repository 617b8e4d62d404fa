"""The records every stage of kvmon shares.

Stages exchange these plain, immutable values and nothing else: inventory produces
``VaultPosture``, probes produce ``ProbeResult``, the logs reader produces ``LogEvidence``,
evaluation produces ``Finding``, the lifecycle remembers each as a ``FindingRecord``, and a scan
ends in a ``ScanReport``. None of them does I/O.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class Severity(StrEnum):
    INFO = "info"
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        return _SEVERITY_RANK[self]

    @classmethod
    def parse(cls, text: str) -> Severity:
        """Case-insensitive; raises ValueError naming the accepted values."""
        try:
            return cls(str(text).strip().lower())
        except ValueError:
            accepted = ", ".join(s.value for s in cls)
            raise ValueError(f"unknown severity {text!r}: use one of {accepted}") from None


_SEVERITY_RANK = {
    Severity.INFO: 0,
    Severity.LOW: 1,
    Severity.MEDIUM: 2,
    Severity.HIGH: 3,
    Severity.CRITICAL: 4,
}


class Service(StrEnum):
    """The Azure services kvmon judges. Each has its own posture record (``VaultPosture``,
    ``monitor.model_storage.StorageAccountPosture``), normaliser, rules and facts; a rule judges one
    service, and a baseline entry applies to one."""

    KEYVAULT = "keyvault"
    STORAGE = "storage"

    @classmethod
    def of_resource_id(cls, resource_id: str) -> Service:
        """The service a resource id names: a storage account's (its provider and type), else a
        vault's."""
        return (
            cls.STORAGE
            if "/providers/microsoft.storage/storageaccounts/" in resource_id.lower()
            else cls.KEYVAULT
        )


def unread_covers(unread: frozenset[str], path: str) -> bool:
    """True when ``path`` (e.g. ``properties.networkAcls.defaultAction``), a field around it or one
    inside it is among the ``unread`` paths of a posture."""
    return any(
        path == gap or path.startswith((f"{gap}.", f"{gap}[")) or gap.startswith((f"{path}.", f"{path}["))
        for gap in unread
    )


# ---------------------------------------------------------------------------
# Configuration (from ARM)
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class IpRule:
    """One address or range as written (a ``networkAcls.ipRules[].value``, a perimeter rule's
    address prefix); ``network`` is None when the text does not parse."""

    raw: str
    network: IPNetwork | None

    @property
    def parsed(self) -> bool:
        return self.network is not None


@dataclass(frozen=True)
class VirtualNetworkRule:
    subnet_id: str
    ignore_missing_service_endpoint: bool = False

    @property
    def key(self) -> str:
        """Subnet ids compare case-insensitively (ARM lower-cases them on write)."""
        return self.subnet_id.lower()


@dataclass(frozen=True)
class PrivateEndpointConnection:
    id: str
    private_endpoint_id: str | None
    status: str | None  # Pending | Approved | Rejected | Disconnected
    provisioning_state: str | None
    description: str | None = None

    @property
    def approved(self) -> bool:
        return (self.status or "").lower() == "approved"

    @property
    def working(self) -> bool:
        """Approved and not Failed: a private path exists. An Approved connection whose
        provisioning failed carries no traffic (KV009 reports it); KV008, KV010, KV103 and KV105
        count working connections only."""
        return self.approved and (self.provisioning_state or "").lower() != "failed"


class PerimeterAccessMode(StrEnum):
    """A Network Security Perimeter association's access mode, as ARM spells it."""

    LEARNING = "Learning"  # the docs now call it Transition
    ENFORCED = "Enforced"
    AUDIT = "Audit"  # undocumented for Key Vault: what it admits is inferred
    UNKNOWN = "unknown"  # a value this kvmon does not know: judged unknown, never guessed

    @classmethod
    def parse(cls, text: str) -> PerimeterAccessMode:
        """Case-insensitive; "Transition" is Learning's newer name; anything else is UNKNOWN."""
        folded = text.strip().lower()
        if folded == "transition":
            return cls.LEARNING
        for mode in (cls.LEARNING, cls.ENFORCED, cls.AUDIT):
            if folded == mode.value.lower():
                return mode
        return cls.UNKNOWN


@dataclass(frozen=True)
class PerimeterAccessRule:
    """One inbound access rule of a perimeter profile: each entry admits callers on its own."""

    name: str
    address_prefixes: tuple[IpRule, ...] = ()
    subscriptions: tuple[str, ...] = ()  # subscription ids: any caller with a token from one
    service_tags: tuple[str, ...] = ()
    perimeters: tuple[str, ...] = ()  # linked perimeters' resource ids


@dataclass(frozen=True)
class ArmStamp:
    """Who wrote an ARM resource and when, from its ``systemData`` (any part may be missing)."""

    by: str | None = None
    by_type: str | None = None  # User | Application | ManagedIdentity | Key
    at: dt.datetime | None = None


@dataclass(frozen=True)
class PerimeterProvisioningIssue:
    """What Azure reports it could not apply of the perimeter's configuration to the vault."""

    name: str
    issue_type: str | None = None  # ConfigurationPropagationFailure, MissingPerimeterConfiguration, ...
    severity: str | None = None  # Warning | Error
    description: str | None = None


@dataclass(frozen=True)
class PerimeterAssociation:
    """A vault's association with a Network Security Perimeter and its profile's inbound rules."""

    perimeter_id: str
    perimeter_name: str
    profile_id: str
    profile_name: str
    access_mode_text: str  # as ARM wrote it; ``access_mode`` is what kvmon makes of it
    access_rules_version: int | None = None  # the profile's, bumped by Azure on every rule edit
    inbound_rules: tuple[PerimeterAccessRule, ...] = ()
    provisioning_issues: tuple[PerimeterProvisioningIssue, ...] = ()
    # The association's systemData, and the newest lastModified of the profile's access rules (who
    # moved accessRulesVersion: a deleted rule leaves none, so a deletion's author can be unknown).
    created: ArmStamp | None = None
    modified: ArmStamp | None = None
    rules_modified: ArmStamp | None = None

    @property
    def access_mode(self) -> PerimeterAccessMode:
        return PerimeterAccessMode.parse(self.access_mode_text)


class PerimeterLookup(StrEnum):
    """How far kvmon got reading a vault's perimeter association."""

    NOT_LOOKED_UP = "not-looked-up"  # no reader ran (``kvmon evaluate`` on a vault document)
    NONE = "none"  # read: the vault is associated with no perimeter
    ASSOCIATED = "associated"
    UNREADABLE = "unreadable"  # the read failed (permission, another subscription, an API error)


@dataclass(frozen=True)
class PerimeterReading:
    """A vault's perimeter association as read: ``association`` exactly when ASSOCIATED, ``error``
    exactly when UNREADABLE."""

    lookup: PerimeterLookup = PerimeterLookup.NOT_LOOKED_UP
    association: PerimeterAssociation | None = None
    error: str | None = None

    def __post_init__(self) -> None:
        if (self.association is not None) != (self.lookup == PerimeterLookup.ASSOCIATED):
            raise ValueError(
                f"a perimeter reading {self.lookup.value} must carry an association exactly when associated"
            )
        if (self.error is not None) != (self.lookup == PerimeterLookup.UNREADABLE):
            raise ValueError(
                f"a perimeter reading {self.lookup.value} must carry an error exactly when unreadable"
            )


@dataclass(frozen=True)
class VaultPosture:
    """A vault's network configuration, normalised from ARM with Azure's defaults applied."""

    id: str
    name: str
    subscription_id: str
    resource_group: str
    location: str
    vault_uri: str | None
    public_network_access: str  # "Enabled", "Disabled", "SecuredByPerimeter" or the raw text
    network_acls_present: bool
    default_action: str  # "Allow" | "Deny" (absent or no networkAcls = Allow)
    bypass: str  # "AzureServices" | "None" (absent = AzureServices)
    ip_rules: tuple[IpRule, ...] = ()
    virtual_network_rules: tuple[VirtualNetworkRule, ...] = ()
    private_endpoint_connections: tuple[PrivateEndpointConnection, ...] = ()
    tags: Mapping[str, str] = field(default_factory=dict)
    tenant_id: str | None = None
    last_modified_by: str | None = None
    last_modified_by_type: str | None = None
    last_modified_at: dt.datetime | None = None
    # Things the normaliser could not read as expected (wrong types, unknown values): reported,
    # never fatal.
    problems: tuple[str, ...] = ()
    # The vault's Network Security Perimeter association: configuration like networkAcls, so drift,
    # history and the store carry it with the rest.
    perimeter: PerimeterReading = PerimeterReading()
    # The ARM paths among those problems whose value could not be read at all (wrong type, or
    # "properties" missing): the field holds Azure's default, which nobody saw.
    unread: frozenset[str] = frozenset()

    def could_not_read(self, path: str) -> bool:
        """True when ``path`` (e.g. ``properties.networkAcls.defaultAction``), a field around it
        or one inside it could not be read."""
        return unread_covers(self.unread, path)

    @property
    def key(self) -> str:
        """Resource ids compare case-insensitively."""
        return self.id.lower()

    @property
    def public_access_disabled(self) -> bool:
        return self.public_network_access.lower() in ("disabled", "securedbyperimeter")

    @property
    def trusted_services_bypass(self) -> bool:
        """networkAcls.bypass lets Microsoft's trusted services through the firewall."""
        return self.bypass.lower() == "azureservices"

    @property
    def publicly_open(self) -> bool:
        """The vault's own settings admit every address: public access not disabled and nothing
        denies by default. A perimeter can override both; what the vault really admits is
        ``monitor.judge.perimeter.effective_exposure``'s (KV001 judges that)."""
        return not self.public_access_disabled and (
            not self.network_acls_present or self.default_action.lower() != "deny"
        )


# ---------------------------------------------------------------------------
# Probes
# ---------------------------------------------------------------------------


class EvidenceSource(StrEnum):
    """The three sources of truth a rule can read, the logs in two streams. A finding may resolve
    only in a scan in which its source answered for its vault (``ScanReport.incomplete``,
    ``ScanReport.skipped_sources``)."""

    CONFIGURATION = "configuration"
    PROBES = "probes"
    LOGS = "logs"  # the vault's own access log (AZKVAuditLogs / AzureDiagnostics)
    # The perimeter's access log (NSPAccessLogs): another resource's diagnostic setting, often
    # another workspace, so it answers (or not) on its own.
    PERIMETER_LOGS = "perimeter-logs"


class Verdict(StrEnum):
    """What the data plane said to a probe."""

    ADMITTED = "admitted"
    REFUSED_FIREWALL = "refused-firewall"
    REFUSED_PUBLIC_DISABLED = "refused-public-disabled"
    REFUSED_PERIMETER = "refused-perimeter"  # ForbiddenByNsp: a Network Security Perimeter's rules
    UNREACHABLE = "unreachable"
    ERROR = "error"
    NOT_RUN = "not-run"

    @property
    def refused(self) -> bool:
        return self in (Verdict.REFUSED_FIREWALL, Verdict.REFUSED_PUBLIC_DISABLED, Verdict.REFUSED_PERIMETER)


@dataclass(frozen=True)
class DnsStep:
    query: str
    chain: tuple[str, ...] = ()  # every name followed, the query first
    addresses: tuple[str, ...] = ()
    private_addresses: tuple[str, ...] = ()  # the subset classified private
    private_link_in_chain: bool = False
    resolver: str | None = None  # None = the system's
    elapsed_ms: float | None = None
    error: str | None = None

    @property
    def answered(self) -> bool:
        return self.error is None and bool(self.addresses)

    @property
    def resolves_private(self) -> bool:
        return bool(self.addresses) and set(self.addresses) == set(self.private_addresses)


@dataclass(frozen=True)
class TlsStep:
    address: str | None
    port: int
    connected: bool = False
    handshake_ok: bool = False
    certificate_valid: bool | None = None  # None when the handshake did not get that far
    certificate_error: str | None = None
    connect_ms: float | None = None
    error: str | None = None


@dataclass(frozen=True)
class HealthStep:
    status_code: int | None = None
    seen_address: str | None = None  # ``addr`` of x-ms-keyvault-network-info
    seen_address_private: bool | None = None
    error: str | None = None


@dataclass(frozen=True)
class DataPlaneStep:
    verdict: Verdict = Verdict.NOT_RUN
    status_code: int | None = None
    error_code: str | None = None
    inner_code: str | None = None
    client_address: str | None = None  # the "Client address:" a refusal states
    client_address_private: bool | None = None
    message: str | None = None  # redacted: no token claims


@dataclass(frozen=True)
class ProbeResult:
    """One vault probed from one vantage point."""

    vault_name: str
    vantage: str
    hostname: str
    started_at: dt.datetime
    dns: DnsStep | None = None
    tls: TlsStep | None = None
    health: HealthStep | None = None
    data_plane: DataPlaneStep | None = None
    # Set when the vantage point itself gave no answer (remote endpoint down, timed out): KV106.
    vantage_error: str | None = None
    duration_ms: float | None = None

    @property
    def verdict(self) -> Verdict:
        if self.vantage_error is not None:
            return Verdict.ERROR
        return self.data_plane.verdict if self.data_plane else Verdict.NOT_RUN

    @property
    def seen_address(self) -> str | None:
        """The address the vault saw: from healthstatus, else from a refusal's message."""
        if self.health and self.health.seen_address:
            return self.health.seen_address
        if self.data_plane and self.data_plane.client_address:
            return self.data_plane.client_address
        return None

    @property
    def seen_address_private(self) -> bool | None:
        """Whether ``seen_address`` is private, as the step that saw it classified it."""
        if self.health and self.health.seen_address:
            return self.health.seen_address_private
        if self.data_plane and self.data_plane.client_address:
            return self.data_plane.client_address_private
        return None

    @property
    def conclusive(self) -> bool:
        """False when the probe proved nothing about what the vault admits: it ended in an error
        or reached nothing (the vantage point, DNS, TCP or TLS failed)."""
        return self.verdict not in (Verdict.ERROR, Verdict.UNREACHABLE)

    @property
    def failure(self) -> str | None:
        """For a probe that proved nothing, the first step that failed in the words it failed
        with; None for a conclusive one."""
        if self.conclusive:
            return None
        if self.vantage_error is not None:
            return f"the vantage point did not answer: {self.vantage_error}"
        if self.dns is not None and not self.dns.answered:
            return f"DNS: {self.dns.error or 'no address in the answer'}"
        if self.tls is not None and self.tls.error:
            return f"TLS: {self.tls.error}"
        step = self.data_plane
        if step is not None and (step.message or step.status_code):
            said = " ".join(
                part
                for part in (
                    f"HTTP {step.status_code}" if step.status_code else None,
                    step.inner_code or step.error_code,
                )
                if part
            )
            if step.message:
                said = f"{said}: {step.message}" if said else step.message
            return f"data plane: {said}"
        if self.health is not None and self.health.error:
            return f"healthstatus: {self.health.error}"
        return "no step said why"


# ---------------------------------------------------------------------------
# Access logs
# ---------------------------------------------------------------------------


class Outcome(StrEnum):
    ADMITTED = "admitted"
    REFUSED_FIREWALL = "refused-firewall"
    REFUSED_OTHER = "refused-other"


@dataclass(frozen=True)
class CallerActivity:
    """Requests from one caller address to one vault in the window, summarised server-side."""

    vault_id: str  # lower-cased resource id
    caller_address: str
    address_private: bool
    address_auth_type: str | None  # PublicIp | Subnet | PrivateEndpoint | TrustedService | ...
    subnet_id: str | None
    outcome: Outcome
    identity: str | None  # app id, else object id
    count: int
    first_seen: dt.datetime | None
    last_seen: dt.datetime | None
    # The token's object id as well: a baseline may name a principal by either id (KV203).
    identity_object_id: str | None = None


@dataclass(frozen=True)
class LogEvidence:
    """What one workspace's logs say about one vault over a window."""

    vault_id: str  # lower-cased resource id
    workspace_id: str
    window_start: dt.datetime
    window_end: dt.datetime
    activity: tuple[CallerActivity, ...] = ()
    complete: bool = True
    notes: tuple[str, ...] = ()


class PerimeterLogCategory(StrEnum):
    """The inbound categories of ``NSPAccessLogs`` (Microsoft's "Diagnostic logs for Network Security
    Perimeter"): which layer decided, and how."""

    # A perimeter access rule admitted a public caller (Transition/Learning and Enforced).
    PUBLIC_PERIMETER_RULES_ALLOWED = "NspPublicInboundPerimeterRulesAllowed"
    PUBLIC_PERIMETER_RULES_DENIED = "NspPublicInboundPerimeterRulesDenied"  # Enforced
    # The perimeter's rules denied, then the vault's own firewall admitted (Transition/Learning only).
    PUBLIC_RESOURCE_RULES_ALLOWED = "NspPublicInboundResourceRulesAllowed"
    PUBLIC_RESOURCE_RULES_DENIED = "NspPublicInboundResourceRulesDenied"
    PRIVATE_INBOUND_ALLOWED = "NspPrivateInboundAllowed"  # through a private endpoint
    INTRA_PERIMETER_INBOUND_ALLOWED = "NspIntraPerimeterInboundAllowed"  # a resource of the same perimeter
    CROSS_PERIMETER_INBOUND_ALLOWED = "NspCrossPerimeterInboundAllowed"  # through a perimeter link

    @classmethod
    def parse(cls, text: str) -> PerimeterLogCategory:
        """Case-insensitive (the query matches with ``in~``); ValueError for any other text."""
        folded = str(text).strip().lower()
        for category in cls:
            if category.value.lower() == folded:
                return category
        raise ValueError(f"not an inbound NSPAccessLogs category: {text!r}")

    @property
    def public(self) -> bool:
        return self.value.startswith("NspPublicInbound")

    @property
    def admitted(self) -> bool:
        return self.value.endswith("Allowed")


@dataclass(frozen=True)
class PerimeterAccess:
    """Inbound decisions of one kind for one source on one vault in the window, summarised
    server-side from ``NSPAccessLogs``."""

    vault_id: str  # lower-cased resource id (the row's ServiceResourceId)
    category: PerimeterLogCategory
    source_address: str  # "" when the row names none (a subscription rule admits by identity)
    address_private: bool
    source_app_id: str | None
    matched_rule: str | None  # the access rule (or the vault's resource rule) that decided
    traffic_type: str | None  # Public | Private | Intra | Cross
    profile: str | None
    access_rules_version: str | None
    count: int
    first_seen: dt.datetime | None
    last_seen: dt.datetime | None


@dataclass(frozen=True)
class PerimeterLogEvidence:
    """What one workspace's perimeter access logs say about one vault over a window. No rows is no
    evidence, not "nobody got in": the workspace may sit outside the vault's perimeter, whose logs
    then never reach it."""

    vault_id: str  # lower-cased resource id
    workspace_id: str
    window_start: dt.datetime
    window_end: dt.datetime
    access: tuple[PerimeterAccess, ...] = ()
    complete: bool = True
    notes: tuple[str, ...] = ()


# ---------------------------------------------------------------------------
# Findings and the scan report
# ---------------------------------------------------------------------------


class FindingStatus(StrEnum):
    OPEN = "open"
    RESOLVED = "resolved"
    SUPPRESSED = "suppressed"


def finding_id(vault_id: str, rule_id: str, subject: str = "") -> str:
    """Stable across scans: the same problem on the same vault is the same finding tomorrow."""
    material = "\n".join((vault_id.lower(), rule_id.upper(), subject.lower()))
    return hashlib.sha256(material.encode("utf-8")).hexdigest()[:32]


@dataclass(frozen=True)
class Suppression:
    rule: str
    vault_pattern: str
    reason: str
    owner: str
    expires: dt.date | None


@dataclass(frozen=True)
class Finding:
    rule_id: str
    severity: Severity
    title: str
    vault_id: str
    vault_name: str
    subject: str = ""  # what inside the vault: a caller address, a vantage, a rule value...
    evidence: Mapping[str, Any] = field(default_factory=dict)
    summary: str = ""  # one line, the decisive evidence in words
    remediation: str = ""  # the Azure CLI command that fixes it
    suppression: Suppression | None = None

    @property
    def id(self) -> str:
        return finding_id(self.vault_id, self.rule_id, self.subject)

    @property
    def suppressed(self) -> bool:
        return self.suppression is not None


class ActorSource(StrEnum):
    """Where kvmon learnt who changed a vault."""

    EVENT = "event"  # the claims of the ARM request an Event Grid event announced
    RESOURCE_CHANGES = "resource-changes"  # Resource Graph's change history (``resourcechanges``)


@dataclass(frozen=True)
class ChangeActor:
    """Who made a change to a vault through ARM, and from where, as Azure told it.

    Every field but ``source`` may be unknown (None): an event's claims differ for a user, a service
    principal and a managed identity, and Resource Graph's change history names only ``changedBy``.
    """

    source: ActorSource
    name: str | None = None  # display name (the "name" claim), or Resource Graph's changedBy
    upn: str | None = None
    app_id: str | None = None  # the application the token was issued to
    object_id: str | None = None  # the principal's object id (the objectidentifier claim)
    principal_type: str | None = None  # User, ServicePrincipal, ... (or changedByType)
    role: str | None = None  # the role assignment that authorised the write, where ARM says
    client_ip: str | None = None  # the caller's address (httpRequest.clientIpAddress, the ipaddr claim)
    client_type: str | None = None  # Resource Graph's clientType (Azure Portal, Azure CLI, ...)
    operation: str | None = None  # operationName (Microsoft.KeyVault/vaults/write) or the change's operation
    changed_at: dt.datetime | None = None  # the event's or the change's time
    correlation_id: str | None = None  # joins the writes of one deployment

    @property
    def who(self) -> str:
        """The most telling name known: UPN, display name, application id, object id."""
        return self.upn or self.name or self.app_id or self.object_id or "unknown"

    def describe(self) -> str:
        """``alice@contoso.com (User, from 203.0.113.7)``: who, what kind, from where."""
        details = [
            part for part in (self.principal_type, self.client_ip and f"from {self.client_ip}") if part
        ]
        return f"{self.who} ({', '.join(details)})" if details else self.who

    def as_evidence(self) -> dict[str, Any]:
        return {
            "source": self.source.value,
            "name": self.name,
            "upn": self.upn,
            "app_id": self.app_id,
            "object_id": self.object_id,
            "principal_type": self.principal_type,
            "role": self.role,
            "client_ip": self.client_ip,
            "client_type": self.client_type,
            "operation": self.operation,
            "changed_at": self.changed_at.isoformat() if self.changed_at else None,
            "correlation_id": self.correlation_id,
        }


class WriteKind(StrEnum):
    """What an ARM request did to a resource (Event Grid's ResourceWriteSuccess, ResourceDeleteSuccess)."""

    WRITE = "write"  # a PUT or PATCH
    DELETE = "delete"


@dataclass(frozen=True)
class VaultChange:
    """One succeeded ARM write or delete of a Key Vault, or of one of its private endpoint
    connections, as an Event Grid event announced it. The event says what was asked, never what the
    vault is now: the vault is read again (one GET) before anything is judged. With ``service``
    storage, the same of a storage account: ``vault_id`` is then the account's id."""

    event_id: str
    vault_id: str  # the vault's resource id (a connection's id mapped back to its vault)
    resource_id: str  # the resource the event named (the vault, or a connection under it)
    operation_name: str  # Microsoft.KeyVault/vaults/write, .../privateEndpointConnections/write, ...
    kind: WriteKind
    actor: ChangeActor
    event_time: dt.datetime | None = None
    correlation_id: str | None = None
    service: Service = Service.KEYVAULT

    @property
    def subscription_id(self) -> str:
        return self.vault_id.split("/")[2]

    @property
    def vault_key(self) -> str:
        return self.vault_id.lower()


class ErrorSource(StrEnum):
    """Where a ``ScanError`` came from."""

    ARM = "arm"
    RESOURCE_GRAPH = "resource-graph"
    PROBE = "probe"
    LOGS = "logs"
    STORE = "store"
    NOTIFY = "notify"
    INPUT = "input"  # a file given to ``kvmon evaluate``
    QUEUE = "queue"  # a scan job that could not run
    EVENT = "event"  # an Event Grid event that could not be read or handled
    # Read back from a scan run a later kvmon recorded with a source this one does not know:
    # history stays readable.
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class ScanError:
    """A fault of the outside world, recorded and surfaced, never fatal to the rest of a scan."""

    source: ErrorSource
    scope: str  # subscription id, workspace id, vault id, channel name, file...
    message: str  # redacted
    code: str | None = None  # HTTP status or error code where there is one


class ChangeKind(StrEnum):
    OPENED = "opened"
    REOPENED = "reopened"
    CHANGED = "changed"
    RESOLVED = "resolved"
    # An open finding that claimed an exposure (KV001: open to every address) is now proven by a
    # probe (KV101: admitted from a vantage point that should be refused): the event path's
    # follow-up, "confirmed: admitted from internet".
    CONFIRMED = "confirmed"


@dataclass(frozen=True)
class FindingChange:
    """What happened to one finding in one scan, as the lifecycle decided."""

    kind: ChangeKind
    finding: Finding
    previous_severity: Severity | None = None
    confirmed_by: str | None = None  # for CONFIRMED: the proving finding, "KV101 [internet]: ..."


@dataclass(frozen=True)
class FindingRecord:
    """A finding as remembered: what it is plus its lifecycle. ``occurrences`` counts how many
    times the problem opened (1, plus one for each reopening)."""

    finding: Finding
    status: FindingStatus
    first_seen: dt.datetime
    last_seen: dt.datetime
    last_changed: dt.datetime
    occurrences: int = 1
    resolved_at: dt.datetime | None = None
    etag: str | None = None  # the backend's concurrency token, opaque
    # When the stored evidence and summary were written: evidence that only moved (a count grew)
    # is refreshed now and then, not on every scan (see monitor.judge.lifecycle.EVIDENCE_REFRESH).
    evidence_at: dt.datetime | None = None
    # For a finding that claims an exposure: when a probe first proved it in this open period,
    # and the proving finding (``FindingChange.confirmed_by``); cleared when it reopens.
    confirmed_at: dt.datetime | None = None
    confirmed_by: str | None = None

    @property
    def id(self) -> str:
        return self.finding.id


class ScanTrigger(StrEnum):
    """What started a scan; recorded with its run (``kvmon history``)."""

    CLI = "cli"
    TIMER = "timer"  # a scheduled scan in one process (the Functions app's timer fans out to jobs)
    QUEUE = "queue"  # a scan job from the Storage queue
    HTTP = "http"  # an on-demand check of one vault
    EVENT = "event"  # an ARM write or delete Event Grid announced (the vault GET again, judged at once)
    # Read back from a scan run a later kvmon recorded with a trigger this one does not know:
    # history stays readable.
    UNKNOWN = "unknown"
