"""Vantage points as data: loaded from a YAML/JSON file or the KVMON_VANTAGES app setting.

Each entry is ``name``, ``inside`` (in the VNet or not), and optionally ``subnet_id``,
``endpoint`` + ``key_setting`` (a remote deployment's ``/api/probe`` and the app setting holding
its function key), ``source_address``, ``resolver`` ("IP[:PORT]") and ``region`` (the Azure region
it runs in, ``westeurope``: Storage's IP rules do not apply to callers in the account's region).
``VantagePoints`` is the pydantic model of the whole list; errors are one line naming the file or
setting, the entry's field and the problem: ``vantages.yaml: vantages[2].source_address: '10.0.0' is not an IP address``.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from monitor.config.policy import Vantage
from monitor.config.validation import Name, SettingName, Text, describe, message, problem_at
from monitor.errors import ConfigurationError

DNS_PORT = 53
_SUBNET_ID = re.compile(
    r"/subscriptions/[^/]+/resourceGroups/[^/]+/providers/Microsoft\.Network/virtualNetworks/[^/]+/subnets/[^/]+",
    re.IGNORECASE,
)


class VantageConfigError(ConfigurationError):
    """A vantage definition kvmon cannot use; the message names the file, entry and field."""


def parse_resolver(text: str) -> tuple[str, int]:
    """``IP``, ``IP:PORT``, ``[IPv6]:PORT`` or a bare IPv6 address -> (address, port).

    Resolvers are addresses, never names: naming one would need a resolver first.
    """
    raw = (text or "").strip()
    host, port_text = raw, ""
    if raw.startswith("["):
        host, _, rest = raw[1:].partition("]")
        if rest and not rest.startswith(":"):
            raise ValueError(f"{text!r} is not a resolver address (use IP or IP:PORT)")
        port_text = rest[1:]
    elif raw.count(":") == 1:
        host, port_text = raw.split(":")
    try:
        address = str(ipaddress.ip_address(host))
    except ValueError:
        raise ValueError(
            f"{text!r} is not a resolver address (use IP or IP:PORT, e.g. 10.0.0.4:53)"
        ) from None
    if not port_text:
        return address, DNS_PORT
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"{text!r} has no valid port (1-65535)")
    return address, int(port_text)


# An Azure region as ARM's ``location`` writes it (westeurope, usgovvirginia, eastus2euap).
_REGION = re.compile(r"[a-z][a-z0-9]{2,29}")


# -- value checks (each raises ValueError with the problem the operator sees) --------------------


def _subnet_id(value: str) -> str:
    if not _SUBNET_ID.fullmatch(value):
        raise ValueError(f"{value!r} is not a subnet resource id")
    return value


def _endpoint(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme != "https" or not parts.hostname or parts.username or parts.password or parts.query:
        raise ValueError(
            f"{value!r} must be an https:// URL without credentials or query "
            "(the function key comes from key_setting)"
        )
    return value


def _address(value: str) -> str:
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise ValueError(f"{value!r} is not an IP address") from None


def _resolver(value: str) -> str:
    parse_resolver(value)  # its ValueError says what is wrong with it
    return value


def _region(value: str) -> str:
    if not _REGION.fullmatch(value):
        raise ValueError(
            f"{value!r} is not an Azure region name (lower-case letters and digits as ARM writes "
            "them, e.g. westeurope, eastus2)"
        )
    return value


# -- the document ---------------------------------------------------------------------------------


class VantagePoint(BaseModel):
    """One entry; strict: ``inside`` is true or false, never ``"no"``."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    name: Name
    inside: bool
    subnet_id: Annotated[Text, AfterValidator(_subnet_id)] | None = None
    endpoint: Annotated[Text, AfterValidator(_endpoint)] | None = None
    # Checked when absent too: an endpoint needs it.
    key_setting: SettingName | None = Field(default=None, validate_default=True)
    source_address: Annotated[Text, AfterValidator(_address)] | None = None
    resolver: Annotated[Text, AfterValidator(_resolver)] | None = None
    region: Annotated[Text, AfterValidator(_region)] | None = None

    @field_validator("key_setting", mode="after")
    @classmethod
    def _key_with_endpoint(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None and info.data.get("endpoint") is not None:
            raise ValueError("required with endpoint (the app setting holding its key)")
        return value

    def to_vantage(self) -> Vantage:
        return Vantage(**self.model_dump())


class VantagePoints(BaseModel):
    """A list of vantage points, or ``{"vantages": [...]}``; names are unique, case-insensitively."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    vantages: list[VantagePoint]

    @model_validator(mode="before")
    @classmethod
    def _bare_list(cls, data: Any) -> Any:
        if isinstance(data, list):
            return {"vantages": data}
        if not isinstance(data, dict) or "vantages" not in data:
            raise ValueError('expected a list of vantage points (or {"vantages": [...]})')
        return data

    @field_validator("vantages", mode="after")
    @classmethod
    def _unique_names(cls, points: list[VantagePoint]) -> list[VantagePoint]:
        seen: set[str] = set()
        for index, point in enumerate(points):
            if point.name.lower() in seen:
                raise problem_at((index, "name"), f"{point.name!r} is defined twice", given=point.name)
            seen.add(point.name.lower())
        return points

    def to_vantages(self) -> list[Vantage]:
        return [point.to_vantage() for point in self.vantages]


def load_vantages(path: str | Path) -> list[Vantage]:
    """Read a YAML (or JSON, a subset of YAML) file of vantage points."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise VantageConfigError(message(str(file), "", "no such file")) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise VantageConfigError(message(str(file), "", f"cannot be read ({exc})")) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "not valid YAML"
        raise VantageConfigError(message(str(file), "", f"{problem}{where}")) from None
    return parse_vantages(data, source=str(file))


def parse_vantages(data: Any, *, source: str) -> list[Vantage]:
    """Vantage points already parsed from JSON/YAML; ``source`` names the file or setting in messages."""
    try:
        return VantagePoints.model_validate(data).to_vantages()
    except ValidationError as exc:
        raise VantageConfigError(describe(exc, where=source)) from None
