"""Every vault's network configuration, read from Azure Resource Manager.

One call per subscription to azure-mgmt-keyvault ``vaults.list_by_subscription()``, which returns
whole vaults with their properties and private endpoint connections (``vaults.list()`` goes
through the generic resources API and returns no properties). The SDK's pager follows
``nextLink``, page by page under a ``PageGuard`` (``monitor.sources.paging``: a repeated link or
more than ``MAX_PAGES`` pages stops the listing), and only to ARM's endpoint: every client carries
``EndpointPolicy`` (``monitor.azure_origin``), so a ``nextLink`` or a redirect to another host is
refused before anything, a token least of all, is sent there. azure-core's retry policy,
configured here, retries throttling and server errors and waits as long as a ``Retry-After``
header says. Subscriptions are read concurrently.

A subscription that cannot be read (403, 404, network, throttled past the retries, a link or
redirect elsewhere, a listing that loops) becomes a ``ScanError`` naming it, and the others go
on; a vault that cannot be normalised becomes a ``ScanError`` and does not hide the others. ``subscriptions_complete`` names the subscriptions
read in full: only their vaults may be judged gone, and only their findings may resolve.

``get_vault`` reads one vault by its resource id (``vaults.get``, one request, never a listing):
the event path's read of a vault an ARM write or delete was announced for.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, cast
from urllib.parse import urlsplit

from azure.core import AzureClouds
from azure.core.credentials import TokenCredential
from azure.core.exceptions import DecodeError, HttpResponseError, ResourceNotFoundError
from azure.core.paging import ItemPaged, PageIterator
from azure.mgmt.core.tools import get_arm_endpoints
from azure.mgmt.keyvault import KeyVaultManagementClient

from monitor.azure_errors import describe_azure_error, describe_exception, error_code
from monitor.azure_origin import EndpointPolicy, OffEndpointRequest
from monitor.config.budget import RequestBudget
from monitor.httpsession import settled_transport
from monitor.model import ErrorSource, ScanError, VaultPosture
from monitor.sources.keyvault.normalise import InvalidVault, normalise_vault
from monitor.sources.paging import MAX_PAGES, PageGuard, PagingStopped

PUBLIC_ARM_ENDPOINT = "https://management.azure.com"


@dataclass
class InventoryResult:
    postures: list[VaultPosture] = field(default_factory=list)
    errors: list[ScanError] = field(default_factory=list)
    # Subscriptions (lower-cased ids) whose every page was read and every vault normalised.
    subscriptions_complete: set[str] = field(default_factory=set)
    requests: int = 0  # HTTP requests sent to ARM, retries included


@dataclass
class VaultRead:
    """One vault read by id: its posture, or ``gone`` (ARM answered 404), or ``errors`` (no answer
    that says anything about the vault: throttled, forbidden, a timeout)."""

    vault_id: str
    posture: VaultPosture | None = None
    gone: bool = False
    errors: list[ScanError] = field(default_factory=list)
    requests: int = 0  # HTTP requests sent to ARM, retries included

    @property
    def answered(self) -> bool:
        """ARM said what the vault is, or that it is not: the read is complete for this vault."""
        return self.posture is not None or self.gone


@dataclass
class _SubscriptionRead:
    postures: list[VaultPosture] = field(default_factory=list)
    errors: list[ScanError] = field(default_factory=list)
    complete: bool = False


class RequestCounter:
    """Counts every request the pipeline sends (the hook runs inside the retry loop)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.count = 0

    def __call__(self, request: Any) -> None:
        with self._lock:
            self.count += 1


def arm_credential_scope(arm_endpoint: str) -> str:
    """The token scope for an ARM endpoint. The sovereign clouds' scopes are not always the
    endpoint's host (US Government: endpoint management.usgovcloudapi.net, scope
    management.core.usgovcloudapi.net), so the known clouds come from azure-mgmt-core's table;
    any other endpoint (Azure Stack, the lab) takes ``{endpoint}/.default``."""
    host = urlsplit(arm_endpoint).hostname
    for cloud in AzureClouds:
        endpoints = get_arm_endpoints(cloud)
        if urlsplit(endpoints["resource_manager"]).hostname == host:
            return str(endpoints["credential_scopes"][0])
    return f"{arm_endpoint.rstrip('/')}/.default"


@dataclass(frozen=True)
class ArmConnection:
    """How an inventory reaches ARM, checked once: endpoint, token scope, trust, timeouts and
    azure-core retries. ``ArmInventory`` and ``ResourceGraphInventory`` share it."""

    arm_endpoint: str = PUBLIC_ARM_ENDPOINT
    credential_scope: str | None = None  # None: the one that belongs to ``arm_endpoint``
    connection_verify: str | bool = True
    timeout_s: float = 10  # KVMON_ARM_TIMEOUT's default
    retry_total: int = 2  # KVMON_ARM_RETRIES'
    retry_backoff_factor: float = 0.8
    retry_backoff_max: float = 60

    def __post_init__(self) -> None:
        parts = urlsplit(self.arm_endpoint)
        if parts.scheme != "https" or not parts.hostname:
            raise ValueError(f"the ARM endpoint must be an https URL, not {self.arm_endpoint!r}")
        if self.timeout_s <= 0:
            raise ValueError(f"timeout_s must be positive, not {self.timeout_s}")
        if self.retry_total < 0:
            raise ValueError(f"retry_total must not be negative, not {self.retry_total}")
        endpoint = self.arm_endpoint.rstrip("/")
        object.__setattr__(self, "arm_endpoint", endpoint)
        object.__setattr__(self, "credential_scope", self.credential_scope or arm_credential_scope(endpoint))

    def client_options(self) -> dict[str, Any]:
        """Keyword arguments for an azure-mgmt client: endpoint, scope, trust, timeouts, retries,
        and the policy that keeps its requests (its token) on that endpoint."""
        return {
            "base_url": self.arm_endpoint,
            "per_retry_policies": [EndpointPolicy(self.arm_endpoint)],
            "credential_scopes": [self.credential_scope],
            "connection_verify": self.connection_verify,
            **self.budget.azure_core_options(),
        }

    @property
    def budget(self) -> RequestBudget:
        """Each request's timeouts and retries (``KVMON_ARM_TIMEOUT``, ``KVMON_ARM_RETRIES``)."""
        return RequestBudget(
            timeout_s=self.timeout_s,
            retries=self.retry_total,
            backoff_factor_s=self.retry_backoff_factor,
            backoff_max_s=self.retry_backoff_max,
        )


class ArmInventory:
    """Reads vaults from ARM with azure-mgmt-keyvault.

    :param credential: a token credential (``DefaultAzureCredential`` in production).
    :keyword arm_endpoint: ARM's endpoint: the public cloud by default, a sovereign cloud's, or the lab's.
    :keyword credential_scope: the token scope; by default the one that belongs to ``arm_endpoint``.
    :keyword connection_verify: True, False, or the path of a CA bundle to trust.
    :keyword timeout_s: connect and read timeout of each request.
    :keyword max_concurrency: subscriptions read at the same time.
    :keyword retry_total: retries per request (azure-core ``RetryPolicy``).
    :keyword retry_backoff_factor: exponential backoff between retries without ``Retry-After``.
    :keyword retry_backoff_max: longest backoff between retries without ``Retry-After``.
    :keyword max_pages: pages of one subscription's listing followed at most (``MAX_PAGES``).
    """

    def __init__(
        self,
        credential: TokenCredential,
        *,
        arm_endpoint: str = PUBLIC_ARM_ENDPOINT,
        credential_scope: str | None = None,
        connection_verify: str | bool = True,
        timeout_s: float = 10,
        max_concurrency: int = 8,
        retry_total: int = 2,
        retry_backoff_factor: float = 0.8,
        retry_backoff_max: float = 60,
        max_pages: int = MAX_PAGES,
    ) -> None:
        if max_concurrency < 1:
            raise ValueError(f"max_concurrency must be at least 1, not {max_concurrency}")
        if max_pages < 1:
            raise ValueError(f"max_pages must be at least 1, not {max_pages}")
        self.credential = credential
        self.connection = ArmConnection(
            arm_endpoint=arm_endpoint,
            credential_scope=credential_scope,
            connection_verify=connection_verify,
            timeout_s=timeout_s,
            retry_total=retry_total,
            retry_backoff_factor=retry_backoff_factor,
            retry_backoff_max=retry_backoff_max,
        )
        self.max_concurrency = max_concurrency
        self.max_pages = max_pages
        # One client per subscription for one-vault reads (the event path's GETs): built once, so
        # a GET reuses its connection instead of a client and a TLS handshake per event.
        self._getters: dict[str, KeyVaultManagementClient] = {}
        self._getters_lock = threading.Lock()

    def list_vaults(self, subscription_ids: Sequence[str]) -> InventoryResult:
        """Every vault of every subscription, subscriptions in the order given."""
        return self._read(subscription_ids, name=None)

    def find_vault(self, name: str, subscription_ids: Sequence[str]) -> InventoryResult:
        """The vault(s) called ``name`` (case-insensitive) in these subscriptions. Vault names are
        unique in a cloud, but a deleted-and-recreated vault may briefly show twice."""
        if not name.strip():
            raise ValueError("a vault name must not be empty")
        return self._read(subscription_ids, name=name.strip())

    def get_vault(self, vault_id: str) -> VaultRead:
        """The vault with this resource id, read with one ``vaults.get``. A 404 whose code is
        ``ResourceNotFound`` means the vault is gone; any other 404 (``SubscriptionNotFound``,
        ``ResourceGroupNotFound``) and every other fault is an error, never "gone": a subscription
        the credential cannot see must not delete the vaults kvmon knows in it. ValueError for an
        id that is not a vault's."""
        subscription_id, resource_group, name = vault_id_parts(vault_id)
        read = VaultRead(vault_id=vault_id)
        counter = RequestCounter()
        try:
            vault = self._getter(subscription_id).vaults.get(resource_group, name, raw_request_hook=counter)
            read.posture = normalise_vault(vault.as_dict() if hasattr(vault, "as_dict") else vault)
        except ResourceNotFoundError as exc:
            if error_code_of_service(exc) in _GONE_CODES:
                read.gone = True
            else:
                read.errors.append(
                    ScanError(ErrorSource.ARM, vault_id, describe_arm_error(exc), error_code(exc))
                )
        except HttpResponseError as exc:
            read.errors.append(ScanError(ErrorSource.ARM, vault_id, describe_arm_error(exc), error_code(exc)))
        except OffEndpointRequest as exc:
            read.errors.append(ScanError(ErrorSource.ARM, vault_id, str(exc), exc.code))
        except InvalidVault as exc:
            read.errors.append(
                ScanError(ErrorSource.ARM, vault_id, f"the vault ARM returned is unusable: {exc}")
            )
        except Exception as exc:  # whatever ARM's answer or the network did to the SDK
            read.errors.append(ScanError(ErrorSource.ARM, vault_id, describe_exception(exc)))
        read.requests = counter.count
        return read

    # -- internals -----------------------------------------------------------------------------

    def _read(self, subscription_ids: Sequence[str], *, name: str | None) -> InventoryResult:
        subscriptions = unique_subscriptions(subscription_ids)
        result = InventoryResult()
        if not subscriptions:
            return result
        counter = RequestCounter()
        workers = min(self.max_concurrency, len(subscriptions))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="kvmon-arm") as pool:
            reads = list(pool.map(lambda s: self._read_subscription(s, name, counter), subscriptions))
        for subscription_id, read in zip(subscriptions, reads, strict=True):
            result.postures.extend(read.postures)
            result.errors.extend(read.errors)
            if read.complete:
                result.subscriptions_complete.add(subscription_id)
        result.requests = counter.count
        return result

    def _getter(self, subscription_id: str) -> KeyVaultManagementClient:
        with self._getters_lock:
            client = self._getters.get(subscription_id)
            if client is None:
                client = self._getters[subscription_id] = KeyVaultManagementClient(
                    self.credential,
                    subscription_id,
                    **self.connection.client_options(),
                    transport=settled_transport(
                        connection_verify=self.connection.connection_verify,
                        connection_timeout=self.connection.timeout_s,
                        read_timeout=self.connection.timeout_s,
                    ),
                )
            return client

    def _client(self, subscription_id: str, counter: RequestCounter) -> KeyVaultManagementClient:
        return KeyVaultManagementClient(
            self.credential,
            subscription_id,
            **self.connection.client_options(),
            raw_request_hook=counter,
        )

    def _read_subscription(
        self, subscription_id: str, name: str | None, counter: RequestCounter
    ) -> _SubscriptionRead:
        read = _SubscriptionRead()
        complete = True
        wanted = name.lower() if name is not None else None
        guard = PageGuard(
            f"listing of subscription {subscription_id}", link="nextLink", max_pages=self.max_pages
        )
        try:
            with self._client(subscription_id, counter) as client:
                for index, vault in enumerate(guarded_items(client.vaults.list_by_subscription(), guard)):
                    # azure-mgmt-keyvault 14's models are mappings over the response JSON, and
                    # as_dict() gives that JSON back whole, unknown fields included, so the
                    # normaliser sees exactly what a file or `az` would show (a test pins this).
                    # Reading it this way rather than through the typed attributes means a field
                    # of the wrong type is a note on one vault instead of an exception that would
                    # end the page. A list item that is not an object comes through as it is.
                    raw = vault.as_dict() if hasattr(vault, "as_dict") else vault
                    try:
                        posture = normalise_vault(raw)
                    except InvalidVault as exc:
                        complete = False
                        read.errors.append(
                            ScanError(
                                ErrorSource.ARM,
                                subscription_id,
                                f"vault #{index} of the list is unusable: {exc}",
                            )
                        )
                        continue
                    if wanted is None or posture.name.lower() == wanted:
                        read.postures.append(posture)
        except HttpResponseError as exc:
            read.errors.append(
                ScanError(ErrorSource.ARM, subscription_id, describe_arm_error(exc), error_code(exc))
            )
            return read
        # For these two, the vaults of the pages ARM itself served are kept; the subscription is
        # not complete, so none of its vaults is judged gone and none of its findings resolves.
        except PagingStopped as exc:
            read.errors.append(ScanError(ErrorSource.ARM, subscription_id, exc.message, exc.code))
            return read
        except OffEndpointRequest as exc:
            message = f"listing of subscription {subscription_id} stopped: {exc}"
            read.errors.append(ScanError(ErrorSource.ARM, subscription_id, message, exc.code))
            return read
        except Exception as exc:  # whatever ARM's answer or the network did to the SDK
            # Recorded against this subscription, never fatal to the others; the vaults read
            # before the fault are kept, but the subscription does not count as complete.
            read.errors.append(ScanError(ErrorSource.ARM, subscription_id, describe_exception(exc)))
            return read
        read.complete = complete
        return read


def guarded_items(pager: ItemPaged[Any], guard: PageGuard) -> Iterator[Any]:
    """The items of ``pager``, page by page, each page's ``nextLink`` shown to ``guard`` before its
    items are used and before the SDK may request it (the page iterator's continuation token is
    the ``nextLink`` of the page just read)."""
    # by_page() is typed as a plain iterator; it is azure-core's PageIterator, which keeps the token.
    pages = cast(PageIterator[Any], pager.by_page())
    for page in pages:
        link = pages.continuation_token
        guard.arrived(link)
        yield from page
        if link:
            guard.follow(link)


def unique_subscriptions(subscription_ids: Iterable[str]) -> list[str]:
    """Lower-cased (as ``VaultPosture.subscription_id`` is), blank ids rejected, duplicates
    dropped, order kept."""
    unique: list[str] = []
    for subscription_id in subscription_ids:
        cleaned = subscription_id.strip().lower()
        if not cleaned:
            raise ValueError("a subscription id must not be empty")
        if cleaned not in unique:
            unique.append(cleaned)
    return unique


# ARM's code for a resource that does not exist (in a group and subscription that do).
_GONE_CODES = frozenset({"resourcenotfound"})

_VAULT_ID = re.compile(
    r"/subscriptions/(?P<subscription>[^/]+)/resourceGroups/(?P<group>[^/]+)"
    r"/providers/Microsoft\.KeyVault/vaults/(?P<name>[^/]+)",
    re.IGNORECASE,
)


def vault_id_parts(vault_id: str) -> tuple[str, str, str]:
    """(subscription id lower-cased, resource group, vault name) of a vault's resource id;
    ValueError for anything else (a connection's id, another provider's resource)."""
    match = _VAULT_ID.fullmatch(vault_id.strip().rstrip("/"))
    if match is None:
        raise ValueError(f"not a Key Vault resource id: {vault_id[:300]!r}")
    return match["subscription"].lower(), match["group"], match["name"]


def error_code_of_service(exc: HttpResponseError) -> str:
    """The service's error code (``ResourceNotFound``, ``SubscriptionNotFound``...) lower-cased, '' if none."""
    return (exc.error.code or "").lower() if exc.error is not None else ""


def describe_arm_error(exc: HttpResponseError) -> str:
    """ARM's error in one line (``describe_azure_error``), or that its answer was not JSON."""
    if isinstance(exc, DecodeError) and exc.status_code is not None:  # a proxy, a truncated page
        return f"ARM's answer (HTTP {exc.status_code}) is not valid JSON"
    return describe_azure_error(exc)
