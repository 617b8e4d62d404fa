"""Loose reads of ARM's JSON: what every service's normaliser shares.

ARM documents arrive in several shapes (REST camelCase, ``az`` output, SDK models' ``as_dict()`` in
snake_case), so keys are looked up ignoring case and underscores (``lookup``). Real data is messy, so
a value of the wrong type never raises: ``Reader`` notes it (``problems``) and, where the field then
holds a default nobody saw, records its path (``unread``). ``read_entries`` splits an offline file
(one resource, an ARM list page, a JSON array) into its entries. Pure, except ``read_entries``,
which reads the one file named.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping, Sequence
from enum import StrEnum
from pathlib import Path
from typing import Any, Final, NamedTuple, TypeVar

from monitor.errors import InputError
from monitor.model import IpRule, PrivateEndpointConnection
from monitor.netaddr import parse_network

MISSING: Final = object()

E = TypeVar("E", bound=StrEnum)


def fold(key: str) -> str:
    return key.replace("_", "").lower()


def lookup(mapping: Mapping[Any, Any], key: str) -> Any:
    """``mapping[key]`` matching camelCase, snake_case or any casing; ``MISSING`` when absent."""
    if key in mapping:
        return mapping[key]
    wanted = fold(key)
    for candidate, value in mapping.items():
        if isinstance(candidate, str) and fold(candidate) == wanted:
            return value
    return MISSING


def kind(value: Any) -> str:
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


class Reader:
    """Typed reads from loose JSON that note every value of the wrong type instead of raising."""

    def __init__(self) -> None:
        self.problems: list[str] = []
        self.unread: set[str] = set()  # paths whose value could not be read (Azure's default stands in)

    def note(self, message: str) -> None:
        self.problems.append(message)

    def get(self, parent: Mapping[Any, Any], key: str) -> Any:
        """The raw value; None when absent (ARM treats a null property as an absent one)."""
        value = lookup(parent, key)
        return None if value is MISSING else value

    def first(self, parent: Mapping[Any, Any], *keys: str) -> tuple[str, Any]:
        """The first of ``keys`` present (a field the REST API and the SDK name differently, such as
        ``networkAcls`` and ``network_rule_set``) with its value; the first key and None if none is."""
        for key in keys:
            value = self.get(parent, key)
            if value is not None:
                return key, value
        return keys[0], None

    def mapping(self, parent: Mapping[Any, Any], key: str, path: str) -> Mapping[Any, Any] | None:
        value = self.get(parent, key)
        if value is None or isinstance(value, Mapping):
            return value
        self.note(f"{path} is {kind(value)}, expected an object: ignored")
        self.unread.add(path)
        return None

    def text(self, parent: Mapping[Any, Any], key: str, path: str) -> str | None:
        value = self.get(parent, key)
        if value is None or isinstance(value, str):
            return value
        self.note(f"{path} is {kind(value)}, expected a string: ignored")
        self.unread.add(path)
        return None

    def items(self, parent: Mapping[Any, Any], key: str, path: str) -> list[Any]:
        value = self.get(parent, key)
        if value is None:
            return []
        if isinstance(value, list | tuple):
            return list(value)
        self.note(f"{path} is {kind(value)}, expected a list: ignored")
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

    def member(self, value: Any, enum: type[E], path: str) -> E | None:
        """The member of ``enum`` a text names (case-insensitively); None when absent, or (noted,
        and the path unread) when it is not text or names no member."""
        if value is None:
            return None
        if isinstance(value, str):
            folded = value.strip().lower()
            for candidate in enum:
                if candidate.value.lower() == folded:
                    return candidate
            accepted = ", ".join(candidate.value for candidate in enum)
            self.note(f"{path} is {value!r}, not one of {accepted}: not judged")
        else:
            self.note(f"{path} is {kind(value)}, expected a string: not judged")
        self.unread.add(path)
        return None

    def boolean(self, value: Any, path: str) -> bool | None:
        """True or false; None when absent, or (noted, and the path unread) when it is neither.
        The strings "true" and "false" are read as booleans (noted)."""
        if value is None or isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in ("true", "false"):
            self.note(f"{path} is the string {value!r}, expected true or false: read as a boolean")
            return value.strip().lower() == "true"
        self.note(f"{path} is {kind(value)}, expected true or false: not judged")
        self.unread.add(path)
        return None


def tags(raw: Mapping[Any, Any], reader: Reader) -> dict[str, str]:
    found = reader.mapping(raw, "tags", "tags") or {}
    result: dict[str, str] = {}
    for key, value in found.items():
        if isinstance(key, str) and isinstance(value, str):
            result[key] = value
        else:
            reader.note(f"tags[{key!r}] is {kind(value)}, expected a string: ignored")
    return result


def moment(value: Any, path: str, reader: Reader) -> dt.datetime | None:
    """An aware UTC datetime from ISO 8601 text (ARM writes 7 fractional digits) or a datetime
    (older SDK models); ARM's times are UTC, so a time without an offset is read as UTC."""
    if value is None:
        return None
    if not isinstance(value, dt.datetime | str):
        reader.note(f"{path} is {kind(value)}, expected an ISO 8601 time: ignored")
        return None
    try:
        found = value if isinstance(value, dt.datetime) else dt.datetime.fromisoformat(value.strip())
        if found.tzinfo is None:
            found = found.replace(tzinfo=dt.UTC)
        return found.astimezone(dt.UTC)
    except (ValueError, OverflowError):  # not ISO 8601, or out of range once moved to UTC
        reader.note(f"{path} is {value!r}, not an ISO 8601 time Python can represent: ignored")
        return None


class ResourceIdParts(NamedTuple):
    subscription_id: str
    resource_group: str
    name: str
    matches: bool  # the id has the expected shape and provider type


def parse_resource_id(resource_id: str, *, provider: str, resource_type: str) -> ResourceIdParts:
    """Subscription, resource group and name from a resource id, and whether it is
    ``/subscriptions/SUB/resourceGroups/RG/providers/PROVIDER/TYPE/NAME``; ARM may return the
    segment names in any case (``resourcegroups``, ``microsoft.keyvault``)."""
    segments = [s for s in resource_id.split("/") if s]
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
    name = segments[-1] if segments else resource_id
    provider_at = folded.index("providers") if "providers" in folded else -1
    matches = (
        bool(subscription_id)
        and bool(resource_group)
        and provider_at >= 0
        and folded[provider_at + 1 : provider_at + 3] == [provider.lower(), resource_type.lower()]
        and len(segments) == provider_at + 4
    )
    return ResourceIdParts(subscription_id, resource_group, name, matches)


def ip_rules(
    container: Mapping[Any, Any],
    key: str,
    path: str,
    reader: Reader,
    *,
    value_keys: tuple[str, ...] = ("value",),
) -> list[tuple[IpRule, Mapping[Any, Any] | None]]:
    """The IP rules under ``container[key]``, each with its item (None when the item is not an
    object). A value that is not text is kept, unparsed, rather than dropped: a rule nobody can
    read is itself a finding. ``value_keys``: the names the address may have (REST ``value``, the
    SDK's ``ip_address_or_range``)."""
    rules: list[tuple[IpRule, Mapping[Any, Any] | None]] = []
    for index, item in enumerate(reader.items(container, key, path)):
        item_path = f"{path}[{index}]"
        if isinstance(item, Mapping):
            _, value = reader.first(item, *value_keys)
        else:
            reader.note(f"{item_path} is {kind(item)}, expected an object with 'value'")
            value = item
        mapping = item if isinstance(item, Mapping) else None
        if not isinstance(value, str):
            if mapping is not None:
                reader.note(f"{item_path}.value is {kind(value)}, expected an address or CIDR string")
            rules.append((IpRule(json.dumps(value, default=str), None), mapping))
            continue
        try:
            network = parse_network(value)
        except ValueError:
            network = None
        rules.append((IpRule(value, network), mapping))
    return rules


_CONNECTION_STATUS = {v.lower(): v for v in ("Pending", "Approved", "Rejected", "Disconnected")}
_PROVISIONING_STATES = {
    v.lower(): v for v in ("Succeeded", "Creating", "Updating", "Deleting", "Failed", "Disconnected")
}


def private_endpoint_connections(
    container: Mapping[Any, Any], path: str, reader: Reader
) -> list[tuple[PrivateEndpointConnection, Mapping[Any, Any]]]:
    """The private endpoint connections under ``container``, ARM's common shape, each with the
    mapping that holds its fields (for a service's own additions)."""
    connections: list[tuple[PrivateEndpointConnection, Mapping[Any, Any]]] = []
    for index, item in enumerate(reader.items(container, "privateEndpointConnections", path)):
        item_path = f"{path}[{index}]"
        if not isinstance(item, Mapping):
            reader.note(f"{item_path} is {kind(item)}, expected an object: ignored")
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
        connection = PrivateEndpointConnection(
            id=connection_id,
            private_endpoint_id=endpoint_id,
            status=status,
            provisioning_state=provisioning_state,
            description=reader.text(state, "description", f"{state_path}.description"),
        )
        connections.append((connection, fields))
    return connections


# ---------------------------------------------------------------------------------------------
# Offline files
# ---------------------------------------------------------------------------------------------


def read_entries(path: Path, *, error: type[InputError], noun: str, plural: str) -> list[tuple[str, Any]]:
    """The entries of one offline JSON file, each with where it is (``"FILE: value[INDEX]"``).

    The file may hold a single resource (``az ... show``), an ARM list page ``{"value": [...]}`` (the
    REST API), or a JSON array (``az ... list``). ``error`` when the file as a whole cannot be read:
    missing, not JSON (with line and column), or not one of those shapes; ``noun`` and ``plural``
    name what the file should hold ("vault", "vaults").
    """
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise error(f"{path}: cannot read the file: {exc.strerror or exc}") from None
    document = _parse_json(data, path, error)
    if isinstance(document, list):
        return [(f"{path}: [{index}]", item) for index, item in enumerate(document)]
    if isinstance(document, dict) and "value" in document and "id" not in document:
        page = document["value"]
        if not isinstance(page, list):
            raise error(f"{path}: 'value' is {kind(page)}; an ARM list page holds a list of {plural}")
        return [(f"{path}: value[{index}]", item) for index, item in enumerate(page)]
    if isinstance(document, dict):
        return [(str(path), document)]
    article = "an" if noun[:1] in "aeiou" else "a"
    raise error(
        f"{path}: the file holds {kind(document)}; expected {article} {noun} object, an ARM list page "
        f'{{"value": [...]}} or a JSON array of {plural}'
    )


def _parse_json(data: bytes, path: Path, error: type[InputError]) -> Any:
    # json.loads on bytes detects UTF-8 (with or without BOM), UTF-16 and UTF-32: PowerShell's
    # redirection writes UTF-16, az on Windows may write a BOM.
    try:
        return json.loads(data)
    except json.JSONDecodeError as exc:
        raise error(f"{path}:{exc.lineno}:{exc.colno}: invalid JSON: {exc.msg}") from None
    except UnicodeDecodeError as exc:
        raise error(f"{path}: not UTF-8, UTF-16 or UTF-32 text (byte {exc.start})") from None
    except RecursionError:
        raise error(f"{path}: JSON nested too deeply to read") from None
