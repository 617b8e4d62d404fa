"""Choosing the store: Azure Table storage when one is configured, else the embedded SQLite file.

``open_store`` takes explicit arguments; ``store_from_environment`` reads the app settings the
Functions app and the CLI share:

1. ``KVMON_STORAGE``: a storage connection string (Table storage, and Blob storage for reports);
2. ``KVMON_STORAGE_ACCOUNT_URL``: a table endpoint, used with the managed identity (the
   credential given, else kvmon's ``DefaultAzureCredential`` with its token budget), with
   ``KVMON_BLOB_ACCOUNT_URL`` (by default the blob endpoint of the same account);
3. ``AzureWebJobsStorage``: the Functions host's storage, as a connection string or, for an
   identity-based connection, ``AzureWebJobsStorage__tableServiceUri`` (and ``__blobServiceUri``)
   / ``AzureWebJobsStorage__accountName``;
4. otherwise SQLite at ``KVMON_SQLITE_PATH``, default ``~/.kvmon/kvmon.db``.

With Table storage, whole report documents go to the blob container ``KVMON_REPORT_CONTAINER``
(default ``kvmon-reports``) of the same account; SQLite keeps them in its own file.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from monitor.config.identity import default_credential
from monitor.config.settings import Settings, SettingsError
from monitor.store.base import (
    DEFAULT_REPORT_CONTAINER,
    ConcurrentUpdate,
    OutboxMessage,
    PostureSnapshot,
    ReportNotStored,
    ReportUnreadable,
    ScanRun,
    Store,
    StoreUnavailable,
    check_container_name,
)
from monitor.store.sqlite import DEFAULT_SQLITE_PATH, SqliteStore

# An Azure Storage account's service endpoints: https://<account>.<service>.<cloud's suffix>.
_SERVICE_HOST = re.compile(r"^(?P<account>[a-z0-9]{3,24})\.table\.(?P<suffix>.+)$")


def open_store(
    *,
    connection_string: str | None = None,
    account_url: str | None = None,
    blob_account_url: str | None = None,
    credential: Any = None,
    sqlite_path: str | Path | None = None,
    table_prefix: str = "kvmon",
    report_container: str = DEFAULT_REPORT_CONTAINER,
) -> Store:
    """Table storage when a connection string or an account URL is given, else SQLite.

    ``credential`` goes with ``account_url`` and ``blob_account_url`` (a ``TokenCredential``);
    ``blob_account_url`` defaults to the blob endpoint of ``account_url``'s account. A malformed
    connection string raises ValueError without quoting it.
    """
    if connection_string:
        from monitor.store.tables import TableStore

        return TableStore.from_connection_string(
            connection_string, table_prefix=table_prefix, report_container=report_container
        )
    if account_url:
        from monitor.store.tables import TableStore

        if credential is None:
            raise ValueError("a table endpoint (account_url) needs a credential")
        return TableStore.from_account_url(
            account_url,
            blob_account_url=blob_account_url or _blob_endpoint_of(account_url),
            credential=credential,
            table_prefix=table_prefix,
            report_container=report_container,
        )
    return SqliteStore(sqlite_path if sqlite_path is not None else DEFAULT_SQLITE_PATH)


def store_from_environment(environ: Mapping[str, str], *, credential: Any = None) -> Store:
    """The store the settings in ``environ`` name (see the module's docstring for the order)."""

    def identity() -> Any:
        return credential if credential is not None else default_credential(Settings.from_environ(environ))

    container = environ.get("KVMON_REPORT_CONTAINER", "").strip() or DEFAULT_REPORT_CONTAINER
    try:
        check_container_name(container)
    except ValueError as exc:
        raise SettingsError(f"KVMON_REPORT_CONTAINER: {exc}") from None
    connection_string = environ.get("KVMON_STORAGE", "").strip()
    if connection_string:
        return open_store(connection_string=connection_string, report_container=container)
    blob_url = environ.get("KVMON_BLOB_ACCOUNT_URL", "").strip()
    account_url = environ.get("KVMON_STORAGE_ACCOUNT_URL", "").strip()
    if account_url:
        return open_store(
            account_url=account_url,
            blob_account_url=blob_url or _blob_endpoint_of(account_url, setting="KVMON_BLOB_ACCOUNT_URL"),
            credential=identity(),
            report_container=container,
        )
    host_storage = environ.get("AzureWebJobsStorage", "").strip()
    if host_storage:
        return open_store(connection_string=host_storage, report_container=container)
    table_uri = environ.get("AzureWebJobsStorage__tableServiceUri", "").strip()
    blob_uri = environ.get("AzureWebJobsStorage__blobServiceUri", "").strip()
    account_name = environ.get("AzureWebJobsStorage__accountName", "").strip()
    if not table_uri and account_name:
        table_uri = f"https://{account_name}.table.core.windows.net"
    if table_uri:
        return open_store(
            account_url=table_uri,
            blob_account_url=blob_uri
            or _blob_endpoint_of(table_uri, setting="AzureWebJobsStorage__blobServiceUri"),
            credential=identity(),
            report_container=container,
        )
    sqlite_path = environ.get("KVMON_SQLITE_PATH", "").strip()
    return open_store(sqlite_path=sqlite_path or DEFAULT_SQLITE_PATH)


def _blob_endpoint_of(table_url: str, *, setting: str = "blob_account_url") -> str:
    """The blob endpoint of the account whose table endpoint is ``table_url``, as Azure names
    them (``https://<account>.table.<suffix>`` -> ``https://<account>.blob.<suffix>``); any other
    endpoint (an emulator, a proxy) has no blob endpoint to infer, and ``setting`` must name it."""
    parts = urlsplit(table_url)
    found = _SERVICE_HOST.match(parts.hostname or "")
    if found is None:
        raise SettingsError(
            f"{setting}: the blob endpoint for report documents cannot be inferred from the table "
            f"endpoint {parts.scheme}://{parts.netloc}: set it (e.g. https://<account>.blob.core.windows.net)"
        )
    return f"{parts.scheme}://{found['account']}.blob.{found['suffix']}"


__all__ = [
    "DEFAULT_REPORT_CONTAINER",
    "DEFAULT_SQLITE_PATH",
    "ConcurrentUpdate",
    "OutboxMessage",
    "PostureSnapshot",
    "ReportNotStored",
    "ReportUnreadable",
    "ScanRun",
    "Store",
    "StoreUnavailable",
    "open_store",
    "store_from_environment",
]
