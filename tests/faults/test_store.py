"""The store goes away in the middle of a scan: Azurite is stopped while the scan waits for Log
Analytics (after it has read the store, before it writes anything), then restarted.

The scan must fail loudly (``StoreUnavailable``; ``kvmon scan`` exits 3 with the error on stderr
and in the log), and the next scan must record everything once. Azurite keeps its data in memory,
so the restarted store is empty: the next scan opens every finding again, once."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
from azure.data.tables import TableServiceClient

from lab.azurite import DEV_ACCOUNT, DEV_ACCOUNT_KEY, Azurite
from lab.credential import LabCredential
from lab.http import Fault
from lab.loganalytics import QUERY_PATH
from lab.services import LabServices
from monitor.app.runtime import build_runtime
from monitor.app.scan import ScanRequest, ScanRuntime, run_scan
from monitor.cli import main
from monitor.cli.scan import EXIT_SCAN_FAILED
from monitor.config.settings import Settings
from monitor.scan_report import ScanReport
from monitor.store import Store, StoreUnavailable, open_store
from tests.faults.conftest import SUB_A, SUB_B, fault_environ, free_loopback_port

REQUEST = ScanRequest(subscriptions=(SUB_A, SUB_B))
HOLD_S = 2.0  # how long Log Analytics holds its answer while Azurite is stopped


@contextmanager
def azurite_stops_mid_scan(lab: LabServices, azurite: Azurite) -> Iterator[dict[str, int]]:
    """Log Analytics holds the scan's query for HOLD_S; as soon as the query arrives, Azurite is
    stopped. Yields what the watcher saw: ``answered`` is the number of queries the emulator had
    answered when Azurite was down (0: the scan was still waiting, in its middle)."""
    lab.logs.server.inject(QUERY_PATH, Fault(delay_s=HOLD_S))
    requests, answered = lab.logs.server.total_requests, len(lab.logs.queries)
    seen: dict[str, int] = {}

    def watch() -> None:
        deadline = time.monotonic() + 60
        while lab.logs.server.total_requests == requests and time.monotonic() < deadline:
            time.sleep(0.01)
        azurite.stop()
        seen["answered"] = len(lab.logs.queries) - answered

    watcher = threading.Thread(target=watch, name="stop-azurite")
    watcher.start()
    try:
        yield seen
    finally:
        watcher.join()


def _finding_rows(azurite: Azurite, prefix: str) -> list[str]:
    """Every entity of the Findings table, read with the SDK directly (duplicates would show)."""
    with TableServiceClient.from_connection_string(azurite.connection_string) as service:
        table = service.get_table_client(f"{prefix}Findings")
        return [entity["RowKey"] for entity in table.list_entities()]


def _runtime(environ: dict[str, str], store: Store) -> ScanRuntime:
    """The runtime the CLI and the Functions app build (production timeouts: Log Analytics may
    hold its answer for HOLD_S without the scan giving up on it)."""
    return build_runtime(
        Settings.from_environ(environ), environ=environ, credential=LabCredential(), store=store
    )


def _assert_recorded_once(report: ScanReport, azurite: Azurite, prefix: str, store: Store) -> int:
    rows = _finding_rows(azurite, prefix)
    assert len(rows) == len(set(rows)), "a finding was stored twice"
    assert set(rows) == {f.id for f in report.findings}
    assert set(store.load_findings()) == set(rows)
    return len(rows)


@pytest.mark.fault("Store", "Azurite stopped mid-scan, restarted (run_scan)")
def test_a_store_that_goes_away_mid_scan_fails_the_scan_and_the_next_records_everything(
    lab: LabServices, azurite_for_faults: Azurite, table_prefix: str, observe: Callable[[str], None]
) -> None:
    environ = fault_environ(lab)
    store = open_store(connection_string=azurite_for_faults.connection_string, table_prefix=table_prefix)
    runtime = _runtime(environ, store)
    first = run_scan(REQUEST, runtime).report
    assert first.errors == []
    lab.sinks.clear()

    try:
        with (
            azurite_stops_mid_scan(lab, azurite_for_faults) as seen,
            pytest.raises(StoreUnavailable) as failure,
        ):
            run_scan(REQUEST, runtime)
    finally:
        azurite_for_faults.restart()
    assert seen == {"answered": 0}, "Azurite was stopped after the scan had finished reading the logs"
    message = str(failure.value)
    assert "Azure Table storage at http://127.0.0.1" in message and DEV_ACCOUNT_KEY not in message
    assert "AccountKey" not in message
    observe(f"run_scan raised StoreUnavailable: {message[:80]}")
    assert lab.sinks.received == []  # nothing was announced for a scan that was not recorded

    report = run_scan(REQUEST, runtime).report  # the same process, as a warm Functions host

    assert report.errors == []
    stored = _assert_recorded_once(report, azurite_for_faults, table_prefix, store)
    assert {c.finding.id for c in report.changes} == {f.id for f in report.findings}
    assert [r.scan_id for r in store.scan_runs()] == [report.scan_id]
    observe(
        f"next scan on the restarted (empty) store: {stored} findings stored once, {len(report.changes)} opened"
    )
    store.close()


@pytest.mark.fault("Store", "Azurite stopped mid-scan, restarted (kvmon scan)")
def test_kvmon_scan_exits_3_with_the_error_when_the_store_goes_away(
    lab: LabServices,
    azurite_for_faults: Azurite,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    observe: Callable[[str], None],
) -> None:
    environ = fault_environ(lab)
    del environ["KVMON_SQLITE_PATH"]
    environ["KVMON_STORAGE"] = azurite_for_faults.connection_string
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr("monitor.app.runtime.default_credential", lambda settings: LabCredential())

    try:
        with azurite_stops_mid_scan(lab, azurite_for_faults) as seen, caplog.at_level(logging.ERROR):
            code = main(["scan", "--format", "json", "--no-notify"])
    finally:
        azurite_for_faults.restart()
    assert seen == {"answered": 0}
    err = capsys.readouterr().err
    assert code == EXIT_SCAN_FAILED == 3
    assert "kvmon: scan failed: the store is unavailable" in err
    assert any(
        "the store is unavailable" in r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR
    )
    assert DEV_ACCOUNT_KEY not in err and DEV_ACCOUNT_KEY not in caplog.text
    observe(f"exit {code}; stderr and log: {err.strip().splitlines()[-1][:70]}")

    code = main(["scan", "--format", "json", "--no-notify"])

    assert code == 1  # findings at or above high: the scan went through
    store = open_store(connection_string=azurite_for_faults.connection_string)
    rows = _finding_rows(azurite_for_faults, "kvmon")
    assert rows and len(rows) == len(set(rows)) == len(store.load_findings())
    assert len(store.scan_runs()) == 1
    observe(f"next kvmon scan: exit {code}, {len(rows)} findings stored once")
    store.close()


@pytest.mark.fault("Store", "Blob storage out of reach: the report cannot be written (kvmon scan)")
def test_kvmon_scan_exits_3_naming_the_report_when_blob_storage_is_out_of_reach(
    lab: LabServices,
    azurite_for_faults: Azurite,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    observe: Callable[[str], None],
) -> None:
    prefix = f"b{uuid.uuid4().hex[:12]}"
    environ = fault_environ(lab)
    del environ["KVMON_SQLITE_PATH"]
    environ["KVMON_STORAGE"] = azurite_for_faults.connection_string
    environ["KVMON_REPORT_CONTAINER"] = prefix
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr("monitor.app.runtime.default_credential", lambda settings: LabCredential())
    store = open_store(connection_string=azurite_for_faults.connection_string, report_container=prefix)
    assert main(["scan", "--format", "json", "--no-notify"]) == 1
    good = store.load_report()
    assert good is not None
    capsys.readouterr()

    dead = f"http://127.0.0.1:{free_loopback_port()}/{DEV_ACCOUNT}"
    monkeypatch.setenv(
        "KVMON_STORAGE", azurite_for_faults.connection_string.replace(azurite_for_faults.blob_endpoint, dead)
    )
    code = main(["scan", "--format", "json", "--no-notify"])

    err = capsys.readouterr().err
    assert code == EXIT_SCAN_FAILED == 3
    assert "kvmon: scan failed: the store is unavailable: the report of scan " in err
    assert f"was not stored: cannot open container {prefix} (Blob storage at {dead}/{prefix}" in err
    assert DEV_ACCOUNT_KEY not in err
    assert store.load_report() == good  # the last report is still the latest, whole
    failed = err.split("the report of scan ", 1)[1].split(" ", 1)[0]
    runs = [run.scan_id for run in store.scan_runs()]
    assert good["scan"]["id"] in runs and failed not in runs  # the failed scan is not recorded
    observe(f"exit {code}; {err.strip().splitlines()[-1][:90]}; the previous report still served")
    store.close()
