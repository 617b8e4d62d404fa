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

from lab.credential import IdentityEndpoint
from lab.http import Fault
from lab.services import LabServices
from monitor.cli import main
from monitor.config.identity import token_budget
from monitor.config.settings import Settings
from tests.faults.conftest import SUB_A, SUB_B, fault_environ

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
    environ: dict[str, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> tuple[int, dict, float]:
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    started = time.monotonic()
    code = main(["scan", "--format", "json", "--no-notify", "--no-probes", "--no-logs"])
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
    code, document, _ = _kvmon_scan(environ, monkeypatch, capsys)
    assert document["errors"] == [] and code in (0, 1)
    assert identity.server.request_counts["token"] >= 1

    identity.server.inject(IdentityEndpoint.PATH, Fault(delay_s=budget.timeout_s * 10, times=0))
    before = identity.server.request_counts["token"]
    code, document, elapsed = _kvmon_scan(environ, monkeypatch, capsys)

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
