"""Azure Blob Storage (azure-storage-blob): whole documents beside the Table store.

A scan's report document is tens of megabytes at 10,000 vaults, far past what one entity holds
(1 MiB), so the Table store keeps it as a blob in one container (``KVMON_REPORT_CONTAINER``) of
the same storage account and only a pointer to it in an entity (``monitor.store.entities``).

Built like the Table backend: from a connection string, or from a blob endpoint plus a credential
(the managed identity, which needs Storage Blob Data Contributor or Owner on the account). The
container is created when missing. Faults of the service become ``StoreUnavailable`` with a
message that never carries the account key or a SAS token.
"""

from __future__ import annotations

import threading
from urllib.parse import urlsplit, urlunsplit

from azure.core.credentials import TokenCredential
from azure.core.exceptions import AzureError, ResourceExistsError, ResourceNotFoundError
from azure.storage.blob import BlobServiceClient, ContainerClient, ContentSettings, ExponentialRetry

from monitor.azure_errors import storage_error_code
from monitor.store.base import DEFAULT_REPORT_CONTAINER, StoreUnavailable, check_container_name

# As the Table backend: fail over to StoreUnavailable in seconds, not the SDK default of minutes.
_CONNECTION_TIMEOUT_S = 10
_READ_TIMEOUT_S = 60  # a 10,000-vault report is a few megabytes compressed


def _retry() -> ExponentialRetry:
    """Three retries after about 1, 3 and 5 s (plus up to 1 s of jitter), some 10 s in all, as the
    Table SDK's budget: the SDK's own default (15, 18 and 24 s) kept a scan whose blob endpoint
    was gone waiting a minute and a half before it failed."""
    return ExponentialRetry(initial_backoff=1, increment_base=2, retry_total=3, random_jitter_range=1)


# Containers this process made sure exist, by account endpoint (as the Table backend's tables).
_CONTAINERS_PRESENT: set[tuple[str, str]] = set()
_CONTAINERS_PRESENT_LOCK = threading.Lock()


class BlobDocuments:
    """Documents by name in one blob container: ``put``, ``get``."""

    def __init__(self, service: BlobServiceClient, *, container: str, auth: str) -> None:
        self._service = service
        self._container_name = check_container_name(container)
        self._auth = auth
        self._container: ContainerClient | None = None
        self._lock = threading.Lock()

    @classmethod
    def from_connection_string(
        cls, connection_string: str, *, container: str = DEFAULT_REPORT_CONTAINER
    ) -> BlobDocuments:
        try:
            service = BlobServiceClient.from_connection_string(
                connection_string,
                connection_timeout=_CONNECTION_TIMEOUT_S,
                read_timeout=_READ_TIMEOUT_S,
                retry_policy=_retry(),
            )
        except (ValueError, AzureError) as exc:
            # The SDK's message may quote the string itself: say what is wrong, not what it was.
            raise ValueError(
                "the storage connection string gives no blob endpoint (it needs BlobEndpoint or "
                "AccountName/AccountKey, or UseDevelopmentStorage=true)"
            ) from exc
        auth = "SAS token" if "sharedaccesssignature=" in connection_string.lower() else "account key"
        return cls(service, container=container, auth=auth)

    @classmethod
    def from_account_url(
        cls, account_url: str, *, credential: TokenCredential, container: str = DEFAULT_REPORT_CONTAINER
    ) -> BlobDocuments:
        service = BlobServiceClient(
            account_url=account_url,
            credential=credential,
            connection_timeout=_CONNECTION_TIMEOUT_S,
            read_timeout=_READ_TIMEOUT_S,
            retry_policy=_retry(),
        )
        return cls(service, container=container, auth="Microsoft Entra ID")

    def describe(self) -> str:
        parts = urlsplit(self._service.url)
        endpoint = urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/"), "", ""))
        return f"Blob storage at {endpoint}/{self._container_name} ({self._auth})"

    def close(self) -> None:
        with self._lock:
            if self._container is not None:
                self._container.close()
                self._container = None
        self._service.close()

    def put(self, name: str, data: bytes, *, content_type: str) -> None:
        """Write ``name`` whole (replacing one of that name): a blob is committed at once or not
        at all, so a reader never sees half of it. A container deleted behind this process's back
        is created again, once."""
        for attempt in (1, 2):
            container = self._open()
            try:
                container.upload_blob(
                    name, data, overwrite=True, content_settings=ContentSettings(content_type=content_type)
                )
                return
            except AzureError as exc:
                if storage_error_code(exc) == "ContainerNotFound" and attempt == 1:
                    self._forget()
                    continue
                raise self._unavailable(f"cannot write blob {name}", exc) from exc

    def get(self, name: str) -> bytes | None:
        """The blob's bytes; None when there is no blob of that name (or no container)."""
        container = self._open()
        try:
            return container.download_blob(name).readall()
        except ResourceNotFoundError as exc:
            if storage_error_code(exc) == "ContainerNotFound":
                self._forget()
            return None
        except AzureError as exc:
            raise self._unavailable(f"cannot read blob {name}", exc) from exc

    def _open(self) -> ContainerClient:
        with self._lock:
            if self._container is not None:
                return self._container
            key = (self._service.url, self._container_name)
            with _CONTAINERS_PRESENT_LOCK:
                present = key in _CONTAINERS_PRESENT
            container = self._service.get_container_client(self._container_name)
            if not present:
                try:
                    container.create_container()
                except ResourceExistsError:
                    pass  # created by the deployment (infra/) or by another process
                except AzureError as exc:
                    raise self._unavailable(f"cannot open container {self._container_name}", exc) from exc
                with _CONTAINERS_PRESENT_LOCK:
                    _CONTAINERS_PRESENT.add(key)
            self._container = container
            return container

    def _forget(self) -> None:
        with self._lock:
            self._container = None
        with _CONTAINERS_PRESENT_LOCK:
            _CONTAINERS_PRESENT.discard((self._service.url, self._container_name))

    def _unavailable(self, what: str, exc: Exception) -> StoreUnavailable:
        return StoreUnavailable.from_storage_error(what, self.describe(), exc)
