"""The cycle collector's thresholds while a scan runs: fewer, cheaper collections of a heap that
grows with the estate. ``monitor.app.scan.run_scan`` wraps every scan in ``scan_collector``."""

from __future__ import annotations

import contextlib
import gc
import threading
from collections.abc import Iterator

# CPython's cycle collector while a scan runs (``gc.set_threshold``; the defaults are 700, 10, 10).
# A scan keeps tens of thousands of records alive (postures, probe results, findings) while the
# HTTP stacks and SDKs churn through short-lived objects, some in reference cycles. With the
# defaults, objects of requests still in flight are collected young so often that they survive
# into the oldest generation, and every tenth middle collection then walks the whole heap, which
# grows with the estate: two scans of 2,000 vaults made 14-15 full collections. Collecting the
# young generation every 3,000 allocations (most request objects are garbage by then) and the
# oldest after 100 middle collections, measured with ``gc.callbacks`` over those two scans: the
# collector's CPU 1.6-2.4 s -> 0.85-0.94 s, and with a heap as large as a 10,000-vault scan's
# 3.4 s -> 1.8 s; peak memory within 3 %. Reference cycles are still collected, less often.
SCAN_GC_THRESHOLDS = (3_000, 10, 100)


class _Collector:
    """Raises the thresholds while at least one scan runs in this process, restores them after."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._scans = 0
        self._saved: tuple[int, int, int] | None = None

    def enter(self) -> None:
        with self._lock:
            self._scans += 1
            if self._scans == 1:
                self._saved = gc.get_threshold()
                # Never lower what the host chose; a first threshold of 0 turned collection off.
                if self._saved[0] != 0:
                    raised = (
                        max(ours, theirs)
                        for ours, theirs in zip(SCAN_GC_THRESHOLDS, self._saved, strict=True)
                    )
                    gc.set_threshold(*raised)

    def exit(self) -> None:
        with self._lock:
            self._scans -= 1
            if self._scans == 0 and self._saved is not None:
                gc.set_threshold(*self._saved)
                self._saved = None


_COLLECTOR = _Collector()


@contextlib.contextmanager
def scan_collector() -> Iterator[None]:
    """The cycle collector tuned for a scan (``SCAN_GC_THRESHOLDS``) for the duration of the block;
    scans that overlap in one process share the setting, and the last one out restores it."""
    _COLLECTOR.enter()
    try:
        yield
    finally:
        _COLLECTOR.exit()
