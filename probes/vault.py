"""Probe one vault from where this process stands: DNS, then TCP/TLS, healthstatus and the
data-plane read over the one connection TLS opened.

Its own module because it is what every way of running probes shares: the local pool's threads
call it for each vault, in this process or in a worker process; it knows nothing of how many vaults
there are or where the results go.
"""

from __future__ import annotations

import datetime as dt
import logging
import ssl
import time

from azure.core.credentials import TokenCredential

from monitor.config.policy import Vantage
from monitor.model import DataPlaneStep, DnsStep, HealthStep, ProbeResult, TlsStep, Verdict
from monitor.naming.keyvault import private_link_zone
from probes.dataplane import PinnedConnection, PinnedRoute, check_health, probe_secret_read
from probes.dns import resolve_vault
from probes.network import Reachability, open_tls
from probes.options import ProbeOptions

log = logging.getLogger(__name__)


def probe_hostname(
    hostname: str,
    *,
    vantage: Vantage,
    options: ProbeOptions,
    credential: TokenCredential,
    reachability: Reachability,
    context: ssl.SSLContext,
) -> ProbeResult:
    """Every step for one in-scope ``hostname`` (as ``ProbeScope.hostname_for`` gives it), each
    bounded by its own timeout in ``options``."""
    started_at = dt.datetime.now(dt.UTC)
    clock = time.perf_counter()
    vault_name, suffix = hostname.split(".", 1)
    source = vantage.source_address
    dns = resolve_vault(
        hostname,
        resolver=vantage.resolver or options.resolver,
        source_address=source,
        timeout_s=options.dns_timeout_s,
        address_space=options.address_space,
        private_link_zone=private_link_zone(suffix),
    )
    tls, health, data_plane = _network_steps(
        hostname,
        dns,
        vantage=vantage,
        options=options,
        credential=credential,
        reachability=reachability,
        context=context,
    )
    result = ProbeResult(
        vault_name=vault_name,
        vantage=vantage.name,
        hostname=hostname,
        started_at=started_at,
        dns=dns,
        tls=tls,
        health=health,
        data_plane=data_plane,
        duration_ms=round((time.perf_counter() - clock) * 1000, 3),
    )
    log.info(
        "probed %s from %s: dns=%s verdict=%s",
        hostname,
        vantage.name,
        ",".join(dns.addresses) or dns.error,
        result.verdict.value,
    )
    return result


def _network_steps(
    hostname: str,
    dns: DnsStep,
    *,
    vantage: Vantage,
    options: ProbeOptions,
    credential: TokenCredential,
    reachability: Reachability,
    context: ssl.SSLContext,
) -> tuple[TlsStep, HealthStep, DataPlaneStep]:
    """TCP/TLS, health and data plane, all to the first address DNS gave."""
    if not dns.addresses:
        reason = f"not attempted: DNS gave no address ({dns.error})"
        return (
            TlsStep(address=None, port=options.port, error=reason),
            HealthStep(error=reason),
            DataPlaneStep(verdict=Verdict.UNREACHABLE, message=reason),
        )
    address = dns.addresses[0]
    tls, connection = open_tls(
        hostname,
        address,
        port=options.port,
        source_address=vantage.source_address,
        connect_timeout_s=options.connect_timeout_s,
        tls_timeout_s=options.tls_timeout_s,
        context=context,
        reachability=reachability,
    )
    if connection is None:
        reason = f"not attempted: {tls.certificate_error or tls.error}"
        # A client does not send its token to a server that failed TLS: neither does a probe.
        verdict = Verdict.ERROR if tls.connected else Verdict.UNREACHABLE
        return tls, HealthStep(error=reason), DataPlaneStep(verdict=verdict, message=reason)
    route = PinnedRoute(
        hostname=hostname,
        address=address,
        port=options.port,
        source_address=vantage.source_address,
        connect_timeout_s=options.connect_timeout_s,
        read_timeout_s=options.http_timeout_s,
    )
    # The TLS step's connection carries both calls: one handshake per vault.
    with PinnedConnection(route, context=context, sock=connection) as pinned:
        health = check_health(pinned, address_space=options.address_space)
        data_plane = probe_secret_read(pinned, credential=credential, address_space=options.address_space)
    return tls, health, data_plane


def not_probed(name: str, vantage: Vantage, reason: str, *, hostname: str = "") -> ProbeResult:
    """The result of a vault no probe reached: out of scope, or its worker process failed."""
    return ProbeResult(
        vault_name=name,
        vantage=vantage.name,
        hostname=hostname,
        started_at=dt.datetime.now(dt.UTC),
        data_plane=DataPlaneStep(verdict=Verdict.ERROR, message=f"not probed: {reason}"),
    )
