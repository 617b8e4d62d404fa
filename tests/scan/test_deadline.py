"""``Deadline``: reads within it return what they read; one that outlasts it gives nothing and
the caller goes on at the deadline; a read's own error is raised where the scan waits."""

from __future__ import annotations

import datetime as dt
import threading
import time

import pytest

from monitor.app.deadline import DEADLINE_CODE, Deadline
from monitor.model import ErrorSource


def test_without_a_deadline_a_read_runs_in_the_callers_thread() -> None:
    caller = threading.current_thread()
    assert Deadline(None).within(lambda: threading.current_thread() is caller) is True


def test_reads_within_the_deadline_return_what_they_read_and_run_at_once() -> None:
    started = time.monotonic()
    results = Deadline(dt.timedelta(seconds=5)).within_all(
        [lambda: (time.sleep(0.3), "a")[1], lambda: (time.sleep(0.3), "b")[1]]
    )
    assert results == ["a", "b"]
    assert time.monotonic() - started < 0.55  # side by side, not one after the other


def test_a_read_that_outlasts_the_deadline_gives_nothing_and_the_caller_goes_on() -> None:
    release = threading.Event()
    deadline = Deadline(dt.timedelta(seconds=1))
    started = time.monotonic()
    results = deadline.within_all([lambda: "quick", lambda: release.wait(30) and "late"])
    elapsed = time.monotonic() - started
    release.set()
    assert results == ["quick", None]
    assert 0.9 < elapsed < 1.5
    assert deadline.passed and deadline.within(lambda: "after") is None  # nothing starts after it
    error = deadline.error(ErrorSource.LOGS, "ws-1", "the access logs")
    assert (error.source, error.scope, error.code) == (ErrorSource.LOGS, "ws-1", DEADLINE_CODE)
    assert error.message == (
        "the access logs not read: the scan's deadline passed (1 s after the scan started, "
        "KVMON_SCAN_DEADLINE); nothing resolves on it"
    )


def test_a_reads_own_error_is_raised_where_the_scan_waits() -> None:
    def fails() -> str:
        raise RuntimeError("the store is down")

    with pytest.raises(RuntimeError, match="the store is down"):
        Deadline(dt.timedelta(seconds=5)).within(fails)
