"""Azure Table storage (azure-data-tables): the store the Functions app uses, with the documents too
big for an entity (whole reports) in Blob storage of the same account (``monitor.store.blobs``).

Built from a connection string (``KVMON_STORAGE`` / ``AzureWebJobsStorage``) or from a table
endpoint and a blob endpoint plus a credential (the managed identity). Batches are ``submit_transaction`` calls of at
most 100 operations in one partition; conditional writes use the entity's ETag with
``MatchConditions.IfNotModified``. Faults of the service become ``StoreUnavailable`` with a
message that never carries the account key or a SAS token.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from azure.core import MatchConditions
from azure.core.credentials import TokenCredential
from azure.core.exceptions import (
    AzureError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.data.tables import TableClient, TableServiceClient, TableTransactionError, UpdateMode

from monitor.azure_errors import first_line, storage_error_code
from monitor.config.budget import RequestBudget
from monitor.httpsession import settled_transport
from monitor.store.base import DEFAULT_REPORT_CONTAINER, StoreUnavailable
from monitor.store.blobs import BlobDocuments
from monitor.store.entities import MAX_BATCH, Entity, EntityConflict, EntityStore, Operation

_CONFLICT_CODES = {"EntityAlreadyExists", "UpdateConditionNotSatisfied", "ResourceNotFound", "EntityNotFound"}
_TABLE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9]{2,62}$")
# Each request to Table storage: StoreUnavailable in about a minute when the service is gone or
# silent, not the SDK's default of minutes per request (300 s reads, 10 retries backing off up to
# 120 s). A batch of 100 entities or a page of 1,000 answers within a second or two; 20 s of silence
# is an outage, and the third try that meets one fails the scan (it must not go on unrecorded).
STORE_BUDGET = RequestBudget(timeout_s=5, read_timeout_s=20, retries=2)


def _store_client_options() -> dict[str, Any]:
    """STORE_BUDGET's keywords, and a transport that takes its timeouts (a given transport ignores
    the client's) over a session that reads the environment's proxy and CA settings once."""
    return {
        **STORE_BUDGET.azure_core_options(),
        "transport": settled_transport(
            connection_timeout=STORE_BUDGET.timeout_s, read_timeout=STORE_BUDGET.read_s
        ),
    }


# Tables this process made sure exist, by account endpoint: a Functions instance builds a store
# per invocation, and a create call per table and invocation was a round trip on every event.
_TABLES_PRESENT: set[tuple[str, str]] = set()
_TABLES_PRESENT_LOCK = threading.Lock()


class TableBackend:
    # Partitions written or read at once: the SDK builds one $batch while another is on the wire
    # (its connection pool keeps ten connections per host).
    concurrent_requests = 4

    def __init__(self, service: TableServiceClient, *, table_prefix: str = "kvmon", auth: str) -> None:
        if not _TABLE_NAME.match(f"{table_prefix}PostureHistory"):
            raise ValueError(f"table prefix {table_prefix!r}: use letters and digits, starting with a letter")
        self._service = service
        self._prefix = table_prefix
        self._auth = auth
        self._clients: dict[str, TableClient] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_connection_string(cls, connection_string: str, *, table_prefix: str = "kvmon") -> TableBackend:
        try:
            service = TableServiceClient.from_connection_string(connection_string, **_store_client_options())
        except (ValueError, AzureError) as exc:
            # The SDK's message may quote the string itself: say what is wrong, not what it was.
            raise ValueError(
                "the storage connection string is not valid (it needs TableEndpoint or "
                "AccountName/AccountKey, or UseDevelopmentStorage=true)"
            ) from exc
        auth = "SAS token" if "sharedaccesssignature=" in connection_string.lower() else "account key"
        return cls(service, table_prefix=table_prefix, auth=auth)

    @classmethod
    def from_account_url(
        cls, account_url: str, *, credential: TokenCredential, table_prefix: str = "kvmon"
    ) -> TableBackend:
        service = TableServiceClient(
            endpoint=account_url,
            credential=credential,
            **_store_client_options(),
        )
        return cls(service, table_prefix=table_prefix, auth="Microsoft Entra ID")

    def describe(self) -> str:
        parts = urlsplit(self._service.url)
        endpoint = urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))
        return f"Azure Table storage at {endpoint} (tables {self._prefix}*, {self._auth})"

    def close(self) -> None:
        with self._lock:
            for client in self._clients.values():
                client.close()
            self._clients.clear()
        self._service.close()

    def _table(self, table: str) -> TableClient:
        name = f"{self._prefix}{table}"
        with self._lock:
            client = self._clients.get(table)
            if client is None:
                with _TABLES_PRESENT_LOCK:
                    present = (self._service.url, name) in _TABLES_PRESENT
                try:
                    if present:
                        client = self._service.get_table_client(name)
                    else:
                        client = self._service.create_table_if_not_exists(name)
                except AzureError as exc:
                    raise self._unavailable(f"cannot open table {name}", exc) from exc
                with _TABLES_PRESENT_LOCK:
                    _TABLES_PRESENT.add((self._service.url, name))
                self._clients[table] = client
            return client

    def _unavailable(self, what: str, exc: Exception) -> StoreUnavailable:
        return StoreUnavailable.from_storage_error(what, self.describe(), exc)

    def _forget(self, table: str) -> None:
        """The table vanished (deleted, or an emulator restarted): open it again on next use."""
        with self._lock:
            self._clients.pop(table, None)
        with _TABLES_PRESENT_LOCK:
            _TABLES_PRESENT.discard((self._service.url, f"{self._prefix}{table}"))

    def get(self, table: str, partition: str, row: str) -> Entity | None:
        client = self._table(table)
        try:
            found = client.get_entity(partition, row)
        except ResourceNotFoundError as exc:
            if _table_missing(exc):
                self._forget(table)
            return None
        except AzureError as exc:
            raise self._unavailable(f"cannot read {table}", exc) from exc
        return _entity(found)

    def query(
        self, table: str, *, partition: str | None = None, equals: Mapping[str, str] | None = None
    ) -> Iterator[Entity]:
        client = self._table(table)
        conditions: list[str] = []
        parameters: dict[str, Any] = {}
        if partition is not None:
            conditions.append("PartitionKey eq @pk")
            parameters["pk"] = partition
        for index, (name, value) in enumerate((equals or {}).items()):
            conditions.append(f"{name} eq @v{index}")
            parameters[f"v{index}"] = value
        try:
            if conditions:
                pages = client.query_entities(" and ".join(conditions), parameters=parameters)
            else:
                pages = client.list_entities()
            for found in pages:
                yield _entity(found)
        except ResourceNotFoundError as exc:
            if not _table_missing(exc):
                raise self._unavailable(f"cannot query {table}", exc) from exc
            self._forget(table)  # no table: no entities
        except AzureError as exc:
            raise self._unavailable(f"cannot query {table}", exc) from exc

    def submit(self, table: str, operations: Sequence[Operation]) -> list[str | None]:
        if len(operations) > MAX_BATCH or len({op.entity.partition for op in operations}) > 1:
            raise ValueError("a batch is one partition and at most 100 operations")
        try:
            return self._submit_once(table, operations)
        except _TableMissing:
            self._forget(table)
        try:
            return self._submit_once(table, operations)
        except _TableMissing as exc:
            raise self._unavailable(f"table {self._prefix}{table} disappeared", exc) from exc

    def _submit_once(self, table: str, operations: Sequence[Operation]) -> list[str | None]:
        client = self._table(table)
        try:
            if len(operations) == 1:
                return [self._single(client, operations[0])]
            results = client.submit_transaction([_transaction_operation(op) for op in operations])
        except (ResourceExistsError, ResourceModifiedError) as exc:
            raise EntityConflict(first_line(str(exc))) from exc
        except ResourceNotFoundError as exc:
            # A create cannot miss an entity: a 404 there means the table is gone (Azurite omits the code).
            if _table_missing(exc) or operations[0].kind == "create":
                raise _TableMissing(str(exc)) from exc
            if operations[0].kind == "delete" and operations[0].entity.etag is None:
                return [None]
            raise EntityConflict("the entity is gone") from exc
        except TableTransactionError as exc:
            if _table_missing(exc):
                raise _TableMissing(str(exc)) from exc
            if storage_error_code(exc) in _CONFLICT_CODES:
                raise EntityConflict(first_line(str(exc)), index=exc.index) from exc
            raise self._unavailable(f"a transaction on {table} failed", exc) from exc
        except AzureError as exc:
            raise self._unavailable(f"cannot write {table}", exc) from exc
        return [
            result.get("etag") if op.kind != "delete" else None
            for op, result in zip(operations, results, strict=True)
        ]

    @staticmethod
    def _single(client: TableClient, operation: Operation) -> str | None:
        entity = _table_entity(operation.entity)
        if operation.kind == "create":
            return client.create_entity(entity).get("etag")
        if operation.kind == "upsert":
            return client.upsert_entity(entity, mode=UpdateMode.REPLACE).get("etag")
        if operation.kind == "replace":
            condition = _condition(operation.entity)
            return client.update_entity(entity, mode=UpdateMode.REPLACE, **condition).get("etag")
        client.delete_entity(operation.entity.partition, operation.entity.row, **_condition(operation.entity))
        return None


class _TableMissing(Exception):
    pass


def _table_missing(exc: Exception) -> bool:
    return storage_error_code(exc) == "TableNotFound"


def _condition(entity: Entity) -> dict[str, Any]:
    if entity.etag is None:
        return {}
    return {"etag": entity.etag, "match_condition": MatchConditions.IfNotModified}


def _transaction_operation(operation: Operation) -> tuple[Any, ...]:
    entity = _table_entity(operation.entity)
    if operation.kind == "create":
        return ("create", entity)
    if operation.kind == "upsert":
        return ("upsert", entity, {"mode": UpdateMode.REPLACE})
    if operation.kind == "replace":
        return ("update", entity, {"mode": UpdateMode.REPLACE, **_condition(operation.entity)})
    return ("delete", entity, _condition(operation.entity))


def _table_entity(entity: Entity) -> dict[str, Any]:
    return {"PartitionKey": entity.partition, "RowKey": entity.row, **entity.properties}


def _entity(found: Mapping[str, Any]) -> Entity:
    properties = {key: value for key, value in found.items() if key not in ("PartitionKey", "RowKey")}
    metadata = getattr(found, "metadata", {}) or {}
    return Entity(found["PartitionKey"], found["RowKey"], properties, metadata.get("etag"))


class TableStore(EntityStore):
    def __init__(self, backend: TableBackend, documents: BlobDocuments) -> None:
        super().__init__(backend, documents)

    @classmethod
    def from_connection_string(
        cls,
        connection_string: str,
        *,
        table_prefix: str = "kvmon",
        report_container: str = DEFAULT_REPORT_CONTAINER,
    ) -> TableStore:
        return cls(
            TableBackend.from_connection_string(connection_string, table_prefix=table_prefix),
            BlobDocuments.from_connection_string(connection_string, container=report_container),
        )

    @classmethod
    def from_account_url(
        cls,
        account_url: str,
        *,
        blob_account_url: str,
        credential: TokenCredential,
        table_prefix: str = "kvmon",
        report_container: str = DEFAULT_REPORT_CONTAINER,
    ) -> TableStore:
        return cls(
            TableBackend.from_account_url(account_url, credential=credential, table_prefix=table_prefix),
            BlobDocuments.from_account_url(
                blob_account_url, credential=credential, container=report_container
            ),
        )
