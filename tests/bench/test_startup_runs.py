"""bench/startup.py is a benchmark, not a test: this only keeps it from rotting. One run of each
command, and the JSON carries what issue 15 asks for (no timing checks)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent.parent


def test_startup_benchmark_runs_every_command_and_reports_medians() -> None:
    command = [sys.executable, str(REPO / "bench" / "startup.py"), "--repeat", "1", "--json"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=180, check=False, cwd=REPO)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout)

    assert result["repeat"] == 1 and result["commit"] and result["machine"]["nproc"]
    assert [r["name"] for r in result["results"]] == [
        "python -c pass",
        "kvmon --help",
        "kvmon rules --format json",
        "import function_app (probe role)",
        "import function_app (monitor role)",
    ]
    for measured in result["results"]:
        assert len(measured["runs_ms"]) == 1 and measured["median_ms"] == measured["runs_ms"][0] > 0
    roles = {r["name"]: r["settings"] for r in result["results"]}
    assert roles["import function_app (probe role)"] == {"KVMON_ROLE": "probe"}
    assert set(result["target"]) == {"command", "within_ms", "median_ms", "met"}
    assert result["target"]["command"] == "kvmon rules --format json" and result["target"]["within_ms"] == 150
