"""Every vault's network configuration from Azure Resource Graph: one paginated query for all.

``ArmInventory`` (``monitor.sources.arm``) reads one subscription at a time; for estates of many
subscriptions this module asks Resource Graph once (``POST /providers/Microsoft.ResourceGraph/
resources`` through azure-mgmt-resourcegraph) for every vault with its ``properties`` (network
ACLs, public network access, private endpoint connections) across all subscriptions in scope,
1,000 rows a page, following ``$skipToken``. Requests grow with pages, not with subscriptions.

What Resource Graph does differently from ARM, and how this module copes (AZURE-NOTES.md style):

- It leaves out subscriptions the caller cannot read (or that do not exist) instead of refusing;
  only when none is readable does it answer 400 ``NoValidSubscriptionsInQueryRequest``. An empty
  answer for a subscription therefore proves nothing, so the same query also returns one row per
  subscription it can see (``ResourceContainers``, type ``microsoft.resources/subscriptions``,
  joined with ``union``, which Resource Graph allows between these two tables). A requested
  subscription without that row becomes a ``ScanError`` and is not complete: its vaults must not
  be judged gone.
- An answer with ``resultTruncated`` true and no ``$skipToken`` is partial: nothing it covers
  counts as complete.
- Pages are followed with the answer's ``$skipToken``, sent in the body of the next request to
  the same endpoint; any link-like field an answer carries (a ``nextLink``) is ignored, and the
  client's ``EndpointPolicy`` (``monitor.azure_origin``) refuses a redirect to another host. A
  ``$skipToken`` that repeats one already followed, or more than ``MAX_PAGES`` pages
  (``monitor.sources.paging``), stops the query: a ``ScanError`` per subscription of the batch,
  none of them complete.
- Throttling: 429 with ``Retry-After`` is retried by azure-core's retry policy, which waits as
  long as the header says. Every answer also carries ``x-ms-user-quota-remaining`` and
  ``x-ms-user-quota-resets-after`` (hh:mm:ss); when the quota is spent and pages remain, the
  next page waits for the reset (at most ``max_quota_wait_s``) rather than being refused. The
  last values are kept in the result.
- Its ``Resources`` table has no ``systemData``: postures read here carry no last-modified-by
  (the drift evidence ARM gives). Its index also trails ARM by seconds to minutes after a change.
- It returns ``type`` and ``resourceGroup`` lower-cased; the normaliser compares both
  case-insensitively.

The same ``InventoryResult`` as ``ArmInventory`` comes back, so ``run_scan`` cannot tell the two
apart: postures, ``ScanError``s (source ``resource-graph``), ``subscriptions_complete``, requests.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from azure.core.credentials import TokenCredential
from azure.core.exceptions import HttpResponseError
from azure.mgmt.resourcegraph import ResourceGraphClient
from azure.mgmt.resourcegraph.models import QueryRequest, QueryRequestOptions, QueryResponse

from monitor.azure_errors import describe_exception, error_code
from monitor.azure_origin import OffEndpointRequest
from monitor.model import ErrorSource, ScanError, VaultPosture
from monitor.sources.arm import (
    PUBLIC_ARM_ENDPOINT,
    ArmConnection,
    InventoryResult,
    RequestCounter,
    describe_arm_error,
    unique_subscriptions,
)
from monitor.sources.keyvault.normalise import InvalidVault, normalise_vault
from monitor.sources.paging import MAX_PAGES, PageGuard, PagingStopped

VAULT_TYPE = "microsoft.keyvault/vaults"
SUBSCRIPTION_TYPE = "microsoft.resources/subscriptions"
MAX_PAGE_SIZE = 1000  # Resource Graph's largest $top
# Resource Graph accepts at most this many subscriptions in one request (Azure PowerShell's
# Search-AzGraph sends them in batches of the same size).
MAX_SUBSCRIPTIONS_PER_QUERY = 1000
QUOTA_REMAINING_HEADER = "x-ms-user-quota-remaining"
QUOTA_RESETS_AFTER_HEADER = "x-ms-user-quota-resets-after"
# Key Vault names: 3-24 letters, digits and hyphens; a little looser so lab names pass too.
_VAULT_NAME = re.compile(r"^[0-9A-Za-z-]{1,127}$")
_HMS = re.compile(r"^(\d+):(\d{1,2}):(\d{1,2}(?:\.\d+)?)$")


def build_vault_query(*, name: str | None = None) -> str:
    """The KQL kvmon sends: every vault (or those called ``name``) and every visible subscription.

    ``order by id`` keeps pages stable; ``id`` is a string column, so Resource Graph can page.
    """
    if name is not None and not _VAULT_NAME.match(name):
        raise ValueError(f"{name!r} is not a Key Vault name (letters, digits and hyphens)")
    vault_filter = f"\n| where name =~ '{name}'" if name is not None else ""
    return (
        "Resources\n"
        f"| where type =~ '{VAULT_TYPE}'{vault_filter}\n"
        "| project id, name, type, location, resourceGroup, subscriptionId, tags, properties\n"
        "| union (ResourceContainers\n"
        f"    | where type =~ '{SUBSCRIPTION_TYPE}'\n"
        "    | project id, name, type, subscriptionId)\n"
        "| order by id asc"
    )


@dataclass
class GraphPages:
    """How a query went, beside what it found (both services' Resource Graph results hold it)."""

    pages: int = 0  # answers read (one per page, retries not counted)
    quota_remaining: int | None = None  # the last x-ms-user-quota-remaining
    quota_resets_after_s: float | None = None  # the last x-ms-user-quota-resets-after


@dataclass
class GraphInventoryResult(InventoryResult, GraphPages):
    pass


class GraphResult(Protocol):
    """What ``run_query`` fills in: an ``InventoryResult`` or a ``StorageInventoryResult`` with
    ``GraphPages``."""

    errors: list[ScanError]
    subscriptions_complete: set[str]
    requests: int
    pages: int
    quota_remaining: int | None
    quota_resets_after_s: float | None


class QuotaHeaders:
    """The throttling headers of the latest answer (a ``raw_response_hook``)."""

    def __init__(self) -> None:
        self.remaining: int | None = None
        self.resets_after_s: float | None = None

    def __call__(self, pipeline_response: Any) -> None:
        headers = pipeline_response.http_response.headers
        remaining = headers.get(QUOTA_REMAINING_HEADER)
        self.remaining = int(remaining) if remaining is not None and remaining.strip().isdigit() else None
        self.resets_after_s = parse_resets_after(headers.get(QUOTA_RESETS_AFTER_HEADER))


def parse_resets_after(value: str | None) -> float | None:
    """``hh:mm:ss`` (Resource Graph's format) in seconds; None when absent or unreadable."""
    match = _HMS.match((value or "").strip())
    if not match:
        return None
    hours, minutes, seconds = match.groups()
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds)


def graph_client(
    credential: TokenCredential, connection: ArmConnection, *, counter: RequestCounter, quota: QuotaHeaders
) -> ResourceGraphClient:
    """A Resource Graph client on ``connection``. Hooks given to the client run inside the retry
    loop: every attempt is counted, and the quota headers are those of the last answer."""
    return ResourceGraphClient(
        credential, **connection.client_options(), raw_request_hook=counter, raw_response_hook=quota
    )


def query_pages(
    client: ResourceGraphClient,
    *,
    subscriptions: list[str],
    query: str,
    page_size: int,
    quota: QuotaHeaders,
    max_quota_wait_s: float,
    max_pages: int = MAX_PAGES,
) -> Iterator[QueryResponse]:
    """Every answer to ``query``, page after page. The next page is asked for with the answer's
    ``$skipToken``, in the body of a request to the same endpoint: nothing an answer says can send
    kvmon to another host. When the quota is spent and pages remain, the next page waits for the
    reset (at most ``max_quota_wait_s``) rather than being refused. The SDK's errors propagate,
    and ``PagingStopped`` when a ``$skipToken`` repeats or pages pass ``max_pages`` (``PageGuard``)."""
    count = len(subscriptions)
    guard = PageGuard(
        f"query of {count} subscription{'s' if count != 1 else ''}", link="$skipToken", max_pages=max_pages
    )
    skip_token: str | None = None
    while True:
        response = client.resources(
            QueryRequest(
                subscriptions=subscriptions,
                query=query,
                options=QueryRequestOptions(
                    result_format="objectArray", top=page_size, skip_token=skip_token
                ),
            )
        )
        guard.arrived(response.skip_token)
        yield response
        if not response.skip_token:
            return
        guard.follow(response.skip_token)
        skip_token = response.skip_token
        if quota.remaining == 0 and quota.resets_after_s:
            time.sleep(min(quota.resets_after_s, max_quota_wait_s))


def truncated(response: QueryResponse) -> bool:
    """Cut short with no ``$skipToken`` to go on (Azure does this when paging is impossible)."""
    value = response.result_truncated
    return value is True or (isinstance(value, str) and value.strip().lower() == "true")


class ResourceGraphInventory:
    """Reads vaults with one Resource Graph query (azure-mgmt-resourcegraph).

    :param credential: a token credential (``DefaultAzureCredential`` in production).
    :keyword arm_endpoint: ARM's endpoint (Resource Graph lives there): public cloud, sovereign, lab.
    :keyword credential_scope: the token scope; by default the one that belongs to ``arm_endpoint``.
    :keyword connection_verify: True, False, or the path of a CA bundle to trust.
    :keyword timeout_s: connect and read timeout of each request.
    :keyword page_size: rows per page (``$top``), at most 1,000.
    :keyword retry_total: retries per request (azure-core ``RetryPolicy``).
    :keyword retry_backoff_factor: exponential backoff between retries without ``Retry-After``.
    :keyword retry_backoff_max: longest backoff between retries without ``Retry-After``.
    :keyword max_quota_wait_s: longest wait for a spent quota to reset before the next page.
    :keyword max_pages: pages of one query followed at most (``MAX_PAGES``).
    """

    def __init__(
        self,
        credential: TokenCredential,
        *,
        arm_endpoint: str = PUBLIC_ARM_ENDPOINT,
        credential_scope: str | None = None,
        connection_verify: str | bool = True,
        timeout_s: float = 10,
        page_size: int = MAX_PAGE_SIZE,
        retry_total: int = 2,
        retry_backoff_factor: float = 0.8,
        retry_backoff_max: float = 60,
        max_quota_wait_s: float = 60,
        max_pages: int = MAX_PAGES,
    ) -> None:
        if not 1 <= page_size <= MAX_PAGE_SIZE:
            raise ValueError(f"page_size must be between 1 and {MAX_PAGE_SIZE}, not {page_size}")
        if max_quota_wait_s < 0:
            raise ValueError(f"max_quota_wait_s must not be negative, not {max_quota_wait_s}")
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
        self.page_size = page_size
        self.max_quota_wait_s = max_quota_wait_s
        if max_pages < 1:
            raise ValueError(f"max_pages must be at least 1, not {max_pages}")
        self.max_pages = max_pages

    def list_vaults(self, subscription_ids: Sequence[str]) -> GraphInventoryResult:
        """Every vault of every subscription, subscriptions in the order given."""
        return self._read(subscription_ids, name=None)

    def find_vault(self, name: str, subscription_ids: Sequence[str]) -> GraphInventoryResult:
        """The vault(s) called ``name`` (case-insensitive) in these subscriptions."""
        if not name.strip():
            raise ValueError("a vault name must not be empty")
        return self._read(subscription_ids, name=name.strip())

    # -- internals -----------------------------------------------------------------------------

    def _read(self, subscription_ids: Sequence[str], *, name: str | None) -> GraphInventoryResult:
        subscriptions = unique_subscriptions(subscription_ids)
        result = GraphInventoryResult()
        read = _Read(requested=set(subscriptions))
        run_query(
            self.credential,
            self.connection,
            subscriptions=subscriptions,
            query=build_vault_query(name=name),
            read=read,
            result=result,
            page_size=self.page_size,
            max_quota_wait_s=self.max_quota_wait_s,
            max_pages=self.max_pages,
        )
        order = {subscription: index for index, subscription in enumerate(subscriptions)}
        # Rows come ordered by id; the subscriptions' order as given, like ArmInventory.
        result.postures = sorted(read.postures, key=lambda p: order.get(p.subscription_id, len(order)))
        return result


def run_query(
    credential: TokenCredential,
    connection: ArmConnection,
    *,
    subscriptions: list[str],
    query: str,
    read: GraphRows,
    result: GraphResult,
    page_size: int,
    max_quota_wait_s: float,
    max_pages: int,
) -> None:
    """``query`` over ``subscriptions`` (unique, lower-cased), in batches of
    ``MAX_SUBSCRIPTIONS_PER_QUERY``, every page's rows given to ``read``; then ``result`` gets the
    errors, the subscriptions complete (visible, not failed, no unusable row) and the counts."""
    if not subscriptions:
        return
    counter = RequestCounter()
    quota = QuotaHeaders()
    with graph_client(credential, connection, counter=counter, quota=quota) as client:
        for start in range(0, len(subscriptions), MAX_SUBSCRIPTIONS_PER_QUERY):
            batch = subscriptions[start : start + MAX_SUBSCRIPTIONS_PER_QUERY]
            _read_batch(
                client,
                batch,
                query,
                read,
                result,
                quota=quota,
                page_size=page_size,
                max_quota_wait_s=max_quota_wait_s,
                max_pages=max_pages,
            )
    read.finish()
    for subscription in subscriptions:
        if subscription in read.failed:
            continue
        if subscription not in read.visible:
            result.errors.append(
                ScanError(
                    ErrorSource.RESOURCE_GRAPH,
                    subscription,
                    "Resource Graph returned nothing for this subscription: the identity cannot "
                    "read it, or it does not exist (Resource Graph leaves such subscriptions out "
                    "instead of refusing)",
                    "SubscriptionNotVisible",
                )
            )
        elif subscription not in read.unusable:
            result.subscriptions_complete.add(subscription)
    result.errors[:0] = read.errors
    result.requests = counter.count
    result.quota_remaining = quota.remaining
    result.quota_resets_after_s = quota.resets_after_s


def _read_batch(
    client: ResourceGraphClient,
    batch: list[str],
    query: str,
    read: GraphRows,
    result: GraphResult,
    *,
    quota: QuotaHeaders,
    page_size: int,
    max_quota_wait_s: float,
    max_pages: int,
) -> None:
    pages = query_pages(
        client,
        subscriptions=batch,
        query=query,
        page_size=page_size,
        quota=quota,
        max_quota_wait_s=max_quota_wait_s,
        max_pages=max_pages,
    )
    try:
        for response in pages:
            result.pages += 1
            if not isinstance(response.data, list):
                read.fail(batch, "the answer's data is not a list of rows (resultFormat objectArray)", None)
                return
            read.rows(response.data)
            if not response.skip_token and truncated(response):
                read.fail(
                    batch,
                    f"the answer was truncated ({response.count} of {response.total_records} rows, "
                    f"no $skipToken): the {read.what} read are kept, but none of these subscriptions "
                    "is complete",
                    "ResultTruncated",
                )
    except HttpResponseError as exc:
        read.fail(batch, describe_arm_error(exc), error_code(exc))
    except PagingStopped as exc:
        read.fail(batch, exc.message, exc.code)
    except OffEndpointRequest as exc:
        read.fail(batch, f"query stopped: {exc}", exc.code)
    except Exception as exc:  # whatever the network or the answer did to the SDK
        read.fail(batch, describe_exception(exc), None)


class GraphRows:
    """What the pages said so far, for any resource type: the subscriptions visible, failed and
    with an unusable row, and the errors. ``resource`` takes each row that is not a subscription's."""

    what = "resources"  # what the rows are, in messages

    def __init__(self, *, requested: set[str]) -> None:
        self.requested = requested
        self.errors: list[ScanError] = []
        self.visible: set[str] = set()
        self.unusable: set[str] = set()  # subscriptions with a row that could not be read
        self.failed: set[str] = set()  # subscriptions whose query failed or was cut short

    def fail(self, batch: Iterable[str], message: str, code: str | None) -> None:
        # One error per subscription, as ArmInventory reports a subscription it could not read.
        for subscription in batch:
            self.failed.add(subscription)
            self.errors.append(ScanError(ErrorSource.RESOURCE_GRAPH, subscription, message, code))

    def rows(self, rows: list[Any]) -> None:
        for index, row in enumerate(rows):
            subscription = row_subscription(row)
            row_type = str(row.get("type", "")).lower() if isinstance(row, Mapping) else ""
            if row_type == SUBSCRIPTION_TYPE and subscription:
                self.visible.add(subscription)
                continue
            self.resource(index, row, subscription)

    def resource(self, index: int, row: Any, subscription: str | None) -> None:
        raise NotImplementedError

    def finish(self) -> None:
        """Called once every page is read (a reader that joins rows across pages does it here)."""

    def unusable_row(self, subscription: str | None, message: str) -> None:
        # A row that names no subscription may belong to any: none of them is complete.
        known = subscription is not None and subscription in self.requested
        self.unusable |= {subscription} if known and subscription else set(self.requested)
        self.errors.append(
            ScanError(
                ErrorSource.RESOURCE_GRAPH,
                subscription if known and subscription else "(unknown subscription)",
                message,
            )
        )


class _Read(GraphRows):
    what = "vaults"

    def __init__(self, *, requested: set[str]) -> None:
        super().__init__(requested=requested)
        self.postures: list[VaultPosture] = []

    def resource(self, index: int, row: Any, subscription: str | None) -> None:
        try:
            posture = normalise_vault(row)
        except InvalidVault as exc:
            self.unusable_row(subscription, f"row #{index} of a page is unusable: {exc}")
            return
        if posture.subscription_id not in self.requested:
            self.unusable_row(
                subscription,
                f"row #{index} of a page is a vault outside the requested subscriptions: ignored",
            )
            return
        self.postures.append(posture)


def row_subscription(row: Any) -> str | None:
    if not isinstance(row, Mapping):
        return None
    value = row.get("subscriptionId")
    if isinstance(value, str) and value.strip():
        return value.strip().lower()
    resource_id = row.get("id")
    if isinstance(resource_id, str):
        segments = resource_id.split("/")
        folded = [s.lower() for s in segments]
        if "subscriptions" in folded and folded.index("subscriptions") + 1 < len(segments):
            return folded[folded.index("subscriptions") + 1] or None
    return None
