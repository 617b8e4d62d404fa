"""The window a scan reads: pure, time passed in."""

from __future__ import annotations

import datetime as dt

import pytest

from monitor.sources.logs import logs_window

NOW = dt.datetime(2025, 3, 14, 12, 0, tzinfo=dt.UTC)
MIN = dt.timedelta(minutes=1)


def test_first_run_looks_back_the_first_run_span() -> None:
    assert logs_window(now=NOW, previous_scan_end=None) == (NOW - 24 * 60 * MIN, NOW)
    assert logs_window(now=NOW, previous_scan_end=None, first_run=2 * 60 * MIN) == (NOW - 120 * MIN, NOW)


def test_later_runs_read_since_the_previous_scan_with_overlap() -> None:
    assert logs_window(now=NOW, previous_scan_end=NOW - 15 * MIN) == (NOW - 20 * MIN, NOW)
    assert logs_window(now=NOW, previous_scan_end=NOW - 15 * MIN, overlap=0 * MIN) == (NOW - 15 * MIN, NOW)


def test_capped_after_a_long_pause_and_on_a_long_first_run() -> None:
    assert logs_window(now=NOW, previous_scan_end=NOW - 72 * 60 * MIN) == (NOW - 24 * 60 * MIN, NOW)
    assert logs_window(now=NOW, previous_scan_end=None, first_run=7 * 24 * 60 * MIN, cap=48 * 60 * MIN) == (
        NOW - 48 * 60 * MIN,
        NOW,
    )


def test_a_previous_end_in_the_future_counts_as_now() -> None:
    assert logs_window(now=NOW, previous_scan_end=NOW + 30 * MIN) == (NOW - 5 * MIN, NOW)


def test_other_time_zones_are_the_same_instants() -> None:
    cet = dt.timezone(dt.timedelta(hours=1))
    start, end = logs_window(now=NOW.astimezone(cet), previous_scan_end=NOW - 10 * MIN)
    assert (start, end) == (NOW - 15 * MIN, NOW)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"now": dt.datetime(2025, 3, 14, 12, 0), "previous_scan_end": None}, "now must be timezone-aware"),
        (
            {"now": NOW, "previous_scan_end": dt.datetime(2025, 3, 14)},
            "previous_scan_end must be timezone-aware",
        ),
        ({"now": NOW, "previous_scan_end": None, "overlap": -MIN}, "overlap must not be negative"),
        ({"now": NOW, "previous_scan_end": None, "first_run": 0 * MIN}, "first_run must be positive"),
        ({"now": NOW, "previous_scan_end": None, "cap": -MIN}, "cap must be positive"),
    ],
)
def test_bad_arguments(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        logs_window(**kwargs)
