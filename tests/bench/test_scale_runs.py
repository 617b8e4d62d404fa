"""bench/scale.py is a benchmark, not a test: this only keeps it from rotting. It runs it on a tiny
estate without latency and checks the JSON carries what issue 10 asks for (no timing checks)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from lab.azurite import azurite_missing_reason

REPO = Path(__file__).resolve().parent.parent.parent


def test_scale_benchmark_runs_and_reports_the_required_keys() -> None:
    reason = azurite_missing_reason()
    if reason is not None:
        pytest.skip(f"Azurite cannot run here: {reason}")
    command = [
        sys.executable,
        str(REPO / "bench" / "scale.py"),
        *("--vaults", "50", "--subscriptions", "5", "--naive-vaults", "10", "--latency-ms", "0", "--json"),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=180, check=False, cwd=REPO)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout)
    for key in (
        "speedup",
        "wall_s",
        "peak_rss_mb",
        "requests",
        "store",
        "entities_written",
        "growth",
        "machine",
    ):
        assert key in result, key
    assert set(result["requests"]) == {"kvmon", "naive"}
    for way in ("kvmon", "naive"):
        assert {"arm", "resource_graph", "log_analytics", "dns", "keyvault", "table_storage"} <= set(
            result["requests"][way]
        )
    main = result["kvmon"]
    # The whole estate was scanned and probed, both times, and nothing went wrong.
    assert main["first"]["vaults"] == main["first"]["probes"] == 50 and main["first"]["errors"] == 0
    assert main["second"]["vaults"] == 50 and main["second"]["changes"] == 0
    assert result["naive"]["vaults"] == 10 and result["naive"]["errors"] == 0
    # kvmon: per subscription one list call (pages of 100) and one listing of its perimeters (the
    # estate has none), one logs query per workspace.
    assert result["requests"]["kvmon"]["arm"] == 5 + 5 and result["requests"]["kvmon"]["log_analytics"] == 1
    # The naive way: a list and a GET per vault, a logs query per vault that has a workspace.
    assert result["requests"]["naive"]["arm"] == 1 + 10
    assert result["entities_written"]["second_scan"] < result["entities_written"]["first_scan"]
