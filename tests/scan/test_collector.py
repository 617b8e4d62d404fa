"""The cycle collector during a scan: thresholds raised while any scan runs, restored after."""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator

import pytest

from lab.arm import ArmEmulator
from lab.credential import LabCredential
from lab.estate import Estate
from lab.tls import LabPki
from monitor.app.collector import SCAN_GC_THRESHOLDS, scan_collector
from monitor.app.scan import ScanRequest, ScanRuntime, run_scan
from monitor.config.policy import VaultPolicy
from monitor.sources.arm import ArmInventory

SUBSCRIPTION = "00000000-0000-0000-0000-0000000000c1"


@pytest.fixture
def host_thresholds() -> Iterator[tuple[int, int, int]]:
    """The interpreter's defaults for the test, whatever the session runs with; put back after."""
    saved = gc.get_threshold()
    gc.set_threshold(700, 10, 10)
    yield (700, 10, 10)
    gc.set_threshold(*saved)


def test_raised_inside_and_restored_after(host_thresholds: tuple[int, int, int]) -> None:
    with scan_collector():
        assert gc.get_threshold() == SCAN_GC_THRESHOLDS
    assert gc.get_threshold() == host_thresholds


def test_restored_when_the_scan_fails(host_thresholds: tuple[int, int, int]) -> None:
    with pytest.raises(RuntimeError), scan_collector():
        raise RuntimeError("the store is gone")
    assert gc.get_threshold() == host_thresholds


def test_overlapping_scans_share_it_and_the_last_one_out_restores(
    host_thresholds: tuple[int, int, int],
) -> None:
    first_entered, second_done = threading.Event(), threading.Event()
    seen: list[tuple[int, int, int]] = []

    def first() -> None:
        with scan_collector():
            first_entered.set()
            second_done.wait(timeout=10)
            seen.append(gc.get_threshold())  # the other scan left; this one still runs

    worker = threading.Thread(target=first)
    worker.start()
    first_entered.wait(timeout=10)
    with scan_collector():
        assert gc.get_threshold() == SCAN_GC_THRESHOLDS
    second_done.set()
    worker.join(timeout=10)

    assert seen == [SCAN_GC_THRESHOLDS]
    assert gc.get_threshold() == host_thresholds


def test_never_lowers_what_the_host_chose(host_thresholds: tuple[int, int, int]) -> None:
    higher = (50_000, 5, 1_000)
    gc.set_threshold(*higher)
    with scan_collector():
        assert gc.get_threshold() == (50_000, 10, 1_000)
    assert gc.get_threshold() == higher

    gc.set_threshold(0)  # collection turned off by the host: left off
    switched_off = gc.get_threshold()
    with scan_collector():
        assert gc.get_threshold() == switched_off
    assert gc.get_threshold() == switched_off


def test_run_scan_runs_with_it(host_thresholds: tuple[int, int, int], pki: LabPki) -> None:
    estate = Estate()
    estate.add_subscription(SUBSCRIPTION)
    estate.add_vault(subscription_id=SUBSCRIPTION, resource_group="rg-app", name="kv-collector")
    during: list[tuple[int, int, int]] = []
    with ArmEmulator(estate) as arm:
        inventory = ArmInventory(LabCredential(), arm_endpoint=arm.url, connection_verify=pki.ca_path)
        runtime = ScanRuntime(inventory=inventory, policy_for=lambda posture: VaultPolicy())
        outcome = run_scan(
            ScanRequest(subscriptions=(SUBSCRIPTION,), probe=False, logs=False, notify=False),
            runtime,
            progress=lambda stage: during.append(gc.get_threshold()),
        )

    assert [p.name for p in outcome.report.postures] == ["kv-collector"]
    assert during and set(during) == {SCAN_GC_THRESHOLDS}
    assert gc.get_threshold() == host_thresholds
