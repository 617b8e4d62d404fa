"""``handle_vault_changes`` against the lab: one GET per event, judged, stored, told once;
duplicates folded, reordering harmless, permanent problems never raised, transient ones retried."""

from __future__ import annotations

import datetime as dt
import json
import logging
import time

import pytest

from lab.arm import GET_ROUTE, LIST_ROUTE
from lab.azurite import DEV_ACCOUNT, DEV_ACCOUNT_KEY
from lab.http import Fault
from lab.services import LabServices
from monitor.app.events import CLAIM_LEASE, EventRetry, EventStatus, handle_delivery, handle_vault_changes
from monitor.app.scan import ScanRequest, ScanRuntime, run_scan
from monitor.model import ChangeKind, VaultChange, WriteKind
from monitor.store import Store, StoreUnavailable, open_store
from monitor.store.base import ProcessedEvent
from tests.events.payloads import event_grid
from tests.events_handler.conftest import OTHER_SUBSCRIPTION, change, lab_runtime, open_vault, vault_id

SUBSCRIPTIONS = ("00000000-0000-0000-0000-00000000a001",)
SE_VAULT_PATH = r"(?i).*/vaults/kv-se-demo$"


def _ready(lab: LabServices, store: Store) -> ScanRuntime:
    """The timer's scan has run (stored state), the sinks and ARM's counts start empty."""
    runtime = lab_runtime(lab, store)
    run_scan(ScanRequest(subscriptions=SUBSCRIPTIONS, probe=False, logs=False), runtime)
    lab.sinks.clear()
    lab.arm.server.request_counts.clear()
    return runtime


def _handle(runtime: ScanRuntime, *changes: VaultChange, **options: object):  # type: ignore[no-untyped-def]
    return handle_vault_changes(list(changes), runtime, subscriptions=SUBSCRIPTIONS, **options)  # type: ignore[arg-type]


def _messages(lab: LabServices) -> list[str]:
    return [item.service for item in lab.sinks.received]


def _gets(lab: LabServices) -> int:
    assert lab.arm.server.request_counts[LIST_ROUTE] == 0, "the event path listed a subscription"
    return lab.arm.server.request_counts[GET_ROUTE]


def test_an_event_is_read_judged_stored_and_told_naming_the_actor(
    lab: LabServices, sqlite_store: Store
) -> None:
    runtime = _ready(lab, sqlite_store)
    open_vault(lab, "kv-se-demo")
    event = change(vault_id(lab, "kv-se-demo"))
    followed: list[VaultChange] = []

    outcome = _handle(runtime, event, follow_up=followed.append)

    (result,) = outcome.results
    assert result.status is EventStatus.PROCESSED and not outcome.retry
    assert _gets(lab) == 1
    opened = {c.finding.rule_id for c in result.changes if c.kind is ChangeKind.OPENED}
    assert {"KV001", "KV301"} <= opened
    assert sorted(_messages(lab)) == ["slack", "teams"]
    teams = lab.sinks.messages("teams")[0].json()
    assert "mallory@contoso.example" in str(teams)
    assert set(sqlite_store.processed_events([event.event_id], now=runtime.clock())) == {event.event_id}
    assert followed == [event]


def test_a_duplicate_is_folded_with_no_get_and_no_message(lab: LabServices, sqlite_store: Store) -> None:
    runtime = _ready(lab, sqlite_store)
    open_vault(lab, "kv-se-demo")
    event = change(vault_id(lab, "kv-se-demo"))
    _handle(runtime, event)
    lab.sinks.clear()
    lab.arm.server.request_counts.clear()

    again = _handle(runtime, event, event)

    assert [r.status for r in again.results] == [EventStatus.DUPLICATE, EventStatus.DUPLICATE]
    assert _gets(lab) == 0 and _messages(lab) == []


def test_the_same_id_twice_in_one_batch_is_read_once(lab: LabServices, sqlite_store: Store) -> None:
    runtime = _ready(lab, sqlite_store)
    open_vault(lab, "kv-se-demo")
    event = change(vault_id(lab, "kv-se-demo"))

    outcome = _handle(runtime, event, event)

    assert [r.status for r in outcome.results] == [EventStatus.PROCESSED, EventStatus.DUPLICATE]
    assert _gets(lab) == 1


def test_a_delivery_of_an_event_another_delivery_is_handling_reads_nothing_and_comes_again(
    lab: LabServices, sqlite_store: Store
) -> None:
    runtime = _ready(lab, sqlite_store)
    open_vault(lab, "kv-se-demo")
    event = change(vault_id(lab, "kv-se-demo"))
    now = runtime.clock()
    other_delivery = ProcessedEvent(
        event_id=event.event_id,
        vault_key=event.vault_key,
        outcome=EventStatus.IN_PROGRESS.value,
        processed_at=now,
        expires_at=now + CLAIM_LEASE,
    )
    assert sqlite_store.claim_processed_event(other_delivery, now=now) is None

    held = _handle(runtime, event)

    (result,) = held.results
    assert result.status is EventStatus.IN_PROGRESS and held.retry
    assert "being handled by another delivery" in result.errors[0].message
    assert _gets(lab) == 0 and _messages(lab) == []
    with pytest.raises(EventRetry):
        held.raise_for_retry()

    # The other delivery died; Event Grid's redelivery after the lease takes the event over.
    runtime.clock = lambda: now + CLAIM_LEASE + dt.timedelta(seconds=1)
    (taken_over,) = _handle(runtime, event).results
    assert taken_over.status is EventStatus.PROCESSED and _gets(lab) == 1


def test_a_failed_change_releases_its_claim(lab: LabServices, sqlite_store: Store) -> None:
    runtime = _ready(lab, sqlite_store)
    event = change(vault_id(lab, "kv-se-demo"))
    lab.arm.server.inject(SE_VAULT_PATH, Fault(status=403, body={"error": {"code": "AuthorizationFailed"}}))

    (refused,) = _handle(runtime, event).results

    assert refused.status is EventStatus.ERROR
    assert sqlite_store.processed_events([event.event_id], now=runtime.clock()) == {}


def test_two_events_for_one_vault_at_once_each_get_and_announce_once(
    lab: LabServices, sqlite_store: Store
) -> None:
    runtime = _ready(lab, sqlite_store)
    open_vault(lab, "kv-se-demo")
    vault = vault_id(lab, "kv-se-demo")

    outcome = _handle(runtime, change(vault), change(vault))

    assert [r.status for r in outcome.results] == [EventStatus.PROCESSED, EventStatus.PROCESSED]
    assert _gets(lab) == 2  # the GET is trusted, never the event: each reads the vault afresh
    assert [c.kind for r in outcome.results for c in r.changes if c.finding.rule_id == "KV001"] == [
        ChangeKind.OPENED
    ]
    # The second read finds the vault as the first stored it: no transition, nothing told again
    # (KV301 stays open until the next scan of the subscription).
    assert outcome.results[1].changes == ()
    assert "KV301" in {f.rule_id for f in outcome.results[1].findings}
    assert sorted(_messages(lab)) == ["slack", "teams"]


def test_reordered_events_never_reopen_or_announce_twice(lab: LabServices, sqlite_store: Store) -> None:
    runtime = _ready(lab, sqlite_store)
    vault = vault_id(lab, "kv-se-demo")
    open_vault(lab, "kv-se-demo")
    opened = change(vault)
    _handle(runtime, opened)
    closed_acls = dict(lab.estate.vault(vault)["properties"]["networkAcls"], defaultAction="Deny")  # type: ignore[index]
    lab.estate.update_vault(vault, properties={"networkAcls": closed_acls})
    closed = change(vault)
    lab.sinks.clear()

    # The fix's event comes first, then a late redelivery-like copy of the opening under a new id.
    first = _handle(runtime, closed)
    late = _handle(runtime, change(vault, actor=opened.actor))

    assert [c.kind for c in first.results[0].changes if c.finding.rule_id == "KV001"] == [ChangeKind.RESOLVED]
    # The late event reads the closed vault: nothing opens again, nothing is told twice.
    assert late.results[0].changes == ()
    assert sorted(_messages(lab)) == ["slack", "teams"]  # the fix, once


def test_a_delete_of_a_vault_gone_is_kv302_and_never_raised(lab: LabServices, sqlite_store: Store) -> None:
    runtime = _ready(lab, sqlite_store)
    vault = vault_id(lab, "kv-pl-demo")
    lab.estate.remove_vault(vault)
    event = change(vault, kind=WriteKind.DELETE)

    outcome = _handle(runtime, event)

    (result,) = outcome.results
    assert result.status is EventStatus.GONE and not outcome.retry
    assert [(f.rule_id, f.subject) for f in result.findings] == [("KV302", "disappeared")]
    assert set(sqlite_store.processed_events([event.event_id], now=runtime.clock())) == {event.event_id}


def test_a_write_event_for_a_vault_gone_before_the_get_is_gone(lab: LabServices, sqlite_store: Store) -> None:
    runtime = _ready(lab, sqlite_store)
    vault = vault_id(lab, "kv-se-demo")
    open_vault(lab, "kv-se-demo")
    lab.estate.remove_vault(vault)

    (result,) = _handle(runtime, change(vault)).results

    assert result.status is EventStatus.GONE
    assert {f.rule_id for f in result.findings} == {"KV302"}


def test_a_vault_outside_the_scope_is_never_read_nor_recorded(lab: LabServices, sqlite_store: Store) -> None:
    runtime = _ready(lab, sqlite_store)
    foreign = (
        f"/subscriptions/{OTHER_SUBSCRIPTION}/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/kv-x"
    )
    event = change(foreign)

    outcome = _handle(runtime, event)

    assert [r.status for r in outcome.results] == [EventStatus.OUT_OF_SCOPE] and not outcome.retry
    assert lab.arm.server.total_requests == 0
    assert sqlite_store.processed_events([event.event_id], now=runtime.clock()) == {}


def test_arm_throttling_asks_for_a_retry_and_the_redelivery_is_handled(
    lab: LabServices, sqlite_store: Store
) -> None:
    runtime = _ready(lab, sqlite_store)
    open_vault(lab, "kv-se-demo")
    event = change(vault_id(lab, "kv-se-demo"))
    lab.arm.server.inject(
        SE_VAULT_PATH,
        Fault(
            status=429,
            body={"error": {"code": "TooManyRequests", "message": "slow down"}},
            headers={"Retry-After": "0"},
            times=0,
        ),
    )

    throttled = _handle(runtime, event)

    (result,) = throttled.results
    assert result.status is EventStatus.ERROR and result.transient and throttled.retry
    assert [e.code for e in result.errors] == ["429"]
    assert sqlite_store.processed_events([event.event_id], now=runtime.clock()) == {}
    assert _messages(lab) == []

    lab.arm.server.clear_faults()
    retried = _handle(runtime, event)
    assert retried.results[0].status is EventStatus.PROCESSED and not retried.retry
    assert sorted(_messages(lab)) == ["slack", "teams"]


def test_a_refused_read_is_an_error_not_retried(lab: LabServices, sqlite_store: Store) -> None:
    runtime = _ready(lab, sqlite_store)
    lab.arm.server.inject(
        SE_VAULT_PATH,
        Fault(status=403, body={"error": {"code": "AuthorizationFailed", "message": "no"}}, times=0),
    )

    outcome = _handle(runtime, change(vault_id(lab, "kv-se-demo")))

    assert outcome.results[0].status is EventStatus.ERROR and not outcome.retry


def test_the_store_down_raises_before_any_get(lab: LabServices) -> None:
    down = open_store(
        connection_string=(
            f"DefaultEndpointsProtocol=http;AccountName={DEV_ACCOUNT};AccountKey={DEV_ACCOUNT_KEY};"
            f"TableEndpoint=http://127.0.0.1:9/{DEV_ACCOUNT}"
        )
    )
    runtime = lab_runtime(lab, down)
    lab.arm.server.request_counts.clear()
    started = time.monotonic()

    with pytest.raises(StoreUnavailable):
        _handle(runtime, change(vault_id(lab, "kv-se-demo")))

    assert lab.arm.server.total_requests == 0
    assert time.monotonic() - started < 25
    down.close()


def test_a_storage_account_change_is_told_not_read_until_run_scan_reads_accounts(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The decoder maps a storage account's network write to the account; run_scan reads vaults by
    id only, so the event path reads nothing and says so (the timer's scan judges the account)."""
    account = f"/subscriptions/{SUBSCRIPTIONS[0]}/resourceGroups/rg-data/providers/Microsoft.Storage/storageAccounts/stdata"
    event = event_grid(
        event_id="e-storage", resource=account, operation="Microsoft.Storage/storageAccounts/write"
    )

    def no_runtime() -> ScanRuntime:
        raise AssertionError("no vault changed: nothing to scan")

    with caplog.at_level(logging.WARNING, logger="kvmon.events"):
        handled = handle_delivery(
            json.dumps([event]).encode(), source="event", subscriptions=SUBSCRIPTIONS, runtime=no_runtime
        )
    assert handled.results == [] and not handled.retry
    [record] = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert account in record.getMessage() and "e-storage" in record.getMessage()
    assert "not read by the event path yet" in record.getMessage()
