"""Log Analytics faults: a partial answer, throttling past the retries, a query past its timeout.

The evidence must be marked incomplete, KV204 ("no rows") must not be concluded from a read that
failed, and log findings opened by a good scan must stay open."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from lab.http import Fault
from lab.loganalytics import QUERY_PATH
from lab.services import LabServices
from monitor.app.scan import ScanRequest, run_scan
from monitor.model import ChangeKind, ErrorSource, FindingStatus
from monitor.store import Store
from tests.faults.conftest import FAULT_TIMEOUT_S, SUB_A, SUB_B, WORKSPACE, fast_runtime, fault_environ

BOTH = (SUB_A, SUB_B)
VAULTS = {"kv-se-demo", "kv-pl-demo", "kv-b-open", "kv-b-wide"}


def _partial(lab: LabServices) -> None:
    lab.logs.set_partial(WORKSPACE, "Query exceeded the memory limit of the cluster", keep_rows=0)


def _throttle(lab: LabServices) -> None:
    lab.logs.server.inject(
        QUERY_PATH,
        Fault(
            status=429,
            headers={"Retry-After": "1"},
            body={"error": {"code": "ThrottledError", "message": "Too many requests"}},
            times=0,
        ),
    )


def _stall(lab: LabServices) -> None:
    lab.logs.server.inject(QUERY_PATH, Fault(delay_s=FAULT_TIMEOUT_S * 2, times=0))


@pytest.mark.parametrize(
    ("inject", "code"),
    [
        pytest.param(_partial, "PartialError", marks=pytest.mark.fault("Log Analytics", "partial result")),
        pytest.param(_throttle, "429", marks=pytest.mark.fault("Log Analytics", "429 past the retries")),
        pytest.param(
            _stall,
            "ServiceResponseTimeoutError",
            marks=pytest.mark.fault("Log Analytics", "query past the timeout"),
        ),
    ],
)
def test_a_failed_read_marks_evidence_incomplete_and_concludes_nothing(
    inject: Callable[[LabServices], None],
    code: str | None,
    lab: LabServices,
    sqlite_store: Store,
    observe: Callable[[str], None],
) -> None:
    environ = fault_environ(lab)
    # KV204 is live: a complete read of a workspace with no rows yet raises it for every vault.
    control = run_scan(
        ScanRequest(subscriptions=BOTH, probe=False, notify=False), fast_runtime(environ, store=None)
    ).report
    assert {f.vault_name for f in control.findings if f.rule_id == "KV204"} == VAULTS

    # A good scan: the probes' own requests are in the log, so KV201 (public caller admitted) opens.
    runtime = fast_runtime(environ, store=sqlite_store)
    good = run_scan(ScanRequest(subscriptions=BOTH, notify=False), runtime).report
    assert good.errors == [] and good.incomplete_vaults == set()
    log_findings = {
        i: r
        for i, r in sqlite_store.load_findings(status=FindingStatus.OPEN).items()
        if r.finding.rule_id == "KV201"
    }
    assert log_findings

    inject(lab)
    report = run_scan(ScanRequest(subscriptions=BOTH, probe=False, notify=False), runtime).report

    errors = [e for e in report.errors if e.source == ErrorSource.LOGS]
    assert [(e.scope, e.code) for e in errors] == [(WORKSPACE, code)]
    observe(f"report.errors: logs [{errors[0].code or '-'}] {errors[0].message[:60]}")
    assert {p.key for p in report.postures} == report.incomplete_vaults
    assert all(not ev.complete and ev.notes for ev in report.evidence)
    observe(f"evidence incomplete for {len(report.incomplete_vaults)}/{len(report.postures)} vaults")
    assert not [f for f in report.findings if f.rule_id == "KV204"]
    observe("no KV204 (the control scan's empty complete read raised it for all 4 vaults)")
    assert not [c for c in report.changes if c.kind is ChangeKind.RESOLVED]
    still_open = sqlite_store.load_findings(status=FindingStatus.OPEN)
    assert set(log_findings) <= set(still_open)
    observe(f"{len(log_findings)} KV201 log findings still open, 0 resolved")
