"""Probe the vaults of one process on threads: ``options.concurrency`` vaults at once, sharing one
``Reachability`` (a dead address costs its timeout once per process) and one TLS context.

Its own module so that both the local pool (``probes.pool``, this process's share) and a worker
process (``probes.worker``, its share) can run it without importing each other.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from azure.core.credentials import TokenCredential

from monitor.config.policy import Vantage
from monitor.model import ProbeResult
from probes.network import Reachability, tls_context
from probes.options import ProbeOptions
from probes.vault import probe_hostname


def probe_in_threads(
    hostnames: Sequence[str],
    *,
    vantage: Vantage,
    options: ProbeOptions,
    credential: TokenCredential,
) -> list[ProbeResult]:
    """One result per in-scope hostname, in the order given."""
    if not hostnames:
        return []
    reachability = Reachability()
    context = tls_context(options.ca_bundle)
    workers = min(options.concurrency, len(hostnames))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"probe-{vantage.name}") as pool:
        return list(
            pool.map(
                lambda host: probe_hostname(
                    host,
                    vantage=vantage,
                    options=options,
                    credential=credential,
                    reachability=reachability,
                    context=context,
                ),
                hostnames,
            )
        )
