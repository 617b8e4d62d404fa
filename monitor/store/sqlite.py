"""The embedded store: SQLite (standard library), so a laptop remembers between scans with no service.

The default file is ``~/.kvmon/kvmon.db`` (``KVMON_SQLITE_PATH`` overrides it, see
``monitor.store.store_from_environment``). The database runs in WAL mode with a busy timeout, and
every write is one ``BEGIN IMMEDIATE`` transaction whose etag checks happen inside it, so two
processes (a scheduled scan and a manual one) can share the file safely.

It stores the same entities as Table storage (``monitor.store.entities``) in one table, so the
two backends behave alike and pass the same contract suite; documents too big for an entity (a
scan's whole report) go in a second table of the same file, where Table storage puts them in Blob
storage.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from monitor.store.base import StoreUnavailable
from monitor.store.entities import MAX_BATCH, Entity, EntityConflict, EntityStore, Operation

DEFAULT_SQLITE_PATH = Path("~/.kvmon/kvmon.db")
_BUSY_TIMEOUT_S = 30.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS entities (
    tbl TEXT NOT NULL,
    pk TEXT NOT NULL,
    rk TEXT NOT NULL,
    etag TEXT NOT NULL,
    props TEXT NOT NULL,
    PRIMARY KEY (tbl, pk, rk)
) WITHOUT ROWID
"""
# A rowid table: SQLite advises against WITHOUT ROWID for rows of megabytes.
_DOCUMENTS_SCHEMA = """
CREATE TABLE IF NOT EXISTS documents (
    name TEXT PRIMARY KEY,
    content_type TEXT NOT NULL,
    data BLOB NOT NULL
)
"""


class SqliteBackend:
    concurrent_requests = 1  # one connection, one writer: more threads would only queue

    def __init__(self, path: str | Path = DEFAULT_SQLITE_PATH) -> None:
        self.path = Path(path).expanduser()
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # isolation_level=None: transactions are explicit (BEGIN IMMEDIATE below).
            self._connection = sqlite3.connect(
                self.path, timeout=_BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
            )
            self._prepare()
        except (OSError, sqlite3.Error) as exc:
            raise StoreUnavailable(f"cannot open the SQLite store at {self.path}: {exc}") from exc

    def _prepare(self) -> None:
        """WAL mode and the schema. Switching to WAL needs a moment alone with the file, and SQLite
        answers "database is locked" at once, without waiting out the busy timeout, when another
        process opens the same new file in the same instant: so try again for a while."""
        deadline = time.monotonic() + _BUSY_TIMEOUT_S
        while True:
            try:
                self._connection.execute("PRAGMA journal_mode=WAL")
                self._connection.execute("PRAGMA synchronous=NORMAL")
                self._connection.execute(_SCHEMA)
                self._connection.execute(_DOCUMENTS_SCHEMA)
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def describe(self) -> str:
        return f"SQLite at {self.path}"

    def close(self) -> None:
        with self._lock:
            self._connection.close()

    def get(self, table: str, partition: str, row: str) -> Entity | None:
        rows = self._read(
            "SELECT pk, rk, etag, props FROM entities WHERE tbl = ? AND pk = ? AND rk = ?",
            (table, partition, row),
        )
        return rows[0] if rows else None

    def query(
        self, table: str, *, partition: str | None = None, equals: Mapping[str, str] | None = None
    ) -> Iterator[Entity]:
        sql = "SELECT pk, rk, etag, props FROM entities WHERE tbl = ?"
        parameters: list[Any] = [table]
        if partition is not None:
            sql += " AND pk = ?"
            parameters.append(partition)
        for name, value in (equals or {}).items():
            sql += " AND json_extract(props, ?) = ?"
            parameters.extend((f"$.{name}", value))
        sql += " ORDER BY pk, rk"
        return iter(self._read(sql, tuple(parameters)))

    def submit(self, table: str, operations: Sequence[Operation]) -> list[str | None]:
        if len(operations) > MAX_BATCH or len({op.entity.partition for op in operations}) > 1:
            raise ValueError("a batch is one partition and at most 100 operations")
        etags: list[str | None] = []
        with self._lock:
            try:
                self._connection.execute("BEGIN IMMEDIATE")
                try:
                    for index, operation in enumerate(operations):
                        etags.append(self._apply(table, operation, index))
                except BaseException:
                    self._connection.execute("ROLLBACK")
                    raise
                self._connection.execute("COMMIT")
            except sqlite3.Error as exc:
                raise StoreUnavailable(f"the SQLite store at {self.path} refused a write: {exc}") from exc
        return etags

    def _apply(self, table: str, operation: Operation, index: int) -> str | None:
        entity = operation.entity
        key = (table, entity.partition, entity.row)
        etag = uuid.uuid4().hex
        props = json.dumps(dict(entity.properties), ensure_ascii=False)
        execute = self._connection.execute
        if operation.kind == "create":
            try:
                execute(
                    "INSERT INTO entities (tbl, pk, rk, etag, props) VALUES (?, ?, ?, ?, ?)",
                    (*key, etag, props),
                )
            except sqlite3.IntegrityError:
                raise EntityConflict("the entity already exists", index=index) from None
            return etag
        if operation.kind == "upsert":
            execute(
                "INSERT INTO entities (tbl, pk, rk, etag, props) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (tbl, pk, rk) DO UPDATE SET etag = excluded.etag, props = excluded.props",
                (*key, etag, props),
            )
            return etag
        match = " AND etag = ?" if entity.etag is not None else ""
        condition = (*key, entity.etag) if entity.etag is not None else key
        if operation.kind == "replace":
            cursor = execute(
                f"UPDATE entities SET etag = ?, props = ? WHERE tbl = ? AND pk = ? AND rk = ?{match}",
                (etag, props, *condition),
            )
            if cursor.rowcount == 0:
                raise EntityConflict("the entity changed or is gone", index=index)
            return etag
        cursor = execute(f"DELETE FROM entities WHERE tbl = ? AND pk = ? AND rk = ?{match}", condition)
        if cursor.rowcount == 0 and entity.etag is not None:
            raise EntityConflict("the entity changed or is gone", index=index)
        return None

    def _read(self, sql: str, parameters: tuple[Any, ...]) -> list[Entity]:
        with self._lock:
            try:
                rows = self._connection.execute(sql, parameters).fetchall()
            except sqlite3.Error as exc:
                raise StoreUnavailable(f"cannot read the SQLite store at {self.path}: {exc}") from exc
        return [Entity(pk, rk, json.loads(props), etag) for pk, rk, etag, props in rows]


class SqliteDocuments:
    """Whole documents in the ``documents`` table of the backend's file, on its connection."""

    def __init__(self, backend: SqliteBackend) -> None:
        self._backend = backend

    def put(self, name: str, data: bytes, *, content_type: str) -> None:
        backend = self._backend
        with backend._lock:
            try:
                backend._connection.execute(
                    "INSERT INTO documents (name, content_type, data) VALUES (?, ?, ?) "
                    "ON CONFLICT (name) DO UPDATE SET content_type = excluded.content_type, data = excluded.data",
                    (name, content_type, data),
                )
            except sqlite3.Error as exc:
                raise StoreUnavailable(f"the SQLite store at {backend.path} refused a write: {exc}") from exc

    def get(self, name: str) -> bytes | None:
        backend = self._backend
        with backend._lock:
            try:
                row = backend._connection.execute(
                    "SELECT data FROM documents WHERE name = ?", (name,)
                ).fetchone()
            except sqlite3.Error as exc:
                raise StoreUnavailable(f"cannot read the SQLite store at {backend.path}: {exc}") from exc
        return None if row is None else bytes(row[0])

    def describe(self) -> str:
        return self._backend.describe()

    def close(self) -> None:
        """The backend's connection: closed with the backend."""


class SqliteStore(EntityStore):
    def __init__(self, path: str | Path = DEFAULT_SQLITE_PATH) -> None:
        backend = SqliteBackend(path)
        super().__init__(backend, SqliteDocuments(backend))
