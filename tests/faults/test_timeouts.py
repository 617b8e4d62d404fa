"""Every service's timeouts and retries, and the scan's deadline, against lab servers that hang.

Each test makes a service accept the connection and never answer (or answer its headers and stall
the body), with production's settings made small (``KVMON_TOKEN_TIMEOUT``, ``KVMON_LOGS_TIMEOUT``,
``KVMON_SCAN_DEADLINE``, ...) and the clients built as production builds them. Each asserts that
the scan ends within the bound the README and docs/reliability.md state, computed from the same
budgets (``RequestBudget.worst_case_s``), with a margin for loopback and threads; and that what
hung is a scan error naming the service, never a verdict.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from lab.credential import IdentityEndpoint, LabCredential
from lab.http import Fault
from lab.resourcegraph import QUERY_ROUTE
from lab.services import LabServices
from monitor.cli import main
from monitor.config.budget import RequestBudget
from monitor.config.identity import token_budget
from monitor.config.settings import Settings
from monitor.model import FindingStatus
from monitor.sources.logs import LogsReader
from monitor.store import open_store
from tests.faults.conftest import SUB_A, SUB_B, WORKSPACE, fault_environ

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
    code, document, elapsed = _kvmon_scan(environ, monkeypatch, capsys, "--no-probes", "--no-logs")

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
