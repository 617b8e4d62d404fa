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

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

from monitor.errors import InputError
from monitor.model import IpRule, PrivateEndpointConnection, VaultPosture, VirtualNetworkRule
from monitor.sources.armjson import (
    MISSING,
    Reader,
    ResourceIdParts,
    ip_rules,
    kind,
    lookup,
    moment,
    parse_resource_id,
    private_endpoint_connections,
    read_entries,
    tags,
)

VAULT_TYPE: Final = "Microsoft.KeyVault/vaults"

_PUBLIC_NETWORK_ACCESS = {v.lower(): v for v in ("Enabled", "Disabled", "SecuredByPerimeter")}
_DEFAULT_ACTIONS = {v.lower(): v for v in ("Allow", "Deny")}
_BYPASS = {v.lower(): v for v in ("AzureServices", "None")}


class InvalidVault(InputError, ValueError):
    """The value is not a vault at all: not a JSON object, or without an ``id``."""


class VaultFileError(InputError):
    """An offline input file that cannot be read as a whole (unreadable, not JSON, wrong shape).

    The message names the file and, for JSON errors, the line and column; the CLI prints it as
    one line and exits 2.
    """


def normalise_vault(raw: Mapping[str, Any]) -> VaultPosture:
    """One vault from ARM JSON or an SDK model's ``as_dict()``; ``InvalidVault`` when ``raw`` is
    not an object or has no ``id``. Anything else odd becomes a note in ``problems``."""
    if not isinstance(raw, Mapping):
        raise InvalidVault(f"a vault must be a JSON object, not {kind(raw)}")
    reader = Reader()
    vault_id = lookup(raw, "id")
    if not isinstance(vault_id, str) or not vault_id.strip():
        shown = "missing" if vault_id is MISSING else f"{kind(vault_id)}, not a resource id"
        raise InvalidVault(f"a vault must have an 'id' (the ARM resource id); it is {shown}")
    vault_id = vault_id.strip()
    parts = _parse_vault_id(vault_id, reader)

    name = reader.get(raw, "name")
    if not isinstance(name, str) or not name.strip():
        shown = "missing" if name is None else "empty" if isinstance(name, str) else kind(name)
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
        tags=tags(raw, reader),
        tenant_id=reader.text(properties, "tenantId", "properties.tenantId"),
        last_modified_by=reader.text(system_data, "lastModifiedBy", "systemData.lastModifiedBy"),
        last_modified_by_type=reader.text(system_data, "lastModifiedByType", "systemData.lastModifiedByType"),
        last_modified_at=moment(
            reader.get(system_data, "lastModifiedAt"), "systemData.lastModifiedAt", reader
        ),
        problems=tuple(reader.problems),
        unread=frozenset(reader.unread),
    )


def _parse_vault_id(vault_id: str, reader: Reader) -> ResourceIdParts:
    parts = parse_resource_id(vault_id, provider="Microsoft.KeyVault", resource_type="vaults")
    if not parts.matches:
        reader.note(
            f"id {vault_id!r} is not a Key Vault resource id "
            "(/subscriptions/SUB/resourceGroups/RG/providers/Microsoft.KeyVault/vaults/NAME)"
        )
    return parts


def _ip_rules(acls: Mapping[Any, Any], reader: Reader) -> tuple[IpRule, ...]:
    return tuple(rule for rule, _ in ip_rules(acls, "ipRules", "properties.networkAcls.ipRules", reader))


def _flag(value: Any, path: str, reader: Reader) -> bool:
    if value is None:
        return False
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        reader.note(f"{path} is the string {value!r}, expected true or false: read as a boolean")
        return value.strip().lower() == "true"
    reader.note(f"{path} is {kind(value)}, expected true or false: read as false")
    return False


def _virtual_network_rules(acls: Mapping[Any, Any], reader: Reader) -> tuple[VirtualNetworkRule, ...]:
    rules: list[VirtualNetworkRule] = []
    path = "properties.networkAcls.virtualNetworkRules"
    for index, item in enumerate(reader.items(acls, "virtualNetworkRules", path)):
        item_path = f"{path}[{index}]"
        if not isinstance(item, Mapping):
            reader.note(f"{item_path} is {kind(item)}, expected an object with 'id': ignored")
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
    properties: Mapping[Any, Any], reader: Reader
) -> tuple[PrivateEndpointConnection, ...]:
    return tuple(
        connection
        for connection, _ in private_endpoint_connections(
            properties, "properties.privateEndpointConnections", reader
        )
    )


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
    entries = read_entries(Path(path), error=VaultFileError, noun="vault", plural="vaults")
    postures: list[VaultPosture] = []
    problems: list[str] = []
    for where, item in entries:
        try:
            postures.append(normalise_vault(item))
        except InvalidVault as exc:
            problems.append(f"{where}: {exc}")
    return postures, problems
