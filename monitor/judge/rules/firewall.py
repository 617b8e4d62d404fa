"""What the rules of every service with a networkAcls-style firewall share (Key Vault's KV0xx and
storage's ST0xx): the ranges an IP rule never matches, the note that turns a firewall finding into
dead configuration under a perimeter, and the words of a set difference against the baseline. Pure.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import replace
from typing import Any

from monitor.judge.perimeter import EffectiveExposure, InboundSet, NetworkPosture
from monitor.judge.rules.base import Hit
from monitor.model import IPNetwork, PerimeterLookup, Severity

# IP rules of Key Vault and Storage are matched against the public address a request arrives from,
# so a rule inside one of these ranges never admits anything (traffic from private space arrives
# through a Service Endpoint or Private Endpoint and is judged by those; Storage refuses RFC 1918
# ranges in IP rules outright). This is a fixed list about the services' IP rules, not the
# configurable private space of ``monitor.netaddr.AddressSpace``.
IP_RULE_RESERVED_RANGES: tuple[IPNetwork, ...] = tuple(
    ipaddress.ip_network(text)
    for text in (
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "100.64.0.0/10",
        "127.0.0.0/8",
        "169.254.0.0/16",
    )
)


def reserved_range_of(network: IPNetwork) -> IPNetwork | None:
    for reserved in IP_RULE_RESERVED_RANGES:
        if network.version == reserved.version and network.subnet_of(reserved):  # type: ignore[arg-type]
            return reserved
    return None


def perimeter_evidence(posture: NetworkPosture, exposure: EffectiveExposure) -> dict[str, Any]:
    """The perimeter's part of a finding's evidence; none where no reader looked (a document
    judged as before)."""
    if posture.perimeter.lookup == PerimeterLookup.NOT_LOOKED_UP:
        return {}
    return {"perimeter": exposure.as_evidence()}


def public_exposure(
    exposure: EffectiveExposure,
    *,
    open_reason: str,
    evidence: Mapping[str, Any],
    resource: str,
    reaches: str,
) -> Iterator[Hit]:
    """KV001's and ST001's decision on fields that were read: open to the public through the
    resource's own firewall (``open_reason``, what any address ``reaches``), or, under a perimeter
    in force, through the perimeter's open entries (and the ``resource``'s firewall too, in Learning
    mode with public access Enabled)."""
    if not exposure.public:
        return
    if not exposure.perimeter_in_force:
        yield Hit(
            summary=f"{open_reason}: any address on the internet reaches {reaches}", evidence=dict(evidence)
        )
        return
    opened = [entry.describe() for entry in exposure.open_entries]
    if exposure.inbound == InboundSet.RULES_OR_FIREWALL and exposure.firewall_open:
        opened.append(f"the {resource}'s firewall ({open_reason})")
    yield Hit(
        summary=f"{exposure.reason}: open to the public through {'; '.join(opened)}", evidence=dict(evidence)
    )


def dead_under_perimeter(exposure: EffectiveExposure, hits: Iterable[Hit]) -> Iterator[Hit]:
    """The firewall's findings where a perimeter's rules replaced it: kept as an informational note
    (the configuration misleads whoever reads it) rather than exposure."""
    for hit in hits:
        if not exposure.firewall_dead:
            yield hit
            continue
        yield replace(
            hit,
            summary=f"dead configuration: {hit.summary}; {exposure.reason}, so networkAcls admit nobody",
            evidence={
                **hit.evidence,
                "dead_configuration": "the perimeter's rules decide inbound access, not networkAcls",
                "perimeter": exposure.as_evidence(),
            },
            severity=Severity.INFO,
        )


def set_difference_summary(what: str, missing: list[str], unexpected: list[str]) -> str:
    parts = []
    if missing:
        parts.append(f"missing {', '.join(missing)} (expected by the baseline)")
    if unexpected:
        parts.append(f"unexpected {', '.join(unexpected)} (not in the baseline)")
    return f"{what} differ from the baseline: {'; '.join(parts)}"
