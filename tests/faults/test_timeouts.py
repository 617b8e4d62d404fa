"""Every service's timeouts and retries, and the scan's deadline, against lab servers that hang.

Each test makes a service accept the connection and never answer (or answer its headers and stall
the body), with production's settings made small (``KVMON_TOKEN_TIMEOUT``, ``KVMON_LOGS_TIMEOUT``,
``KVMON_SCAN_DEADLINE``, ...) and the clients built as production builds them. Each asserts that
the scan ends within the bound the README and docs/reliability.md state, computed from the same
budgets (``RequestBudget.worst_case_s``), with a margin for loopback and threads; and that what
hung is a scan error naming the service, never a verdict.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from azure.core.exceptions import AzureError

from lab.azurite import DEV_ACCOUNT, DEV_ACCOUNT_KEY
from lab.credential import IdentityEndpoint, LabCredential
from lab.http import Fault, LabServer
from lab.resourcegraph import QUERY_ROUTE
from lab.services import LabServices
from lab.tls import lab_pki
from monitor.app.queue import scan_queue
from monitor.cli import main
from monitor.config.budget import RequestBudget
from monitor.config.channels import ChannelConfig, ChannelKind
from monitor.config.identity import token_budget
from monitor.config.secret import Secret
from monitor.config.settings import Settings
from monitor.model import ChangeKind, FindingStatus
from monitor.outputs.notify.deliver import DeliveryPolicy, Notifier, default_session
from monitor.sources.logs import LogsReader
from monitor.store import Store, open_store
from probes.options import ProbeOptions
from tests.faults.conftest import (
    REMOTE_KEY,
    SUB_A,
    SUB_B,
    WEBHOOK_SECRET,
    WORKSPACE,
    RemoteVantage,
    fault_environ,
)
from tests.notify.factories import change

# Loopback, threads and the SDKs' own work, on a machine shared with other tests.
MARGIN_S = 1.5
# Variables with which DefaultAzureCredential would try another identity than the managed one.
_OTHER_IDENTITIES = (
    "AZURE_CLIENT_ID",
    "AZURE_CLIENT_SECRET",
    "AZURE_TENANT_ID",
    "AZURE_CLIENT_CERTIFICATE_PATH",
    "AZURE_USERNAME",
    "AZURE_FEDERATED_TOKEN_FILE",
    "AZURE_TOKEN_CREDENTIALS",
    "MSI_ENDPOINT",
    "IMDS_ENDPOINT",
)


@pytest.fixture
def identity(monkeypatch: pytest.MonkeyPatch) -> Iterator[IdentityEndpoint]:
    """The platform's managed identity endpoint, set in the environment as App Service sets it,
    so the scan's own ``DefaultAzureCredential`` asks it for every token."""
    for name in _OTHER_IDENTITIES:
        monkeypatch.delenv(name, raising=False)
    with IdentityEndpoint() as endpoint:
        for name, value in endpoint.environ().items():
            monkeypatch.setenv(name, value)
        yield endpoint
        # A read the deadline cut off goes on in the background until its own budget ends; it
        # still needs its tokens, and the next test must not see its requests.
        for thread in threading.enumerate():
            if thread.name == "kvmon-scan-source":
                thread.join(timeout=30)


def _kvmon_scan(
    environ: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    *flags: str,
) -> tuple[int, dict, float]:
    """``kvmon scan --format json --no-notify FLAGS`` in ``environ``: exit code, report, seconds."""
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    started = time.monotonic()
    code = main(["scan", "--format", "json", "--no-notify", *flags])
    elapsed = time.monotonic() - started
    return code, json.loads(capsys.readouterr().out), elapsed


@pytest.mark.fault("ARM", "token endpoint hangs (production DefaultAzureCredential, KVMON_TOKEN_TIMEOUT)")
def test_a_hanging_token_endpoint_ends_the_scan_within_the_stated_bound(
    lab: LabServices,
    identity: IdentityEndpoint,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    observe: Callable[[str], None],
) -> None:
    environ = fault_environ(lab, sqlite_path=tmp_path / "kvmon.db", KVMON_TOKEN_TIMEOUT="0.3")
    budget = token_budget(Settings.from_environ(environ))

    # The endpoint answering: the production credential takes its tokens from it, and ARM reads
    # both subscriptions.
    code, document, _ = _kvmon_scan(environ, monkeypatch, capsys, "--no-probes", "--no-logs")
    assert document["errors"] == [] and code in (0, 1)
    assert identity.server.request_counts["token"] >= 1

    identity.server.inject(IdentityEndpoint.PATH, Fault(delay_s=budget.timeout_s * 10, times=0))
    before = identity.server.request_counts["token"]
    # The vaults' listing alone: the storage listing asks for tokens of its own at the same time.
    code, document, elapsed = _kvmon_scan(
        environ, monkeypatch, capsys, "--no-probes", "--no-logs", "--service", "keyvault"
    )

    # Each subscription's listing asks for a token once (ARM reads the two at the same time) and
    # that request ends within the token budget: (2 + 1) tries × connect and read, plus 1.6 s.
    bound = budget.worst_case_s
    assert code == 3
    errors = {error["scope"]: error for error in document["errors"]}
    assert set(errors) == {SUB_A, SUB_B}
    for error in errors.values():
        assert error["source"] == "arm"
        assert "token" in error["message"] and "timed out" in error["message"]
    assert document["findings"] == []
    assert identity.server.request_counts["token"] - before == 2 * budget.tries
    assert elapsed < bound + MARGIN_S
    observe(f"exit 3 in {elapsed:.1f} s (bound {bound:.1f} s); {errors[SUB_A]['message'][:90]}")


def _stored_vaults(path: Path) -> set[str]:
    store = open_store(sqlite_path=path)
    try:
        return set(store.load_postures(subscriptions=(SUB_A, SUB_B)))
    finally:
        store.close()


def _open_findings(path: Path) -> set[str]:
    store = open_store(sqlite_path=path)
    try:
        return set(store.load_findings(status=FindingStatus.OPEN))
    finally:
        store.close()


@pytest.mark.fault("ARM", "Resource Graph query hangs (KVMON_INVENTORY_SOURCE=resource-graph)")
def test_a_hanging_resource_graph_query_ends_within_the_arm_budget(
    lab: LabServices,
    identity: IdentityEndpoint,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    observe: Callable[[str], None],
) -> None:
    environ = fault_environ(
        lab,
        sqlite_path=tmp_path / "kvmon.db",
        KVMON_INVENTORY_SOURCE="resource-graph",
        KVMON_ARM_TIMEOUT="0.3",
        KVMON_ARM_RETRIES="1",
    )
    code, document, _ = _kvmon_scan(environ, monkeypatch, capsys, "--no-probes", "--no-logs")
    assert document["errors"] == [] and lab.resource_graph.server.request_counts[QUERY_ROUTE] >= 1
    lab.arm.server.inject(r"(?i)^/providers/Microsoft\.ResourceGraph/", Fault(delay_s=3, times=0))

    code, document, elapsed = _kvmon_scan(environ, monkeypatch, capsys, "--no-probes", "--no-logs")

    settings = Settings.from_environ(environ)
    bound = RequestBudget(timeout_s=settings.arm_timeout_s, retries=settings.arm_retries).worst_case_s
    assert code == 3
    assert {e["scope"] for e in document["errors"]} == {SUB_A, SUB_B}
    assert {e["source"] for e in document["errors"]} == {"resource-graph"}
    assert all("timed out" in e["message"] for e in document["errors"])
    assert elapsed < bound + MARGIN_S
    observe(f"exit 3 in {elapsed:.1f} s (bound {bound:.1f} s): {document['errors'][0]['message'][:70]}")


@pytest.mark.parametrize(
    "hang",
    [
        pytest.param(
            Fault(delay_s=5, times=0),
            marks=pytest.mark.fault("Log Analytics", "query hangs before answering (KVMON_LOGS_TIMEOUT)"),
            id="no-answer",
        ),
        pytest.param(
            Fault(stall_body_s=5, times=0),
            marks=pytest.mark.fault("Log Analytics", "answer's body stalls after its headers"),
            id="stalled-body",
        ),
    ],
)
def test_a_hanging_log_analytics_query_ends_within_its_budget_and_resolves_nothing(
    hang: Fault,
    lab: LabServices,
    identity: IdentityEndpoint,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    observe: Callable[[str], None],
) -> None:
    database = tmp_path / "kvmon.db"
    environ = fault_environ(lab, sqlite_path=database, KVMON_LOGS_TIMEOUT="0.5")
    # The good scan's probes are the vaults' access: the lab's logs record them (KV201 opens).
    _, good, _ = _kvmon_scan(environ, monkeypatch, capsys)
    assert good["errors"] == []
    before = _open_findings(database)
    assert any(finding["rule"] == "KV201" for finding in good["findings"])
    lab.logs.server.inject(r"/query$", hang)

    _, document, elapsed = _kvmon_scan(environ, monkeypatch, capsys, "--no-probes")

    reader = LogsReader(LabCredential(), timeout_s=Settings.from_environ(environ).logs_timeout_s)
    bound = reader.budget.worst_case_s
    reader.close()
    errors = [e for e in document["errors"] if e["source"] == "logs"]
    assert [e["scope"] for e in errors] == [WORKSPACE]
    assert "timed out" in errors[0]["message"] or "Read timed out" in errors[0]["message"]
    assert all(change["change"] != "resolved" for change in document.get("changes", []))
    assert before <= _open_findings(database)
    # The listing took its time too: the whole scan within the logs' bound and the margin.
    assert elapsed < bound + MARGIN_S
    observe(f"ended in {elapsed:.1f} s (bound {bound:.1f} s): {errors[0]['message'][:60]}; 0 resolved")


@pytest.mark.fault("Probes", "data plane answers its headers, then its body stalls (KVMON_PROBE_TIMEOUT)")
def test_a_data_plane_whose_answers_stall_is_probed_within_the_probe_bound(
    lab: LabServices,
    identity: IdentityEndpoint,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    observe: Callable[[str], None],
) -> None:
    database = tmp_path / "kvmon.db"
    environ = fault_environ(lab, sqlite_path=database, KVMON_PROBE_TIMEOUT="0.5")
    _, good, _ = _kvmon_scan(environ, monkeypatch, capsys, "--no-logs")
    assert good["errors"] == [] and any(f["rule"] == "KV101" for f in good["findings"])
    before = _open_findings(database)
    for server in lab.world.keyvault.servers.values():
        server.inject(r"^/", Fault(stall_body_s=5, times=0))

    _, document, elapsed = _kvmon_scan(environ, monkeypatch, capsys, "--no-logs")

    # Every vault from every vantage point at once (fewer than KVMON_PROBE_CONCURRENCY of them).
    bound = ProbeOptions.from_settings(Settings.from_environ(environ)).vault_worst_case_s
    errors = [e for e in document["errors"] if e["source"] == "probe"]
    vaults = _stored_vaults(database)
    assert len(vaults) == 4 and len(errors) == len(lab.vantages()) * len(vaults)
    assert {e["scope"].lower() for e in errors} == vaults
    assert all("data plane: no answer from" in e["message"] and "in time" in e["message"] for e in errors)
    # Every vault whose KV101 the good scan opened is named, and its KV101 stays open.
    assert {f["vault_id"] for f in good["findings"] if f["rule"] == "KV101"} <= {e["scope"] for e in errors}
    assert before <= _open_findings(database)
    assert elapsed < bound + MARGIN_S
    observe(
        f"ended in {elapsed:.1f} s (bound {bound:.1f} s); {len(errors)} probe errors: {errors[0]['message'][:60]}"
    )


@pytest.mark.fault("Probes", "remote vantage point accepts and never answers (KVMON_REMOTE_PROBE_TIMEOUT)")
def test_a_remote_vantage_point_that_hangs_is_kv106_within_its_timeout(
    lab: LabServices,
    identity: IdentityEndpoint,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    observe: Callable[[str], None],
) -> None:
    remote = RemoteVantage(lab)
    with remote.server:  # started first: its address has its port only once it listens
        environ = fault_environ(
            lab,
            sqlite_path=tmp_path / "kvmon.db",
            KVMON_OUTSIDE_KEY=REMOTE_KEY,
            KVMON_REMOTE_PROBE_TIMEOUT="0.5",
            KVMON_VANTAGES=json.dumps([remote.vantage_json()]),
        )
        _, good, _ = _kvmon_scan(environ, monkeypatch, capsys, "--no-logs")
        assert good["errors"] == [] and remote.server.request_counts["/api/probe"] == 1
        remote.server.inject(r"^/api/probe$", Fault(delay_s=5, times=0))

        _, document, elapsed = _kvmon_scan(environ, monkeypatch, capsys, "--no-logs")

    options = ProbeOptions.from_settings(Settings.from_environ(environ))
    bound = options.connect_timeout_s + options.remote_timeout_s
    kv106 = [f for f in document["findings"] if f["rule"] == "KV106"]
    assert {f["vault"] for f in kv106} == {"kv-se-demo", "kv-pl-demo", "kv-b-open", "kv-b-wide"}
    errors = [e for e in document["errors"] if e["source"] == "probe"]
    assert len(errors) == 4
    assert all("no answer from the probe endpoint within 0.5s" in e["message"] for e in errors)
    assert elapsed < bound + MARGIN_S
    observe(f"KV106 on 4 vaults in {elapsed:.1f} s (bound {bound:.1f} s): {errors[0]['message'][:70]}")


@pytest.mark.fault(
    "Deadline", "every listing trickles in, each piece within the read timeout (KVMON_SCAN_DEADLINE)"
)
def test_the_scan_deadline_cuts_off_a_listing_no_request_timeout_ends(
    lab: LabServices,
    identity: IdentityEndpoint,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    observe: Callable[[str], None],
) -> None:
    database = tmp_path / "kvmon.db"
    environ = fault_environ(lab, sqlite_path=database)
    _, good, _ = _kvmon_scan(environ, monkeypatch, capsys, "--no-probes", "--no-logs")
    assert good["errors"] == []
    before = _open_findings(database)
    # Each page in 20 pieces 0.1 s apart: 2 s a page, never 1 s of silence (KVMON_ARM_TIMEOUT).
    lab.arm.server.inject(r"(?i)^/subscriptions/", Fault(trickle_s=0.1, times=0))
    environ.update(KVMON_SCAN_DEADLINE="1s", KVMON_ARM_TIMEOUT="1", KVMON_ARM_RETRIES="0")

    code, document, elapsed = _kvmon_scan(environ, monkeypatch, capsys, "--no-probes", "--no-logs")

    deadline = Settings.from_environ(environ).scan_deadline.total_seconds()
    assert code == 3
    assert {(e["scope"], e["code"]) for e in document["errors"]} == {
        (SUB_A, "ScanDeadline"),
        (SUB_B, "ScanDeadline"),
    }
    assert (
        "the vault listing not read: the scan's deadline passed (1 s after"
        in document["errors"][0]["message"]
    )
    assert document["findings"] == []
    assert before == _open_findings(database)  # nothing resolved, nothing judged gone
    assert elapsed < deadline + MARGIN_S
    observe(
        f"exit 3 in {elapsed:.1f} s (deadline {deadline:g} s, a page takes 2 s): {document['errors'][0]['message'][:60]}"
    )


@pytest.mark.fault("Deadline", "probes outlast the deadline: probes and logs unread, named, nothing resolves")
def test_sources_the_deadline_cuts_off_are_errors_and_resolve_nothing(
    lab: LabServices,
    identity: IdentityEndpoint,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    observe: Callable[[str], None],
) -> None:
    database = tmp_path / "kvmon.db"
    environ = fault_environ(lab, sqlite_path=database)
    _, good, _ = _kvmon_scan(environ, monkeypatch, capsys)
    assert good["errors"] == []
    before = _open_findings(database)
    # Every data-plane answer takes 1.5 s, within each probe step's 5 s but past the deadline.
    for server in lab.world.keyvault.servers.values():
        server.inject(r"^/", Fault(delay_s=1.5, times=0))
    environ.update(KVMON_SCAN_DEADLINE="1s", KVMON_PROBE_TIMEOUT="5")

    _, document, elapsed = _kvmon_scan(environ, monkeypatch, capsys)

    deadline = Settings.from_environ(environ).scan_deadline.total_seconds()
    vaults = _stored_vaults(database)
    by_source: dict[str, list[dict]] = {}
    for error in document["errors"]:
        by_source.setdefault(error["source"], []).append(error)
    # The listing was read; every vault's probes from every vantage point, and the workspace's
    # logs, were not: each named, with the deadline as the reason.
    assert set(by_source) == {"probe", "logs"}
    assert len(by_source["probe"]) == len(vaults) * len(lab.vantages())
    assert {e["scope"].lower() for e in by_source["probe"]} == vaults
    assert all("not probed: the probes from" in e["message"] for e in by_source["probe"])
    assert [(e["scope"], e["code"]) for e in by_source["logs"]] == [(WORKSPACE, "ScanDeadline")]
    assert all(change["change"] != "resolved" for change in document.get("changes", []))
    assert before <= _open_findings(database)
    assert elapsed < deadline + MARGIN_S
    observe(
        f"ended in {elapsed:.1f} s (deadline {deadline:g} s): {len(by_source['probe'])} probe errors, "
        f"logs: {by_source['logs'][0]['message'][:50]}; 0 resolved"
    )


def _silent(name: str) -> LabServer:
    """A storage endpoint that takes every request and never answers it."""
    server = LabServer(name=name, tls=False)
    server.inject(r"", Fault(delay_s=10, times=0))
    return server


@pytest.mark.fault("Store", "Table storage accepts and never answers (STORE_BUDGET made small)")
def test_a_table_store_that_hangs_fails_the_scan_within_its_budget(
    lab: LabServices,
    identity: IdentityEndpoint,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    observe: Callable[[str], None],
) -> None:
    budget = RequestBudget(timeout_s=0.3, retries=1, backoff_factor_s=0.05)
    monkeypatch.setattr("monitor.store.tables.STORE_BUDGET", budget)
    with _silent("silent-tables") as tables:
        environ = fault_environ(
            lab,
            KVMON_STORAGE=(
                f"DefaultEndpointsProtocol=http;AccountName={DEV_ACCOUNT};AccountKey={DEV_ACCOUNT_KEY};"
                f"TableEndpoint={tables.url}/{DEV_ACCOUNT};"
            ),
        )
        for name, value in environ.items():
            monkeypatch.setenv(name, value)
        started = time.monotonic()
        code = main(["scan", "--no-notify", "--no-probes", "--no-logs"])
        elapsed = time.monotonic() - started
        tries = tables.total_requests

    stderr = capsys.readouterr().err
    # The scan reads the store once before it judges: that first request fails the scan, loudly.
    assert code == 3
    assert "the store is unavailable" in stderr and "Azure Table storage at" in stderr
    assert tries == budget.tries
    assert elapsed < budget.worst_case_s + MARGIN_S
    observe(
        f"exit 3 in {elapsed:.1f} s (bound {budget.worst_case_s:.1f} s, {tries} tries): {stderr.strip()[:80]}"
    )


@pytest.mark.fault("Store", "the scan queue accepts and never answers (QUEUE_BUDGET made small)")
def test_a_queue_that_hangs_fails_the_enqueue_within_its_budget(
    monkeypatch: pytest.MonkeyPatch, observe: Callable[[str], None]
) -> None:
    # No retry: the queue SDK's own backoff before one is 18 s.
    budget = RequestBudget(timeout_s=0.3, retries=0)
    monkeypatch.setattr("monitor.app.queue.QUEUE_BUDGET", budget)
    with _silent("silent-queues") as queues:
        environ = {
            "AzureWebJobsStorage": (
                f"DefaultEndpointsProtocol=http;AccountName={DEV_ACCOUNT};AccountKey={DEV_ACCOUNT_KEY};"
                f"QueueEndpoint={queues.url}/{DEV_ACCOUNT};"
            )
        }
        started = time.monotonic()
        with pytest.raises(AzureError) as caught:
            scan_queue(environ, "kvmon-scan-jobs", credential=LabCredential)
        elapsed = time.monotonic() - started

    assert queues.total_requests == budget.tries
    assert elapsed < budget.worst_case_s + MARGIN_S
    observe(f"{type(caught.value).__name__} in {elapsed:.1f} s (bound {budget.worst_case_s:.1f} s)")


@pytest.mark.fault("Store + webhooks", "webhook hangs with messages held in the outbox (run_budget_s)")
def test_a_hanging_webhook_costs_a_run_its_delivery_budget_and_no_more(
    lab: LabServices, sqlite_store: Store, observe: Callable[[str], None]
) -> None:
    policy = DeliveryPolicy(
        connect_timeout_s=0.3,
        read_timeout_s=0.3,
        attempts=2,
        backoff_s=0.05,
        max_backoff_s=0.05,
        max_retry_after_s=0.05,
        run_budget_s=1.0,
    )
    channel = ChannelConfig(
        name="siem",
        kind=ChannelKind.WEBHOOK,
        url=Secret(lab.sinks.webhook_url()),
        secret=Secret(WEBHOOK_SECRET),
    )
    notifier = Notifier(
        sqlite_store, [channel], session=default_session(verify=lab_pki().ca_path), policy=policy
    )
    now = dt.datetime.now(dt.UTC)
    for scan in range(5):  # five runs' messages, held while the webhook was away
        notifier.enqueue(
            [change(ChangeKind.OPENED, vault=f"kv-held-{scan}")], scan_id=f"scan-{scan}", now=now
        )
    lab.sinks.stall("webhook", seconds=10, times=0)

    started = time.monotonic()
    report = notifier.deliver_pending(now)
    elapsed = time.monotonic() - started

    timeouts = [e for e in report.errors if e.code == "timeout"]
    [budget] = [e for e in report.errors if e.code == "delivery-budget"]
    assert len(timeouts) == len(report.pending) >= 1 and report.delivered == ()
    assert budget.message.startswith(f"{5 - len(report.pending)} message(s) not sent by this run")
    assert len(sqlite_store.pending_messages()) == 5  # every one kept for the next run
    assert elapsed < policy.run_worst_case_s + MARGIN_S
    observe(
        f"{len(timeouts)} tried, {5 - len(timeouts)} left pending in {elapsed:.1f} s "
        f"(bound {policy.run_worst_case_s:.2f} s): {budget.message[:60]}"
    )
