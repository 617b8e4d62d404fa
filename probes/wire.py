"""ProbeResult <-> JSON, exactly: what a remote vantage point's ``/api/probe`` answers.

Decoding treats the JSON as untrusted (it comes over the network): every field is type-checked
and an error names the field's path.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import types
import typing
from enum import Enum
from typing import Any

from monitor.model import ProbeResult


class WireError(ValueError):
    """JSON that is not a ProbeResult; the message names the field."""


def result_to_json(result: ProbeResult) -> dict[str, Any]:
    return typing.cast(dict[str, Any], _encode(result))


def result_from_json(data: Any, *, path: str = "result") -> ProbeResult:
    return typing.cast(ProbeResult, _decode(data, ProbeResult, path))


def _encode(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _encode(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, dt.datetime):
        return value.isoformat()  # keeps the offset, so decoding gives back the same value
    if isinstance(value, tuple):
        return [_encode(v) for v in value]
    return value


def _decode(data: Any, kind: Any, path: str) -> Any:
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(kind)
        if data is None and type(None) in options:
            return None
        (inner,) = [o for o in options if o is not type(None)]
        return _decode(data, inner, path)
    if origin is tuple:
        if not isinstance(data, list):
            raise WireError(f"{path}: expected a list")
        (item,) = [a for a in typing.get_args(kind) if a is not Ellipsis]
        return tuple(_decode(v, item, f"{path}[{i}]") for i, v in enumerate(data))
    if dataclasses.is_dataclass(kind) and isinstance(kind, type):
        return _decode_record(data, kind, path)
    if isinstance(kind, type) and issubclass(kind, Enum):
        try:
            return kind(data)
        except ValueError:
            accepted = ", ".join(str(m.value) for m in kind)
            raise WireError(f"{path}: {data!r} is not one of {accepted}") from None
    if kind is dt.datetime:
        if not isinstance(data, str):
            raise WireError(f"{path}: expected an ISO 8601 date-time string")
        try:
            moment = dt.datetime.fromisoformat(data)
        except ValueError:
            raise WireError(f"{path}: {data!r} is not an ISO 8601 date-time") from None
        if moment.tzinfo is None:
            raise WireError(f"{path}: {data!r} has no UTC offset")
        return moment
    if kind is bool:
        if not isinstance(data, bool):
            raise WireError(f"{path}: expected true or false")
        return data
    if kind is int:
        if isinstance(data, bool) or not isinstance(data, int):
            raise WireError(f"{path}: expected a whole number")
        return data
    if kind is float:
        if isinstance(data, bool) or not isinstance(data, int | float):
            raise WireError(f"{path}: expected a number")
        return float(data)
    if kind is str:
        if not isinstance(data, str):
            raise WireError(f"{path}: expected a string")
        return data
    raise TypeError(f"{path}: no wire format for {kind!r}")  # a model change this module must follow


def _decode_record(data: Any, kind: type, path: str) -> Any:
    if not isinstance(data, dict):
        raise WireError(f"{path}: expected an object")
    hints = typing.get_type_hints(kind)
    fields = {f.name: f for f in dataclasses.fields(kind)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise WireError(f"{path}: unknown field(s) {', '.join(unknown)}")
    values: dict[str, Any] = {}
    for name, spec in fields.items():
        if name not in data:
            if spec.default is dataclasses.MISSING and spec.default_factory is dataclasses.MISSING:
                raise WireError(f"{path}.{name}: missing")
            continue
        values[name] = _decode(data[name], hints[name], f"{path}.{name}")
    return kind(**values)
