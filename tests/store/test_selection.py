"""Which store the settings name: the same rules for the Functions app and the CLI."""

from __future__ import annotations

from pathlib import Path

import pytest

from lab.credential import LabCredential
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
        assert (
            store.describe()
            == f"Azure Table storage at {azurite.table_endpoint} (tables kvmon*, account key)"
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
    ("environ", "endpoint"),
    [
        (
            {"KVMON_STORAGE_ACCOUNT_URL": "https://kvmonstore.table.core.windows.net"},
            "https://kvmonstore.table.core.windows.net",
        ),
        ({"AzureWebJobsStorage__accountName": "funcstore"}, "https://funcstore.table.core.windows.net"),
        (
            {"AzureWebJobsStorage__tableServiceUri": "https://funcstore.table.core.windows.net/"},
            "https://funcstore.table.core.windows.net",
        ),
    ],
)
def test_identity_settings_choose_table_storage_with_the_credential(environ, endpoint) -> None:
    # Built, not contacted: no request leaves the machine here.
    store = store_from_environment(environ, credential=LabCredential())
    try:
        assert store.describe().startswith(f"Azure Table storage at {endpoint}")
        assert store.describe().endswith("(tables kvmon*, Microsoft Entra ID)")
    finally:
        store.close()


def test_a_sas_connection_string_is_described_without_the_token() -> None:
    sas = (
        "TableEndpoint=https://acct.table.core.windows.net/;SharedAccessSignature=sv=2022-11-02&sig=abcdef%3D"
    )
    store = open_store(connection_string=sas)
    try:
        assert (
            store.describe()
            == "Azure Table storage at https://acct.table.core.windows.net (tables kvmon*, SAS token)"
        )
    finally:
        store.close()
