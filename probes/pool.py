"""Probe many vaults from this host, the local vantage point: ``probe_vaults``.

The local pool's one job is to share the work out: every name is checked against the scope, then
the vaults are probed on this process's threads (``probes.threads``), or, for a big run, shared
out between this process and worker processes (``probes.worker``) and the results put back in
the order asked.
"""

from __future__ import annotations

import logging
import pickle
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from azure.core.credentials import TokenCredential

from monitor.config.policy import Vantage
from monitor.model import ProbeResult
from probes.options import ProbeOptions
from probes.threads import probe_in_threads
from probes.vault import not_probed
from probes.worker import ProbeJob, ProbeWorker

log = logging.getLogger(__name__)

# Fewer vaults than this per worker process and starting it (about a second of CPU to import the
# SDKs) costs more than it saves.
MIN_VAULTS_PER_PROCESS = 250


def probe_vaults(
    names: Sequence[str],
    *,
    vantage: Vantage,
    options: ProbeOptions,
    credential: TokenCredential,
) -> list[ProbeResult]:
    """Probe ``names`` from this host as ``vantage``, in the order given.

    Every name is checked against the scope first: OutOfScope is raised before any packet is
    sent. Then at most ``options.concurrency`` vaults are probed at once per process, sharing one
    ``Reachability`` so that a dead address costs its timeout once per process. With
    ``options.processes`` above 1 and enough vaults, the vaults are shared out between this
    process and ``processes - 1`` worker processes: a probe is mostly CPU (TLS, HTTP and DNS
    parsing), and one Python process uses one core at a time.
    """
    hostnames = [options.scope.hostname_for(name) for name in names]
    processes = min(options.processes, len(hostnames) // MIN_VAULTS_PER_PROCESS)
    if processes > 1:
        return _probe_in_processes(
            hostnames, processes=processes, vantage=vantage, options=options, credential=credential
        )
    return probe_in_threads(hostnames, vantage=vantage, options=options, credential=credential)


def probe_vault(
    name: str, *, vantage: Vantage, options: ProbeOptions, credential: TokenCredential
) -> ProbeResult:
    return probe_vaults([name], vantage=vantage, options=options, credential=credential)[0]


def _probe_in_processes(
    hostnames: Sequence[str],
    *,
    processes: int,
    vantage: Vantage,
    options: ProbeOptions,
    credential: TokenCredential,
) -> list[ProbeResult]:
    """Every ``processes``-th vault to each share (so slow addresses spread out): the first share
    probed here, the others by ``probes.worker`` processes meanwhile; results put back in order.
    A worker that fails gives its vaults an error result each (never silence)."""
    shares = [tuple(hostnames[start::processes]) for start in range(processes)]
    sendable = _credential_for_workers(credential)
    workers = [
        ProbeWorker(ProbeJob(hostnames=share, vantage=vantage, options=options, credential=sendable))
        for share in shares[1:]
    ]
    with ThreadPoolExecutor(max_workers=len(workers), thread_name_prefix="probe-workers") as waiting:
        answers = [waiting.submit(worker.results) for worker in workers]
        here = probe_in_threads(shares[0], vantage=vantage, options=options, credential=credential)
        results: list[ProbeResult | None] = [None] * len(hostnames)
        results[0::processes] = here
        for start, (share, answer) in enumerate(zip(shares[1:], answers, strict=True), start=1):
            outcome = answer.result()
            if isinstance(outcome, str):
                log.error("%s: %d vault(s) of %s not probed", outcome, len(share), vantage.name)
                outcome = [
                    not_probed(host.split(".", 1)[0], vantage, outcome, hostname=host) for host in share
                ]
            results[start::processes] = outcome
    return [result for result in results if result is not None]


def _credential_for_workers(credential: TokenCredential) -> TokenCredential | None:
    """What to send to worker processes: the credential itself (pickled), or None for a
    DefaultAzureCredential, which holds locks and pipelines: each worker builds its own from the
    same environment. Any other credential that cannot be pickled is refused, never replaced."""
    # Imported only for a run that starts workers: azure.identity is heavy, and who probes with
    # another credential (the lab, a test) never needs it.
    from azure.identity import DefaultAzureCredential

    if isinstance(credential, DefaultAzureCredential):
        return None
    try:
        pickle.dumps(credential)
    except (pickle.PicklingError, TypeError, AttributeError) as exc:
        raise ValueError(
            f"processes: a {type(credential).__name__} cannot be sent to probe worker processes "
            f"({exc}); use one process (KVMON_PROBE_PROCESSES=1) or DefaultAzureCredential"
        ) from exc
    return credential
