"""Records to entity properties and back, within Table storage's limits (pure, no I/O).

Both backends store the same flat property dicts, so they behave the same and pass one
contract suite. Limits honoured here: a string property holds at most 32K UTF-16 characters
(64 KiB), an entity at most 1 MiB and 255 properties. Finding evidence over the limit is trimmed
with a marker (``_trimmed``) rather than failing the write; other large JSON values (a posture
with hundreds of IP rules, a big message payload) are compressed and split over a few properties.
"""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import json
import zlib
from collections.abc import Callable, Mapping
from dataclasses import replace
from enum import StrEnum
from typing import Any, TypeVar

from monitor.errors import StoreError
from monitor.jsonable import to_jsonable
from monitor.model import (
    ArmStamp,
    ErrorSource,
    Finding,
    FindingRecord,
    FindingStatus,
    IpRule,
    PerimeterAccessRule,
    PerimeterAssociation,
    PerimeterLookup,
    PerimeterProvisioningIssue,
    PerimeterReading,
    PrivateEndpointConnection,
    ScanError,
    ScanTrigger,
    Service,
    Severity,
    Suppression,
    VaultPosture,
    VirtualNetworkRule,
)
from monitor.model_storage import (
    AllowedCopyScope,
    DefaultAction,
    DnsEndpointType,
    PublicNetworkAccess,
    ResourceAccessRule,
    RuleAction,
    StorageAccountPosture,
    StorageBypass,
    StorageIpRule,
    StoragePrivateEndpointConnection,
    StorageSubresource,
    StorageVirtualNetworkRule,
    TlsVersion,
    VirtualNetworkRuleState,
)
from monitor.store.base import OutboxMessage, PostureSnapshot, ProcessedEvent, ScanRun

Properties = dict[str, Any]
Known = TypeVar("Known", bound=StrEnum)

TEXT_LIMIT = 32_000  # UTF-16 code units per string property (Table storage: 32K characters)
EVIDENCE_LIMIT = TEXT_LIMIT
_MAX_CHUNKS = 15  # 15 x 64 KiB stays under the 1 MiB entity limit with room for the rest
# Compressed bytes whose base64 fills at most _MAX_CHUNKS properties.
MAX_PACKED_BYTES = _MAX_CHUNKS * TEXT_LIMIT // 4 * 3
# Level 9 against 6 on a 2,000-vault report (5.5 MB of JSON): 5% smaller for 0.02 s more CPU.
COMPRESSION_LEVEL = 9
TRIMMED_MARKER = "_trimmed"


class RecordTooLarge(StoreError):
    """A value does not fit one entity even compressed."""


# -- small values ---------------------------------------------------------------------------------


def utf16_length(text: str) -> int:
    # ASCII text (nearly everything kvmon stores) is one unit a character: no need to encode it.
    return len(text) if text.isascii() else len(text.encode("utf-16-le")) // 2


def fit_text(text: str, limit: int = TEXT_LIMIT) -> str:
    """``text`` cut to ``limit`` UTF-16 units, ending in a visible marker when cut."""
    if utf16_length(text) <= limit:
        return text
    marker = f" …[trimmed from {len(text)} characters]"
    keep = limit - utf16_length(marker)
    return text.encode("utf-16-le")[: 2 * keep].decode("utf-16-le", "ignore") + marker


def iso(moment: dt.datetime | None) -> str | None:
    if moment is None:
        return None
    if moment.tzinfo is dt.UTC:  # what kvmon passes: nothing to convert
        return moment.isoformat()
    if moment.tzinfo is None:  # kvmon passes aware UTC times; a naive one is taken as UTC
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.astimezone(dt.UTC).isoformat()


def parse_time(text: Any) -> dt.datetime | None:
    if text is None or text == "":
        return None
    return dt.datetime.fromisoformat(str(text))


def required_time(text: Any) -> dt.datetime:
    moment = parse_time(text)
    if moment is None:
        raise ValueError("a stored record lacks a required time")
    return moment


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True)


def json_text(value: Any) -> str:
    """The text ``put_json`` stores for ``value`` whose keys are all strings, without first
    copying it as plain values: what is not JSON goes through ``to_jsonable`` when met."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True, default=to_jsonable)


def put_json(properties: Properties, name: str, value: Any) -> None:
    """JSON text when it fits one property, else compressed and split over ``name_z0..``."""
    put_text(properties, name, _dumps(to_jsonable(value)))


def put_text(properties: Properties, name: str, text: str) -> None:
    """JSON text as ``put_json`` stores it: as it is when it fits one property, else compressed."""
    if utf16_length(text) <= TEXT_LIMIT:
        properties[name] = text
        return
    packed = zlib.compress(text.encode("utf-8"), COMPRESSION_LEVEL)
    if len(packed) > MAX_PACKED_BYTES:
        raise RecordTooLarge(f"{name}: {len(text)} characters do not fit one entity even compressed")
    _put_packed(properties, name, packed)


def _put_packed(properties: Properties, name: str, packed: bytes) -> None:
    """Text compressed at ``COMPRESSION_LEVEL`` (at most ``MAX_PACKED_BYTES``) split over ``name_z0..``."""
    encoded = base64.b64encode(packed).decode("ascii")
    chunks = [encoded[i : i + TEXT_LIMIT] for i in range(0, len(encoded), TEXT_LIMIT)]
    if len(chunks) > _MAX_CHUNKS:
        raise RecordTooLarge(f"{name}: {len(packed)} compressed bytes do not fit one entity")
    properties[f"{name}_zn"] = len(chunks)
    for index, chunk in enumerate(chunks):
        properties[f"{name}_z{index}"] = chunk


def get_json(properties: Mapping[str, Any], name: str, default: Any = None) -> Any:
    text = _get_text(properties, name)
    return default if text is None else json.loads(text)


def _get_text(properties: Mapping[str, Any], name: str) -> str | None:
    """The JSON text ``put_json`` stored, decompressed when it was; None when absent."""
    if name in properties and properties[name] is not None:
        return str(properties[name])
    count = properties.get(f"{name}_zn")
    if not count:
        return None
    packed = "".join(properties[f"{name}_z{index}"] for index in range(int(count)))
    return zlib.decompress(base64.b64decode(packed)).decode("utf-8")


def _without_none(properties: Properties) -> Properties:
    # Table storage has no null: an absent property reads back as absent.
    return {key: value for key, value in properties.items() if value is not None}


# -- evidence -------------------------------------------------------------------------------------


def trim_evidence(evidence: Mapping[str, Any], *, limit: int = EVIDENCE_LIMIT) -> dict[str, Any]:
    """Evidence as plain JSON values, shortened to fit ``limit`` UTF-16 units when it must be.

    The longest strings are cut first (to the largest length that fits), then long lists; the
    result carries ``_trimmed`` with the original size so a reader knows it is not whole.
    """
    return _trimmed_evidence(evidence, limit=limit)[0]


def _trimmed_evidence(
    evidence: Mapping[str, Any], *, limit: int = EVIDENCE_LIMIT
) -> tuple[dict[str, Any], str]:
    """``trim_evidence`` and its JSON text (encoded once: it is also what decides the size)."""
    data = to_jsonable(dict(evidence))
    text = _dumps(data)
    size = utf16_length(text)
    if size <= limit:
        return data, text
    trimmed = _trim(data, size=size, limit=limit)
    return trimmed, _dumps(trimmed)


def _trim(data: dict[str, Any], *, size: int, limit: int) -> dict[str, Any]:
    marker = {
        TRIMMED_MARKER: {"original_size": size, "note": "evidence over the storage limit was shortened"}
    }

    def fits(candidate: dict[str, Any]) -> bool:
        return utf16_length(_dumps({**candidate, **marker})) <= limit

    longest = max(_longest_string(data), 1)
    best = _largest_fitting(lambda cap: fits(_shrink(data, max_chars=cap, max_items=None)), 16, longest)
    if best is not None:
        return {**_shrink(data, max_chars=best, max_items=None), **marker}
    longest_list = max(_longest_list(data), 1)
    best_items = _largest_fitting(lambda n: fits(_shrink(data, max_chars=16, max_items=n)), 1, longest_list)
    if best_items is not None:
        return {**_shrink(data, max_chars=16, max_items=best_items), **marker}
    text = _dumps(data)

    def with_excerpt(length: int) -> dict[str, Any]:
        return {**marker, "excerpt": text[:length] + "…[trimmed]"}

    # Quotes in the text are escaped again when stored, so measure the stored form.
    length = _largest_fitting(lambda n: utf16_length(_dumps(with_excerpt(n))) <= limit, 0, len(text)) or 0
    return with_excerpt(length)


def _largest_fitting(fits: Callable[[int], bool], low: int, high: int) -> int | None:
    """The largest n in [low, high] with fits(n) (fits is monotone), None if even low fails."""
    if not fits(low):
        return None
    while low < high:
        middle = (low + high + 1) // 2
        if fits(middle):
            low = middle
        else:
            high = middle - 1
    return low


def _shrink(value: Any, *, max_chars: int, max_items: int | None) -> Any:
    if isinstance(value, str):
        if len(value) <= max_chars:
            return value
        return value[:max_chars] + f"…[trimmed {len(value) - max_chars} characters]"
    if isinstance(value, list):
        items = [
            _shrink(item, max_chars=max_chars, max_items=max_items) for item in value[: max_items or None]
        ]
        if max_items is not None and len(value) > max_items:
            items.append(f"…[trimmed {len(value) - max_items} more items]")
        return items
    if isinstance(value, dict):
        return {key: _shrink(item, max_chars=max_chars, max_items=max_items) for key, item in value.items()}
    return value


def _longest_string(value: Any) -> int:
    if isinstance(value, str):
        return len(value)
    if isinstance(value, list):
        return max((_longest_string(item) for item in value), default=0)
    if isinstance(value, dict):
        return max((_longest_string(item) for item in value.values()), default=0)
    return 0


def _longest_list(value: Any) -> int:
    if isinstance(value, list):
        return max([len(value), *(_longest_list(item) for item in value)])
    if isinstance(value, dict):
        return max((_longest_list(item) for item in value.values()), default=0)
    return 0


def storable_finding(finding: Finding) -> Finding:
    """The finding exactly as the store will give it back: JSON evidence, trimmed, texts capped.

    The lifecycle compares stored findings with this form, so an over-long evidence does not
    look "changed" on every scan.
    """
    return replace(
        finding,
        evidence=trim_evidence(finding.evidence),
        title=fit_text(finding.title),
        summary=fit_text(finding.summary),
        remediation=fit_text(finding.remediation),
    )


def _known(kind: type[Known], text: Any, *, unknown: Known) -> Known:
    """A stored enum value read back; one this version does not know (a later kvmon wrote it)
    reads as ``unknown``, so old code can still read a store newer code wrote."""
    try:
        return kind(text)
    except ValueError:
        return unknown


# -- postures -------------------------------------------------------------------------------------


def posture_to_json(posture: VaultPosture) -> dict[str, Any]:
    data: dict[str, Any] = to_jsonable(posture)
    data["ip_rules"] = [
        {"raw": rule.raw, "network": str(rule.network) if rule.network is not None else None}
        for rule in posture.ip_rules
    ]
    # Absent when empty: the fingerprints of postures stored before the field existed still match.
    del data["unread"]
    if posture.unread:
        data["unread"] = sorted(posture.unread)
    return data


def _ip_rules_from_json(rules: Any) -> tuple[IpRule, ...]:
    return tuple(
        IpRule(
            raw=rule["raw"], network=ipaddress.ip_network(rule["network"]) if rule.get("network") else None
        )
        for rule in rules or ()
    )


def _perimeter_from_json(data: Mapping[str, Any] | None) -> PerimeterReading:
    """A posture stored before kvmon read perimeters has none: not looked up. A lookup state a
    later kvmon wrote and this one does not know reads as not looked up too: nothing is claimed."""
    if not data:
        return PerimeterReading()
    lookup = _known(PerimeterLookup, data.get("lookup"), unknown=PerimeterLookup.NOT_LOOKED_UP)
    if lookup == PerimeterLookup.UNREADABLE:
        return PerimeterReading(lookup=lookup, error=str(data.get("error") or "unknown error"))
    found = data.get("association")
    if lookup != PerimeterLookup.ASSOCIATED or not found:
        return PerimeterReading(
            lookup=PerimeterLookup.NONE if lookup == PerimeterLookup.NONE else PerimeterLookup.NOT_LOOKED_UP
        )
    association = PerimeterAssociation(
        perimeter_id=found["perimeter_id"],
        perimeter_name=found["perimeter_name"],
        profile_id=found["profile_id"],
        profile_name=found["profile_name"],
        access_mode_text=found["access_mode_text"],
        access_rules_version=found.get("access_rules_version"),
        inbound_rules=tuple(
            PerimeterAccessRule(
                name=rule["name"],
                address_prefixes=_ip_rules_from_json(rule.get("address_prefixes")),
                subscriptions=tuple(rule.get("subscriptions") or ()),
                service_tags=tuple(rule.get("service_tags") or ()),
                perimeters=tuple(rule.get("perimeters") or ()),
            )
            for rule in found.get("inbound_rules") or ()
        ),
        provisioning_issues=tuple(
            PerimeterProvisioningIssue(
                name=issue["name"],
                issue_type=issue.get("issue_type"),
                severity=issue.get("severity"),
                description=issue.get("description"),
            )
            for issue in found.get("provisioning_issues") or ()
        ),
        created=_stamp_from_json(found.get("created")),
        modified=_stamp_from_json(found.get("modified")),
        rules_modified=_stamp_from_json(found.get("rules_modified")),
    )
    return PerimeterReading(lookup=lookup, association=association)


def _stamp_from_json(data: Mapping[str, Any] | None) -> ArmStamp | None:
    """Absent in records written before kvmon kept the association's systemData: unknown."""
    if not data:
        return None
    return ArmStamp(by=data.get("by"), by_type=data.get("by_type"), at=parse_time(data.get("at")))


def posture_from_json(data: Mapping[str, Any]) -> VaultPosture:
    return VaultPosture(
        id=data["id"],
        name=data["name"],
        subscription_id=data["subscription_id"],
        resource_group=data["resource_group"],
        location=data["location"],
        vault_uri=data.get("vault_uri"),
        public_network_access=data["public_network_access"],
        network_acls_present=bool(data["network_acls_present"]),
        default_action=data["default_action"],
        bypass=data["bypass"],
        ip_rules=_ip_rules_from_json(data.get("ip_rules")),
        virtual_network_rules=tuple(
            VirtualNetworkRule(
                subnet_id=rule["subnet_id"],
                ignore_missing_service_endpoint=bool(rule.get("ignore_missing_service_endpoint", False)),
            )
            for rule in data.get("virtual_network_rules", ())
        ),
        private_endpoint_connections=tuple(
            PrivateEndpointConnection(
                id=pec["id"],
                private_endpoint_id=pec.get("private_endpoint_id"),
                status=pec.get("status"),
                provisioning_state=pec.get("provisioning_state"),
                description=pec.get("description"),
            )
            for pec in data.get("private_endpoint_connections", ())
        ),
        tags=dict(data.get("tags") or {}),
        tenant_id=data.get("tenant_id"),
        last_modified_by=data.get("last_modified_by"),
        last_modified_by_type=data.get("last_modified_by_type"),
        last_modified_at=parse_time(data.get("last_modified_at")),
        problems=tuple(data.get("problems") or ()),
        perimeter=_perimeter_from_json(data.get("perimeter")),
        unread=frozenset(data.get("unread") or ()),
    )


# A storage account's stored posture says so (``"service": "storage"``) in its JSON and in its
# entity; a vault's says nothing, as it always did, so the vaults' stored text (their fingerprints)
# and entities are unchanged.
_SERVICE = "service"


def account_to_json(posture: StorageAccountPosture) -> dict[str, Any]:
    data: dict[str, Any] = to_jsonable(posture)
    data[_SERVICE] = Service.STORAGE.value
    return data


def _storage_ip_rules_from_json(rules: Any) -> tuple[StorageIpRule, ...]:
    return tuple(
        StorageIpRule(
            value=_ip_rules_from_json([rule["value"]])[0],
            action=RuleAction(rule["action"]) if rule.get("action") else None,
        )
        for rule in rules or ()
    )


def _optional(kind: Callable[[Any], Known], text: Any) -> Known | None:
    return kind(text) if text is not None else None


def account_from_json(data: Mapping[str, Any]) -> StorageAccountPosture:
    return StorageAccountPosture(
        id=data["id"],
        name=data["name"],
        subscription_id=data["subscription_id"],
        resource_group=data["resource_group"],
        location=data["location"],
        public_network_access=_known(
            PublicNetworkAccess, data.get("public_network_access"), unknown=PublicNetworkAccess.UNKNOWN
        ),
        network_acls_present=bool(data["network_acls_present"]),
        default_action=DefaultAction(data["default_action"]),
        bypass=frozenset(StorageBypass(member) for member in data.get("bypass") or ()),
        ip_rules=_storage_ip_rules_from_json(data.get("ip_rules")),
        ipv6_rules=_storage_ip_rules_from_json(data.get("ipv6_rules")),
        virtual_network_rules=tuple(
            StorageVirtualNetworkRule(
                subnet_id=rule["subnet_id"],
                action=_optional(RuleAction, rule.get("action")),
                state=_optional(VirtualNetworkRuleState, rule.get("state")),
            )
            for rule in data.get("virtual_network_rules") or ()
        ),
        resource_access_rules=tuple(
            ResourceAccessRule(tenant_id=rule.get("tenant_id"), resource_id=rule["resource_id"])
            for rule in data.get("resource_access_rules") or ()
        ),
        private_endpoint_connections=tuple(
            StoragePrivateEndpointConnection(
                connection=PrivateEndpointConnection(
                    id=pec["connection"]["id"],
                    private_endpoint_id=pec["connection"].get("private_endpoint_id"),
                    status=pec["connection"].get("status"),
                    provisioning_state=pec["connection"].get("provisioning_state"),
                    description=pec["connection"].get("description"),
                ),
                subresource=_optional(StorageSubresource, pec.get("subresource")),
            )
            for pec in data.get("private_endpoint_connections") or ()
        ),
        primary_endpoints={
            StorageSubresource(name): url for name, url in (data.get("primary_endpoints") or {}).items()
        },
        allow_blob_public_access=data.get("allow_blob_public_access"),
        allow_shared_key_access=data.get("allow_shared_key_access"),
        minimum_tls_version=_optional(TlsVersion, data.get("minimum_tls_version")),
        supports_https_traffic_only=data.get("supports_https_traffic_only"),
        allowed_copy_scope=_optional(AllowedCopyScope, data.get("allowed_copy_scope")),
        dns_endpoint_type=_optional(DnsEndpointType, data.get("dns_endpoint_type")),
        tags=dict(data.get("tags") or {}),
        last_modified_by=data.get("last_modified_by"),
        last_modified_by_type=data.get("last_modified_by_type"),
        last_modified_at=parse_time(data.get("last_modified_at")),
        problems=tuple(data.get("problems") or ()),
        perimeter=_perimeter_from_json(data.get("perimeter")),
        unread=frozenset(data.get("unread") or ()),
    )


def resource_from_json(data: Mapping[str, Any]) -> VaultPosture | StorageAccountPosture:
    """A stored posture of either service, by what its JSON says (a vault's says nothing)."""
    if data.get(_SERVICE) == Service.STORAGE.value:
        return account_from_json(data)
    return posture_from_json(data)


def posture_fingerprint(posture: VaultPosture | StorageAccountPosture) -> str:
    """Equal for equal configurations: decides whether a snapshot is new history. It is also the
    JSON text the store keeps, so a stored posture is compared without decoding it."""
    if isinstance(posture, StorageAccountPosture):
        return _dumps(account_to_json(posture))
    return _dumps(posture_to_json(posture))


def snapshot_service(properties: Mapping[str, Any]) -> Service:
    """The service of a stored posture entity (one without the property is a vault's)."""
    return Service.STORAGE if properties.get(_SERVICE) == Service.STORAGE.value else Service.KEYVAULT


def snapshot_to_properties(snapshot: PostureSnapshot[Any], *, fingerprint: str | None = None) -> Properties:
    """``fingerprint``: the posture's, when the caller already has it (it is the stored text)."""
    properties: Properties = {
        "vault_id": snapshot.posture.id,
        "vault_key": snapshot.posture.key,
        "vault_name": snapshot.posture.name,
        "scan_id": snapshot.scan_id,
        "seen_at": iso(snapshot.seen_at),
    }
    if isinstance(snapshot.posture, StorageAccountPosture):
        properties[_SERVICE] = Service.STORAGE.value
    text = fingerprint if fingerprint is not None else posture_fingerprint(snapshot.posture)
    put_text(properties, "posture", text)
    return properties


def stored_posture_matches(properties: Mapping[str, Any], fingerprint: str) -> bool:
    """Whether stored snapshot properties hold the configuration with this fingerprint.

    Equal stored text is the common case and decodes nothing. Other text is decoded and encoded
    again before it counts as a change: one written by an older encoding (a field added to
    ``VaultPosture`` since, with its default) is the same configuration."""
    text = _get_text(properties, "posture")
    if text == fingerprint:
        return True
    if text is None:
        return False
    return posture_fingerprint(resource_from_json(json.loads(text))) == fingerprint


def snapshot_from_properties(properties: Mapping[str, Any], etag: str | None) -> PostureSnapshot[Any]:
    return PostureSnapshot(
        posture=resource_from_json(get_json(properties, "posture")),
        scan_id=properties["scan_id"],
        seen_at=required_time(properties["seen_at"]),
        etag=etag,
    )


# -- findings -------------------------------------------------------------------------------------


def finding_to_properties(record: FindingRecord) -> Properties:
    # What storable_finding makes of the finding, with the evidence's JSON text encoded once.
    finding = record.finding
    suppression = finding.suppression
    properties: Properties = {
        "finding_id": record.id,
        "rule_id": finding.rule_id,
        "severity": finding.severity.value,
        "title": fit_text(finding.title),
        "vault_id": finding.vault_id,
        "vault_key": finding.vault_id.lower(),
        "vault_name": finding.vault_name,
        "subject": finding.subject,
        "summary": fit_text(finding.summary),
        "remediation": fit_text(finding.remediation),
        "evidence": _trimmed_evidence(finding.evidence)[1],
        "suppression": _dumps(to_jsonable(suppression)) if suppression is not None else None,
        "status": record.status.value,
        "first_seen": iso(record.first_seen),
        "last_seen": iso(record.last_seen),
        "last_changed": iso(record.last_changed),
        "evidence_at": iso(record.evidence_at),
        "occurrences": record.occurrences,
        "resolved_at": iso(record.resolved_at),
        "confirmed_at": iso(record.confirmed_at),
        "confirmed_by": fit_text(record.confirmed_by) if record.confirmed_by is not None else None,
    }
    return _without_none(properties)


def finding_from_properties(properties: Mapping[str, Any], etag: str | None) -> FindingRecord:
    suppression = None
    if properties.get("suppression"):
        raw = json.loads(properties["suppression"])
        suppression = Suppression(
            rule=raw["rule"],
            vault_pattern=raw["vault_pattern"],
            reason=raw["reason"],
            owner=raw["owner"],
            expires=dt.date.fromisoformat(raw["expires"]) if raw.get("expires") else None,
        )
    finding = Finding(
        rule_id=properties["rule_id"],
        severity=Severity(properties["severity"]),
        title=properties.get("title", ""),
        vault_id=properties["vault_id"],
        vault_name=properties.get("vault_name", ""),
        subject=properties.get("subject", ""),
        evidence=json.loads(properties.get("evidence") or "{}"),
        summary=properties.get("summary", ""),
        remediation=properties.get("remediation", ""),
        suppression=suppression,
    )
    return FindingRecord(
        finding=finding,
        status=FindingStatus(properties["status"]),
        first_seen=required_time(properties["first_seen"]),
        last_seen=required_time(properties["last_seen"]),
        last_changed=required_time(properties["last_changed"]),
        evidence_at=parse_time(properties.get("evidence_at")),
        occurrences=int(properties.get("occurrences", 1)),
        resolved_at=parse_time(properties.get("resolved_at")),
        etag=etag,
        confirmed_at=parse_time(properties.get("confirmed_at")),
        confirmed_by=properties.get("confirmed_by"),
    )


# -- scan runs ------------------------------------------------------------------------------------


def scan_to_properties(run: ScanRun) -> Properties:
    properties: Properties = {
        "scan_id": run.scan_id,
        "started_at": iso(run.started_at),
        "finished_at": iso(run.finished_at),
        "duration_s": (run.finished_at - run.started_at).total_seconds() if run.finished_at else None,
        "trigger": run.trigger,
        "vault": run.vault,
        "logs_until": iso(run.logs_until),
        "error_count": len(run.errors),
    }
    put_json(properties, "scope", list(run.scope))
    put_json(properties, "counts", dict(run.counts))
    put_json(properties, "errors", [to_jsonable(error) for error in run.errors])
    return _without_none(properties)


def scan_from_properties(properties: Mapping[str, Any]) -> ScanRun:
    return ScanRun(
        scan_id=properties["scan_id"],
        scope=tuple(get_json(properties, "scope", [])),
        started_at=required_time(properties["started_at"]),
        finished_at=parse_time(properties.get("finished_at")),
        counts={key: int(value) for key, value in get_json(properties, "counts", {}).items()},
        errors=tuple(
            ScanError(
                source=_known(ErrorSource, e["source"], unknown=ErrorSource.UNKNOWN),
                scope=e["scope"],
                message=e["message"],
                code=e.get("code"),
            )
            for e in get_json(properties, "errors", [])
        ),
        trigger=_known(ScanTrigger, properties.get("trigger", ScanTrigger.CLI), unknown=ScanTrigger.UNKNOWN),
        vault=properties.get("vault"),
        logs_until=parse_time(properties.get("logs_until")),
    )


# -- outbox ---------------------------------------------------------------------------------------


def message_to_properties(message: OutboxMessage) -> Properties:
    properties: Properties = {
        "message_id": message.id,
        "channel": message.channel,
        "created_at": iso(message.created_at),
        "state": message.state,
        "attempts": message.attempts,
        "last_error": fit_text(message.last_error) if message.last_error is not None else None,
        "delivered_at": iso(message.delivered_at),
        "lease_until": iso(message.lease_until),
    }
    put_json(properties, "payload", dict(message.payload))
    return _without_none(properties)


def message_from_properties(properties: Mapping[str, Any], etag: str | None) -> OutboxMessage:
    return OutboxMessage(
        id=properties["message_id"],
        channel=properties["channel"],
        payload=get_json(properties, "payload", {}),
        created_at=required_time(properties["created_at"]),
        state=properties["state"],
        attempts=int(properties.get("attempts", 0)),
        last_error=properties.get("last_error"),
        delivered_at=parse_time(properties.get("delivered_at")),
        lease_until=parse_time(properties.get("lease_until")),
        etag=etag,
    )


def processed_event_to_properties(event: ProcessedEvent) -> Properties:
    return _without_none(
        {
            "event_id": fit_text(event.event_id),
            "vault_key": fit_text(event.vault_key),
            "outcome": event.outcome,
            "processed_at": iso(event.processed_at),
            "expires_at": iso(event.expires_at),
            "scan_id": event.scan_id,
        }
    )


def processed_event_from_properties(properties: Mapping[str, Any]) -> ProcessedEvent:
    return ProcessedEvent(
        event_id=properties["event_id"],
        vault_key=properties["vault_key"],
        outcome=properties["outcome"],
        processed_at=required_time(properties["processed_at"]),
        expires_at=required_time(properties["expires_at"]),
        scan_id=properties.get("scan_id"),
    )


# -- last-seen markers ----------------------------------------------------------------------------


def marker_to_properties(seen: Mapping[str, tuple[str, str]]) -> Properties:
    """vault key -> (seen_at ISO, scan id) for one partition. Past one property it is compressed
    (repeated times and scan ids make that about 20 bytes a vault: some 15,000 vaults a partition)."""
    properties: Properties = {"vaults": len(seen)}
    put_json(properties, "seen", {key: list(value) for key, value in sorted(seen.items())})
    return properties


def marker_from_properties(properties: Mapping[str, Any]) -> dict[str, tuple[str, str]]:
    return {key: (value[0], value[1]) for key, value in get_json(properties, "seen", {}).items()}
