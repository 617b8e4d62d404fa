"""A scan's deadline for reading its sources (``KVMON_SCAN_DEADLINE``).

Each request a scan sends is bounded by its service's budget (``monitor.config.budget``), but how
many requests a scan sends grows with the estate (pages, vaults, workspaces), and two things no
request timeout bounds are the server's to choose: a ``Retry-After`` (azure-core waits as long as
it says) and a body that trickles in faster than the read timeout. So ``run_scan`` reads every
source through ``Deadline.within``: the read runs in a thread of its own and the scan stops
waiting for it when the deadline passes. A read that did not finish gives nothing, and the scan
records what it did not read (``ScanError`` with code ``ScanDeadline``) and judges, stores and
notifies the rest; whatever the read brings back later is dropped. The abandoned thread ends at
its own requests' budgets; it is a daemon thread, but the thread pools a read runs (the ARM
listing's, the probes') are joined when the interpreter exits, so ``kvmon scan`` ends after them.

Monotonic time, not the scan's clock: a test's or the demo's clock stands still between scans.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

from monitor.model import ErrorSource, ScanError

T = TypeVar("T")

DEADLINE_CODE = "ScanDeadline"


class _Read(Generic[T]):
    """One source read in a thread of its own."""

    def __init__(self, read: Callable[[], T]) -> None:
        self._read = read
        self._done = False
        self._value: T | None = None
        self._error: BaseException | None = None
        self._lock = threading.Lock()
        self.thread = threading.Thread(target=self._run, name="kvmon-scan-source", daemon=True)

    def _run(self) -> None:
        try:
            value = self._read()
        except BaseException as exc:  # raised in the scan's thread, by outcome()
            with self._lock:
                self._error, self._done = exc, True
            return
        with self._lock:
            self._value, self._done = value, True

    def outcome(self) -> T | None:
        """What the read returned, None while it runs; its own exception is raised here."""
        with self._lock:
            if self._error is not None:
                raise self._error
            return self._value if self._done else None


class Deadline:
    """``limit`` after it was made, or never (``None``: every read as long as it takes)."""

    def __init__(self, limit: dt.timedelta | None) -> None:
        self.limit = limit
        self._end = None if limit is None else time.monotonic() + limit.total_seconds()

    @property
    def passed(self) -> bool:
        return self._end is not None and time.monotonic() >= self._end

    def within(self, read: Callable[[], T]) -> T | None:
        """What ``read()`` returned, or None when the deadline passed first (every source's read
        returns a result, never None)."""
        [outcome] = self.within_all([read])
        return outcome

    def within_all(self, reads: Sequence[Callable[[], T]]) -> list[T | None]:
        """Every read at once (one alone, with no deadline, in this thread), each as ``within``."""
        if self._end is None and len(reads) == 1:
            return [reads[0]()]
        if self.passed:
            return [None for _ in reads]
        running = [_Read(read) for read in reads]
        for one in running:
            one.thread.start()
        for one in running:
            one.thread.join(None if self._end is None else max(0.0, self._end - time.monotonic()))
        return [one.outcome() for one in running]

    def reason(self, what: str) -> str:
        """Why ``what`` (the vault listing, the probes from a vantage point...) is missing."""
        assert self.limit is not None
        return (
            f"{what} not read: the scan's deadline passed ({_shown(self.limit)} after the scan started, "
            "KVMON_SCAN_DEADLINE); nothing resolves on it"
        )

    def error(self, source: ErrorSource, scope: str, what: str) -> ScanError:
        return ScanError(source, scope, self.reason(what), DEADLINE_CODE)


def _shown(limit: dt.timedelta) -> str:
    seconds = limit.total_seconds()
    return f"{seconds / 60:g} min" if seconds >= 60 and seconds % 60 == 0 else f"{seconds:g} s"
