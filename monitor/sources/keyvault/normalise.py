"""ARM's vault JSON, in any of the shapes people hold it, to a ``VaultPosture``.

One normaliser serves the live inventory and offline files, so the same vault gives the same
posture whichever way it arrived:

- ARM REST JSON (camelCase), which is also what ``az keyvault show/list`` print and what
  azure-mgmt-keyvault 14.x ``Vault.as_dict()`` returns (its models are mappings over the response
  JSON);
- the snake_case ``as_dict()`` of older, msrest-based SDK models (``network_acls``,
  ``public_network_access``, ``system_data``...), whose private endpoint connections are flat
  rather than nested under ``properties`` as they are since 13.0.

Keys are therefore looked up ignoring case and underscores. Azure's defaults are applied as the
service applies them (AZURE-NOTES.md): publicNetworkAccess absent = Enabled, networkAcls absent or
null = nothing restricts, defaultAction absent = Allow, bypass absent = AzureServices.

Real data is messy (Azure's own published example carries an IP rule wrapped in quotes), so a
value of the wrong type never crashes: the field takes its default and a note goes into
``VaultPosture.problems``. Only a value that is not an object, or has no ``id``, is not a vault
at all (``InvalidVault``). Pure: no I/O, except ``load_vault_file`` which reads the one file named.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final, NamedTuple

from monitor.errors import InputError
from monitor.model import IpRule, PrivateEndpointConnection, VaultPosture, VirtualNetworkRule
from monitor.netaddr import parse_network

VAULT_TYPE: Final = "Microsoft.KeyVault/vaults"

_PUBLIC_NETWORK_ACCESS = {v.lower(): v for v in ("Enabled", "Disabled", "SecuredByPerimeter")}
_DEFAULT_ACTIONS = {v.lower(): v for v in ("Allow", "Deny")}
_BYPASS = {v.lower(): v for v in ("AzureServices", "None")}
_CONNECTION_STATUS = {v.lower(): v for v in ("Pending", "Approved", "Rejected", "Disconnected")}
_PROVISIONING_STATES = {
    v.lower(): v for v in ("Succeeded", "Creating", "Updating", "Deleting", "Failed", "Disconnected")
}


class InvalidVault(InputError, ValueError):
    """The value is not a vault at all: not a JSON object, or without an ``id``."""


class VaultFileError(InputError):
    """An offline input file that cannot be read as a whole (unreadable, not JSON, wrong shape).

    The message names the file and, for JSON errors, the line and column; the CLI prints it as
    one line and exits 2.
    """


_MISSING: Final = object()


def _fold(key: str) -> str:
    return key.replace("_", "").lower()


def _lookup(mapping: Mapping[Any, Any], key: str) -> Any:
    """``mapping[key]`` matching camelCase, snake_case or any casing; ``_MISSING`` when absent."""
    if key in mapping:
        return mapping[key]
    wanted = _fold(key)
    for candidate, value in mapping.items():
        if isinstance(candidate, str) and _fold(candidate) == wanted:
            return value
    return _MISSING


def _kind(value: Any) -> str:
    """The JSON type of ``value`` in words, for problem notes."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, Sequence):
        return "a list"
    return type(value).__name__


class _Reader:
    """Typed reads from loose JSON that note every value of the wrong type instead of raising."""

    def __init__(self) -> None:
        self.problems: list[str] = []
        self.unread: set[str] = set()  # paths whose value could not be read (Azure's default stands in)

    def note(self, message: str) -> None:
        self.problems.append(message)

    def get(self, parent: Mapping[Any, Any], key: str) -> Any:
        """The raw value; None when absent (ARM treats a null property as an absent one)."""
        value = _lookup(parent, key)
        return None if value is _MISSING else value

    def mapping(self, parent: Mapping[Any, Any], key: str, path: str) -> Mapping[Any, Any] | None:
        value = self.get(parent, key)
        if value is None or isinstance(value, Mapping):
            return value
        self.note(f"{path} is {_kind(value)}, expected an object: ignored")
        self.unread.add(path)
        return None

    def text(self, parent: Mapping[Any, Any], key: str, path: str) -> str | None:
        value = self.get(parent, key)
        if value is None or isinstance(value, str):
            return value
        self.note(f"{path} is {_kind(value)}, expected a string: ignored")
        self.unread.add(path)
        return None

    def items(self, parent: Mapping[Any, Any], key: str, path: str) -> list[Any]:
        value = self.get(parent, key)
        if value is None:
            return []
        if isinstance(value, list | tuple):
            return list(value)
        self.note(f"{path} is {_kind(value)}, expected a list: ignored")
        self.unread.add(path)
        return []

    def choice(self, text: str | None, known: Mapping[str, str], *, default: str, path: str) -> str:
        """A known value in its canonical spelling (compared case-insensitively), the default when
        absent, or the raw text (noted) when Azure has a value kvmon does not know."""
        if text is None:
            return default
        canonical = known.get(text.strip().lower())
        if canonical is not None:
            return canonical
        accepted = ", ".join(known.values())
        self.note(f"{path} is {text!r}, not one of {accepted}: kept as written")
        return text


def normalise_vault(raw: Mapping[str, Any]) -> VaultPosture:
    """One vault from ARM JSON or an SDK model's ``as_dict()``; ``InvalidVault`` when ``raw`` is
    not an object or has no ``id``. Anything else odd becomes a note in ``problems``."""
    if not isinstance(raw, Mapping):
        raise InvalidVault(f"a vault must be a JSON object, not {_kind(raw)}")
    reader = _Reader()
    vault_id = _lookup(raw, "id")
    if not isinstance(vault_id, str) or not vault_id.strip():
        shown = "missing" if vault_id is _MISSING else f"{_kind(vault_id)}, not a resource id"
        raise InvalidVault(f"a vault must have an 'id' (the ARM resource id); it is {shown}")
    vault_id = vault_id.strip()
    parts = _parse_vault_id(vault_id, reader)

    name = reader.get(raw, "name")
    if not isinstance(name, str) or not name.strip():
        shown = "missing" if name is None else "empty" if isinstance(name, str) else _kind(name)
        reader.note(f"name is {shown}: taken from the id ({parts.name!r})")
        name = parts.name
    resource_type = reader.text(raw, "type", "type")
    if resource_type is not None and resource_type.lower() != VAULT_TYPE.lower():
        reader.note(f"type is {resource_type!r}, not {VAULT_TYPE}")

    properties = reader.mapping(raw, "properties", "properties")
    if properties is None:
        reader.note(
            "properties are missing: the network configuration is unknown and Azure's defaults "
            "(public access enabled, no firewall) were assumed; vaults.list() and the generic "
            "resources API return no properties"
        )
        reader.unread.add("properties")
        properties = {}

    public_network_access = reader.choice(
        reader.text(properties, "publicNetworkAccess", "properties.publicNetworkAccess"),
        _PUBLIC_NETWORK_ACCESS,
        default="Enabled",
        path="properties.publicNetworkAccess",
    )
    acls = reader.mapping(properties, "networkAcls", "properties.networkAcls")
    acls_path = "properties.networkAcls"
    default_action = reader.choice(
        reader.text(acls or {}, "defaultAction", f"{acls_path}.defaultAction"),
        _DEFAULT_ACTIONS,
        default="Allow",
        path=f"{acls_path}.defaultAction",
    )
    bypass = reader.choice(
        reader.text(acls or {}, "bypass", f"{acls_path}.bypass"),
        _BYPASS,
        default="AzureServices",
        path=f"{acls_path}.bypass",
    )
    system_data = reader.mapping(raw, "systemData", "systemData") or {}
    return VaultPosture(
        id=vault_id,
        name=name,
        subscription_id=parts.subscription_id,
        resource_group=parts.resource_group,
        location=reader.text(raw, "location", "location") or "",
        vault_uri=reader.text(properties, "vaultUri", "properties.vaultUri"),
        public_network_access=public_network_access,
        network_acls_present=acls is not None,
        default_action=default_action,
        bypass=bypass,
        ip_rules=_ip_rules(acls or {}, reader),
        virtual_network_rules=_virtual_network_rules(acls or {}, reader),
        private_endpoint_connections=_private_endpoint_connections(properties, reader),
        tags=_tags(raw, reader),
        tenant_id=reader.text(properties, "tenantId", "properties.tenantId"),
        last_modified_by=reader.text(system_data, "lastModifiedBy", "systemData.lastModifiedBy"),
        last_modified_by_type=reader.text(system_data, "lastModifiedByType", "systemData.lastModifiedByType"),
        last_modified_at=_moment(
            reader.get(system_data, "lastModifiedAt"), "systemData.lastModifiedAt", reader
        ),
        problems=tuple(reader.problems),
        unread=frozenset(reader.unread),
    )


class _IdParts(NamedTuple):
    subscription_id: str
    resource_group: str
    name: str


def _parse_vault_id(vault_id: str, reader: _Reader) -> _IdParts:
    """Subscription, resource group and name from the id; ARM may return the segment names in any
    case (``resourcegroups``, ``microsoft.keyvault``)."""
    segments = [s for s in vault_id.split("/") if s]
    folded = [s.lower() for s in segments]

    def after(segment: str) -> str:
        if segment in folded:
            index = folded.index(segment)
            if index + 1 < len(segments):
                return segments[index + 1]
        return ""

    # Subscription ids are GUIDs, case-insensitive: kept lower-cased (ARM's usual spelling) so
    # they compare with the inventory's ``subscriptions_complete`` whatever case a source used.
    subscription_id = after("subscriptions").lower()
    resource_group = after("resourcegroups")
    name = segments[-1] if segments else vault_id
    provider_at = folded.index("providers") if "providers" in folded else -1
    is_vault_id = (
        bool(subscription_id)
        and bool(resource_group)
        and provider_at >= 0
        and folded[provider_at + 1 : provider_at + 3] == ["microsoft.keyvault", "vaults"]
        and len(segments) == provider_at + 4
    )
    if not is_vault_id:
        reader.note(
            f"id {vault_id!r} is not a Key Vault resource id "
            "(/subscriptions/SUB/resourceGroups/RG/providers/Microsoft.KeyVault/vaults/NAME)"
        )
    return _IdParts(subscription_id, resource_group, name)


def _ip_rules(acls: Mapping[Any, Any], reader: _Reader) -> tuple[IpRule, ...]:
    rules: list[IpRule] = []
    for index, item in enumerate(reader.items(acls, "ipRules", "properties.networkAcls.ipRules")):
        path = f"properties.networkAcls.ipRules[{index}]"
        if isinstance(item, Mapping):
            value = reader.get(item, "value")
        else:
            reader.note(f"{path} is {_kind(item)}, expected an object with 'value'")
            value = item
        if not isinstance(value, str):
            # Kept (unparsed) rather than dropped: a rule nobody can read is itself a finding.
            if isinstance(item, Mapping):
                reader.note(f"{path}.value is {_kind(value)}, expected an address or CIDR string")
            rules.append(IpRule(json.dumps(value, default=str), None))
            continue
        try:
            network = parse_network(value)
        except ValueError:
            network = None
        rules.append(IpRule(value, network))
    return tuple(rules)


def _flag(value: Any, path: str, reader: _Reader) -> bool:
    if value is None:
        return False
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        reader.note(f"{path} is the string {value!r}, expected true or false: read as a boolean")
        return value.strip().lower() == "true"
    reader.note(f"{path} is {_kind(value)}, expected true or false: read as false")
    return False


def _virtual_network_rules(acls: Mapping[Any, Any], reader: _Reader) -> tuple[VirtualNetworkRule, ...]:
    rules: list[VirtualNetworkRule] = []
    path = "properties.networkAcls.virtualNetworkRules"
    for index, item in enumerate(reader.items(acls, "virtualNetworkRules", path)):
        item_path = f"{path}[{index}]"
        if not isinstance(item, Mapping):
            reader.note(f"{item_path} is {_kind(item)}, expected an object with 'id': ignored")
            continue
        subnet_id = reader.text(item, "id", f"{item_path}.id")
        if not subnet_id:
            reader.note(f"{item_path} has no subnet 'id': ignored")
            continue
        ignore_missing = _flag(
            reader.get(item, "ignoreMissingVnetServiceEndpoint"),
            f"{item_path}.ignoreMissingVnetServiceEndpoint",
            reader,
        )
        rules.append(VirtualNetworkRule(subnet_id, ignore_missing))
    return tuple(rules)


def _private_endpoint_connections(
    properties: Mapping[Any, Any], reader: _Reader
) -> tuple[PrivateEndpointConnection, ...]:
    connections: list[PrivateEndpointConnection] = []
    path = "properties.privateEndpointConnections"
    for index, item in enumerate(reader.items(properties, "privateEndpointConnections", path)):
        item_path = f"{path}[{index}]"
        if not isinstance(item, Mapping):
            reader.note(f"{item_path} is {_kind(item)}, expected an object: ignored")
            continue
        # REST and SDK >= 13 nest the fields under "properties"; az CLI output and older SDK
        # models carry them on the item itself.
        nested = reader.mapping(item, "properties", f"{item_path}.properties")
        fields, fields_path = (nested, f"{item_path}.properties") if nested is not None else (item, item_path)
        endpoint = reader.mapping(fields, "privateEndpoint", f"{fields_path}.privateEndpoint") or {}
        endpoint_id = reader.text(endpoint, "id", f"{fields_path}.privateEndpoint.id")
        state_path = f"{fields_path}.privateLinkServiceConnectionState"
        state = reader.mapping(fields, "privateLinkServiceConnectionState", state_path) or {}
        status = reader.text(state, "status", f"{state_path}.status")
        if status is not None:
            status = reader.choice(status, _CONNECTION_STATUS, default=status, path=f"{state_path}.status")
        provisioning_state = reader.text(fields, "provisioningState", f"{fields_path}.provisioningState")
        if provisioning_state is None and nested is not None:
            provisioning_state = reader.text(item, "provisioningState", f"{item_path}.provisioningState")
        if provisioning_state is not None:
            provisioning_state = _PROVISIONING_STATES.get(provisioning_state.lower(), provisioning_state)
        connection_id = reader.text(item, "id", f"{item_path}.id")
        if not connection_id:
            connection_id = endpoint_id or f"privateEndpointConnections[{index}]"
            reader.note(f"{item_path} has no 'id': identified as {connection_id!r}")
        connections.append(
            PrivateEndpointConnection(
                id=connection_id,
                private_endpoint_id=endpoint_id,
                status=status,
                provisioning_state=provisioning_state,
                description=reader.text(state, "description", f"{state_path}.description"),
            )
        )
    return tuple(connections)


def _tags(raw: Mapping[Any, Any], reader: _Reader) -> dict[str, str]:
    tags = reader.mapping(raw, "tags", "tags") or {}
    result: dict[str, str] = {}
    for key, value in tags.items():
        if isinstance(key, str) and isinstance(value, str):
            result[key] = value
        else:
            reader.note(f"tags[{key!r}] is {_kind(value)}, expected a string: ignored")
    return result


def _moment(value: Any, path: str, reader: _Reader) -> dt.datetime | None:
    """An aware UTC datetime from ISO 8601 text (ARM writes 7 fractional digits) or a datetime
    (older SDK models); ARM's times are UTC, so a time without an offset is read as UTC."""
    if value is None:
        return None
    if not isinstance(value, dt.datetime | str):
        reader.note(f"{path} is {_kind(value)}, expected an ISO 8601 time: ignored")
        return None
    try:
        moment = value if isinstance(value, dt.datetime) else dt.datetime.fromisoformat(value.strip())
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=dt.UTC)
        return moment.astimezone(dt.UTC)
    except (ValueError, OverflowError):  # not ISO 8601, or out of range once moved to UTC
        reader.note(f"{path} is {value!r}, not an ISO 8601 time Python can represent: ignored")
        return None


# ---------------------------------------------------------------------------------------------
# Offline files
# ---------------------------------------------------------------------------------------------


def load_vault_file(path: Path | str) -> tuple[list[VaultPosture], list[str]]:
    """Postures from one offline JSON file, and one message per entry that is not a vault.

    The file may hold a single vault (``az keyvault show``), an ARM list page ``{"value": [...]}``
    (the REST API), or a JSON array of vaults (``az keyvault list``). A malformed entry is
    reported as ``"FILE: value[INDEX]: reason"`` and does not hide the others; problems inside a
    vault that was read are in its ``problems``. ``VaultFileError`` when the file as a whole cannot
    be read: missing, not JSON (with line and column), or not one of those shapes.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise VaultFileError(f"{path}: cannot read the file: {exc.strerror or exc}") from None
    document = _parse_json(data, path)
    if isinstance(document, list):
        entries = [(f"{path}: [{index}]", item) for index, item in enumerate(document)]
    elif isinstance(document, dict) and "value" in document and "id" not in document:
        page = document["value"]
        if not isinstance(page, list):
            raise VaultFileError(f"{path}: 'value' is {_kind(page)}; an ARM list page holds a list of vaults")
        entries = [(f"{path}: value[{index}]", item) for index, item in enumerate(page)]
    elif isinstance(document, dict):
        entries = [(str(path), document)]
    else:
        raise VaultFileError(
            f"{path}: the file holds {_kind(document)}; expected a vault object, an ARM list page "
            '{"value": [...]} or a JSON array of vaults'
        )
    postures: list[VaultPosture] = []
    problems: list[str] = []
    for where, item in entries:
        try:
            postures.append(normalise_vault(item))
        except InvalidVault as exc:
            problems.append(f"{where}: {exc}")
    return postures, problems


def _parse_json(data: bytes, path: Path) -> Any:
    # json.loads on bytes detects UTF-8 (with or without BOM), UTF-16 and UTF-32: PowerShell's
    # redirection writes UTF-16, az on Windows may write a BOM.
    try:
        return json.loads(data)
    except json.JSONDecodeError as exc:
        raise VaultFileError(f"{path}:{exc.lineno}:{exc.colno}: invalid JSON: {exc.msg}") from None
    except UnicodeDecodeError as exc:
        raise VaultFileError(f"{path}: not UTF-8, UTF-16 or UTF-32 text (byte {exc.start})") from None
    except RecursionError:
        raise VaultFileError(f"{path}: JSON nested too deeply to read") from None
