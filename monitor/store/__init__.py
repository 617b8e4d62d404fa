"""Choosing the store: Azure Table storage when one is configured, else the embedded SQLite file.

``open_store`` takes explicit arguments; ``store_from_environment`` reads the app settings the
Functions app and the CLI share:

1. ``KVMON_STORAGE``: a storage connection string (Table storage);
2. ``KVMON_STORAGE_ACCOUNT_URL``: a table endpoint, used with the managed identity (the
   credential given, else kvmon's ``DefaultAzureCredential`` with its token budget);
3. ``AzureWebJobsStorage``: the Functions host's storage, as a connection string or, for an
   identity-based connection, ``AzureWebJobsStorage__tableServiceUri`` /
   ``AzureWebJobsStorage__accountName``;
4. otherwise SQLite at ``KVMON_SQLITE_PATH``, default ``~/.kvmon/kvmon.db``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from monitor.config.identity import default_credential
from monitor.config.settings import Settings
from monitor.store.base import (
    ConcurrentUpdate,
    OutboxMessage,
    PostureSnapshot,
    ScanRun,
    Store,
    StoreUnavailable,
)
from monitor.store.sqlite import DEFAULT_SQLITE_PATH, SqliteStore


def open_store(
    *,
    connection_string: str | None = None,
    account_url: str | None = None,
    credential: Any = None,
    sqlite_path: str | Path | None = None,
    table_prefix: str = "kvmon",
) -> Store:
    """Table storage when a connection string or an account URL is given, else SQLite.

    ``credential`` goes with ``account_url`` (a ``TokenCredential``). A malformed connection
    string raises ValueError without quoting it.
    """
    if connection_string:
        from monitor.store.tables import TableStore

        return TableStore.from_connection_string(connection_string, table_prefix=table_prefix)
    if account_url:
        from monitor.store.tables import TableStore

        if credential is None:
            raise ValueError("a table endpoint (account_url) needs a credential")
        return TableStore.from_account_url(account_url, credential=credential, table_prefix=table_prefix)
    return SqliteStore(sqlite_path if sqlite_path is not None else DEFAULT_SQLITE_PATH)


def store_from_environment(environ: Mapping[str, str], *, credential: Any = None) -> Store:
    """The store the settings in ``environ`` name (see the module's docstring for the order)."""

    def identity() -> Any:
        return credential if credential is not None else default_credential(Settings.from_environ(environ))

    connection_string = environ.get("KVMON_STORAGE", "").strip()
    if connection_string:
        return open_store(connection_string=connection_string)
    account_url = environ.get("KVMON_STORAGE_ACCOUNT_URL", "").strip()
    if account_url:
        return open_store(account_url=account_url, credential=identity())
    host_storage = environ.get("AzureWebJobsStorage", "").strip()
    if host_storage:
        return open_store(connection_string=host_storage)
    table_uri = environ.get("AzureWebJobsStorage__tableServiceUri", "").strip()
    account_name = environ.get("AzureWebJobsStorage__accountName", "").strip()
    if not table_uri and account_name:
        table_uri = f"https://{account_name}.table.core.windows.net"
    if table_uri:
        return open_store(account_url=table_uri, credential=identity())
    sqlite_path = environ.get("KVMON_SQLITE_PATH", "").strip()
    return open_store(sqlite_path=sqlite_path or DEFAULT_SQLITE_PATH)


__all__ = [
    "DEFAULT_SQLITE_PATH",
    "ConcurrentUpdate",
    "OutboxMessage",
    "PostureSnapshot",
    "ScanRun",
    "Store",
    "StoreUnavailable",
    "open_store",
    "store_from_environment",
]
