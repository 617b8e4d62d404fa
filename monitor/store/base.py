"""The one ``Store`` interface: what kvmon remembers between scans.

Two backends implement it and pass the same contract suite (tests/store/): Azure Table storage
(``monitor.store.tables``) and SQLite (``monitor.store.sqlite``, the embedded default).

Writes are proportional to change. A vault's latest posture and its findings are written only
when they change; what advances on every scan is one last-seen marker per subscription
(``save_postures`` for postures, ``mark_findings_seen`` for findings), from which the store
derives ``PostureSnapshot.seen_at`` and ``FindingRecord.last_seen``. Posture history is a
temporal table: the current version of a vault's posture is stored once, and a change moves the
version it supersedes into history. For an estate of V vaults in S subscriptions with F findings,
a first scan writes V + F + S + 1 entities (one posture per vault, the findings, a findings marker
per subscription, the scan run); a rescan of an unchanged estate writes 2S + 1 (two markers per
subscription and the scan run); a changed posture writes 2 (the superseded version to history,
the new one). tests/store/test_write_counts.py checks these numbers on both backends.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from monitor.azure_errors import first_line, redact, storage_error_code
from monitor.errors import SourceError, StoreError
from monitor.model import FindingRecord, FindingStatus, ScanError, ScanTrigger, Service, VaultPosture
from monitor.model_storage import StorageAccountPosture

DEFAULT_REPORT_CONTAINER = "kvmon-reports"  # KVMON_REPORT_CONTAINER
# Blob storage's rule: 3-63 lower-case letters, digits and single hyphens, starting and ending
# with a letter or a digit.
_CONTAINER_NAME = re.compile(r"^(?=.{3,63}$)[a-z0-9]+(-[a-z0-9]+)*$")


def check_container_name(name: str) -> str:
    """``name`` when Blob storage accepts it as a container name; ValueError saying why not."""
    if not _CONTAINER_NAME.match(name):
        raise ValueError(
            f"{name!r} is not a blob container name: 3-63 lower-case letters, digits and single "
            "hyphens, starting and ending with a letter or a digit"
        )
    return name


class StoreUnavailable(StoreError):
    """The store cannot be reached or refused the write: the scan must fail loudly."""

    @classmethod
    def from_storage_error(cls, what: str, where: str, exc: BaseException) -> StoreUnavailable:
        """A Storage SDK's error as what failed, where (described without a secret), and the
        service's first line and error code, redacted."""
        line = first_line(str(exc)) or type(exc).__name__
        code = storage_error_code(exc)
        detail = f"{line} [{code}]" if code else line
        return cls(redact(f"{what} ({where}): {detail}"))


class ReportNotStored(StoreUnavailable):
    """A scan's report document could not be written whole. The reports stored before it are
    untouched: each scan's document has a name of its own, and the store points to it only once
    it is written."""


class ReportUnreadable(SourceError):
    """The store points to a report document that cannot be read back whole (gone, cut off, not
    what was written): the message names the scan and where the document was."""


P = TypeVar("P", VaultPosture, StorageAccountPosture)


@dataclass(frozen=True)
class PostureSnapshot(Generic[P]):
    """A resource's stored posture: a vault's or a storage account's, side by side in the store
    (both keyed by their lower-cased resource id, partitioned by subscription)."""

    posture: P
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
    trigger: ScanTrigger = ScanTrigger.CLI
    vault: str | None = None  # the one vault a check looked at; None: whole subscriptions
    # Where this scan's logs window ended (None: it read no logs): the next scan of these
    # subscriptions reads from there, so a check or a failed job never shortens its window.
    logs_until: dt.datetime | None = None


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


@dataclass(frozen=True)
class ProcessedEvent:
    """An Event Grid event the event path handled, kept until ``expires_at`` so a redelivery of
    the same id is folded (Event Grid delivers at least once and retries for up to 24 hours)."""

    event_id: str
    vault_key: str
    outcome: str  # what handling it came to (``monitor.app.events.EventStatus``)
    processed_at: dt.datetime
    expires_at: dt.datetime
    scan_id: str | None = None


class Store(Protocol):
    # postures ---------------------------------------------------------------------------------
    def load_postures(
        self,
        *,
        vault_keys: Iterable[str] | None = None,
        subscriptions: Iterable[str] | None = None,
        service: Service = Service.KEYVAULT,
    ) -> dict[str, PostureSnapshot[Any]]:
        """Latest snapshot per resource key (lower-cased id) of ``service``'s resources (vaults, or
        storage accounts): of ``vault_keys``, or of every resource of ``subscriptions`` (one
        partition read each), or all when neither is given."""
        ...

    def save_postures(self, snapshots: Iterable[PostureSnapshot[Any]]) -> int:
        """Write the snapshots (vaults' and accounts') that changed (and last-seen markers);
        returns entities written."""
        ...

    def posture_history(self, vault_key: str) -> list[PostureSnapshot]:
        """Every distinct configuration the vault had, oldest first, each with when it was first
        seen: the superseded versions and the current one."""
        ...

    # findings ---------------------------------------------------------------------------------
    def load_findings(
        self, *, vault_keys: Iterable[str] | None = None, status: FindingStatus | None = None
    ) -> dict[str, FindingRecord]: ...

    def save_findings(self, records: Iterable[FindingRecord]) -> int:
        """Optimistic concurrency: a record without an etag is created only if absent, one with an
        etag replaces only that version. Every other record is still written; then
        ``ConcurrentUpdate`` names the ones that were not. Returns entities written."""
        ...

    def mark_findings_seen(self, vault_keys: Iterable[str], *, seen_at: dt.datetime, scan_id: str) -> int:
        """Every open or suppressed finding of these vaults was seen at ``seen_at``: their
        ``last_seen`` advances without rewriting them. Returns entities written."""
        ...

    # scan runs --------------------------------------------------------------------------------
    def record_scan(self, run: ScanRun) -> None: ...

    def scan_runs(self, *, limit: int = 20) -> list[ScanRun]: ...

    # report documents (monitor.outputs.report) ----------------------------------------------------------
    def save_report(self, scan_id: str, document: Mapping[str, Any], *, started_at: dt.datetime) -> None: ...

    def load_report(self, scan_id: str | None = None) -> Mapping[str, Any] | None:
        """The report of ``scan_id``, or of the latest scan when None."""
        ...

    # notification outbox ----------------------------------------------------------------------
    def enqueue_messages(self, messages: Iterable[OutboxMessage]) -> list[OutboxMessage]:
        """Idempotent by message id: enqueuing a known id changes nothing. Returns the messages
        this call stored, each with its etag (a known id is left out)."""
        ...

    def pending_messages(self) -> list[OutboxMessage]: ...

    def claim_message(
        self, message: OutboxMessage, *, lease_until: dt.datetime, now: dt.datetime | None = None
    ) -> OutboxMessage | None:
        """Take a lease on a pending message; None when another sender holds it or it was delivered.

        It fails when the message changed since it was read (another sender claimed or finished
        it); with ``now``, also while an earlier lease has not run out."""
        ...

    def finish_message(
        self, message: OutboxMessage, *, delivered: bool, error: str | None, now: dt.datetime
    ) -> None:
        """Delivered: never sent again. Not delivered: stays pending for the next run."""
        ...

    # processed events (the event path's idempotence) -------------------------------------------
    def processed_events(self, event_ids: Iterable[str], *, now: dt.datetime) -> dict[str, ProcessedEvent]:
        """Of ``event_ids``, those recorded as processed that have not expired by ``now``, by id."""
        ...

    def record_processed_events(self, events: Iterable[ProcessedEvent]) -> int:
        """Remember these events as handled (a known id is overwritten); returns entities written."""
        ...

    def claim_processed_event(self, claim: ProcessedEvent, *, now: dt.datetime) -> ProcessedEvent | None:
        """Write ``claim`` (an event being handled, until its ``expires_at``) unless a record of the
        event is live at ``now``: None when the claim is this caller's, else the live record (another
        delivery handling it, or handled it). An expired record is taken over."""
        ...

    def release_processed_event(self, event_id: str) -> None:
        """Forget an event's claim: its handling failed, and a redelivery must handle it."""
        ...

    def purge_processed_events(self, *, now: dt.datetime) -> int:
        """Forget the processed events that expired by ``now``; returns how many."""
        ...

    # housekeeping -----------------------------------------------------------------------------
    def describe(self) -> str:
        """Where the store is, for logs: never a key, token or connection string."""
        ...

    def close(self) -> None: ...


class ConcurrentUpdate(StoreError):
    """Another scan changed the record since it was read; re-read and reconcile again.

    Control flow between the store and ``monitor.store.reconcile.apply_reconciliation``, which
    retries; it is a ``StoreError`` because one that escapes means the write was refused: the scan
    is not recorded."""

    def __init__(self, message: str = "", *, conflicting_ids: Iterable[str] = ()) -> None:
        self.conflicting_ids = frozenset(conflicting_ids)
        super().__init__(message or f"{len(self.conflicting_ids)} record(s) changed since they were read")
