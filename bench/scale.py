"""Benchmark (not a test): kvmon's full scan of a big estate against the lab, and the naive way.

    .venv/bin/python bench/scale.py [--vaults N] [--subscriptions S] [--naive-vaults M]
                                    [--latency-ms L] [--json]

For each size of the growth table (100, 1,000 and 10,000 vaults, up to ``--vaults``; the
subscriptions scale with the vaults) it starts the lab in a process of its own
(``bench/labproc.py``: ARM with Resource Graph, Log Analytics, DNS, the Key Vault data plane,
webhook sinks, Azurite; ``L`` ms of latency on every ARM, Resource Graph and Log Analytics
request) and runs kvmon's scan twice through ``monitor.app.scan.run_scan`` with the adapters
``monitor.app.runtime.build_runtime`` makes from the lab's settings: inventory (ARM below 20
subscriptions, Resource Graph from there), probes from the ``internet`` vantage point, one logs
query per workspace, store on Azurite, notifications to the sinks. The second scan sees the
unchanged estate. Then the naive way (``bench/naive.py``) scans ``M`` vaults on a lab of its own
with the same latency, and the speed-up is naive time per vault / kvmon time per vault (first
scans: both start from an empty store).

Measured: wall time, CPU seconds of kvmon's process and of the lab's, requests per emulated
service, Table storage requests and entities, peak RSS of this process (kvmon's side; the lab
and Azurite run in other processes).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import sys
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run as a script: the bench package lives beside the project's
    sys.path.insert(0, str(REPO))

from bench.counting import CountingBackend  # noqa: E402
from bench.labproc import EstateSpec, LabProcess, difference  # noqa: E402
from bench.naive import naive_scan  # noqa: E402
from lab.credential import LabCredential  # noqa: E402
from lab.estate_factory import synthetic_vaults  # noqa: E402
from monitor.app.runtime import build_runtime  # noqa: E402
from monitor.app.scan import ScanRequest, run_scan  # noqa: E402
from monitor.config.settings import Settings  # noqa: E402
from monitor.model import Service  # noqa: E402
from monitor.sources.inventory import ThresholdInventory  # noqa: E402

GROWTH = (100, 1_000, 10_000)
# run_scan's progress messages, by how they start, and the stage each begins.
STAGES = (
    ("reading vault configuration", "inventory"),
    ("probing", "probes"),
    ("reading access logs", "logs"),
    ("evaluating", "evaluate"),
    ("storing", "store"),
    ("notifying", "notify"),
)


class StageClock:
    """Seconds per stage of one scan, from ``run_scan``'s progress callback."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._current: tuple[str, float] | None = None

    def __call__(self, message: str) -> None:
        stage = next((name for prefix, name in STAGES if message.startswith(prefix)), message)
        self._close()
        self._current = (stage, time.perf_counter())

    def _close(self) -> None:
        if self._current is not None:
            stage, started = self._current
            self.seconds[stage] = round(self.seconds.get(stage, 0.0) + time.perf_counter() - started, 2)
            self._current = None

    def finish(self) -> dict[str, float]:
        self._close()
        return self.seconds


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


class WorkerMemory:
    """Memory of kvmon's processes during a scan, sampled from ``/proc`` every 100 ms: each probe
    worker's peak (``VmHWM``, the kernel's own high-water mark; the workers are the children of
    this process that were not there when the scan began, as the lab process was), and the peak
    of this process and its workers together (the sum of their ``VmRSS`` at each sample)."""

    def __init__(self) -> None:
        self._before = set(_children())
        self._peaks: dict[int, float] = {}
        self.together_mb = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="worker-memory", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            together = _status_mb(os.getpid(), "VmRSS:") or 0.0
            for pid in set(_children()) - self._before:
                high_water = _status_mb(pid, "VmHWM:")
                if high_water is not None:
                    self._peaks[pid] = max(self._peaks.get(pid, 0.0), high_water)
                together += _status_mb(pid, "VmRSS:") or 0.0
            self.together_mb = max(self.together_mb, together)

    def finish(self) -> list[float]:
        """Each worker's peak RSS in MB."""
        self._stop.set()
        self._thread.join()
        return sorted(self._peaks.values(), reverse=True)


def _children() -> list[int]:
    me = str(os.getpid())
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    fields = stat.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[1] == me:  # the parent's pid follows the state
                pids.append(int(entry))
    return pids


def _status_mb(pid: int, field: str) -> float | None:
    """A memory field of ``/proc/<pid>/status`` (``VmRSS:``, ``VmHWM:``) in MB."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith(field):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def kvmon_cpu_s() -> float:
    """CPU seconds of this process and of its ended children (the probe workers)."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def kvmon_scan(lab: LabProcess, *, concurrency: int, processes: int) -> dict[str, Any]:
    """One scan as the CLI runs it, timed from building the adapters to the last notification."""
    environ = {
        **lab.environ,
        "KVMON_PROBE_CONCURRENCY": str(concurrency),
        "KVMON_PROBE_PROCESSES": str(processes),
    }
    settings = Settings.from_environ(environ)
    before, lab_cpu = lab.counts(), lab.usage()["cpu_s"]
    workers = WorkerMemory()
    cpu, started = kvmon_cpu_s(), time.perf_counter()
    runtime = build_runtime(settings, environ=environ, credential=LabCredential())
    store = runtime.store
    counting = CountingBackend(store.backend)  # type: ignore[union-attr]
    store.backend = counting  # type: ignore[union-attr]
    clock = StageClock()
    # The vaults' benchmark: storage accounts (none in this estate) would add their own listings.
    request = ScanRequest(subscriptions=settings.subscriptions, services=frozenset({Service.KEYVAULT}))
    outcome = run_scan(request, runtime, progress=clock)
    wall = time.perf_counter() - started
    cpu = kvmon_cpu_s() - cpu
    worker_peaks = workers.finish()
    store.close()  # type: ignore[union-attr]
    requests = difference(lab.counts(), before)
    requests["table_storage"] = (
        counting.counts.write_requests + counting.counts.point_reads + counting.counts.queries
    )
    report = outcome.report
    source = runtime.inventory
    if isinstance(source, ThresholdInventory):
        source = source.source_for(settings.subscriptions)
    return {
        "wall_s": round(wall, 2),
        "kvmon_cpu_s": round(cpu, 2),
        "lab_cpu_s": round(lab.usage()["cpu_s"] - lab_cpu, 2),
        "inventory": "resource-graph" if type(source).__name__ == "ResourceGraphInventory" else "arm",
        "stages_s": clock.finish(),
        "vaults": len(report.postures),
        "probes": len(report.probes),
        "findings": len(report.findings),
        "changes": len(report.changes),
        "errors": len(report.errors),
        "error_samples": [f"{e.source} {e.scope}: {e.message}"[:200] for e in report.errors[:3]],
        "requests": requests,
        "store": counting.counts.as_dict(),
        "peak_rss_mb_so_far": round(peak_rss_mb(), 1),
        "probe_workers_peak_rss_mb": [round(peak, 1) for peak in worker_peaks],
        "peak_rss_mb_with_probe_workers": round(workers.together_mb, 1) if worker_peaks else None,
    }


def measure_kvmon(
    vaults: int, subscriptions: int, *, latency_s: float, concurrency: int, processes: int, seed: int
) -> dict[str, Any]:
    spec = EstateSpec(vaults=vaults, subscriptions=subscriptions, seed=seed)
    with LabProcess(spec, latency_s=latency_s) as lab:
        first = kvmon_scan(lab, concurrency=concurrency, processes=processes)
        second = kvmon_scan(lab, concurrency=concurrency, processes=processes)
        lab_usage = lab.usage()
    return {
        "vaults": vaults,
        "subscriptions": subscriptions,
        "workspaces": len(spec.workspace_ids),
        "first": first,
        "second": second,
        "lab_peak_rss_mb": round(lab_usage["peak_rss_mb"], 1),
    }


def measure_naive(vaults: int, subscriptions: int, *, latency_s: float, seed: int) -> dict[str, Any]:
    spec = EstateSpec(vaults=vaults, subscriptions=subscriptions, seed=seed)
    workspace_of = {v.id.lower(): v.workspace_id for v in synthetic_vaults(spec.build())}
    with LabProcess(spec, latency_s=latency_s) as lab:
        before, lab_cpu = lab.counts(), lab.usage()["cpu_s"]
        cpu, started = time.process_time(), time.perf_counter()
        result = naive_scan(
            lab.environ, workspace_of=workspace_of, credential=LabCredential(), now=dt.datetime.now(dt.UTC)
        )
        wall = time.perf_counter() - started
        requests = difference(lab.counts(), before)
        requests["table_storage"] = result.table_requests + 1  # + creating the table
        lab_cpu = lab.usage()["cpu_s"] - lab_cpu
    return {
        "vaults": vaults,
        "subscriptions": subscriptions,
        "wall_s": round(wall, 2),
        "kvmon_cpu_s": round(time.process_time() - cpu, 2),
        "lab_cpu_s": round(lab_cpu, 2),
        "findings": result.findings,
        "errors": len(result.errors),
        "requests": requests,
        "store": {"write_requests": result.table_requests, "entities_written": result.entities_written},
    }


def scaled_subscriptions(vaults: int, *, of_vaults: int, of_subscriptions: int) -> int:
    return max(1, round(of_subscriptions * vaults / of_vaults))


def machine() -> dict[str, Any]:
    memory_mb = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory_mb = int(line.split()[1]) // 1024
    except OSError:
        pass
    return {
        "nproc": os.cpu_count(),
        "memory_mb": memory_mb,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    latency_s = args.latency_ms / 1000
    sizes = sorted({size for size in GROWTH if size < args.vaults} | {args.vaults})
    naive_subscriptions = scaled_subscriptions(
        args.naive_vaults, of_vaults=args.vaults, of_subscriptions=args.subscriptions
    )
    progress(f"naive way: {args.naive_vaults} vaults over {naive_subscriptions} subscription(s)")
    naive = measure_naive(args.naive_vaults, naive_subscriptions, latency_s=latency_s, seed=args.seed)
    growth = []
    for size in sizes:
        subscriptions = (
            args.subscriptions
            if size == args.vaults
            else scaled_subscriptions(size, of_vaults=args.vaults, of_subscriptions=args.subscriptions)
        )
        progress(f"kvmon: {size} vaults over {subscriptions} subscription(s), two scans")
        growth.append(
            measure_kvmon(
                size,
                subscriptions,
                latency_s=latency_s,
                concurrency=args.concurrency,
                processes=args.probe_processes,
                seed=args.seed,
            )
        )
    main = growth[-1]
    kvmon_per_vault = main["first"]["wall_s"] / max(1, main["vaults"])
    naive_per_vault = naive["wall_s"] / max(1, naive["vaults"])
    first_written = main["first"]["store"]["entities_written"]
    second_written = main["second"]["store"]["entities_written"]
    return {
        "command": "python bench/scale.py " + " ".join(sys.argv[1:]),
        "machine": machine(),
        "latency_ms": args.latency_ms,
        "probe_concurrency": args.concurrency,
        "probe_processes": args.probe_processes,
        "vaults": main["vaults"],
        "subscriptions": main["subscriptions"],
        "wall_s": main["first"]["wall_s"],
        "wall_s_second_scan": main["second"]["wall_s"],
        "peak_rss_mb": round(peak_rss_mb(), 1),
        # kvmon's process and its probe workers together: the largest sum of their RSS at one moment
        "peak_rss_mb_with_probe_workers": max(
            (
                main[scan]["peak_rss_mb_with_probe_workers"] or main[scan]["peak_rss_mb_so_far"]
                for scan in ("first", "second")
            ),
        ),
        "speedup": round(naive_per_vault / kvmon_per_vault, 2) if kvmon_per_vault else None,
        "kvmon_ms_per_vault": round(kvmon_per_vault * 1000, 2),
        "naive_ms_per_vault": round(naive_per_vault * 1000, 2),
        "requests": {"kvmon": main["first"]["requests"], "naive": naive["requests"]},
        "store": {"kvmon_first": main["first"]["store"], "kvmon_second": main["second"]["store"]},
        "entities_written": {
            "first_scan": first_written,
            "second_scan": second_written,
            "ratio": round(first_written / second_written, 2) if second_written else None,
        },
        "kvmon": main,
        "naive": naive,
        "growth": growth,
    }


def progress(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def print_table(result: dict[str, Any]) -> None:
    def row(cells: list[Any], widths: list[int]) -> str:
        return "  ".join(str(c).rjust(w) for c, w in zip(cells, widths, strict=True))

    facts = result["machine"]
    print(f"machine: {facts['nproc']} CPUs, {facts['memory_mb']} MB, Python {facts['python']}")
    print(f"latency: {result['latency_ms']} ms on every ARM, Resource Graph and Log Analytics request")
    print()
    heads = [
        "vaults",
        "subs",
        "inventory",
        "scan",
        "wall s",
        "kvmon cpu",
        "lab cpu",
        "ARM",
        "RG",
        "logs",
        "DNS",
        "KV",
    ]
    heads += ["tables", "written", "rss MB", "workers MB"]
    widths = [7, 5, 14, 6, 7, 9, 7, 5, 4, 5, 6, 6, 7, 8, 7, 11]
    print(row(heads, widths))
    for size in result["growth"]:
        for scan in ("first", "second"):
            measured = size[scan]
            requests = measured["requests"]
            print(
                row(
                    [
                        size["vaults"],
                        size["subscriptions"],
                        measured["inventory"],
                        scan,
                        measured["wall_s"],
                        measured["kvmon_cpu_s"],
                        measured["lab_cpu_s"],
                        requests["arm"],
                        requests["resource_graph"],
                        requests["log_analytics"],
                        requests["dns"],
                        requests["keyvault"],
                        requests["table_storage"],
                        measured["store"]["entities_written"],
                        measured["peak_rss_mb_so_far"],
                        "+".join(str(peak) for peak in measured["probe_workers_peak_rss_mb"]) or "-",
                    ],
                    widths,
                )
            )
    naive = result["naive"]
    requests = naive["requests"]
    print(
        row(
            [
                naive["vaults"],
                naive["subscriptions"],
                "naive",
                "first",
                naive["wall_s"],
                naive["kvmon_cpu_s"],
                naive["lab_cpu_s"],
                requests["arm"],
                requests["resource_graph"],
                requests["log_analytics"],
                requests["dns"],
                requests["keyvault"],
                requests["table_storage"],
                naive["store"]["entities_written"],
                "",
                "",
            ],
            widths,
        )
    )
    print()
    for size in result["growth"]:
        for scan in ("first", "second"):
            stages = ", ".join(f"{name} {seconds}" for name, seconds in size[scan]["stages_s"].items())
            print(f"{size['vaults']:>7} vaults, {scan} scan, seconds per stage: {stages}")
    print()
    print(
        f"speed-up {result['speedup']}x (naive {result['naive_ms_per_vault']} ms/vault, "
        f"kvmon {result['kvmon_ms_per_vault']} ms/vault); peak RSS {result['peak_rss_mb']} MB "
        f"({result['peak_rss_mb_with_probe_workers']} MB with the probe workers); "
        f"entities written first/second scan {result['entities_written']['first_scan']}/"
        f"{result['entities_written']['second_scan']}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--vaults", type=int, default=10_000, help="vaults in the largest estate")
    parser.add_argument("--subscriptions", type=int, default=100, help="subscriptions of the largest estate")
    parser.add_argument("--naive-vaults", type=int, default=200, help="vaults the naive way scans")
    parser.add_argument("--latency-ms", type=float, default=50.0, help="latency of each ARM/RG/logs request")
    parser.add_argument("--concurrency", type=int, default=32, help="vaults kvmon probes at once per process")
    parser.add_argument(
        "--probe-processes",
        type=int,
        default=len(os.sched_getaffinity(0)),
        help="KVMON_PROBE_PROCESSES for kvmon's scans (default: the CPUs this process may use)",
    )
    parser.add_argument("--seed", type=int, default=0, help="the estate's mix")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    for name in ("vaults", "subscriptions", "naive_vaults", "concurrency", "probe_processes"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.subscriptions > args.vaults or args.latency_ms < 0:
        parser.error("--subscriptions must not exceed --vaults, and --latency-ms must not be negative")
    result = run(args)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print_table(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
