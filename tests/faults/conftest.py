"""The fault matrix's lab, its short timeouts, and the faults × outcome table printed at the end.

Every fault test is marked ``@pytest.mark.fault(area, fault)`` and tells ``observe(...)`` what it
saw (built from the run: error codes, counts, verdicts), so the table at the end of the session
is the suite's own account of each fault and never a list typed in advance. A test that fails
before observing anything still gets its row, marked FAILED.

The lab runs once per session; each test gets a fresh estate through ``LabServices.use``. The
clients keep their production code and are built with timeouts and retries measured in fractions
of a second (``fast_runtime``), so a stall or a dead address costs the suite little.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from azure.core.credentials import TokenCredential

from lab.azurite import Azurite, azurite_missing_reason
from lab.credential import LabCredential
from lab.estate import (
    INTERNET_CLIENT,
    WALKTHROUGH_SUBSCRIPTION,
    WALKTHROUGH_WORKSPACE,
    Estate,
    walkthrough_estate,
)
from lab.http import LabServer, Request, Response
from lab.services import LabServices
from monitor.app.runtime import build_runtime
from monitor.app.scan import ScanRuntime
from monitor.config.channels import load_channels
from monitor.config.policy import Vantage
from monitor.config.settings import Settings
from monitor.outputs.notify import DeliveryPolicy, Notifier
from monitor.outputs.notify.deliver import default_session
from monitor.sources.arm import ArmInventory
from monitor.sources.logs import LogsReader
from monitor.store import Store, open_store
from probes.endpoint import handle_probe_request
from probes.options import ProbeOptions

# Every client's timeout in this suite (seconds): long enough for loopback, short enough that a
# stall costs little. Retries: one, with a backoff of hundredths of a second.
FAULT_TIMEOUT_S = 0.75
SUB_A = WALKTHROUGH_SUBSCRIPTION
SUB_B = "00000000-0000-0000-0000-00000000b002"
WORKSPACE = WALKTHROUGH_WORKSPACE
WEBHOOK_SECRET = "whsec-Fault5uite-7Kq2Rz9Lw3Mx8Pv4"


# -- the faults × outcome ledger -------------------------------------------------------------------


@dataclass
class _Row:
    nodeid: str
    area: str
    fault: str
    observed: list[str] = field(default_factory=list)
    result: str = "not run"


_ROWS: dict[str, _Row] = {}
# The table's order: the issue's.
AREAS = ("ARM", "Log Analytics", "Probes", "Store", "Store + webhooks", "Concurrency", "Deadline")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "fault(area, fault): a row of the fault matrix (tests/faults); printed at the end"
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        marker = item.get_closest_marker("fault")
        if marker is not None:
            area, fault = marker.args
            _ROWS[item.nodeid] = _Row(item.nodeid, area, fault)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    row = _ROWS.get(report.nodeid)
    if row is None:
        return
    if report.failed:
        row.result = "FAILED" if report.when == "call" else f"ERROR ({report.when})"
    elif report.skipped:
        row.result = "skipped"
    elif report.when == "call":
        row.result = "passed"


def pytest_terminal_summary(terminalreporter: Any) -> None:
    rows = sorted(
        (row for row in _ROWS.values() if row.result != "not run"),
        key=lambda row: AREAS.index(row.area) if row.area in AREAS else len(AREAS),
    )
    if not rows:
        return
    terminalreporter.section("kvmon fault matrix: faults × outcome")
    area_width = max(len(r.area) for r in rows)
    fault_width = max(len(r.fault) for r in rows)
    for row in rows:
        outcome = "; ".join(row.observed) or "(no outcome observed)"
        terminalreporter.write_line(
            f"{row.result.upper():8} {row.area:<{area_width}}  {row.fault:<{fault_width}}  {outcome}"
        )
    passed = sum(1 for r in rows if r.result == "passed")
    terminalreporter.write_line(f"{len(rows)} faults tried, {passed} with the expected outcome")


@pytest.fixture
def observe(request: pytest.FixtureRequest) -> Callable[[str], None]:
    """``observe("what happened")``: one part of this fault's outcome, for the table."""
    row = _ROWS.get(request.node.nodeid)
    if row is None:
        raise RuntimeError(f"{request.node.nodeid} uses observe() without @pytest.mark.fault(area, fault)")

    def record(outcome: str) -> None:
        row.observed.append(outcome)

    return record


# -- the estate ------------------------------------------------------------------------------------


def fault_estate() -> Estate:
    """The walkthrough (subscription A) plus subscription B with two vaults of its own, so a fault
    on one subscription has another to leave alone."""
    estate = walkthrough_estate()
    estate.add_vault(
        subscription_id=SUB_B,
        resource_group="rg-b",
        name="kv-b-open",
        network_acls={
            "defaultAction": "Allow",
            "bypass": "AzureServices",
            "ipRules": [],
            "virtualNetworkRules": [],
        },
        workspace_id=WORKSPACE,
    )
    estate.add_vault(
        subscription_id=SUB_B,
        resource_group="rg-b",
        name="kv-b-wide",
        network_acls={
            "defaultAction": "Deny",
            "bypass": "AzureServices",
            "ipRules": [{"value": "0.0.0.0/1"}],
            "virtualNetworkRules": [],
        },
        workspace_id=WORKSPACE,
    )
    return estate


# -- the lab ---------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def services() -> Iterator[LabServices]:
    with LabServices(fault_estate()) as lab:
        yield lab


@pytest.fixture
def lab(services: LabServices) -> LabServices:
    """The running lab serving a fresh fault estate, with no fault left over from another test."""
    services.use(fault_estate())
    services.world.dns.mode = "answer"
    for server in services.world.keyvault.servers.values():
        server.clear_faults()
    services.sinks.webhook_secret = WEBHOOK_SECRET
    return services


def fault_environ(lab: LabServices, *, sqlite_path: Path | None = None, **overrides: str) -> dict[str, str]:
    """The lab's settings for both subscriptions, a signed webhook channel next to Teams, and the
    short probe timeout."""
    environ = lab.environ(subscriptions=(SUB_A, SUB_B), sqlite_path=sqlite_path)
    environ["KVMON_PROBE_TIMEOUT"] = str(FAULT_TIMEOUT_S)
    environ["KVMON_CHANNELS"] = (
        '[{"name": "teams", "kind": "teams", "url_setting": "KVMON_TEAMS_URL"},'
        ' {"name": "siem", "kind": "webhook", "url_setting": "KVMON_SIEM_URL",'
        ' "secret_setting": "KVMON_SIEM_SECRET"}]'
    )
    environ["KVMON_SIEM_URL"] = lab.sinks.webhook_url()
    environ["KVMON_SIEM_SECRET"] = WEBHOOK_SECRET
    environ.update(overrides)
    return environ


def fast_runtime(
    environ: Mapping[str, str], *, store: Store | None, credential: TokenCredential | None = None
) -> ScanRuntime:
    """``build_runtime`` as the CLI and the Functions app call it, then ARM, Log Analytics and the
    webhooks rebuilt from the same settings with this suite's timeouts and retries (production
    waits tens of seconds; the behaviour under a fault is the same, only shorter)."""
    settings = Settings.from_environ(environ)
    credential = credential or LabCredential()
    runtime = build_runtime(
        settings, environ=environ, credential=credential, store=store, with_store=store is not None
    )
    runtime.inventory = ArmInventory(
        credential,
        arm_endpoint=settings.arm_endpoint,
        connection_verify=settings.connection_verify,
        timeout_s=FAULT_TIMEOUT_S,
        retry_total=1,
        retry_backoff_factor=0.01,
        retry_backoff_max=0.1,
    )
    runtime.evidence = LogsReader(
        credential,
        endpoint=settings.logs_endpoint,
        table=settings.logs_table,
        address_space=settings.address_space,
        connection_verify=settings.connection_verify,
        timeout_s=FAULT_TIMEOUT_S,
        retry_total=1,
        retry_backoff_factor=0.01,
    )
    if runtime.notifier is not None and store is not None:
        runtime.notifier = Notifier(
            store,
            load_channels(environ),
            session=default_session(verify=settings.connection_verify),
            policy=DeliveryPolicy(
                connect_timeout_s=FAULT_TIMEOUT_S,
                read_timeout_s=FAULT_TIMEOUT_S,
                attempts=2,
                backoff_s=0.01,
                max_backoff_s=0.05,
                max_retry_after_s=1.0,
            ),
        )
    return runtime


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[Store]:
    store = open_store(sqlite_path=tmp_path / "kvmon.db")
    yield store
    store.close()


@pytest.fixture(scope="session")
def azurite_for_faults() -> Iterator[Azurite]:
    """An Azurite of the fault suite's own: tests here stop and restart it."""
    reason = azurite_missing_reason()
    if reason is not None:
        pytest.skip(f"Azurite cannot run here: {reason}")
    emulator = Azurite.start()
    yield emulator
    emulator.stop()


@pytest.fixture
def table_prefix() -> str:
    return f"f{uuid.uuid4().hex[:12]}"


# -- a remote vantage point ------------------------------------------------------------------------

REMOTE_KEY = "fnkey-remote-Vantage-0Qz8Xw2Lk5"


class RemoteVantage:
    """Another deployment of the app on the internet: ``POST /api/probe`` behind a function key,
    answered by the real probe handler. ``vantage`` is how the monitor configures it."""

    def __init__(self, lab: LabServices, *, name: str = "outside") -> None:
        settings = Settings.from_environ(fault_environ(lab))
        self._options = ProbeOptions.from_settings(settings)
        self._as = Vantage(
            name=name, inside=False, source_address=INTERNET_CLIENT, resolver=lab.world.resolver
        )
        self.server = LabServer(name=f"vantage-{name}")
        self.server.route("POST", r"/api/probe", self._probe)
        self.name = name

    def _probe(self, request: Request) -> Response:
        if request.header("x-functions-key") != REMOTE_KEY:
            return Response(401, "")
        status, body = handle_probe_request(
            request.body, vantage=self._as, options=self._options, credential=LabCredential()
        )
        return Response(status, body)

    def vantage_json(self, endpoint: str | None = None) -> dict[str, Any]:
        return {
            "name": self.name,
            "inside": False,
            "endpoint": endpoint or f"{self.server.url}/api/probe",
            "key_setting": "KVMON_OUTSIDE_KEY",
        }


def free_loopback_port() -> int:
    """A port nothing listens on (bound, read, released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class HandshakeResetter:
    """A TCP peer at (address, port) that takes each connection, reads the TLS ClientHello and
    answers with a reset: a middlebox dropping TLS to the vault."""

    def __init__(self, address: str, port: int) -> None:
        self.address, self.port = address, port
        self.resets = 0
        self._listener: socket.socket | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> HandshakeResetter:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self.address, self.port))
        listener.listen(16)
        self._listener = listener
        self._thread = threading.Thread(target=self._serve, name="handshake-resetter", daemon=True)
        self._thread.start()
        return self

    def _serve(self) -> None:
        assert self._listener is not None
        while True:
            try:
                connection, _ = self._listener.accept()
            except OSError:
                return
            with contextlib.suppress(OSError):
                connection.settimeout(2)
                connection.recv(4096)  # the ClientHello
                connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            connection.close()
            self.resets += 1

    def stop(self) -> None:
        if self._listener is not None:
            with contextlib.suppress(OSError):  # wakes the thread blocked in accept()
                self._listener.shutdown(socket.SHUT_RDWR)
            self._listener.close()
            self._listener = None


# -- a cuttable link to the store ------------------------------------------------------------------


class StoreLink:
    """A TCP relay between kvmon and Azurite's table endpoint that a test can cut and restore:
    the storage account out of reach while its data survives (Azurite keeps data in memory, so
    stopping it would lose the outbox a recovery must still deliver)."""

    def __init__(self, azurite: Azurite) -> None:
        self._upstream = ("127.0.0.1", azurite.table_port)
        self._azurite = azurite
        self.port = free_loopback_port()
        self._listener: socket.socket | None = None
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()

    @property
    def connection_string(self) -> str:
        """Azurite's connection string with the table endpoint through this link."""
        return self._azurite.connection_string.replace(f":{self._azurite.table_port}/", f":{self.port}/")

    def restore(self) -> StoreLink:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(32)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), name="store-link", daemon=True).start()
        return self

    def cut(self) -> None:
        """Refuse new connections and reset the open ones."""
        with self._lock:
            listener, self._listener = self._listener, None
            sockets, self._open = self._open, set()
        if listener is not None:
            with contextlib.suppress(OSError):  # wakes the thread blocked in accept()
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self._upstream, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self._open |= {client, upstream}
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=_pump, args=(source, sink), daemon=True).start()


def _pump(source: socket.socket, sink: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while data := source.recv(65536):
            sink.sendall(data)
    for sock in (source, sink):
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
