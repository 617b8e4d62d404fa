"""Benchmark (not a test): how long kvmon's entry points take to start, beside Python's own start.

    .venv/bin/python bench/startup.py [--repeat N] [--json]

Each command runs ``N`` times (default 15) in a fresh process, the commands taking turns round by
round so that a busy moment of the machine falls on all of them alike; reported per command is
the median wall-clock time of its runs (and the fastest and slowest). ``python -c pass`` is
Python's own start, measured in the same run: what the other commands take beyond it is
kvmon's. The commands:

- ``kvmon --help`` and ``kvmon rules --format json``: the installed console script, as a user runs it;
- ``python -c 'import function_app'`` in the probe role (``KVMON_ROLE=probe``) and in the monitor
  role (``KVMON_ROLE=monitor``), from the repository's root, as the Functions host imports it.

Every command runs with the environment of this process minus its ``KVMON_`` settings, plus only
the role the Functions app's commands need. Issue 15's target: ``kvmon rules --format json``
within 150 ms on this machine.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run as a script: the bench package lives beside the project's
    sys.path.insert(0, str(REPO))

from bench.scale import machine  # noqa: E402

TARGET_COMMAND = "kvmon rules --format json"
TARGET_MS = 150


@dataclass(frozen=True)
class Command:
    name: str
    argv: tuple[str, ...]
    settings: dict[str, str] = field(default_factory=dict)  # KVMON_ settings it runs with


def commands() -> tuple[Command, ...]:
    python = sys.executable
    kvmon = str(Path(python).with_name("kvmon"))
    return (
        Command("python -c pass", (python, "-c", "pass")),
        Command("kvmon --help", (kvmon, "--help")),
        Command(TARGET_COMMAND, (kvmon, "rules", "--format", "json")),
        Command(
            "import function_app (probe role)", (python, "-c", "import function_app"), {"KVMON_ROLE": "probe"}
        ),
        Command(
            "import function_app (monitor role)",
            (python, "-c", "import function_app"),
            {"KVMON_ROLE": "monitor"},
        ),
    )


def environment(command: Command) -> dict[str, str]:
    environ = {name: value for name, value in os.environ.items() if not name.startswith("KVMON_")}
    environ.update(command.settings)
    return environ


def run_once(command: Command) -> float:
    """Wall-clock milliseconds of one run, from before the process starts until it has exited."""
    started = time.perf_counter()
    done = subprocess.run(
        command.argv, cwd=REPO, env=environment(command), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(
            f"{command.name} exited {done.returncode}: {done.stderr.decode(errors='replace')[-500:]}"
        )
    return elapsed * 1000


def commit() -> str:
    done = subprocess.run(
        ["git", "describe", "--always", "--dirty", "--abbrev=7"], cwd=REPO, capture_output=True, text=True
    )
    return done.stdout.strip() or "unknown"


def run(args: argparse.Namespace) -> dict[str, Any]:
    measured = commands()
    runs: dict[str, list[float]] = {command.name: [] for command in measured}
    for _ in range(args.repeat):
        for command in measured:
            runs[command.name].append(run_once(command))
    baseline = statistics.median(runs[measured[0].name])
    results = []
    for command in measured:
        times = runs[command.name]
        median = statistics.median(times)
        results.append(
            {
                "name": command.name,
                "argv": [Path(command.argv[0]).name, *command.argv[1:]],
                "settings": command.settings,
                "median_ms": round(median, 1),
                "min_ms": round(min(times), 1),
                "max_ms": round(max(times), 1),
                "beyond_python_ms": round(median - baseline, 1),
                "runs_ms": [round(t, 1) for t in times],
            }
        )
    target = next(r for r in results if r["name"] == TARGET_COMMAND)
    return {
        "command": "python bench/startup.py " + " ".join(sys.argv[1:]),
        "commit": commit(),
        "machine": machine(),
        "repeat": args.repeat,
        "results": results,
        "target": {
            "command": TARGET_COMMAND,
            "within_ms": TARGET_MS,
            "median_ms": target["median_ms"],
            "met": target["median_ms"] <= TARGET_MS,
        },
    }


def print_table(result: dict[str, Any]) -> None:
    facts = result["machine"]
    print(f"machine: {facts['nproc']} CPUs, {facts['memory_mb']} MB, Python {facts['python']}")
    print(f"commit {result['commit']}, {result['repeat']} runs of each command, wall-clock ms")
    print()
    width = max(len(r["name"]) for r in result["results"])
    print(f"{'command':<{width}}  {'median':>7}  {'min':>7}  {'max':>7}  {'beyond python':>13}")
    for r in result["results"]:
        print(
            f"{r['name']:<{width}}  {r['median_ms']:>7}  {r['min_ms']:>7}  {r['max_ms']:>7}  "
            f"{r['beyond_python_ms']:>13}"
        )
    target = result["target"]
    print()
    print(
        f"target: {target['command']} within {target['within_ms']} ms: median {target['median_ms']} ms, "
        + ("met" if target["met"] else "NOT met")
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=15, help="runs of each command (default 15)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args()
    if args.repeat < 1:
        parser.error("--repeat: at least 1")
    result = run(args)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print_table(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
