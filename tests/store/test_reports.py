"""A scan's report document kept whole: gzip-compressed JSON in Blob storage (Azurite, through
azure-storage-blob) beside Table storage, or in the SQLite file; the Reports entity points to it.
A document that cannot be written is a named error and leaves the reports before it as they were."""

from __future__ import annotations

import datetime as dt
import gzip
import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from azure.storage.blob import BlobServiceClient

from lab.azurite import DEV_ACCOUNT, DEV_ACCOUNT_KEY, Azurite
from monitor.store import ReportNotStored, ReportUnreadable, codec
from monitor.store.blobs import BlobDocuments
from monitor.store.entities import REPORTS, Entity, EntityStore, Operation
from monitor.store.tables import TableStore
from tests.faults.conftest import free_loopback_port
from tests.report.estate_report import estate_document
from tests.store.conftest import StoreFactory

T0 = dt.datetime(2026, 3, 2, 8, 0, tzinfo=dt.UTC)


def small_document(name: str) -> dict[str, Any]:
    return {"schema": "kvmon.report/v1", "counts": {"vaults": 1}, "errors": [], "vaults": [{"name": name}]}


def as_json(document: Any) -> Any:
    """What a reader gets back: the document as JSON (dates as text, tuples as lists)."""
    return json.loads(codec.json_text(document))


@pytest.fixture
def container() -> str:
    return f"r{uuid.uuid4().hex[:12]}"  # fresh per test on the shared Azurite


@pytest.fixture
def table_store(azurite: Azurite, container: str) -> Iterator[TableStore]:
    store = TableStore.from_connection_string(
        azurite.connection_string, table_prefix=f"t{uuid.uuid4().hex[:12]}", report_container=container
    )
    yield store
    store.close()


def _blobs(azurite: Azurite, container: str) -> dict[str, bytes]:
    with BlobServiceClient.from_connection_string(azurite.connection_string) as service:
        client = service.get_container_client(container)
        return {blob.name: client.download_blob(blob.name).readall() for blob in client.list_blobs()}


def test_a_10000_vault_report_is_stored_and_read_back_whole(make_store: StoreFactory) -> None:
    document = estate_document()
    assert len(document["vaults"]) == 10_000
    writer, reader = make_store(), make_store()  # another process's view of the same store

    writer.save_report("scan-big", document, started_at=T0)

    loaded = reader.load_report("scan-big")
    assert loaded is not None and loaded == reader.load_report()
    assert len(loaded["vaults"]) == 10_000
    assert loaded == as_json(document)  # every vault, every field, nothing trimmed or added


def test_in_blob_storage_the_document_is_a_blob_and_the_entity_a_pointer(
    azurite: Azurite, container: str, table_store: TableStore
) -> None:
    document = estate_document()

    table_store.save_report("scan-big", document, started_at=T0)

    blobs = _blobs(azurite, container)
    assert list(blobs) == ["scan-big.json.gz"]
    assert json.loads(gzip.decompress(blobs["scan-big.json.gz"])) == as_json(document)
    [pointer] = table_store.backend.query(REPORTS)
    assert set(pointer.properties) == {"scan_id", "document_name", "document_bytes", "document_sha256"}
    assert pointer.properties["document_bytes"] == len(blobs["scan-big.json.gz"])
    with BlobServiceClient.from_connection_string(azurite.connection_string) as service:
        properties = service.get_blob_client(container, "scan-big.json.gz").get_blob_properties()
    assert properties.content_settings.content_type == "application/gzip"


def test_each_scan_has_its_report_and_the_latest_is_the_newest(make_store: StoreFactory) -> None:
    store = make_store()
    store.save_report("scan-1", small_document("kv-first"), started_at=T0)
    store.save_report("scan-2", small_document("kv-second"), started_at=T0 + dt.timedelta(minutes=15))

    assert store.load_report() == small_document("kv-second")
    assert store.load_report("scan-1") == small_document("kv-first")
    assert store.load_report("scan-3") is None


def test_a_report_that_cannot_be_written_is_a_named_error_and_the_last_one_stays(
    azurite: Azurite, container: str, table_store: TableStore
) -> None:
    table_store.save_report("scan-1", small_document("kv-first"), started_at=T0)
    dead_blobs = azurite.connection_string.replace(
        azurite.blob_endpoint, f"http://127.0.0.1:{free_loopback_port()}/{DEV_ACCOUNT}"
    )
    cut_off = TableStore(
        table_store.backend, BlobDocuments.from_connection_string(dead_blobs, container=container)
    )

    with pytest.raises(ReportNotStored) as caught:
        cut_off.save_report("scan-2", small_document("kv-second"), started_at=T0 + dt.timedelta(minutes=15))

    message = str(caught.value)
    assert message.startswith("the report of scan scan-2 was not stored: cannot ")
    assert "Blob storage at http://127.0.0.1:" in message and DEV_ACCOUNT_KEY not in message
    assert table_store.load_report() == small_document("kv-first")  # no pointer to what was not written
    assert list(_blobs(azurite, container)) == ["scan-1.json.gz"]


def test_a_blob_service_that_refuses_the_key_is_a_named_error_without_the_key(
    azurite: Azurite, container: str, table_store: TableStore
) -> None:
    table_store.save_report("scan-1", small_document("kv-first"), started_at=T0)
    wrong_key = "d3Jvbmcta2V5LW5vdC1henVyaXRlcy0wMTIzNDU2Nzg5YWJjZGVmMDEyMzQ1Njc4OWFiY2RlZg=="
    refused = TableStore(
        table_store.backend,
        BlobDocuments.from_connection_string(
            azurite.connection_string.replace(DEV_ACCOUNT_KEY, wrong_key), container=container
        ),
    )

    with pytest.raises(ReportNotStored) as caught:
        refused.save_report("scan-2", small_document("kv-second"), started_at=T0 + dt.timedelta(minutes=15))

    message = str(caught.value)
    assert "[AuthorizationFailure]" in message or "[AuthenticationFailed]" in message
    assert wrong_key not in message and DEV_ACCOUNT_KEY not in message
    assert table_store.load_report() == small_document("kv-first")


def test_a_report_whose_blob_is_gone_or_changed_is_unreadable_naming_it(
    azurite: Azurite, container: str, table_store: TableStore
) -> None:
    table_store.save_report("scan-1", small_document("kv-first"), started_at=T0)
    table_store.save_report("scan-2", small_document("kv-second"), started_at=T0 + dt.timedelta(minutes=1))
    with BlobServiceClient.from_connection_string(azurite.connection_string) as service:
        service.get_blob_client(container, "scan-1.json.gz").delete_blob()
        service.get_blob_client(container, "scan-2.json.gz").upload_blob(
            gzip.compress(b'{"schema": "kvmon.report/v1", "vaults": []}'), overwrite=True
        )

    with pytest.raises(ReportUnreadable) as gone:
        table_store.load_report("scan-1")
    with pytest.raises(ReportUnreadable) as changed:
        table_store.load_report()

    assert str(gone.value) == (
        f"the report of scan scan-1 is gone: no document scan-1.json.gz in Blob storage at "
        f"{azurite.blob_endpoint}/{container} (account key)"
    )
    assert str(changed.value).startswith("the report of scan scan-2 (scan-2.json.gz in Blob storage at ")
    assert "is not the document the scan stored" in str(changed.value)


def test_a_report_kept_in_its_entity_by_an_earlier_kvmon_is_still_read(make_store: StoreFactory) -> None:
    store: EntityStore = make_store()
    properties: codec.Properties = {"scan_id": "scan-old"}
    codec.put_json(properties, "document", small_document("kv-old"))
    store.backend.submit(REPORTS, [Operation("upsert", Entity("reports", "0001_scan-old", properties))])

    assert store.load_report() == small_document("kv-old")


def test_a_container_removed_behind_the_store_is_made_again(
    azurite: Azurite, container: str, table_store: TableStore
) -> None:
    table_store.save_report("scan-1", small_document("kv-first"), started_at=T0)
    with BlobServiceClient.from_connection_string(azurite.connection_string) as service:
        service.delete_container(container)

    table_store.save_report("scan-2", small_document("kv-second"), started_at=T0 + dt.timedelta(minutes=15))

    assert table_store.load_report() == small_document("kv-second")
    assert list(_blobs(azurite, container)) == ["scan-2.json.gz"]
