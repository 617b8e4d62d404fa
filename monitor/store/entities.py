"""The ``Store`` written once, over a small entity backend that both Table storage and SQLite provide.

A backend stores entities (partition key, row key, flat properties, an etag) in named tables
and offers five things: get, query in key order, and atomic batches of create / upsert /
replace-if-etag / delete within one partition. Everything kvmon means by a record (keys,
last-seen markers, concurrency, the outbox's leases) lives here, so the two backends cannot
drift apart: the contract suite runs this class over each.

Layout (table: PartitionKey / RowKey):

- ``Postures``: subscription / vault key, the current version of each vault's posture.
- ``PostureHistory``: subscription / vault key ``~`` newest-first time + scan id, the versions a
  change superseded (a temporal table: the current version is only in ``Postures``, so a first
  scan writes each posture once): a vault's history is one contiguous, newest-first run of its
  subscription's partition, written in batches like the postures.
- ``Findings``: subscription / finding id.
- ``Seen``: ``postures`` or ``findings`` / subscription, the last-seen marker of a subscription's
  vaults (vault key -> time and scan), rewritten once per scan instead of every record.
- ``Scans``: ``scans`` / newest-first start time + scan id.
- ``Reports``: ``reports`` / newest-first start time + scan id, a pointer to the scan's report
  document, which is kept whole in the store's documents (``DocumentBackend``: a blob container
  beside Table storage, a table of its own in SQLite), gzip-compressed JSON named after the scan.
- ``Outbox``: ``outbox`` / message id.
- ``Events``: ``events`` / event id, the Event Grid events handled, until they expire.
"""

from __future__ import annotations

import datetime as dt
import gzip
import hashlib
import json
import threading
import typing
from collections import OrderedDict, defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any, Literal, Protocol, TypeVar

from monitor.errors import StoreError
from monitor.model import FindingRecord, FindingStatus, Service
from monitor.store import codec
from monitor.store.base import (
    ConcurrentUpdate,
    MessageState,
    OutboxMessage,
    PostureSnapshot,
    ProcessedEvent,
    ReportNotStored,
    ReportUnreadable,
    ScanRun,
    StoreUnavailable,
)
from monitor.store.keys import MAX_KEY_CHARS, encode_key, newest_first, partition_for_vault

POSTURES = "Postures"
HISTORY = "PostureHistory"
FINDINGS = "Findings"
SEEN = "Seen"
SCANS = "Scans"
OUTBOX = "Outbox"
REPORTS = "Reports"
EVENTS = "Events"
TABLES = (POSTURES, HISTORY, FINDINGS, SEEN, SCANS, OUTBOX, REPORTS, EVENTS)

MAX_BATCH = 100  # Table storage: at most 100 operations per transaction
_HISTORY_VAULT_CHARS = MAX_KEY_CHARS // 2  # of a history row key; a typical vault key needs 150-250
_POINT_READS_UP_TO = 4  # fewer wanted vaults in a partition than this: read them one by one
_ALONE_UP_TO = 2  # operations written one by one rather than as a transaction (see _submit_each_on_conflict)
_MARKER_ATTEMPTS = 10
_SCANS_PARTITION = "scans"
_OUTBOX_PARTITION = "outbox"
_Share = TypeVar("_Share")
_Result = TypeVar("_Result")
_REPORTS_PARTITION = "reports"
_EVENTS_PARTITION = "events"
REPORT_CONTENT_TYPE = "application/gzip"  # gzip-compressed JSON: `gunzip` reads a downloaded blob
# Level 6 against gzip's default 9 on the 10,000-vault report of tests/report/estate_report.py
# (35 MB of JSON): 1.77 MB in 0.30 s against 1.65 MB in 0.52 s.
_REPORT_COMPRESSION = 6


@dataclass(frozen=True)
class Entity:
    partition: str
    row: str
    properties: Mapping[str, Any] = field(default_factory=dict)
    etag: str | None = None


OperationKind = Literal["create", "upsert", "replace", "delete"]


@dataclass(frozen=True)
class Operation:
    """``create`` fails if present; ``replace`` and ``delete`` with an etag only match that version."""

    kind: OperationKind
    entity: Entity


class EntityConflict(StoreError):
    """A create found the entity present, or an etag no longer matched; ``index`` is the operation.

    Control flow inside the store (the entity store re-reads and retries); a ``StoreError``
    because one that escapes is a refused write."""

    def __init__(self, message: str, *, index: int = 0) -> None:
        super().__init__(message)
        self.index = index


class EntityBackend(Protocol):
    # Requests the backend serves at once to good effect: Table storage answers over the network,
    # so one $batch is built while another is on the wire; SQLite writes one at a time anyway.
    concurrent_requests: int

    def get(self, table: str, partition: str, row: str) -> Entity | None: ...

    def query(
        self, table: str, *, partition: str | None = None, equals: Mapping[str, str] | None = None
    ) -> Iterator[Entity]:
        """Entities in (partition, row) order, optionally one partition and equal string properties."""
        ...

    def submit(self, table: str, operations: Sequence[Operation]) -> list[str | None]:
        """All or nothing, one partition, at most ``MAX_BATCH``; the new etags (None for deletes)."""
        ...

    def describe(self) -> str: ...

    def close(self) -> None: ...


class _LastReads:
    """Entities a one-vault scan read a moment ago (its vault's posture, its subscription's
    last-seen markers), kept so that the same scan writes them back without reading them again.
    A copy is taken once. Writes made from it are conditional (replace on its etag, or create where
    nothing was found), so a copy another writer made stale fails its write, and the entity is
    read afresh and decided again: it never overwrites what another scan wrote. Small reads only
    (point reads), a bounded number: a full scan's partitions are read and written as before."""

    _LIMIT = 1024
    _MISSING = object()

    def __init__(self) -> None:
        self._entities: OrderedDict[tuple[str, str, str], Entity | None] = OrderedDict()
        self._lock = threading.Lock()

    def remember(self, table: str, partition: str, row: str, entity: Entity | None) -> None:
        with self._lock:
            self._entities[(table, partition, row)] = entity
            self._entities.move_to_end((table, partition, row))
            while len(self._entities) > self._LIMIT:
                self._entities.popitem(last=False)

    def take(self, table: str, partition: str, row: str) -> tuple[bool, Entity | None]:
        """(True, the copy) once after ``remember``, else (False, None)."""
        with self._lock:
            found = self._entities.pop((table, partition, row), self._MISSING)
        if found is self._MISSING:
            return False, None
        return True, found  # type: ignore[return-value]


class DocumentBackend(Protocol):
    """Whole documents by name, of any size (a report is tens of megabytes at 10,000 vaults)."""

    def put(self, name: str, data: bytes, *, content_type: str) -> None:
        """Write ``name`` whole, replacing a document of that name; ``StoreUnavailable`` when it
        was not written."""
        ...

    def get(self, name: str) -> bytes | None:
        """The document's bytes; None when there is none of that name."""
        ...

    def describe(self) -> str: ...

    def close(self) -> None: ...


class EntityStore:
    """kvmon's ``Store`` over any ``EntityBackend``, with a ``DocumentBackend`` for the documents
    too big for an entity."""

    def __init__(self, backend: EntityBackend, documents: DocumentBackend) -> None:
        self.backend = backend
        self.documents = documents
        self._last_reads = _LastReads()

    def describe(self) -> str:
        entities, documents = self.backend.describe(), self.documents.describe()
        return entities if documents == entities else f"{entities}; reports in {documents}"

    def close(self) -> None:
        self.backend.close()
        self.documents.close()

    # -- postures ---------------------------------------------------------------------------------

    def load_postures(
        self,
        *,
        vault_keys: Iterable[str] | None = None,
        subscriptions: Iterable[str] | None = None,
        service: Service = Service.KEYVAULT,
    ) -> dict[str, PostureSnapshot[Any]]:
        # Vaults and storage accounts share the subscription's partition (one read gives both); the
        # entity says whose it is, so the other service's rows are left undecoded.
        if subscriptions is not None:
            latest = [
                entity
                for share in self._each_partition(
                    lambda subscription: self._query(POSTURES, partition=encode_key(subscription)),
                    dict.fromkeys(s.lower() for s in subscriptions),
                )
                for entity in share
            ]
        else:
            # A few vaults' postures (a one-vault scan's) are kept for its save_postures.
            latest = self._read_vault_records(POSTURES, vault_keys, remember=True)
        latest = [entity for entity in latest if codec.snapshot_service(entity.properties) is service]
        markers = self._markers("postures", {entity.partition for entity in latest})
        snapshots: dict[str, PostureSnapshot[Any]] = {}
        for entity in latest:
            snapshot = codec.snapshot_from_properties(entity.properties, entity.etag)
            seen = markers.get(entity.partition, {}).get(snapshot.posture.key)
            if seen is not None and codec.required_time(seen[0]) > snapshot.seen_at:
                snapshot = replace(snapshot, seen_at=codec.required_time(seen[0]), scan_id=seen[1])
            snapshots[snapshot.posture.key] = snapshot
        return snapshots

    def save_postures(self, snapshots: Iterable[PostureSnapshot[Any]]) -> int:
        """A temporal table, like SQL Server's system-versioned tables: ``Postures`` holds each
        vault's current version, ``PostureHistory`` the versions it superseded, each written when
        it is replaced. A new vault or an unchanged one writes no history (a first scan writes each
        posture once); a change writes the superseded version, then the new one.

        The new version replaces exactly the stored one it superseded (its etag): when another
        scan changed the vault in between, the vault is read and decided again, so that scan's
        version is kept in history too."""
        pending = {snapshot.posture.key: snapshot for snapshot in snapshots}
        fingerprints = {key: codec.posture_fingerprint(snapshot.posture) for key, snapshot in pending.items()}
        unchanged: dict[str, dict[str, tuple[str, str]]] = defaultdict(dict)
        written = 0
        first = True
        for _ in range(_MARKER_ATTEMPTS):
            stored = self._current_postures(pending, fingerprints, use_copies=first)
            first = False
            superseded: dict[str, list[Operation]] = defaultdict(list)
            latest: dict[str, list[tuple[str, Operation]]] = defaultdict(list)
            for key, snapshot in pending.items():
                partition = partition_for_vault(key)
                current = stored.get(key)
                if current is not None:
                    if codec.required_time(current.properties["seen_at"]) > snapshot.seen_at:
                        continue  # a later scan already wrote this vault: never go back in time
                    if codec.stored_posture_matches(current.properties, fingerprints[key]):
                        unchanged[partition][key] = (_iso(snapshot.seen_at), snapshot.scan_id)
                        continue
                    row = _history_row(key, current.properties)
                    superseded[partition].append(
                        Operation("upsert", Entity(partition, row, current.properties))
                    )
                properties = codec.snapshot_to_properties(snapshot, fingerprint=fingerprints[key])
                entity = Entity(partition, encode_key(key), properties, current.etag if current else None)
                latest[partition].append((key, Operation("create" if current is None else "replace", entity)))
            # Superseded versions first: a failure in between leaves a version both in history and
            # still current (posture_history shows it once; the next scan writes it again, the
            # same row), never a replaced version missing from history.
            written += sum(
                self._each_partition(
                    lambda operations: self._submit_all(HISTORY, operations), superseded.values()
                )
            )
            conflicts: set[str] = set()
            for partition_written, partition_conflicts in self._each_partition(
                lambda items: self._submit_all_on_conflict(POSTURES, items), latest.values()
            ):
                written += partition_written
                conflicts |= partition_conflicts
            if not conflicts:
                break
            pending = {key: pending[key] for key in conflicts}
        else:
            raise StoreUnavailable(f"{len(pending)} vault posture(s) kept changing under this scan")
        written += sum(
            self._each_partition(
                lambda item: self._advance_marker("postures", item[0], item[1]), unchanged.items()
            )
        )
        return written

    def _current_postures(
        self, pending: Mapping[str, PostureSnapshot], fingerprints: Mapping[str, str], *, use_copies: bool
    ) -> dict[str, Entity]:
        """The stored current version of each pending vault that has one. Where this store read
        it a moment ago (``_LastReads``) and the copy calls for a write, the copy: that write is
        conditional on it (create, or replace on its etag). A copy that calls for no write
        (unchanged, or a later scan's) is confirmed by a read now, as nothing conditional follows
        that decision."""
        stored: dict[str, Entity] = {}
        unread: list[str] = []
        for key, snapshot in pending.items():
            known, entity = (
                self._last_reads.take(POSTURES, partition_for_vault(key), encode_key(key))
                if use_copies
                else (False, None)
            )
            if not known or (entity is not None and not _posture_moves(entity, snapshot, fingerprints[key])):
                unread.append(key)
            elif entity is not None:
                stored[key] = entity
        if unread:
            stored.update(
                (entity.properties["vault_key"], entity)
                for entity in self._read_vault_records(POSTURES, unread)
            )
        return stored

    def posture_history(self, vault_key: str) -> list[PostureSnapshot]:
        """The superseded versions and the current one. A version can be in both: stores written
        before history held only superseded versions kept the current one there too, and a scan
        can stop between the two writes of a change. It is the same row key: shown once."""
        key = vault_key.lower()
        partition = partition_for_vault(key)
        versions = {
            entity.row: entity
            for entity in self._query(HISTORY, partition=partition, equals={"vault_key": key})
        }
        current = self.backend.get(POSTURES, partition, encode_key(key))
        if current is not None:
            versions.setdefault(_history_row(key, current.properties), current)
        snapshots = [
            codec.snapshot_from_properties(entity.properties, entity.etag) for entity in versions.values()
        ]
        return sorted(snapshots, key=lambda snapshot: snapshot.seen_at)

    # -- findings ---------------------------------------------------------------------------------

    def load_findings(
        self, *, vault_keys: Iterable[str] | None = None, status: FindingStatus | None = None
    ) -> dict[str, FindingRecord]:
        equals = {"status": status.value} if status is not None else None
        entities = self._read_vault_records(FINDINGS, vault_keys, one_row_per_vault=False, equals=equals)
        markers = self._markers("findings", {entity.partition for entity in entities})
        records: dict[str, FindingRecord] = {}
        for entity in entities:
            record = codec.finding_from_properties(entity.properties, entity.etag)
            seen = markers.get(entity.partition, {}).get(record.finding.vault_id.lower())
            if record.status != FindingStatus.RESOLVED and seen is not None:
                marked = codec.required_time(seen[0])
                if marked > record.last_seen:
                    record = replace(record, last_seen=marked)
            records[record.id] = record
        return records

    def save_findings(self, records: Iterable[FindingRecord]) -> int:
        by_partition: dict[str, list[tuple[str, Operation]]] = defaultdict(list)
        for record in records:
            partition = partition_for_vault(record.finding.vault_id.lower())
            entity = Entity(partition, record.id, codec.finding_to_properties(record), record.etag)
            kind: OperationKind = "create" if record.etag is None else "replace"
            by_partition[partition].append((record.id, Operation(kind, entity)))
        written = 0
        conflicts: set[str] = set()
        for partition_written, partition_conflicts in self._each_partition(
            lambda items: self._submit_all_on_conflict(FINDINGS, items), by_partition.values()
        ):
            written += partition_written
            conflicts |= partition_conflicts
        if conflicts:
            raise ConcurrentUpdate(conflicting_ids=conflicts)
        return written

    def mark_findings_seen(self, vault_keys: Iterable[str], *, seen_at: dt.datetime, scan_id: str) -> int:
        by_partition: dict[str, dict[str, tuple[str, str]]] = defaultdict(dict)
        seen = (_iso(seen_at), scan_id)
        for key in vault_keys:
            lowered = key.lower()
            by_partition[partition_for_vault(lowered)][lowered] = seen
        return sum(
            self._each_partition(
                lambda item: self._advance_marker("findings", item[0], item[1]), by_partition.items()
            )
        )

    # -- scan runs --------------------------------------------------------------------------------

    def record_scan(self, run: ScanRun) -> None:
        row = f"{newest_first(run.started_at)}_{encode_key(run.scan_id)}"
        self._submit(
            SCANS, [Operation("upsert", Entity(_SCANS_PARTITION, row, codec.scan_to_properties(run)))]
        )

    def scan_runs(self, *, limit: int = 20) -> list[ScanRun]:
        runs: list[ScanRun] = []
        for entity in self._iterate(SCANS, partition=_SCANS_PARTITION):
            if len(runs) >= limit:
                break
            runs.append(codec.scan_from_properties(entity.properties))
        return runs

    # -- report documents ---------------------------------------------------------------------------

    def save_report(self, scan_id: str, document: Mapping[str, Any], *, started_at: dt.datetime) -> None:
        """Keep a scan's report document (``monitor.outputs.report``) whole: first the document,
        as gzip-compressed JSON under a name of its own, then the entity in ``Reports`` pointing to
        it (with its size and SHA-256). A document that could not be written raises
        ``ReportNotStored`` and nothing points to it: the reports stored before it stay as they
        were, and the latest one is still the latest."""
        data = gzip.compress(
            codec.json_text(document).encode("utf-8"), compresslevel=_REPORT_COMPRESSION, mtime=0
        )
        name = f"{encode_key(scan_id)}.json.gz"
        try:
            self.documents.put(name, data, content_type=REPORT_CONTENT_TYPE)
        except StoreUnavailable as exc:
            raise ReportNotStored(f"the report of scan {scan_id} was not stored: {exc}") from exc
        properties = {
            "scan_id": scan_id,
            "document_name": name,
            "document_bytes": len(data),
            "document_sha256": hashlib.sha256(data).hexdigest(),
        }
        row = f"{newest_first(started_at)}_{encode_key(scan_id)}"
        self._submit(REPORTS, [Operation("upsert", Entity(_REPORTS_PARTITION, row, properties))])

    def load_report(self, scan_id: str | None = None) -> Mapping[str, Any] | None:
        """The report of ``scan_id``, or of the latest scan when None; ``ReportUnreadable`` when
        the store points to a document it cannot read back as it was written."""
        equals = {"scan_id": scan_id} if scan_id is not None else None
        for entity in self._query(REPORTS, partition=_REPORTS_PARTITION, equals=equals):
            if "document_name" not in entity.properties:
                # Written by a kvmon that kept the document in the entity itself: read as it was.
                document = codec.get_json(entity.properties, "document")
                return document if isinstance(document, Mapping) else None
            return self._report_document(entity.properties)
        return None

    def _report_document(self, pointer: Mapping[str, Any]) -> Mapping[str, Any]:
        name, scan_id = pointer["document_name"], pointer["scan_id"]
        where = f"{name} in {self.documents.describe()}"
        data = self.documents.get(name)
        if data is None:
            raise ReportUnreadable(f"the report of scan {scan_id} is gone: no document {where}")
        if (
            len(data) != pointer["document_bytes"]
            or hashlib.sha256(data).hexdigest() != pointer["document_sha256"]
        ):
            raise ReportUnreadable(
                f"the report of scan {scan_id} ({where}) is not the document the scan stored: "
                f"{len(data)} bytes where {pointer['document_bytes']} were written, or other bytes"
            )
        # The bytes save_report wrote (their hash says so): a JSON object.
        return typing.cast(Mapping[str, Any], json.loads(gzip.decompress(data)))

    # -- notification outbox ----------------------------------------------------------------------

    def enqueue_messages(self, messages: Iterable[OutboxMessage]) -> list[OutboxMessage]:
        stored: list[OutboxMessage] = []
        for batch in _batches(list(messages)):
            creates = [
                Operation(
                    "create",
                    Entity(_OUTBOX_PARTITION, encode_key(message.id), codec.message_to_properties(message)),
                )
                for message in batch
            ]
            # One transaction for a scan's messages; one already enqueued (a scan told again) is
            # skipped: idempotent by id.
            if len(creates) > _ALONE_UP_TO:  # a pair goes alone (see _submit_each_on_conflict)
                try:
                    etags = self.backend.submit(OUTBOX, creates)
                    stored.extend(replace(m, etag=etag) for m, etag in zip(batch, etags, strict=True))
                    continue
                except EntityConflict:
                    pass
            for message, create in zip(batch, creates, strict=True):
                try:
                    stored.append(replace(message, etag=self.backend.submit(OUTBOX, [create])[0]))
                except EntityConflict:
                    continue
        return stored

    def pending_messages(self) -> list[OutboxMessage]:
        entities = self._query(OUTBOX, partition=_OUTBOX_PARTITION, equals={"state": MessageState.PENDING})
        messages = [codec.message_from_properties(entity.properties, entity.etag) for entity in entities]
        return sorted(messages, key=lambda message: (message.created_at, message.id))

    def claim_message(
        self, message: OutboxMessage, *, lease_until: dt.datetime, now: dt.datetime | None = None
    ) -> OutboxMessage | None:
        # A message read with its etag (``pending_messages``) is the stored version, unless it
        # changed since: then the conditional write below fails, as a fresh read would have.
        current = message if message.etag is not None else self._get_message(message.id)
        if current is None or current.state != MessageState.PENDING:
            return None
        if now is not None and current.lease_until is not None and current.lease_until > now:
            return None
        claimed = replace(current, lease_until=lease_until)
        try:
            etag = self._write_message(claimed, etag=current.etag)
        except EntityConflict:
            return None
        return replace(claimed, etag=etag)

    def finish_message(
        self, message: OutboxMessage, *, delivered: bool, error: str | None, now: dt.datetime
    ) -> None:
        # The claimed message carries the etag its claim wrote: the stored version, unless another
        # sender took the message over since (then the write fails and the message is read again).
        current = message if message.etag is not None else self._get_message(message.id)
        for _ in range(_MARKER_ATTEMPTS):
            if current is None or current.state == MessageState.DELIVERED:
                return
            finished = replace(
                current,
                state=MessageState.DELIVERED if delivered else MessageState.PENDING,
                attempts=current.attempts + 1,
                last_error=None if delivered else error,
                delivered_at=now if delivered else None,
                lease_until=None,
            )
            try:
                self._write_message(finished, etag=current.etag)
                return
            except EntityConflict:
                current = self._get_message(message.id)
        raise StoreUnavailable(f"outbox message {message.id} kept changing under this sender")

    def _get_message(self, message_id: str) -> OutboxMessage | None:
        entity = self.backend.get(OUTBOX, _OUTBOX_PARTITION, encode_key(message_id))
        return codec.message_from_properties(entity.properties, entity.etag) if entity else None

    def _write_message(self, message: OutboxMessage, *, etag: str | None) -> str | None:
        entity = Entity(_OUTBOX_PARTITION, encode_key(message.id), codec.message_to_properties(message), etag)
        return self.backend.submit(OUTBOX, [Operation("replace", entity)])[0]

    # -- processed events ---------------------------------------------------------------------------

    def processed_events(self, event_ids: Iterable[str], *, now: dt.datetime) -> dict[str, ProcessedEvent]:
        found: dict[str, ProcessedEvent] = {}
        for event_id in dict.fromkeys(event_ids):  # a batch is a few events: point reads
            entity = self.backend.get(EVENTS, _EVENTS_PARTITION, encode_key(event_id))
            if entity is None:
                continue
            event = codec.processed_event_from_properties(entity.properties)
            if event.expires_at > now:
                found[event_id] = event
        return found

    def record_processed_events(self, events: Iterable[ProcessedEvent]) -> int:
        operations = [
            Operation(
                "upsert",
                Entity(
                    _EVENTS_PARTITION, encode_key(event.event_id), codec.processed_event_to_properties(event)
                ),
            )
            for event in {event.event_id: event for event in events}.values()
        ]
        return self._submit_all(EVENTS, operations)

    def claim_processed_event(self, claim: ProcessedEvent, *, now: dt.datetime) -> ProcessedEvent | None:
        entity = Entity(
            _EVENTS_PARTITION, encode_key(claim.event_id), codec.processed_event_to_properties(claim)
        )
        for _ in range(_MARKER_ATTEMPTS):
            try:
                self._submit(EVENTS, [Operation("create", entity)])
                return None
            except EntityConflict:
                pass
            current = self.backend.get(EVENTS, entity.partition, entity.row)
            if current is None:
                continue  # released or purged since: create again
            recorded = codec.processed_event_from_properties(current.properties)
            if recorded.expires_at > now:
                return recorded
            try:  # a claim whose handler died, or a record past its retention: take it over
                self._submit(EVENTS, [Operation("replace", replace(entity, etag=current.etag))])
                return None
            except EntityConflict:
                continue
        raise StoreUnavailable(f"event {claim.event_id}: its record kept changing under this claim")

    def release_processed_event(self, event_id: str) -> None:
        released = Operation("delete", Entity(_EVENTS_PARTITION, encode_key(event_id)))
        self._submit_all_on_conflict(EVENTS, [(event_id, released)])  # gone already: released

    def purge_processed_events(self, *, now: dt.datetime) -> int:
        expired = [
            (entity.row, Operation("delete", Entity(_EVENTS_PARTITION, entity.row)))
            for entity in self._query(EVENTS, partition=_EVENTS_PARTITION)
            if codec.processed_event_from_properties(entity.properties).expires_at <= now
        ]
        # Another purge deleting the same rows at once is no fault: those are gone either way.
        written, _ = self._submit_all_on_conflict(EVENTS, expired)
        return written

    # -- shared -----------------------------------------------------------------------------------

    def _submit(self, table: str, operations: Sequence[Operation]) -> int:
        self.backend.submit(table, operations)
        return len(operations)

    def _each_partition(self, work: Callable[[_Share], _Result], shares: Iterable[_Share]) -> list[_Result]:
        """``work`` on each partition's share, in order; several shares at once where the backend
        serves requests concurrently. A share's own requests stay in order, so what must be
        written before what within a partition still is."""
        pending = list(shares)
        workers = min(self.backend.concurrent_requests, len(pending))
        if workers <= 1:
            return [work(share) for share in pending]
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="kvmon-store") as pool:
            return list(pool.map(work, pending))

    def _submit_all(self, table: str, operations: Sequence[Operation]) -> int:
        """One partition's operations, in batches, in order."""
        return sum(self._submit(table, batch) for batch in _batches(operations))

    def _submit_all_on_conflict(
        self, table: str, items: Sequence[tuple[str, Operation]]
    ) -> tuple[int, set[str]]:
        """One partition's named operations in batches: (entities written, names that conflicted)."""
        conflicts: set[str] = set()
        written = sum(self._submit_each_on_conflict(table, batch, conflicts) for batch in _batches(items))
        return written, conflicts

    def _submit_each_on_conflict(
        self, table: str, batch: Sequence[tuple[str, Operation]], conflicts: set[str]
    ) -> int:
        """One transaction; when it conflicts, each operation alone, to find which ones did (their
        names go to ``conflicts``): the others are still this scan's to write. A pair goes alone
        from the start: nothing here needs it atomic, and a Table storage transaction of two
        costs the SDK about twice two single requests (its multipart body)."""
        if len(batch) > _ALONE_UP_TO:
            try:
                return self._submit(table, [operation for _, operation in batch])
            except EntityConflict:
                pass
        written = 0
        for name, operation in batch:
            try:
                written += self._submit(table, [operation])
            except EntityConflict:
                conflicts.add(name)
        return written

    def _iterate(
        self, table: str, *, partition: str | None = None, equals: Mapping[str, str] | None = None
    ) -> Iterator[Entity]:
        return self.backend.query(table, partition=partition, equals=equals)

    def _query(
        self, table: str, *, partition: str | None = None, equals: Mapping[str, str] | None = None
    ) -> list[Entity]:
        return list(self._iterate(table, partition=partition, equals=equals))

    def _read_vault_records(
        self,
        table: str,
        vault_keys: Iterable[str] | None,
        *,
        one_row_per_vault: bool = True,
        equals: Mapping[str, str] | None = None,
        remember: bool = False,
    ) -> list[Entity]:
        """The entities of ``table`` (partitioned by subscription, each with a ``vault_key``) of
        these vaults, or all. ``one_row_per_vault``: the row key is the vault key (postures), else a
        vault has several rows (findings). ``remember``: point reads are kept (``_LastReads``)."""
        if vault_keys is None:
            return self._query(table, equals=equals)
        by_partition: dict[str, set[str]] = defaultdict(set)
        for key in vault_keys:
            by_partition[partition_for_vault(key.lower())].add(key.lower())

        def read(partition: str, keys: set[str]) -> list[Entity]:
            if len(keys) >= _POINT_READS_UP_TO:
                found = self._iterate(table, partition=partition, equals=equals)
                return [entity for entity in found if entity.properties.get("vault_key") in keys]
            if one_row_per_vault:
                found_rows = []
                for key in sorted(keys):
                    row = encode_key(key)
                    entity = self.backend.get(table, partition, row)
                    if remember:
                        self._last_reads.remember(table, partition, row, entity)
                    if entity is not None:
                        found_rows.append(entity)
                return found_rows
            # A few vaults' rows among a subscription's hundreds (an event's one-vault scan): the
            # service filters them, one query per vault.
            return [
                entity
                for key in sorted(keys)
                for entity in self._iterate(
                    table, partition=partition, equals={**(equals or {}), "vault_key": key}
                )
            ]

        return [
            entity
            for share in self._each_partition(lambda item: read(*item), sorted(by_partition.items()))
            for entity in share
        ]

    def _markers(self, kind: str, partitions: set[str]) -> dict[str, dict[str, tuple[str, str]]]:
        if not partitions:
            return {}
        if len(partitions) < _POINT_READS_UP_TO:
            entities = []
            for partition in sorted(partitions):
                entity = self.backend.get(SEEN, kind, partition)
                self._last_reads.remember(SEEN, kind, partition, entity)
                if entity is not None:
                    entities.append(entity)
        else:
            entities = [e for e in self._iterate(SEEN, partition=kind) if e.row in partitions]
        return {entity.row: codec.marker_from_properties(entity.properties) for entity in entities}

    def _advance_marker(self, kind: str, partition: str, entries: Mapping[str, tuple[str, str]]) -> int:
        """Merge ``entries`` into the partition's marker (later times win); 1 entity written, or 0
        when nothing moved. Two scans merging at once: the write is conditional (replace on the
        etag read, create where there was none), so the loser re-reads and merges again. The first
        try merges into the copy this store read a moment ago, where it has one."""
        known, current = self._last_reads.take(SEEN, kind, partition)
        for _ in range(_MARKER_ATTEMPTS):
            if not known:
                current = self.backend.get(SEEN, kind, partition)
            known = False
            seen = codec.marker_from_properties(current.properties) if current is not None else {}
            merged = dict(seen)
            for key, (seen_at, scan_id) in entries.items():
                if key not in merged or codec.required_time(seen_at) > codec.required_time(merged[key][0]):
                    merged[key] = (seen_at, scan_id)
            if merged == seen:
                return 0
            entity = Entity(
                kind, partition, codec.marker_to_properties(merged), current.etag if current else None
            )
            try:
                self.backend.submit(SEEN, [Operation("replace" if current else "create", entity)])
                return 1
            except EntityConflict:
                continue
        raise StoreUnavailable(f"the last-seen marker of partition {partition} kept changing under this scan")


def _posture_moves(current: Entity, snapshot: PostureSnapshot, fingerprint: str) -> bool:
    """Whether ``snapshot`` replaces the stored ``current``: it is not older, and it differs."""
    if codec.required_time(current.properties["seen_at"]) > snapshot.seen_at:
        return False
    return not codec.stored_posture_matches(current.properties, fingerprint)


def _history_row(vault_key: str, version: Mapping[str, Any]) -> str:
    """The history row of a stored version (snapshot properties): from when it was first seen and
    by which scan, so the same version always has the same row."""
    # "~" never occurs in an encoded key before its time (a hashed key's mark is followed by
    # hex, not the time's digits), so one vault's rows cannot interleave with another's. Each
    # part has a fixed share of the 1 KiB, so a vault's prefix is the same in every row.
    vault = encode_key(vault_key, max_chars=_HISTORY_VAULT_CHARS)
    moment = newest_first(codec.required_time(version["seen_at"]))
    scan = encode_key(version["scan_id"], max_chars=MAX_KEY_CHARS - _HISTORY_VAULT_CHARS - len(moment) - 2)
    return f"{vault}~{moment}_{scan}"


def _iso(moment: dt.datetime) -> str:
    return codec.iso(moment) or ""


def _batches(items: Sequence[Any]) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), MAX_BATCH):
        yield items[start : start + MAX_BATCH]
