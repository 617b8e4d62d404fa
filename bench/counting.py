"""Counting what a store does: requests and entities, as the benchmark reports them.

``CountingBackend`` wraps an ``EntityBackend`` (``monitor.store.entities``): every ``submit`` is
one write request to Table storage (a single-entity call, or one ``$batch`` transaction of up to
100 entities), every ``get`` one read, every ``query`` at least one read. Entities written are
the operations submitted.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass
class StoreCounts:
    write_requests: int = 0
    entities_written: int = 0
    point_reads: int = 0
    queries: int = 0
    entities_read: int = 0
    by_table: dict[str, int] = field(default_factory=dict)  # entities written per table

    def as_dict(self) -> dict[str, Any]:
        return {
            "write_requests": self.write_requests,
            "entities_written": self.entities_written,
            "point_reads": self.point_reads,
            "queries": self.queries,
            "entities_read": self.entities_read,
            "entities_written_by_table": dict(sorted(self.by_table.items())),
        }


class CountingBackend:
    """Delegates to ``inner`` and counts; install with ``store.backend = CountingBackend(store.backend)``."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.counts = StoreCounts()
        self._lock = threading.Lock()  # the store reads and writes partitions from several threads

    @property
    def concurrent_requests(self) -> int:
        return int(self.inner.concurrent_requests)

    def get(self, table: str, partition: str, row: str) -> Any:
        found = self.inner.get(table, partition, row)
        with self._lock:
            self.counts.point_reads += 1
            self.counts.entities_read += found is not None
        return found

    def query(
        self, table: str, *, partition: str | None = None, equals: Mapping[str, str] | None = None
    ) -> Iterator[Any]:
        with self._lock:
            self.counts.queries += 1
        for entity in self.inner.query(table, partition=partition, equals=equals):
            with self._lock:
                self.counts.entities_read += 1
            yield entity

    def submit(self, table: str, operations: Sequence[Any]) -> list[str | None]:
        with self._lock:
            self.counts.write_requests += 1
            self.counts.entities_written += len(operations)
            self.counts.by_table[table] = self.counts.by_table.get(table, 0) + len(operations)
        result: list[str | None] = self.inner.submit(table, operations)
        return result

    def describe(self) -> str:
        return str(self.inner.describe())

    def close(self) -> None:
        self.inner.close()
