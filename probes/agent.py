"""Probe vaults from one vantage point: every step, for many vaults at once.

``probe_vaults`` is the local agent (this process is the vantage point); ``Prober`` is what a
scan calls for each vantage point, local or remote; ``handle_probe_request`` is the body of the
Functions app's ``POST /api/probe``, which a monitor elsewhere calls to probe from here.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import pickle
import ssl
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from azure.core.credentials import TokenCredential

from monitor.config.policy import Vantage
from monitor.config.settings import Settings
from monitor.model import DataPlaneStep, DnsStep, HealthStep, ProbeResult, TlsStep, Verdict
from monitor.netaddr import AddressSpace
from probes.dataplane import PinnedConnection, PinnedRoute, check_health, probe_secret_read
from probes.dns import resolve_vault
from probes.network import Reachability, open_tls, tls_context
from probes.scope import OutOfScope, ProbeScope, private_link_zone
from probes.wire import result_to_json
from probes.worker import ProbeJob, ProbeWorker

log = logging.getLogger(__name__)

MAX_REQUEST_BYTES = 64 * 1024
MAX_VAULTS_PER_REQUEST = 1000
# Fewer vaults than this per worker process and starting it (about a second of CPU to import the
# SDKs) costs more than it saves.
MIN_VAULTS_PER_PROCESS = 250


@dataclass(frozen=True)
class ProbeOptions:
    """How probes run. Timeouts bound each step on its own (seconds)."""

    port: int = 443
    dns_timeout_s: float = 5.0
    connect_timeout_s: float = 5.0
    tls_timeout_s: float = 5.0
    http_timeout_s: float = 10.0
    concurrency: int = 32  # vaults probed at once in each process
    processes: int = 1  # worker processes for big runs; 1 = probe in this process only
    scope: ProbeScope = field(default_factory=ProbeScope)
    address_space: AddressSpace = field(default_factory=AddressSpace)
    ca_bundle: str | None = None  # None: the system's trust store
    resolver: str | None = None  # for vantage points that name none; None: the system's
    remote_timeout_s: float = 120.0  # a remote vantage point's whole answer

    def __post_init__(self) -> None:
        if not 0 < self.port < 65536:
            raise ValueError(f"port: {self.port} is not a TCP port (1-65535)")
        if self.concurrency < 1:
            raise ValueError(f"concurrency: must be at least 1, got {self.concurrency}")
        if self.processes < 1:
            raise ValueError(f"processes: must be at least 1, got {self.processes}")
        for name in (
            "dns_timeout_s",
            "connect_timeout_s",
            "tls_timeout_s",
            "http_timeout_s",
            "remote_timeout_s",
        ):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name}: must be a positive number of seconds")

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> ProbeOptions:
        """Options from kvmon's settings: the cloud's suffix (plus an emulator's, which bare names
        then default to), port, concurrency, one timeout per step, address space, CA bundle."""
        suffixes = settings.vault_suffixes
        values: dict[str, Any] = {
            "port": settings.probe_port,
            "concurrency": settings.probe_concurrency,
            "processes": settings.probe_processes,
            "scope": ProbeScope(suffixes=suffixes, default_suffix=suffixes[-1]),
            "address_space": settings.address_space,
            "ca_bundle": settings.ca_bundle,
        }
        values.update(overrides)
        return cls.with_timeout(settings.probe_timeout_s, **values)

    @classmethod
    def with_timeout(cls, timeout_s: float, **kwargs: Any) -> ProbeOptions:
        """Every step bounded by the same ``timeout_s`` (the KVMON_PROBE_TIMEOUT setting)."""
        return cls(
            dns_timeout_s=timeout_s,
            connect_timeout_s=timeout_s,
            tls_timeout_s=timeout_s,
            http_timeout_s=timeout_s,
            **kwargs,
        )


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
    return _probe_in_threads(hostnames, vantage=vantage, options=options, credential=credential)


def _probe_in_threads(
    hostnames: Sequence[str],
    *,
    vantage: Vantage,
    options: ProbeOptions,
    credential: TokenCredential | None,
) -> list[ProbeResult]:
    if not hostnames:
        return []
    if credential is None:  # a worker process whose parent uses DefaultAzureCredential
        from azure.identity import DefaultAzureCredential

        credential = DefaultAzureCredential()
    reachability = Reachability()
    context = tls_context(options.ca_bundle)
    workers = min(options.concurrency, len(hostnames))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"probe-{vantage.name}") as pool:
        return list(
            pool.map(
                lambda host: _probe_one(
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
        here = _probe_in_threads(shares[0], vantage=vantage, options=options, credential=credential)
        results: list[ProbeResult | None] = [None] * len(hostnames)
        results[0::processes] = here
        for start, (share, answer) in enumerate(zip(shares[1:], answers, strict=True), start=1):
            outcome = answer.result()
            if isinstance(outcome, str):
                log.error("%s: %d vault(s) of %s not probed", outcome, len(share), vantage.name)
                outcome = [
                    _not_probed(host.split(".", 1)[0], vantage, outcome, hostname=host) for host in share
                ]
            results[start::processes] = outcome
    return [result for result in results if result is not None]


def probe_share(job: ProbeJob) -> list[ProbeResult]:
    """A worker process's share (``probes.worker``)."""
    return _probe_in_threads(
        job.hostnames, vantage=job.vantage, options=job.options, credential=job.credential
    )


def _credential_for_workers(credential: TokenCredential) -> TokenCredential | None:
    """What to send to worker processes: the credential itself (pickled), or None for a
    DefaultAzureCredential, which holds locks and pipelines: each worker builds its own from the
    same environment. Any other credential that cannot be pickled is refused, never replaced."""
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


def probe_vault(
    name: str, *, vantage: Vantage, options: ProbeOptions, credential: TokenCredential
) -> ProbeResult:
    return probe_vaults([name], vantage=vantage, options=options, credential=credential)[0]


def _probe_one(
    hostname: str,
    *,
    vantage: Vantage,
    options: ProbeOptions,
    credential: TokenCredential,
    reachability: Reachability,
    context: ssl.SSLContext,
) -> ProbeResult:
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


# -- the scan's entry point ---------------------------------------------------------------------


class Prober:
    """What a scan calls per vantage point: probes locally, or asks the vantage's endpoint.

    Never raises for one bad name or one silent vantage point: names outside the scope come back
    as results with an error, and remote failures as results with ``vantage_error`` (KV106).
    """

    def __init__(
        self,
        *,
        options: ProbeOptions,
        credential: TokenCredential,
        function_keys: Mapping[str, str] | None = None,
    ) -> None:
        self.options = options
        self.credential = credential
        # app setting name -> function key of a remote vantage point's endpoint
        self.function_keys = dict(function_keys or {})

    def __call__(self, names: Sequence[str], vantage: Vantage) -> list[ProbeResult]:
        in_scope: list[str] = []
        refused: dict[str, ProbeResult] = {}
        for name in names:
            try:
                in_scope.append(self.options.scope.hostname_for(name))
            except OutOfScope as exc:
                refused[name] = _not_probed(name, vantage, str(exc))
        if vantage.endpoint:
            from probes.remote import probe_remote

            key = self.function_keys.get(vantage.key_setting or "")
            probed = probe_remote(in_scope, vantage=vantage, function_key=key, options=self.options)
        else:
            probed = probe_vaults(in_scope, vantage=vantage, options=self.options, credential=self.credential)
        by_host = dict(zip(in_scope, probed, strict=True))
        results = []
        for name in names:
            if name in refused:
                results.append(refused[name])
            else:
                results.append(by_host[self.options.scope.hostname_for(name)])
        return results


def _not_probed(name: str, vantage: Vantage, reason: str, *, hostname: str = "") -> ProbeResult:
    return ProbeResult(
        vault_name=name,
        vantage=vantage.name,
        hostname=hostname,
        started_at=dt.datetime.now(dt.UTC),
        data_plane=DataPlaneStep(verdict=Verdict.ERROR, message=f"not probed: {reason}"),
    )


# -- POST /api/probe ----------------------------------------------------------------------------


def handle_probe_request(
    body: bytes,
    *,
    vantage: Vantage,
    options: ProbeOptions,
    credential: TokenCredential,
) -> tuple[int, dict[str, Any]]:
    """Validate ``{"vaults": [...]}`` completely, then probe: (HTTP status, JSON body).

    Bad JSON, an oversized body or any name outside the scope gives 400 with one clear message,
    and no connection is attempted for any name.
    """
    if len(body) > MAX_REQUEST_BYTES:
        return _bad_request(f"request body is larger than {MAX_REQUEST_BYTES} bytes")
    try:
        data = json.loads(body.decode("utf-8"))
    except UnicodeDecodeError:
        return _bad_request("request body is not UTF-8")
    except json.JSONDecodeError as exc:
        return _bad_request(f"request body is not JSON ({exc.msg} at line {exc.lineno} column {exc.colno})")
    if not isinstance(data, dict) or "vaults" not in data:
        return _bad_request('request body must be a JSON object {"vaults": ["<vault name>", ...]}')
    unknown = sorted(set(data) - {"vaults"})
    if unknown:
        return _bad_request(f"unknown field(s) in request body: {', '.join(unknown)}")
    vaults = data["vaults"]
    if not isinstance(vaults, list) or not vaults:
        return _bad_request("vaults: must be a non-empty list of vault names")
    if len(vaults) > MAX_VAULTS_PER_REQUEST:
        return _bad_request(f"vaults: at most {MAX_VAULTS_PER_REQUEST} names per request, got {len(vaults)}")
    for index, name in enumerate(vaults):
        try:
            options.scope.hostname_for(name)
        except OutOfScope as exc:
            return _bad_request(f"vaults[{index}]: {exc}")
    results = probe_vaults(vaults, vantage=vantage, options=options, credential=credential)
    return 200, {"vantage": vantage.name, "results": [result_to_json(r) for r in results]}


def _bad_request(message: str) -> tuple[int, dict[str, Any]]:
    return 400, {"error": {"code": "BadRequest", "message": message}}
