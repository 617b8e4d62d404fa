"""bench/events.py is a benchmark, not a test: this only keeps it from rotting. It runs it on a tiny
estate without latency and checks the JSON carries what issue 16 asks for (no timing checks)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from lab.azurite import azurite_missing_reason

REPO = Path(__file__).resolve().parent.parent.parent


def test_events_benchmark_runs_and_reports_latencies_messages_and_cpu() -> None:
    reason = azurite_missing_reason()
    if reason is not None:
        pytest.skip(f"Azurite cannot run here: {reason}")
    command = [
        sys.executable,
        str(REPO / "bench" / "events.py"),
        *("--vaults", "40", "--subscriptions", "2", "--writes", "2", "--burst", "3"),
        *("--burst-seconds", "0.5", "--latency-ms", "0", "--settle-s", "0.5", "--timeout-s", "30", "--json"),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False, cwd=REPO)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout)

    for key in ("commit", "machine", "latency_ms", "cpu_measure", "single", "burst", "timer", "targets"):
        assert key in result, key
    for path, writes in (("single", 2), ("burst", 3)):
        measured = result[path]
        assert measured["writes"] == writes
        # Both channels hear of every write twice (the alert, then the probes' confirmation).
        assert measured["messages_expected"] == 4 * writes
        for figures in ("alert_s", "confirmation_s"):
            assert set(measured[figures]) == {"teams", "slack"}
            assert set(measured[figures]["teams"]) == {"count", "p50", "p95", "max"}
        assert set(measured["kvmon_cpu"]) == {"vault_changed", "scan_worker"}
        assert measured["kvmon_cpu"]["vault_changed"]["calls"] >= writes
    assert {"duplicate_deliveries", "delivered_out_of_order", "writes_took_s"} <= set(result["burst"])
    timer = result["timer"]
    assert timer["worst_case_s"] == timer["scan_interval_s"] == 2 * timer["mean_s"]
    assert len(result["targets"]) == 8 and all(isinstance(row["met"], bool) for row in result["targets"])
