"""The lifecycle against real stores: persistence across scans, and two scans at once on one store."""

from __future__ import annotations

import datetime as dt
import threading

from monitor.judge.lifecycle import EVIDENCE_REFRESH
from monitor.model import ChangeKind, FindingStatus
from monitor.store.reconcile import apply_reconciliation
from tests.store.conftest import StoreFactory
from tests.store.helpers import T0, finding

MINUTES = dt.timedelta(minutes=15)
APP = finding("kv-app").vault_id.lower()


def scan(store, current, at, *, complete=True):
    return apply_reconciliation(
        store,
        current=current,
        assessed_vaults={APP},
        complete_vaults={APP} if complete else set(),
        now=at,
        scan_id=at.isoformat(),
    )


def test_open_persist_resolve_reopen_across_scans(store) -> None:
    problem = finding(rule="KV004", subject="0.0.0.0/0")
    assert [c.kind for c in scan(store, [problem], T0)] == [ChangeKind.OPENED]
    assert scan(store, [problem], T0 + MINUTES) == []
    assert scan(store, [], T0 + 2 * MINUTES, complete=False) == []  # logs timed out: stays open
    assert store.load_findings()[problem.id].status == FindingStatus.OPEN
    assert [c.kind for c in scan(store, [], T0 + 3 * MINUTES)] == [ChangeKind.RESOLVED]
    assert [c.kind for c in scan(store, [problem], T0 + 4 * MINUTES)] == [ChangeKind.REOPENED]

    record = store.load_findings()[problem.id]
    assert (record.status, record.first_seen, record.last_seen, record.last_changed, record.occurrences) == (
        FindingStatus.OPEN,
        T0,
        T0 + 4 * MINUTES,
        T0 + 4 * MINUTES,
        2,
    )


def test_last_seen_does_not_advance_while_evidence_is_incomplete(store) -> None:
    logs_finding = finding(rule="KV201", subject="198.51.100.7")
    config_finding = finding(rule="KV001")
    scan(store, [logs_finding, config_finding], T0)
    scan(store, [config_finding], T0 + MINUTES, complete=False)

    records = store.load_findings()
    assert records[logs_finding.id].last_seen == T0
    assert records[config_finding.id].last_seen == T0 + MINUTES
    scan(store, [logs_finding, config_finding], T0 + 2 * MINUTES)
    assert {r.last_seen for r in store.load_findings().values()} == {T0 + 2 * MINUTES}


def test_over_long_evidence_is_compared_as_stored_and_never_rewritten(store) -> None:
    # The store trims evidence over its property limit: compared untrimmed, the finding would look
    # as if its evidence moved, and be rewritten every EVIDENCE_REFRESH.
    big = finding(evidence={"log": "x" * 80_000})
    assert [c.kind for c in scan(store, [big], T0)] == [ChangeKind.OPENED]
    assert scan(store, [big], T0 + EVIDENCE_REFRESH) == []
    record = store.load_findings()[big.id]
    assert (record.evidence_at, record.last_changed, record.last_seen) == (T0, T0, T0 + EVIDENCE_REFRESH)


class ReadBothThenWrite:
    """A real store whose first ``save_findings`` waits until the other scan has read too, so both
    scans plan from the same empty state and race to write: the worst interleaving, every time."""

    def __init__(self, store, barrier: threading.Barrier) -> None:
        self._store = store
        self._barrier = barrier
        self._first = True

    def __getattr__(self, name):
        return getattr(self._store, name)

    def save_findings(self, records):
        if self._first:
            self._first = False
            self._barrier.wait(timeout=30)
        return self._store.save_findings(records)


def test_two_concurrent_scans_record_one_finding_and_announce_it_once(make_store: StoreFactory) -> None:
    problems = [finding(rule="KV004", subject=f"198.51.100.{i}/32") for i in range(40)]
    barrier = threading.Barrier(2)
    stores = [ReadBothThenWrite(make_store(), barrier) for _ in range(2)]  # two processes, one store
    results: list[list] = [[], []]

    def run(index: int) -> None:
        results[index] = scan(stores[index], problems, T0 + index * dt.timedelta(seconds=1))

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    stored = stores[0].load_findings()
    assert set(stored) == {p.id for p in problems}
    assert all(r.occurrences == 1 and r.status == FindingStatus.OPEN for r in stored.values())
    # Both planned to open all 40; exactly one scan won and announces them, the other none.
    assert sorted(len(result) for result in results) == [0, 40]
    winner = next(result for result in results if result)
    assert {c.kind for c in winner} == {ChangeKind.OPENED}
    assert sorted(c.finding.id for c in winner) == sorted(p.id for p in problems)


def test_a_scan_that_loses_the_race_reconciles_against_the_winner(make_store: StoreFactory) -> None:
    winner, loser = make_store(), make_store()
    problem = finding(rule="KV004", subject="0.0.0.0/0")
    loser_view = loser.load_findings(vault_keys=[APP])  # read before the winner writes
    scan(winner, [problem], T0)

    # The loser's plan (made from its stale read) conflicts; apply re-reads and finds nothing new.
    from monitor.judge.lifecycle import reconcile

    stale_plan = reconcile(
        previous=loser_view, current=[problem], assessed_vaults={APP}, complete_vaults={APP}, now=T0
    )
    assert [c.kind for c in stale_plan.changes] == [ChangeKind.OPENED]
    assert scan(loser, [problem], T0 + dt.timedelta(seconds=1)) == []
    assert len(loser.load_findings()) == 1
