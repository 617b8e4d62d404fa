"""Which store the settings name: the same rules for the Functions app and the CLI."""

from __future__ import annotations

from pathlib import Path

import pytest

from lab.credential import LabCredential
from monitor.config.settings import SettingsError
from monitor.store import DEFAULT_SQLITE_PATH, open_store, store_from_environment
from monitor.store.sqlite import SqliteStore
from monitor.store.tables import TableStore


def test_nothing_configured_is_sqlite_at_the_documented_default(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    store = store_from_environment({})
    try:
        assert isinstance(store, SqliteStore)
        assert store.describe() == f"SQLite at {tmp_path / '.kvmon' / 'kvmon.db'}"
        assert Path("~/.kvmon/kvmon.db") == DEFAULT_SQLITE_PATH
    finally:
        store.close()


def test_sqlite_path_setting(tmp_path) -> None:
    store = store_from_environment({"KVMON_SQLITE_PATH": str(tmp_path / "x" / "k.db")})
    assert store.describe() == f"SQLite at {tmp_path / 'x' / 'k.db'}"
    store.close()


@pytest.mark.parametrize("name", ["KVMON_STORAGE", "AzureWebJobsStorage"])
def test_connection_string_settings_choose_table_storage(azurite, tmp_path, name) -> None:
    environ = {name: azurite.connection_string, "KVMON_SQLITE_PATH": str(tmp_path / "unused.db")}
    store = store_from_environment(environ)
    try:
        assert isinstance(store, TableStore)
        assert store.describe() == (
            f"Azure Table storage at {azurite.table_endpoint} (tables kvmon*, account key); "
            f"reports in Blob storage at {azurite.blob_endpoint}/kvmon-reports (account key)"
        )
    finally:
        store.close()


def test_kvmon_storage_wins_over_the_host_storage(azurite) -> None:
    store = store_from_environment(
        {"KVMON_STORAGE": azurite.connection_string, "AzureWebJobsStorage": "UseDevelopmentStorage=true"}
    )
    assert azurite.table_endpoint in store.describe()
    store.close()


@pytest.mark.parametrize(
    ("environ", "endpoint", "blobs"),
    [
        (
            {"KVMON_STORAGE_ACCOUNT_URL": "https://kvmonstore.table.core.windows.net"},
            "https://kvmonstore.table.core.windows.net",
            "https://kvmonstore.blob.core.windows.net/kvmon-reports",
        ),
        (
            {
                "KVMON_STORAGE_ACCOUNT_URL": "https://kvmonstore.table.core.chinacloudapi.cn/",
                "KVMON_REPORT_CONTAINER": "scan-reports",
            },
            "https://kvmonstore.table.core.chinacloudapi.cn",
            "https://kvmonstore.blob.core.chinacloudapi.cn/scan-reports",
        ),
        (
            {
                "KVMON_STORAGE_ACCOUNT_URL": "https://127.0.0.1:10002/devstoreaccount1",
                "KVMON_BLOB_ACCOUNT_URL": "https://127.0.0.1:10000/devstoreaccount1",
            },
            "https://127.0.0.1:10002/devstoreaccount1",
            "https://127.0.0.1:10000/devstoreaccount1/kvmon-reports",
        ),
        (
            {"AzureWebJobsStorage__accountName": "funcstore"},
            "https://funcstore.table.core.windows.net",
            "https://funcstore.blob.core.windows.net/kvmon-reports",
        ),
        (
            {"AzureWebJobsStorage__tableServiceUri": "https://funcstore.table.core.windows.net/"},
            "https://funcstore.table.core.windows.net",
            "https://funcstore.blob.core.windows.net/kvmon-reports",
        ),
        (
            {
                "AzureWebJobsStorage__tableServiceUri": "https://funcstore.table.core.windows.net/",
                "AzureWebJobsStorage__blobServiceUri": "https://funcblobs.blob.core.windows.net/",
            },
            "https://funcstore.table.core.windows.net",
            "https://funcblobs.blob.core.windows.net/kvmon-reports",
        ),
    ],
)
def test_identity_settings_choose_table_and_blob_storage_with_the_credential(
    environ, endpoint, blobs
) -> None:
    # Built, not contacted: no request leaves the machine here.
    store = store_from_environment(environ, credential=LabCredential())
    try:
        assert store.describe() == (
            f"Azure Table storage at {endpoint} (tables kvmon*, Microsoft Entra ID); "
            f"reports in Blob storage at {blobs} (Microsoft Entra ID)"
        )
    finally:
        store.close()


def test_a_table_endpoint_of_no_known_shape_needs_the_blob_endpoint_stated() -> None:
    with pytest.raises(SettingsError) as caught:
        store_from_environment(
            {"KVMON_STORAGE_ACCOUNT_URL": "https://127.0.0.1:10002/devstoreaccount1"},
            credential=LabCredential(),
        )
    assert str(caught.value).startswith(
        "KVMON_BLOB_ACCOUNT_URL: the blob endpoint for report documents cannot be inferred from the "
        "table endpoint https://127.0.0.1:10002"
    )


@pytest.mark.parametrize("name", ["Reports", "ab", "kvmon--reports", "-kvmon", "x" * 64, "kvmon_reports"])
def test_a_report_container_blob_storage_would_refuse_is_a_settings_error(name: str) -> None:
    with pytest.raises(SettingsError) as caught:
        store_from_environment(
            {"KVMON_REPORT_CONTAINER": name, "KVMON_STORAGE": "UseDevelopmentStorage=true"}
        )
    assert str(caught.value).startswith(f"KVMON_REPORT_CONTAINER: {name!r} is not a blob container name")


def test_a_sas_connection_string_is_described_without_the_token() -> None:
    sas = (
        "TableEndpoint=https://acct.table.core.windows.net/;BlobEndpoint=https://acct.blob.core.windows.net/;"
        "SharedAccessSignature=sv=2022-11-02&sig=abcdef%3D"
    )
    store = open_store(connection_string=sas)
    try:
        assert store.describe() == (
            "Azure Table storage at https://acct.table.core.windows.net (tables kvmon*, SAS token); "
            "reports in Blob storage at https://acct.blob.core.windows.net/kvmon-reports (SAS token)"
        )
    finally:
        store.close()


def test_a_connection_string_without_a_blob_endpoint_is_refused_without_quoting_it() -> None:
    table_only = "TableEndpoint=https://acct.table.core.windows.net/;SharedAccessSignature=sv=2022&sig=abc%3D"
    with pytest.raises(ValueError) as caught:
        open_store(connection_string=table_only)
    assert "sig=" not in str(caught.value)
    assert str(caught.value).startswith("the storage connection string gives no blob endpoint")
