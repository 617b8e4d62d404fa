"""ARM's storage account JSON, in any of the shapes people hold it, to a ``StorageAccountPosture``.

The shapes:

- ARM REST JSON (``storage_accounts.list()`` / ``get_properties`` as the REST API answers, api-version
  2025-06-01): the account's fields under ``properties``, the firewall as ``networkAcls``, an IP
  rule's address as ``value``, a virtual network rule's subnet as ``id``;
- azure-mgmt-storage's models (``StorageAccount.as_dict()``) and ``az storage account show/list``,
  which flatten ``properties`` onto the account and use the SDK's names: ``network_rule_set`` /
  ``networkRuleSet``, ``ip_address_or_range``, ``virtual_network_resource_id``,
  ``enable_https_traffic_only`` / ``enableHttpsTrafficOnly``.

Keys are looked up ignoring case and underscores (``monitor.sources.armjson``). Azure's defaults are
the service's (``monitor.model_storage`` documents each): publicNetworkAccess absent leaves the
firewall to decide, networkAcls absent admits everyone, defaultAction absent is Allow, bypass absent is
AzureServices. A value of the wrong type never crashes: it is noted in ``problems`` and, when the
field then holds a default nobody saw, its path (always the REST path, ``properties.networkAcls...``,
whatever the shape) is in ``unread``, so no rule judges it. Only a value that is not an object, or has
no ``id``, is not an account at all (``InvalidStorageAccount``).

A private endpoint connection does not name the sub-resource it serves in the account's document
(Azure lists it on the private endpoint); a connection that carries ``groupIds`` or ``groupId`` (a
document a reader enriched from the endpoint) gives it. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from monitor.errors import InputError
from monitor.model_storage import (
    PRIMARY_SUBRESOURCES,
    STORAGE_ACCOUNT_TYPE,
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
from monitor.sources.armjson import (
    MISSING,
    Reader,
    ip_rules,
    kind,
    lookup,
    moment,
    parse_resource_id,
    private_endpoint_connections,
    tags,
)

PROPERTIES = "properties"
ACLS = "properties.networkAcls"
# Fields that only a storage account's document has at its top level when the SDK or az flattened
# ``properties`` onto it.
_FLATTENED_MARKERS = (
    "primaryEndpoints",
    "networkRuleSet",
    "enableHttpsTrafficOnly",
    "publicNetworkAccess",
    "allowBlobPublicAccess",
    "allowSharedKeyAccess",
    "minimumTlsVersion",
    "privateEndpointConnections",
)


class InvalidStorageAccount(InputError, ValueError):
    """The value is not a storage account at all: not a JSON object, or without an ``id``."""


def normalise_storage_account(raw: Mapping[str, Any]) -> StorageAccountPosture:
    """One account from ARM JSON, an SDK model's ``as_dict()`` or ``az storage account show``;
    ``InvalidStorageAccount`` when ``raw`` is not an object or has no ``id``."""
    if not isinstance(raw, Mapping):
        raise InvalidStorageAccount(f"a storage account must be a JSON object, not {kind(raw)}")
    reader = Reader()
    account_id = lookup(raw, "id")
    if not isinstance(account_id, str) or not account_id.strip():
        shown = "missing" if account_id is MISSING else f"{kind(account_id)}, not a resource id"
        raise InvalidStorageAccount(
            f"a storage account must have an 'id' (the ARM resource id); it is {shown}"
        )
    account_id = account_id.strip()
    parts = parse_resource_id(account_id, provider="Microsoft.Storage", resource_type="storageAccounts")
    if not parts.matches:
        reader.note(
            f"id {account_id!r} is not a storage account resource id "
            "(/subscriptions/SUB/resourceGroups/RG/providers/Microsoft.Storage/storageAccounts/NAME)"
        )
    name = reader.get(raw, "name")
    if not isinstance(name, str) or not name.strip():
        shown = "missing" if name is None else "empty" if isinstance(name, str) else kind(name)
        reader.note(f"name is {shown}: taken from the id ({parts.name!r})")
        name = parts.name
    resource_type = reader.text(raw, "type", "type")
    if resource_type is not None and resource_type.lower() != STORAGE_ACCOUNT_TYPE.lower():
        reader.note(f"type is {resource_type!r}, not {STORAGE_ACCOUNT_TYPE}")

    properties = _properties(raw, reader)
    acls_key, acls_value = reader.first(properties, "networkAcls", "networkRuleSet")
    acls = reader.mapping(properties, acls_key, ACLS) if acls_value is not None else None
    system_data = reader.mapping(raw, "systemData", "systemData") or {}
    return StorageAccountPosture(
        id=account_id,
        name=name,
        subscription_id=parts.subscription_id,
        resource_group=parts.resource_group,
        location=reader.text(raw, "location", "location") or "",
        public_network_access=_public_network_access(properties, reader),
        network_acls_present=acls is not None,
        default_action=_default_action(acls or {}, reader),
        bypass=_bypass(acls or {}, reader),
        ip_rules=_ip_rules(acls or {}, "ipRules", reader),
        ipv6_rules=_ip_rules(acls or {}, "ipv6Rules", reader),
        virtual_network_rules=_virtual_network_rules(acls or {}, reader),
        resource_access_rules=_resource_access_rules(acls or {}, reader),
        private_endpoint_connections=_connections(properties, reader),
        primary_endpoints=_primary_endpoints(properties, reader),
        allow_blob_public_access=_boolean(properties, "allowBlobPublicAccess", reader),
        allow_shared_key_access=_boolean(properties, "allowSharedKeyAccess", reader),
        minimum_tls_version=reader.member(
            reader.get(properties, "minimumTlsVersion"), TlsVersion, f"{PROPERTIES}.minimumTlsVersion"
        ),
        supports_https_traffic_only=_boolean(
            properties, "supportsHttpsTrafficOnly", reader, sdk_name="enableHttpsTrafficOnly"
        ),
        allowed_copy_scope=reader.member(
            reader.get(properties, "allowedCopyScope"), AllowedCopyScope, f"{PROPERTIES}.allowedCopyScope"
        ),
        dns_endpoint_type=reader.member(
            reader.get(properties, "dnsEndpointType"), DnsEndpointType, f"{PROPERTIES}.dnsEndpointType"
        ),
        tags=tags(raw, reader),
        last_modified_by=reader.text(system_data, "lastModifiedBy", "systemData.lastModifiedBy"),
        last_modified_by_type=reader.text(system_data, "lastModifiedByType", "systemData.lastModifiedByType"),
        last_modified_at=moment(
            reader.get(system_data, "lastModifiedAt"), "systemData.lastModifiedAt", reader
        ),
        problems=tuple(reader.problems),
        unread=frozenset(reader.unread),
    )


def _properties(raw: Mapping[str, Any], reader: Reader) -> Mapping[Any, Any]:
    """The account's fields: under ``properties`` (REST), or on the account itself (SDK, az)."""
    value = reader.get(raw, PROPERTIES)
    if isinstance(value, Mapping):
        return value
    if value is None and any(lookup(raw, marker) is not MISSING for marker in _FLATTENED_MARKERS):
        return raw
    if value is None:
        reader.note(
            "properties are missing: the network configuration is unknown and Azure's defaults "
            "(public access enabled, no firewall) were assumed; the generic resources API returns "
            "no properties"
        )
    else:
        reader.note(f"properties is {kind(value)}, expected an object: ignored")
    reader.unread.add(PROPERTIES)
    return {}


def _public_network_access(properties: Mapping[Any, Any], reader: Reader) -> PublicNetworkAccess:
    path = f"{PROPERTIES}.publicNetworkAccess"
    value = reader.get(properties, "publicNetworkAccess")
    if value is None:
        return PublicNetworkAccess.ABSENT
    member = reader.member(value, PublicNetworkAccess, path)
    if member is None:
        return PublicNetworkAccess.UNKNOWN  # noted, and unread
    if member in (PublicNetworkAccess.ABSENT, PublicNetworkAccess.UNKNOWN):
        reader.note(f"{path} is {value!r}, not a value Azure writes: not judged")
        reader.unread.add(path)
        return PublicNetworkAccess.UNKNOWN
    return member


def _default_action(acls: Mapping[Any, Any], reader: Reader) -> DefaultAction:
    path = f"{ACLS}.defaultAction"
    return reader.member(reader.get(acls, "defaultAction"), DefaultAction, path) or DefaultAction.ALLOW


def _bypass(acls: Mapping[Any, Any], reader: Reader) -> frozenset[StorageBypass]:
    """The comma-separated set ("Logging, Metrics"); absent: AzureServices, Azure's default."""
    path = f"{ACLS}.bypass"
    value = reader.get(acls, "bypass")
    if value is None:
        return frozenset({StorageBypass.AZURE_SERVICES})
    if not isinstance(value, str):
        reader.note(f"{path} is {kind(value)}, expected a comma-separated string: not judged")
        reader.unread.add(path)
        return frozenset({StorageBypass.AZURE_SERVICES})
    members: set[StorageBypass] = set()
    for part in value.split(","):
        if not part.strip():
            continue
        member = reader.member(part.strip(), StorageBypass, path)
        if member is None:  # noted and unread: the set is not what Azure applies
            return frozenset({StorageBypass.AZURE_SERVICES})
        members.add(member)
    if not members:
        reader.note(f"{path} is empty: not judged")
        reader.unread.add(path)
        return frozenset({StorageBypass.AZURE_SERVICES})
    if StorageBypass.NONE in members and len(members) > 1:
        reader.note(f"{path} is {value!r}: None with other members; read as the others")
        members.discard(StorageBypass.NONE)
    return frozenset(members)


def _action(item: Mapping[Any, Any] | None, path: str, reader: Reader) -> RuleAction | None:
    if item is None:
        return None
    return reader.member(reader.get(item, "action"), RuleAction, f"{path}.action")


def _ip_rules(acls: Mapping[Any, Any], key: str, reader: Reader) -> tuple[StorageIpRule, ...]:
    path = f"{ACLS}.{key}"
    return tuple(
        StorageIpRule(value=rule, action=_action(item, f"{path}[{index}]", reader))
        for index, (rule, item) in enumerate(
            ip_rules(acls, key, path, reader, value_keys=("value", "ipAddressOrRange"))
        )
    )


def _virtual_network_rules(acls: Mapping[Any, Any], reader: Reader) -> tuple[StorageVirtualNetworkRule, ...]:
    rules: list[StorageVirtualNetworkRule] = []
    path = f"{ACLS}.virtualNetworkRules"
    for index, item in enumerate(reader.items(acls, "virtualNetworkRules", path)):
        item_path = f"{path}[{index}]"
        if not isinstance(item, Mapping):
            reader.note(f"{item_path} is {kind(item)}, expected an object with 'id': ignored")
            continue
        key, _ = reader.first(item, "id", "virtualNetworkResourceId")
        subnet_id = reader.text(item, key, f"{item_path}.id")
        if not subnet_id:
            reader.note(f"{item_path} has no subnet 'id': ignored")
            continue
        state = reader.member(reader.get(item, "state"), VirtualNetworkRuleState, f"{item_path}.state")
        rules.append(StorageVirtualNetworkRule(subnet_id, _action(item, item_path, reader), state))
    return tuple(rules)


def _resource_access_rules(acls: Mapping[Any, Any], reader: Reader) -> tuple[ResourceAccessRule, ...]:
    rules: list[ResourceAccessRule] = []
    path = f"{ACLS}.resourceAccessRules"
    for index, item in enumerate(reader.items(acls, "resourceAccessRules", path)):
        item_path = f"{path}[{index}]"
        if not isinstance(item, Mapping):
            reader.note(f"{item_path} is {kind(item)}, expected an object with 'resourceId': ignored")
            continue
        resource_id = reader.text(item, "resourceId", f"{item_path}.resourceId")
        if not resource_id:
            reader.note(f"{item_path} has no 'resourceId': ignored")
            continue
        rules.append(ResourceAccessRule(reader.text(item, "tenantId", f"{item_path}.tenantId"), resource_id))
    return tuple(rules)


def _connections(
    properties: Mapping[Any, Any], reader: Reader
) -> tuple[StoragePrivateEndpointConnection, ...]:
    path = f"{PROPERTIES}.privateEndpointConnections"
    return tuple(
        StoragePrivateEndpointConnection(connection, _subresource(fields, f"{path}[{index}]", reader))
        for index, (connection, fields) in enumerate(private_endpoint_connections(properties, path, reader))
    )


def _subresource(fields: Mapping[Any, Any], path: str, reader: Reader) -> StorageSubresource | None:
    """``groupIds`` (the private endpoint's spelling, a list of one) or ``groupId``; None when the
    document does not say, as the account's own document never does."""
    key, value = reader.first(fields, "groupIds", "groupId")
    if value is None:
        return None
    if isinstance(value, list | tuple):
        if len(value) != 1:
            reader.note(f"{path}.{key} is {value!r}: a storage private endpoint serves one sub-resource")
            reader.unread.add(f"{path}.{key}")
            return None
        value = value[0]
    return reader.member(value, StorageSubresource, f"{path}.{key}")


def _primary_endpoints(properties: Mapping[Any, Any], reader: Reader) -> dict[StorageSubresource, str]:
    endpoints = reader.mapping(properties, "primaryEndpoints", f"{PROPERTIES}.primaryEndpoints") or {}
    found: dict[StorageSubresource, str] = {}
    for subresource in PRIMARY_SUBRESOURCES:
        url = reader.text(endpoints, subresource.value, f"{PROPERTIES}.primaryEndpoints.{subresource.value}")
        if url:
            found[subresource] = url
    return found


def _boolean(
    properties: Mapping[Any, Any], name: str, reader: Reader, *, sdk_name: str | None = None
) -> bool | None:
    _, value = reader.first(properties, name, *((sdk_name,) if sdk_name else ()))
    return reader.boolean(value, f"{PROPERTIES}.{name}")
