"""The lab for a benchmark, in its own process, so that emulated Azure and kvmon do not share a
Python interpreter (and its GIL): the measured process runs kvmon only.

The child process builds a synthetic estate (``lab.estate_factory``, deterministic for a seed, so
the parent can rebuild the same one to know what is in it) and serves it with the lab's own
servers: ARM (with Resource Graph on the same endpoint, as in Azure), Log Analytics, the
split-horizon DNS, the Key Vault data plane, the webhook sinks and Azurite. Latency is injected
on every ARM, Resource Graph and Log Analytics request.

One deliberate difference from ``lab.services.LabServices``: the data plane listens on the public
front end only. The benchmark probes from the ``internet`` vantage point, where DNS always answers
the public front end, so no Private Endpoint address is ever dialled; starting one TLS listener
per Private Endpoint would cost the lab about 80 ms of certificate issuance each (2,000 endpoints:
almost three minutes) before anything is measured.

Commands over a pipe: ``counts`` (requests per service so far), ``usage`` (CPU, memory), ``stop``.
"""

from __future__ import annotations

import json
import multiprocessing
import resource
from collections.abc import Mapping
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from lab.estate import INTERNET_CLIENT, LAB_PRIVATE_RANGES, LAB_VAULT_SUFFIX, PUBLIC_INGRESS
from lab.estate_factory import subscription_id_for, synthetic_estate, workspace_id_for

START_TIMEOUT_S = 120


@dataclass(frozen=True)
class EstateSpec:
    vaults: int
    subscriptions: int
    seed: int = 0

    @property
    def subscription_ids(self) -> tuple[str, ...]:
        return tuple(subscription_id_for(i) for i in range(self.subscriptions))

    @property
    def workspace_ids(self) -> tuple[str, ...]:
        return tuple(workspace_id_for(i) for i in range(max(1, self.subscriptions // 10)))

    def build(self) -> Any:
        return synthetic_estate(vaults=self.vaults, subscriptions=self.subscriptions, seed=self.seed)


class LabProcess:
    """``with LabProcess(spec, latency_s=0.05) as lab:`` then ``lab.environ`` and ``lab.counts()``."""

    def __init__(self, spec: EstateSpec, *, latency_s: float, azurite: bool = True) -> None:
        self.spec = spec
        self.latency_s = latency_s
        self.azurite = azurite
        self.environ: dict[str, str] = {}
        self._conn: Connection | None = None
        self._process: multiprocessing.process.BaseProcess | None = None

    def start(self) -> LabProcess:
        context = multiprocessing.get_context("spawn")
        parent, child = context.Pipe()
        self._process = context.Process(
            target=_serve, args=(self.spec, self.latency_s, self.azurite, child), name="kvmon-bench-lab"
        )
        self._process.start()
        child.close()  # the child's end lives in the child: its death is then an end of file here
        self._conn = parent
        if not parent.poll(START_TIMEOUT_S):
            self.stop()
            raise RuntimeError("the lab process did not start in time")
        try:
            answer = parent.recv()
        except EOFError:
            self.stop()
            raise RuntimeError("the lab process ended before it started (see its output)") from None
        if "error" in answer:
            self.stop()
            raise RuntimeError(f"the lab process failed to start: {answer['error']}")
        self.environ = answer["environ"]
        return self

    def counts(self) -> dict[str, int]:
        """Requests each emulated service has answered since the lab started."""
        return dict(self._ask("counts"))

    def usage(self) -> dict[str, float]:
        """The lab process's CPU seconds so far (all its threads) and its peak RSS in MB;
        Azurite, a node process of its own, is not included."""
        return dict(self._ask("usage"))

    def _ask(self, command: str) -> Any:
        assert self._conn is not None, "the lab process is not running"
        self._conn.send(command)
        return self._conn.recv()

    def stop(self) -> None:
        if self._conn is not None:
            try:
                self._conn.send("stop")
                self._conn.recv()
            except (EOFError, OSError):
                pass
            self._conn.close()
            self._conn = None
        if self._process is not None:
            self._process.join(timeout=30)
            if self._process.is_alive():
                self._process.terminate()
                self._process.join()
            self._process = None

    def __enter__(self) -> LabProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def difference(after: Mapping[str, int], before: Mapping[str, int]) -> dict[str, int]:
    return {key: after.get(key, 0) - before.get(key, 0) for key in after}


# -- the child ------------------------------------------------------------------------------------


def _serve(spec: EstateSpec, latency_s: float, azurite: bool, conn: Connection) -> None:
    from lab.arm import ArmEmulator
    from lab.azurite import Azurite
    from lab.dns import LabDns
    from lab.keyvault import KeyVaultDataPlane
    from lab.loganalytics import LogAnalyticsEmulator
    from lab.resourcegraph import QUERY_ROUTE, ResourceGraphEmulator
    from lab.sinks import WebhookSink
    from lab.tls import lab_pki

    estate = spec.build()
    arm = ArmEmulator(estate, page_size=100, latency_s=latency_s)
    ResourceGraphEmulator(estate, server=arm.server)
    logs = LogAnalyticsEmulator(estate, latency_s=latency_s)
    sinks = WebhookSink()
    dns = LabDns(estate)
    keyvault = KeyVaultDataPlane(estate, addresses=[PUBLIC_INGRESS])
    services: list[Any] = []
    store: Azurite | None = None
    try:
        for service in (arm, logs, sinks, dns, keyvault):
            service.start()
            services.append(service)
        store = Azurite.start() if azurite else None
        environ = _environ(
            spec, arm.url, logs.endpoint, sinks, dns.resolver, keyvault.port, lab_pki().ca_path
        )
        if store is not None:
            environ["AzureWebJobsStorage"] = store.connection_string
        conn.send({"environ": environ})
    except BaseException as exc:
        conn.send({"error": f"{type(exc).__name__}: {exc}"})
        for service in reversed(services):
            service.stop()
        raise
    try:
        while True:
            command = conn.recv()
            if command == "counts":
                arm_counts = dict(arm.server.request_counts)
                graph = arm_counts.pop(QUERY_ROUTE, 0)
                conn.send(
                    {
                        "arm": sum(arm_counts.values()),
                        "resource_graph": graph,
                        "log_analytics": logs.server.total_requests,
                        "dns": dns.total_queries,
                        "keyvault": keyvault.total_requests,
                        "webhooks": sinks.server.total_requests,
                    }
                )
            elif command == "usage":
                usage = resource.getrusage(resource.RUSAGE_SELF)
                conn.send({"cpu_s": usage.ru_utime + usage.ru_stime, "peak_rss_mb": usage.ru_maxrss / 1024})
            else:
                conn.send("stopped")
                break
    finally:
        if store is not None:
            store.stop()
        for service in reversed(services):
            service.stop()


def _environ(
    spec: EstateSpec,
    arm_url: str,
    logs_endpoint: str,
    sinks: Any,
    resolver: str,
    port: int,
    ca_path: str,
) -> dict[str, str]:
    vantage = {"name": "internet", "inside": False, "source_address": INTERNET_CLIENT, "resolver": resolver}
    return {
        "KVMON_SUBSCRIPTIONS": ",".join(spec.subscription_ids),
        "KVMON_ARM_ENDPOINT": arm_url,
        "KVMON_VAULT_DNS_SUFFIX": LAB_VAULT_SUFFIX,
        "KVMON_PRIVATE_RANGES": ",".join(LAB_PRIVATE_RANGES),
        "KVMON_CA_BUNDLE": ca_path,
        "KVMON_PROBE_PORT": str(port),
        "KVMON_PROBE_TIMEOUT": "5",
        "KVMON_VANTAGE": "internet",
        "KVMON_VANTAGES": json.dumps([vantage]),
        "KVMON_WORKSPACES": ",".join(spec.workspace_ids),
        "KVMON_LOGS_ENDPOINT": logs_endpoint,
        "KVMON_CHANNELS": json.dumps(
            [
                {"name": "teams", "kind": "teams", "url_setting": "KVMON_TEAMS_URL"},
                {"name": "slack", "kind": "slack", "url_setting": "KVMON_SLACK_URL"},
            ]
        ),
        "KVMON_TEAMS_URL": sinks.teams_url(),
        "KVMON_SLACK_URL": sinks.slack_url(),
    }
