"""All of the lab at once: ARM (with Resource Graph), DNS, the Key Vault data plane, Log Analytics, webhook sinks and,
when asked, Azurite and an Event Grid subscription to ARM's writes; plus the kvmon settings that point at them.

The demo, the Functions app tests, the end-to-end scan tests and the benchmarks start the lab
through ``LabServices`` so there is one way to stand up emulated Azure.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Sequence
from pathlib import Path

from lab.arm import ArmEmulator
from lab.azurite import Azurite
from lab.estate import (
    INTERNET_CLIENT,
    LAB_PRIVATE_RANGES,
    LAB_VAULT_SUFFIX,
    WALKTHROUGH_SUBSCRIPTION,
    WALKTHROUGH_WORKSPACE,
    Estate,
    walkthrough_network,
)
from lab.eventgrid import EventGridEmulator
from lab.loganalytics import LogAnalyticsEmulator
from lab.resourcegraph import ResourceGraphEmulator
from lab.sinks import WebhookSink
from lab.tls import lab_pki
from lab.world import LabWorld
from monitor.config.policy import Vantage

REPO = Path(__file__).resolve().parent.parent
WALKTHROUGH_BASELINE = REPO / "examples" / "baseline-walkthrough.yaml"


def walkthrough_vantages(*, resolver: str | None = None) -> list[Vantage]:
    """The walkthrough's five places: the internet, the three hub subnets and the spoke.

    Each binds its subnet's client address, so the lab's split-horizon DNS and firewall see it
    where it stands; ``resolver`` is the lab DNS ("127.0.0.1:<port>").
    """
    subnets = {subnet.name: subnet for vnet in walkthrough_network() for subnet in vnet.subnets}

    def inside(name: str, subnet: str) -> Vantage:
        found = subnets[subnet]
        return Vantage(
            name=name,
            inside=True,
            subnet_id=found.id,
            source_address=found.client_address,
            resolver=resolver,
        )

    return [
        Vantage(name="internet", inside=False, source_address=INTERNET_CLIENT, resolver=resolver),
        inside("se-subnet", "serviceEndpoint"),
        inside("pl-subnet", "privateLink"),
        inside("default-subnet", "default"),
        inside("spoke", "workload"),
    ]


class LabServices:
    """Start with ``with LabServices(estate) as lab:``; ``lab.environ()`` is the settings."""

    def __init__(
        self,
        estate: Estate,
        *,
        azurite: bool = False,
        latency_s: float = 0.0,
        arm_page_size: int = 100,
        blackholed: Sequence[str] = (),
    ) -> None:
        self.estate = estate
        self.arm = ArmEmulator(estate, page_size=arm_page_size, latency_s=latency_s)
        # On ARM's endpoint, as in Azure: KVMON_ARM_ENDPOINT serves both inventory sources.
        self.resource_graph = ResourceGraphEmulator(estate, server=self.arm.server)
        self.world = LabWorld(estate, blackholed=blackholed)
        self.logs = LogAnalyticsEmulator(estate, latency_s=latency_s)
        # The data plane's perimeter decisions reach the workspace a perimeter's diagnostic setting names.
        self.world.keyvault.perimeter_logs = self.logs.perimeter_decided
        self.sinks = WebhookSink()
        self._with_azurite = azurite
        self.azurite: Azurite | None = None
        self._workdir: tempfile.TemporaryDirectory[str] | None = None  # for a default SQLite file
        self.events: EventGridEmulator | None = None  # see subscribe

    def start(self) -> LabServices:
        started: list[ArmEmulator | LabWorld | LogAnalyticsEmulator | WebhookSink] = []
        try:
            for service in (self.arm, self.world, self.logs, self.sinks):
                service.start()
                started.append(service)
            if self._with_azurite:
                self.azurite = Azurite.start()
        except BaseException:
            for service in reversed(started):
                service.stop()
            raise
        return self

    def stop(self) -> None:
        self.unsubscribe()
        if self._workdir is not None:
            self._workdir.cleanup()
            self._workdir = None
        if self.azurite is not None:
            self.azurite.stop()
            self.azurite = None
        for service in (self.sinks, self.logs, self.world, self.arm):
            service.stop()

    def __enter__(self) -> LabServices:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def use(self, estate: Estate) -> LabServices:
        """Serve ``estate`` from the running servers, forgetting recorded traffic and faults and
        ending the event subscription (tests start the servers once and give each test a fresh world)."""
        self.unsubscribe()
        self.estate = self.arm.estate = estate
        self.resource_graph.reset(estate)
        self.world.use(estate)
        self.logs.reset(estate)
        self.sinks.clear()
        self.sinks.clear_faults()
        self.arm.server.clear_faults()
        self.arm.clear_link_faults()
        return self

    def subscribe(self, events: EventGridEmulator) -> EventGridEmulator:
        """Deliver every write ARM serves through ``events`` (started here, stopped with the lab),
        as an event subscription to the subscription's system topic; replaces an earlier one."""
        self.unsubscribe()
        events.start()
        self.events = events
        self.arm.publish = events.publish
        return events

    def unsubscribe(self) -> None:
        """End the event subscription: ARM's writes announce nothing, undelivered events are dropped."""
        self.arm.publish = None
        if self.events is not None:
            self.events.stop()
            self.events = None

    def vantages(self) -> list[Vantage]:
        return walkthrough_vantages(resolver=self.world.resolver)

    def environ(
        self,
        *,
        subscriptions: Sequence[str] = (WALKTHROUGH_SUBSCRIPTION,),
        workspaces: Sequence[str] = (WALKTHROUGH_WORKSPACE,),
        perimeter_workspaces: Sequence[str] = (),
        baseline: Path | None = WALKTHROUGH_BASELINE,
        sqlite_path: Path | None = None,
        channels: bool = True,
    ) -> dict[str, str]:
        """kvmon's settings for this lab (see monitor.config.settings for each one)."""
        environ = {
            "KVMON_SUBSCRIPTIONS": ",".join(subscriptions),
            "KVMON_ARM_ENDPOINT": self.arm.url,
            "KVMON_VAULT_DNS_SUFFIX": LAB_VAULT_SUFFIX,
            "KVMON_PRIVATE_RANGES": ",".join(LAB_PRIVATE_RANGES),
            "KVMON_CA_BUNDLE": lab_pki().ca_path,
            "KVMON_PROBE_PORT": str(self.world.port),
            "KVMON_PROBE_TIMEOUT": "2",
            "KVMON_VANTAGES": json.dumps([_vantage_json(v) for v in self.vantages()]),
            "KVMON_WORKSPACES": ",".join(workspaces),
            "KVMON_LOGS_ENDPOINT": self.logs.endpoint,
            "KVMON_SCAN_QUEUE": "kvmon-scan-jobs",
            "KVMON_EVENT_QUEUE": "kvmon-vault-events",
            "KVMON_SCAN_SCHEDULE": "0 */15 * * * *",
        }
        if perimeter_workspaces:
            environ["KVMON_NSP_WORKSPACES"] = ",".join(perimeter_workspaces)
        if baseline is not None:
            environ["KVMON_BASELINE"] = str(baseline)
        if self.azurite is not None:
            environ["AzureWebJobsStorage"] = self.azurite.connection_string
        else:
            if sqlite_path is None:
                if self._workdir is None:
                    self._workdir = tempfile.TemporaryDirectory(prefix="kvmon-lab-")
                sqlite_path = Path(self._workdir.name) / "kvmon.db"
            environ["KVMON_SQLITE_PATH"] = str(sqlite_path)
        if channels:
            environ["KVMON_CHANNELS"] = json.dumps(
                [
                    {"name": "teams", "kind": "teams", "url_setting": "KVMON_TEAMS_URL"},
                    {"name": "slack", "kind": "slack", "url_setting": "KVMON_SLACK_URL"},
                ]
            )
            environ["KVMON_TEAMS_URL"] = self.sinks.teams_url()
            environ["KVMON_SLACK_URL"] = self.sinks.slack_url()
        return environ


def _vantage_json(vantage: Vantage) -> dict[str, object]:
    fields = {
        "name": vantage.name,
        "inside": vantage.inside,
        "subnet_id": vantage.subnet_id,
        "endpoint": vantage.endpoint,
        "key_setting": vantage.key_setting,
        "source_address": vantage.source_address,
        "resolver": vantage.resolver,
        "region": vantage.region,
    }
    return {key: value for key, value in fields.items() if value is not None}
