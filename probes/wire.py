"""ProbeResult <-> JSON, exactly: what a remote vantage point's ``/api/probe`` answers.

Decoding treats the JSON as untrusted (it comes over the network): pydantic validates it against
``ProbeResult`` as strict JSON (a number is a number, never ``"443"``; true is true, never ``1``),
with no unknown field in any record and no date-time without its UTC offset. A ``WireError``
names the result, the field and the problem: ``results[3]: data_plane.verdict: 'maybe' is not
one of admitted, ...``. The request's limits live here too: both ends of the wire read them.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import typing
from enum import Enum
from typing import Any

from pydantic import TypeAdapter, ValidationError
from pydantic_core import SchemaValidator, to_json

from monitor.config.validation import describe
from monitor.errors import SourceError
from monitor.model import ProbeResult

# What one ``POST /api/probe`` may carry: the endpoint (``probes.endpoint``) refuses more, and a
# monitor (``probes.remote``) sends bigger runs in batches within both.
MAX_REQUEST_BYTES = 64 * 1024
MAX_VAULTS_PER_REQUEST = 1000


class WireError(SourceError):
    """A vantage point answered JSON that is not a ProbeResult; the message names the field."""


def result_to_json(result: ProbeResult) -> dict[str, Any]:
    return typing.cast(dict[str, Any], _encode(result))


def result_from_json(data: Any, *, path: str = "result") -> ProbeResult:
    """The ProbeResult ``data`` (parsed JSON) holds; ``path`` names it in a WireError."""
    try:
        return typing.cast(ProbeResult, _DECODER.validate_json(to_json(data), strict=True))
    except ValidationError as exc:
        raise WireError(describe(exc, where=path)) from None


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


def _untrusted(schema: Any) -> Any:
    """pydantic's schema of the records, refusing what the records' own types cannot say: an unknown
    field in any record, a date-time without its offset. The records stay plain dataclasses."""
    if isinstance(schema, dict):
        tightened = {key: _untrusted(value) for key, value in schema.items()}
        if schema.get("type") == "dataclass-args":
            tightened["extra_behavior"] = "forbid"
        elif schema.get("type") == "datetime":
            tightened["tz_constraint"] = "aware"
        return tightened
    if isinstance(schema, list):
        return [_untrusted(item) for item in schema]
    return schema


# Built once, at import: validating a result then costs microseconds (bench/wire.py).
_DECODER = SchemaValidator(_untrusted(TypeAdapter(ProbeResult).core_schema))
