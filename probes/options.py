"""How probes run: ``ProbeOptions``, built from kvmon's settings.

Its own module because every other part of the package reads it (one vault's steps, the local
pool, worker processes, remote vantage points, the probe endpoint) while it needs none of them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from monitor.config.settings import Settings
from monitor.naming.storage import PRODUCTION_SUFFIXES as STORAGE_SUFFIXES
from monitor.naming.storage import checked_suffix
from monitor.netaddr import AddressSpace
from probes.scope import ProbeScope


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
    # The storage DNS suffixes a storage probe may contact (probes.storage): an endpoint ARM lists
    # under any other suffix gets no token.
    storage_suffixes: tuple[str, ...] = STORAGE_SUFFIXES

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
        object.__setattr__(self, "storage_suffixes", tuple(checked_suffix(s) for s in self.storage_suffixes))

    @property
    def vault_worst_case_s(self) -> float:
        """One vault's probe when every step hangs: DNS, then for each of its three requests
        (healthstatus, the secret read, and the read again with a token after Key Vault's
        challenge) a connection, its handshake and the answer. The token itself is the
        credential's budget (``KVMON_TOKEN_TIMEOUT``); ``concurrency`` vaults are probed at once."""
        per_request = self.connect_timeout_s + self.tls_timeout_s + self.http_timeout_s
        return self.dns_timeout_s + 3 * per_request

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> ProbeOptions:
        """Options from kvmon's settings: the cloud's suffix (plus an emulator's, which bare names
        then default to), port, concurrency, one timeout per step, a remote vantage point's
        timeout, address space, CA bundle."""
        suffixes = settings.vault_suffixes
        values: dict[str, Any] = {
            "port": settings.probe_port,
            "concurrency": settings.probe_concurrency,
            "processes": settings.probe_processes,
            "scope": ProbeScope(suffixes=suffixes, default_suffix=suffixes[-1]),
            "address_space": settings.address_space,
            "ca_bundle": settings.ca_bundle,
            "remote_timeout_s": settings.remote_probe_timeout_s,
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
