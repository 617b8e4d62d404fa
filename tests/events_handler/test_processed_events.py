"""The store's record of processed events, on SQLite and on Table storage (Azurite)."""

from __future__ import annotations

import dataclasses
import datetime as dt

from monitor.store.base import ProcessedEvent
from monitor.store.entities import EntityStore

NOW = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)
VAULT = "/subscriptions/00000000-0000-0000-0000-00000000a001/resourcegroups/rg/providers/microsoft.keyvault/vaults/kv"


def _event(event_id: str, *, expires_in: dt.timedelta = dt.timedelta(hours=24)) -> ProcessedEvent:
    return ProcessedEvent(
        event_id=event_id,
        vault_key=VAULT,
        outcome="processed",
        processed_at=NOW,
        expires_at=NOW + expires_in,
        scan_id="20260301T120000Z-abcd0123",
    )


def test_a_recorded_event_is_found_until_it_expires(store: EntityStore) -> None:
    recorded = _event("e-1")
    assert store.processed_events(["e-1"], now=NOW) == {}
    assert store.record_processed_events([recorded]) == 1

    assert store.processed_events(["e-1", "e-2"], now=NOW) == {"e-1": recorded}
    assert store.processed_events(["e-1"], now=NOW + dt.timedelta(hours=24)) == {}


def test_ids_of_any_shape_are_keys(store: EntityStore) -> None:
    odd = ["a/b#c?d\\e", "x" * 2000, "ünïcode-ë", "  spaced  "]
    store.record_processed_events(_event(event_id) for event_id in odd)

    assert set(store.processed_events(odd, now=NOW)) == set(odd)


def test_recording_again_overwrites_and_many_go_in_batches(store: EntityStore) -> None:
    store.record_processed_events([_event("e-1", expires_in=dt.timedelta(minutes=1))])
    store.record_processed_events([_event("e-1")])
    assert set(store.processed_events(["e-1"], now=NOW + dt.timedelta(hours=1))) == {"e-1"}

    many = [_event(f"burst-{index}") for index in range(250)]
    assert store.record_processed_events(many) == 250
    assert len(store.processed_events([e.event_id for e in many], now=NOW)) == 250


def test_purge_forgets_only_the_expired(store: EntityStore) -> None:
    store.record_processed_events(
        [
            _event("old", expires_in=dt.timedelta(minutes=5)),
            _event("young", expires_in=dt.timedelta(hours=24)),
        ]
    )

    assert store.purge_processed_events(now=NOW + dt.timedelta(hours=1)) == 1
    assert store.purge_processed_events(now=NOW + dt.timedelta(hours=1)) == 0
    assert set(store.processed_events(["old", "young"], now=NOW)) == {"young"}


def test_a_claim_holds_an_event_until_it_lapses_and_a_record_until_it_expires(store: EntityStore) -> None:
    claim = ProcessedEvent(
        event_id="e-claimed",
        vault_key=VAULT,
        outcome="in-progress",
        processed_at=NOW,
        expires_at=NOW + dt.timedelta(seconds=30),
    )
    assert store.claim_processed_event(claim, now=NOW) is None  # this caller's
    assert store.claim_processed_event(claim, now=NOW + dt.timedelta(seconds=5)) == claim  # held

    later = NOW + dt.timedelta(seconds=31)  # the first handler died: its claim lapsed
    taken_over = dataclasses.replace(claim, processed_at=later, expires_at=later + dt.timedelta(seconds=30))
    assert store.claim_processed_event(taken_over, now=later) is None
    assert store.claim_processed_event(claim, now=later) == taken_over

    handled = _event("e-claimed")  # the handler recorded its outcome over its claim
    store.record_processed_events([handled])
    assert store.claim_processed_event(claim, now=later) == handled


def test_a_released_claim_can_be_claimed_again(store: EntityStore) -> None:
    claim = _event("e-failed", expires_in=dt.timedelta(seconds=30))
    assert store.claim_processed_event(claim, now=NOW) is None
    store.release_processed_event("e-failed")
    store.release_processed_event("e-failed")  # released twice: no fault
    assert store.processed_events(["e-failed"], now=NOW) == {}
    assert store.claim_processed_event(claim, now=NOW) is None
