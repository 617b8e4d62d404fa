"""The DNS step: the CNAME chain and final addresses of a vault's name, as seen from one place.

Asked from the vantage point's source address (split-horizon resolvers answer by it), over UDP
with dnspython's fallback to TCP when an answer is truncated, bounded by one timeout.
"""

from __future__ import annotations

import functools
import time

import dns.exception
import dns.rdatatype
import dns.resolver

from monitor.config.vantages import parse_resolver
from monitor.model import DnsStep
from monitor.netaddr import AddressSpace


def resolve_vault(
    hostname: str,
    *,
    resolver: str | None,
    source_address: str | None,
    timeout_s: float,
    address_space: AddressSpace,
    private_link_zone: str,
) -> DnsStep:
    """Never raises for what the network does: failures come back as ``DnsStep.error``."""
    started = time.perf_counter()

    def elapsed() -> float:
        return round((time.perf_counter() - started) * 1000, 3)

    label = resolver or "system resolver"
    try:
        client = _resolver_for(resolver, timeout_s=timeout_s)
    except (ValueError, dns.resolver.NoResolverConfiguration) as exc:
        return DnsStep(
            query=hostname, resolver=resolver, elapsed_ms=elapsed(), error=f"resolver unusable: {exc}"
        )
    try:
        answer = client.resolve(
            hostname,
            dns.rdatatype.A,
            source=source_address,
            raise_on_no_answer=False,
            search=False,
            lifetime=timeout_s,
        )
    except (dns.exception.DNSException, OSError) as exc:
        error = _describe_failure(exc, hostname=hostname, resolver_label=label, timeout_s=timeout_s)
        return DnsStep(query=hostname, resolver=resolver, elapsed_ms=elapsed(), error=error)

    chain = [hostname]
    for rrset in answer.chaining_result.cnames:
        chain.extend(str(rdata.target).rstrip(".").lower() for rdata in rrset)
    addresses = tuple(str(rdata) for rdata in answer.rrset or ())
    zone = private_link_zone.lower()
    return DnsStep(
        query=hostname,
        chain=tuple(chain),
        addresses=addresses,
        private_addresses=tuple(a for a in addresses if address_space.is_private(a)),
        private_link_in_chain=any(name == zone or name.endswith("." + zone) for name in chain),
        resolver=resolver,
        elapsed_ms=elapsed(),
        error=None if addresses else f"no A record for {hostname}",
    )


@functools.lru_cache(maxsize=64)
def _resolver_for(resolver: str | None, *, timeout_s: float) -> dns.resolver.Resolver:
    """One resolver per (resolver, timeout) for the process: the system's reads /etc/resolv.conf,
    once rather than once per vault. Never changed once built, so threads share it safely (it
    keeps no cache: every probe asks the network)."""
    if resolver is None:
        client = dns.resolver.Resolver(configure=True)
    else:
        address, port = parse_resolver(resolver)
        client = dns.resolver.Resolver(configure=False)
        client.nameservers = [address]
        client.port = port
    client.timeout = timeout_s
    client.lifetime = timeout_s
    return client


def _describe_failure(exc: BaseException, *, hostname: str, resolver_label: str, timeout_s: float) -> str:
    if isinstance(exc, dns.resolver.NXDOMAIN):
        return f"NXDOMAIN: {hostname} does not exist"
    if isinstance(exc, dns.exception.Timeout):
        return f"no answer from {resolver_label} within {timeout_s:g}s"
    if isinstance(exc, dns.resolver.NoNameservers):
        return f"{resolver_label} failed to answer (SERVFAIL, REFUSED or a malformed reply)"
    return f"DNS error: {exc}"
