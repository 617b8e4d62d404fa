"""Plain JSON from kvmon's records: dataclasses, enums, datetimes, addresses and networks."""

from __future__ import annotations

import dataclasses
import datetime as dt
import ipaddress
from collections.abc import Mapping
from enum import Enum
from typing import Any

# Exactly these types are already JSON: returned as they are without the checks below. A
# subclass (an IntEnum, a StrEnum) still takes the general path, as it always did. Stored
# records are converted by the store (evidence, postures, messages: many plain values), so the
# common case is decided by one type lookup.
_PLAIN: frozenset[type] = frozenset({str, int, float, bool, type(None)})

# Field names per dataclass type: ``dataclasses.fields`` builds a new tuple on every call.
_FIELD_NAMES: dict[type, tuple[str, ...]] = {}


def to_jsonable(value: Any) -> Any:
    """Recursively convert to JSON-compatible values; datetimes as ISO 8601 in UTC."""
    kind = type(value)
    if kind in _PLAIN:
        return value
    if kind is dict:
        return {
            (k if type(k) is str else str(k)): (v if type(v) in _PLAIN else to_jsonable(v))
            for k, v in value.items()
        }
    if kind is list or kind is tuple:
        return [v if type(v) in _PLAIN else to_jsonable(v) for v in value]
    names = _FIELD_NAMES.get(kind)
    if names is not None:
        return {name: to_jsonable(getattr(value, name)) for name in names}
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            return value.isoformat()
        return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, ipaddress.IPv4Network | ipaddress.IPv6Network):
        return str(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        names = _FIELD_NAMES[kind] = tuple(f.name for f in dataclasses.fields(value))
        return {name: to_jsonable(getattr(value, name)) for name in names}
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        items = [to_jsonable(v) for v in value]
        return sorted(items, key=str) if isinstance(value, set | frozenset) else items
    return str(value)
