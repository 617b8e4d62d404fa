"""Writes are proportional to change: what a first scan and an unchanged rescan write (both backends).

V vaults in S subscriptions with F findings: a first scan writes V + F + S + 1 entities (each
posture once: history holds only superseded versions), an unchanged rescan 2S + 1. Here V=30, S=3,
F=60: 94 against 7.
"""

from __future__ import annotations

import dataclasses
import datetime as dt

from monitor.model import ChangeKind, Finding, VaultPosture
from monitor.store.base import PostureSnapshot, ScanRun
from monitor.store.entities import FINDINGS, HISTORY, POSTURES, SCANS, SEEN, EntityStore
from monitor.store.reconcile import apply_reconciliation
from tests.store.conftest import StoreFactory
from tests.store.helpers import SUB_A, SUB_B, T0, CountingBackend, finding, posture

SUBSCRIPTIONS = (SUB_A, SUB_B, "11111111-2222-4333-8444-555555555555")


def estate() -> tuple[list[VaultPosture], list[Finding]]:
    postures = [
        posture(f"kv-{s}-{i:02d}", subscription=sub) for s, sub in enumerate(SUBSCRIPTIONS) for i in range(10)
    ]
    findings = [
        finding(p.name, rule, subject=subject, subscription=p.subscription_id)
        for p in postures
        for rule, subject in (("KV001", ""), ("KV004", "203.0.113.10/32"))
    ]
    return postures, findings


def persist_scan(store: EntityStore, scan_id: str, at: dt.datetime, postures, findings) -> list:
    """What run_scan does with the store after judging."""
    keys = {p.key for p in postures}
    changes = apply_reconciliation(
        store, current=findings, assessed_vaults=keys, complete_vaults=keys, now=at, scan_id=scan_id
    )
    store.save_postures(PostureSnapshot(p, scan_id=scan_id, seen_at=at) for p in postures)
    store.record_scan(ScanRun(scan_id=scan_id, scope=SUBSCRIPTIONS, started_at=at, finished_at=at))
    return changes


def test_unchanged_rescan_writes_markers_and_the_scan_record_only(make_store: StoreFactory) -> None:
    store = make_store()
    counter = CountingBackend(store.backend)
    store.backend = counter
    postures, findings = estate()

    first = persist_scan(store, "scan-1", T0, postures, findings)
    first_writes = dict(counter.written)
    assert len(first) == 60 and {c.kind for c in first} == {ChangeKind.OPENED}
    assert first_writes == {POSTURES: 30, FINDINGS: 60, SEEN: 3, SCANS: 1}
    # Batched per subscription: one request per subscription.
    assert counter.requests[POSTURES] == counter.requests[FINDINGS] == 3

    counter.written.clear()
    later = T0 + dt.timedelta(minutes=15)
    assert persist_scan(store, "scan-2", later, postures, findings) == []
    rescan_writes = dict(counter.written)
    assert rescan_writes == {SEEN: 6, SCANS: 1}
    assert sum(first_writes.values()) >= 10 * sum(rescan_writes.values())

    # The markers carry last_seen and seen_at forward without rewriting anything.
    assert {r.last_seen for r in store.load_findings().values()} == {later}
    assert {(s.seen_at, s.scan_id) for s in store.load_postures().values()} == {(later, "scan-2")}


def test_one_change_writes_about_one_more_entity(make_store: StoreFactory) -> None:
    store = make_store()
    postures, findings = estate()
    persist_scan(store, "scan-1", T0, postures, findings)
    counter = CountingBackend(store.backend)
    store.backend = counter

    changed = [dataclasses.replace(postures[0], default_action="Allow"), *postures[1:]]
    fixed = findings[1:]  # the first vault's KV001 is gone
    changes = persist_scan(store, "scan-2", T0 + dt.timedelta(minutes=15), changed, fixed)

    assert [(c.kind, c.finding.id) for c in changes] == [(ChangeKind.RESOLVED, findings[0].id)]
    assert dict(counter.written) == {FINDINGS: 1, POSTURES: 1, HISTORY: 1, SEEN: 6, SCANS: 1}
