"""Vantage points as data: loaded from a YAML/JSON file or the KVMON_VANTAGES app setting.

Each entry is ``name``, ``inside`` (in the VNet or not), and optionally ``subnet_id``,
``endpoint`` + ``key_setting`` (a remote deployment's ``/api/probe`` and the app setting holding
its function key), ``source_address`` and ``resolver`` ("IP[:PORT]"). Errors name the entry and
field: ``vantages[2].source_address: '10.0.0' is not an IP address``.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from monitor.config.policy import Vantage
from monitor.errors import ConfigurationError

DNS_PORT = 53
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_SETTING = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
_FIELDS = ("name", "inside", "subnet_id", "endpoint", "key_setting", "source_address", "resolver")


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


def load_vantages(path: str | Path) -> list[Vantage]:
    """Read a YAML (or JSON, a subset of YAML) file of vantage points."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise VantageConfigError(f"{file}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise VantageConfigError(f"{file}: cannot be read ({exc})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "not valid YAML"
        raise VantageConfigError(f"{file}: {problem}{where}") from None
    try:
        return parse_vantages(data)
    except VantageConfigError as exc:
        raise VantageConfigError(f"{file}: {exc}") from None


def parse_vantages(data: Any) -> list[Vantage]:
    """A list of vantage entries, or ``{"vantages": [...]}``, already parsed from JSON/YAML."""
    if isinstance(data, dict) and set(data) == {"vantages"}:
        data = data["vantages"]
    if not isinstance(data, list):
        raise VantageConfigError('expected a list of vantage points (or {"vantages": [...]})')
    vantages: list[Vantage] = []
    seen: set[str] = set()
    for index, entry in enumerate(data):
        vantage = _parse_entry(entry, f"vantages[{index}]")
        if vantage.name.lower() in seen:
            raise VantageConfigError(f"vantages[{index}].name: {vantage.name!r} is defined twice")
        seen.add(vantage.name.lower())
        vantages.append(vantage)
    return vantages


def _parse_entry(entry: Any, where: str) -> Vantage:
    if not isinstance(entry, dict):
        raise VantageConfigError(f"{where}: expected a mapping with at least name and inside")
    unknown = sorted(str(k) for k in entry if k not in _FIELDS)
    if unknown:
        raise VantageConfigError(
            f"{where}: unknown field(s) {', '.join(unknown)}; known: {', '.join(_FIELDS)}"
        )
    name = entry.get("name")
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise VantageConfigError(
            f"{where}.name: required, 1-64 letters, digits, dots, hyphens or underscores (got {name!r})"
        )
    where = f"{where} ({name})"
    inside = entry.get("inside")
    if not isinstance(inside, bool):
        raise VantageConfigError(
            f"{where}.inside: required, true (inside the VNet) or false (got {inside!r})"
        )
    subnet_id = _optional_text(entry, "subnet_id", where)
    if subnet_id is not None and not re.fullmatch(
        r"/subscriptions/[^/]+/resourceGroups/[^/]+/providers/Microsoft\.Network/virtualNetworks/[^/]+/subnets/[^/]+",
        subnet_id,
        flags=re.IGNORECASE,
    ):
        raise VantageConfigError(f"{where}.subnet_id: {subnet_id!r} is not a subnet resource id")
    endpoint = _optional_text(entry, "endpoint", where)
    key_setting = _optional_text(entry, "key_setting", where)
    if endpoint is not None:
        parts = urlsplit(endpoint)
        if parts.scheme != "https" or not parts.hostname or parts.username or parts.password or parts.query:
            raise VantageConfigError(
                f"{where}.endpoint: {endpoint!r} must be an https:// URL without credentials or query "
                "(the function key comes from key_setting)"
            )
        if key_setting is None:
            raise VantageConfigError(
                f"{where}.key_setting: required with endpoint (the app setting holding its key)"
            )
    if key_setting is not None and not _SETTING.fullmatch(key_setting):
        raise VantageConfigError(f"{where}.key_setting: {key_setting!r} is not an app setting name")
    source_address = _optional_text(entry, "source_address", where)
    if source_address is not None:
        try:
            source_address = str(ipaddress.ip_address(source_address))
        except ValueError:
            raise VantageConfigError(
                f"{where}.source_address: {source_address!r} is not an IP address"
            ) from None
    resolver = _optional_text(entry, "resolver", where)
    if resolver is not None:
        try:
            parse_resolver(resolver)
        except ValueError as exc:
            raise VantageConfigError(f"{where}.resolver: {exc}") from None
    return Vantage(
        name=name,
        inside=inside,
        subnet_id=subnet_id,
        endpoint=endpoint,
        key_setting=key_setting,
        source_address=source_address,
        resolver=resolver,
    )


def _optional_text(entry: dict[str, Any], field: str, where: str) -> str | None:
    value = entry.get(field)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise VantageConfigError(f"{where}.{field}: expected a non-empty string (got {value!r})")
    return value.strip()
