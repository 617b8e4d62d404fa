"""Is an address private or public? One answer for probes and logs alike.

Azure lets a VNet use any address space, so the private space is configurable: by default
RFC 1918, 100.64.0.0/10 (shared address space) and IPv6 unique-local; users add the spaces of
VNets that use other ranges. The lab adds part of 127.0.0.0/8 so the walkthrough runs on loopback.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field

from monitor.model import IPNetwork

DEFAULT_PRIVATE_RANGES: tuple[str, ...] = (
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "100.64.0.0/10",
    "fc00::/7",
)


def parse_network(text: str) -> IPNetwork:
    """Parse an address or CIDR (host bits allowed, as ARM accepts them); ValueError otherwise."""
    return ipaddress.ip_network(text.strip(), strict=False)


@dataclass(frozen=True)
class AddressSpace:
    """The private address space; anything outside it is public."""

    private: tuple[IPNetwork, ...] = field(
        default_factory=lambda: tuple(parse_network(r) for r in DEFAULT_PRIVATE_RANGES)
    )

    @classmethod
    def with_extra(cls, extra: Iterable[str]) -> AddressSpace:
        """The defaults plus ``extra`` ranges; ValueError names the first bad range."""
        nets = list(cls().private)
        for text in extra:
            text = text.strip()
            if not text:
                continue
            try:
                nets.append(parse_network(text))
            except ValueError:
                raise ValueError(f"not an address range: {text!r}") from None
        return cls(private=tuple(nets))

    def is_private(self, address: str | None) -> bool:
        """False for public, unparsable or missing addresses (never guess 'private')."""
        if not address:
            return False
        try:
            ip = ipaddress.ip_address(address.strip().strip("[]"))
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(ip.version == net.version and ip in net for net in self.private)

    def classify(self, address: str | None) -> str:
        return "private" if self.is_private(address) else "public"
