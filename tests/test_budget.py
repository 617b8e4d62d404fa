"""Request budgets: the keywords reach azure-core's transport and retry policy as meant, the worst
case is azure-core's own arithmetic, and a scan worker's worst case fits the Functions host."""

from __future__ import annotations

import json
import re

import pytest
from azure.core.pipeline.policies import RetryPolicy
from azure.core.pipeline.transport import RequestsTransport

from lab.credential import LabCredential
from monitor.app.runtime import build_runtime
from monitor.config.budget import RequestBudget
from monitor.config.settings import Settings
from monitor.outputs.notify.deliver import DeliveryPolicy
from monitor.sources.arm import ArmInventory
from monitor.sources.inventory import ThresholdInventory
from monitor.store.tables import STORE_BUDGET
from tests.conftest import REPO


@pytest.mark.parametrize("retries", [0, 1, 2, 3, 6])
def test_the_backoff_is_the_one_azure_core_waits(retries: int) -> None:
    budget = RequestBudget(timeout_s=1, retries=retries, backoff_max_s=5)
    policy = RetryPolicy(**budget.azure_core_options())
    settings = policy.configure_retries({})
    waits = []
    for _ in range(retries):  # before each retry azure-core has recorded the tries so far
        settings["history"].append(object())
        waits.append(policy.get_backoff_time(settings))
    assert budget.backoff_s == pytest.approx(sum(waits))
    assert budget.worst_case_s == pytest.approx((retries + 1) * 2 + sum(waits))


def test_the_options_set_the_transport_and_every_retry_count() -> None:
    budget = RequestBudget(timeout_s=4, read_timeout_s=30, retries=2)
    transport = RequestsTransport(**budget.azure_core_options())
    assert (transport.connection_config.timeout, transport.connection_config.read_timeout) == (4, 30)
    settings = RetryPolicy(**budget.azure_core_options()).configure_retries({})
    assert [settings[key] for key in ("total", "connect", "read", "status")] == [2, 2, 2, 2]
    assert budget.worst_case_s == 3 * (4 + 30) + 1.6


def test_a_budget_it_cannot_use_is_refused() -> None:
    with pytest.raises(ValueError, match="timeout_s must be positive"):
        RequestBudget(timeout_s=0, retries=1)
    with pytest.raises(ValueError, match="retries must not be negative"):
        RequestBudget(timeout_s=1, retries=-1)


def test_a_scan_worker_ends_within_the_functions_timeout_whatever_hangs() -> None:
    """After the deadline a scan judges (CPU), reads and writes the store, then notifies. A store
    that hangs fails the scan at its first request; one that answers leaves the notify run, which
    its delivery budget bounds. Either way the worker ends before host.json's functionTimeout
    kills it, unrecorded."""
    host = json.loads((REPO / "host.json").read_text(encoding="utf-8"))
    hours, minutes, seconds = (
        int(part) for part in re.fullmatch(r"(\d+):(\d+):(\d+)", host["functionTimeout"]).groups()
    )
    function_timeout_s = hours * 3600 + minutes * 60 + seconds
    deadline_s = Settings.from_environ({}).scan_deadline.total_seconds()
    after_deadline_s = max(STORE_BUDGET.worst_case_s, DeliveryPolicy().run_worst_case_s)
    assert deadline_s + after_deadline_s < function_timeout_s - 30  # 30 s for judging and writing


def test_every_client_on_arms_endpoint_takes_the_arm_settings() -> None:
    settings = Settings.from_environ({"KVMON_ARM_TIMEOUT": "7", "KVMON_ARM_RETRIES": "3"})
    expected = RequestBudget(timeout_s=7, retries=3)
    runtime = build_runtime(settings, environ={}, credential=LabCredential(), with_store=False)
    assert isinstance(runtime.inventory, ThresholdInventory)
    assert runtime.inventory.arm.connection.budget == expected
    assert runtime.inventory.graph.connection.budget == expected
    assert (
        isinstance(runtime.vault_reader, ArmInventory) and runtime.vault_reader.connection.budget == expected
    )
    assert runtime.change_history is not None and runtime.change_history.connection.budget == expected
