"""The one ``Store`` interface: what kvmon remembers between scans.

Two backends implement it and pass the same contract suite (tests/store/): Azure Table storage
(``monitor.store.tables``) and SQLite (``monitor.store.sqlite``, the embedded default).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from monitor.model import Finding, FindingStatus, ScanError, VaultPosture


class StoreUnavailable(Exception):
    """The store cannot be reached or refused the write: the scan must fail loudly."""


@dataclass(frozen=True)
class FindingRecord:
    """A finding as remembered: what it is plus its lifecycle."""

    finding: Finding
    status: FindingStatus
    first_seen: dt.datetime
    last_seen: dt.datetime
    last_changed: dt.datetime
    occurrences: int = 1
    resolved_at: dt.datetime | None = None
    etag: str | None = None  # the backend's concurrency token, opaque

    @property
    def id(self) -> str:
        return self.finding.id


@dataclass(frozen=True)
class PostureSnapshot:
    posture: VaultPosture
    scan_id: str
    seen_at: dt.datetime
    etag: str | None = None


@dataclass(frozen=True)
class ScanRun:
    scan_id: str
    scope: tuple[str, ...]
    started_at: dt.datetime
    finished_at: dt.datetime | None
    counts: Mapping[str, int] = field(default_factory=dict)  # opened, resolved, open, vaults...
    errors: tuple[ScanError, ...] = ()
    trigger: str = "cli"  # cli | timer | queue | http


class MessageState:
    PENDING = "pending"
    DELIVERED = "delivered"


@dataclass(frozen=True)
class OutboxMessage:
    """One message for one channel. ``id`` is deterministic (scan + channel) so a message
    enqueued twice is stored once."""

    id: str
    channel: str
    payload: Mapping[str, Any]  # the exact JSON body to POST
    created_at: dt.datetime
    state: str = MessageState.PENDING
    attempts: int = 0
    last_error: str | None = None  # redacted
    delivered_at: dt.datetime | None = None
    lease_until: dt.datetime | None = None  # a sender holds it until then
    etag: str | None = None


class Store(Protocol):
    # postures ---------------------------------------------------------------------------------
    def load_postures(self, *, vault_keys: Iterable[str] | None = None) -> dict[str, PostureSnapshot]:
        """Latest snapshot per vault key (lower-cased id); all when ``vault_keys`` is None."""
        ...

    def save_postures(self, snapshots: Iterable[PostureSnapshot]) -> int:
        """Write the snapshots that changed (and last-seen markers); returns entities written."""
        ...

    def posture_history(self, vault_key: str) -> list[PostureSnapshot]: ...

    # findings ---------------------------------------------------------------------------------
    def load_findings(
        self, *, vault_keys: Iterable[str] | None = None, status: FindingStatus | None = None
    ) -> dict[str, FindingRecord]: ...

    def save_findings(self, records: Iterable[FindingRecord]) -> int:
        """Optimistic concurrency: a record whose etag no longer matches raises ``ConcurrentUpdate``."""
        ...

    # scan runs --------------------------------------------------------------------------------
    def record_scan(self, run: ScanRun) -> None: ...

    def scan_runs(self, *, limit: int = 20) -> list[ScanRun]: ...

    # notification outbox ----------------------------------------------------------------------
    def enqueue_messages(self, messages: Iterable[OutboxMessage]) -> None:
        """Idempotent by message id: enqueuing a known id changes nothing."""
        ...

    def pending_messages(self) -> list[OutboxMessage]: ...

    def claim_message(self, message: OutboxMessage, *, lease_until: dt.datetime) -> OutboxMessage | None:
        """Take a lease on a pending message; None when another sender holds it or it was delivered."""
        ...

    def finish_message(
        self, message: OutboxMessage, *, delivered: bool, error: str | None, now: dt.datetime
    ) -> None:
        """Delivered: never sent again. Not delivered: stays pending for the next run."""
        ...


class ConcurrentUpdate(Exception):
    """Another scan changed the record since it was read; re-read and reconcile again."""
