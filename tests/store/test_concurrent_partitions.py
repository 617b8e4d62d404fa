"""Partitions are written at once where the backend serves requests concurrently (Table storage
says 4, SQLite 1), while each partition's own requests keep their order."""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

from monitor.store.entities import FINDINGS, Operation
from monitor.store.reconcile import apply_reconciliation
from tests.store.conftest import StoreFactory
from tests.store.helpers import SUB_A, SUB_B, T0, PassThroughBackend, finding, posture

THIRD = "11111111-2222-4333-8444-555555555555"


@dataclass
class MeetingBackend(PassThroughBackend):
    """Says it serves four requests at once, and holds the first two finding batches until both
    have arrived: written one after the other, the first would wait in vain (the barrier breaks
    after 10 s and the write fails). Records each partition's batch sizes."""

    serves: int = 4
    sizes: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))  # batch sizes, in order
    _meeting: threading.Barrier = field(default_factory=lambda: threading.Barrier(2, timeout=10))
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _met: int = 0

    @property
    def concurrent_requests(self) -> int:
        return self.serves

    def submit(self, table: str, operations: Sequence[Operation]) -> list[str | None]:
        if table == FINDINGS:
            with self._lock:
                self._met += 1
                meets = self._met <= 2
                self.sizes[operations[0].entity.partition].append(len(operations))
            if meets:
                self._meeting.wait()
        return self.inner.submit(table, operations)


def test_partitions_are_written_at_once_and_each_in_order(make_store: StoreFactory) -> None:
    store = make_store()
    meeting = MeetingBackend(store.backend)
    store.backend = meeting
    # 3 subscriptions, 150 findings each: two batches per partition, which must stay in order.
    postures = [
        posture(f"kv-{s}-{i:03d}", subscription=sub)
        for s, sub in enumerate((SUB_A, SUB_B, THIRD))
        for i in range(75)
    ]
    findings = [
        finding(p.name, rule, subscription=p.subscription_id) for p in postures for rule in ("KV001", "KV007")
    ]
    keys = {p.key for p in postures}

    changes = apply_reconciliation(
        store, current=findings, assessed_vaults=keys, complete_vaults=keys, now=T0, scan_id="scan-1"
    )

    assert len(changes) == 450
    assert len(store.load_findings()) == 450
    # Each partition: its full batch, then the rest; never the other way round.
    assert list(meeting.sizes.values()) == [[100, 50]] * 3
