"""Probe a storage account's endpoints from where this process stands: per sub-resource, DNS, then
TCP/TLS, then one authenticated ``GET /?comp=list`` over the connection TLS opened.

The sibling of ``probes.vault`` for Storage, with its steps: the DNS step and the TLS step are the
vault probe's, the data-plane call is real azure-storage-blob (``BlobServiceClient.list_containers``,
a token for ``https://storage.azure.com/.default``) over the pinned transport, so SNI, the Host
header and the certificate check keep the endpoint's name while the connection goes to the address
the probe's own DNS answer gave. The same call goes to every sub-resource's host: Storage checks
its network rules before the operation, so the answer's error code says what the network did
whatever service the host serves; an answer that is not one of the two codes below proves nothing
and says so.

Verdicts (``StorageVerdict``), on the code exactly as the answer gave it:

- 403 AuthorizationPermissionMismatch: the network admitted the caller, whose identity has no data
  role (the probe needs none). A 200 list: admitted, with a data role.
- 403 AuthorizationFailure: refused. Storage gives this code for a network refusal and for some other
  failures (it is "not authorized"), so the result quotes the code and never says which rule refused.
- Anything else (another code, none, another shape, a 401): unknown, with what was seen.

Storage does not apply IP rules to callers in the account's region: an outside vantage point in that
region (``Vantage.region``) cannot test them, and its result says so (``ip_rules_untested``).
"""

from __future__ import annotations

import datetime as dt
import logging
import ssl
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from urllib.parse import urlsplit

from azure.core.credentials import TokenCredential
from azure.core.exceptions import (
    HttpResponseError,
    ServiceRequestError,
    ServiceResponseError,
    ServiceResponseTimeoutError,
)
from azure.core.rest import HttpResponse
from azure.storage.blob import BlobServiceClient

from monitor.azure_errors import first_line
from monitor.azure_origin import EndpointPolicy, OffEndpointRequest
from monitor.config.policy import Vantage
from monitor.model import DnsStep, TlsStep
from monitor.model_storage import (
    DefaultAction,
    StorageAccountPosture,
    StorageDataPlaneStep,
    StorageProbeResult,
    StorageSubresource,
    StorageVerdict,
)
from monitor.naming.storage import parse_endpoint_host, private_link_zone
from probes.dataplane import PinnedConnection, PinnedRoute, PinnedTransport, _is_tls_failure
from probes.dns import resolve_vault
from probes.network import Reachability, open_tls, tls_context
from probes.options import ProbeOptions

log = logging.getLogger(__name__)

ADMITTED_CODE = "AuthorizationPermissionMismatch"
REFUSED_CODE = "AuthorizationFailure"
_SEEN_BYTES = 80  # how much of an answer that proves nothing the verdict quotes


def probe_accounts(
    postures: Sequence[StorageAccountPosture],
    *,
    vantage: Vantage,
    options: ProbeOptions,
    credential: TokenCredential,
    subresources: Mapping[str, Sequence[StorageSubresource]] | None = None,
) -> list[StorageProbeResult]:
    """One result per endpoint each account uses (``primary_endpoints``, in the account's order;
    ``subresources``, by account id in any case, limits an account's to those given, e.g. the
    baseline's), accounts in the order given; ``options.concurrency`` endpoints at once, sharing one
    ``Reachability`` and one TLS context as the vault probes do (``probes.threads``).

    Probes from this process, as ``vantage`` (its source address and resolver): a remote vantage
    point's ``/api/probe`` takes vault names only, so a caller must not pass one whose ``endpoint``
    is set (ValueError).

    Never raises for what the network does; an endpoint URL outside ``options.storage_suffixes`` or
    not the account's own is not contacted and comes back unknown with the reason.
    """
    if vantage.endpoint:
        raise ValueError(
            f"vantage point {vantage.name} probes through {vantage.endpoint}, which takes vault names only: "
            "storage accounts are probed from this process's vantage points"
        )
    chosen = {key.lower(): set(subs) for key, subs in (subresources or {}).items()}
    endpoints = [
        (posture, subresource, url)
        for posture in postures
        for subresource, url in posture.primary_endpoints.items()
        if subresource in chosen.get(posture.id.lower(), {subresource})
    ]
    if not endpoints:
        return []
    reachability = Reachability()
    context = tls_context(options.ca_bundle)
    workers = min(options.concurrency, len(endpoints))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"storage-probe-{vantage.name}") as pool:
        return list(
            pool.map(
                lambda endpoint: probe_endpoint(
                    *endpoint,
                    vantage=vantage,
                    options=options,
                    credential=credential,
                    reachability=reachability,
                    context=context,
                ),
                endpoints,
            )
        )


def probe_endpoint(
    posture: StorageAccountPosture,
    subresource: StorageSubresource,
    url: str,
    *,
    vantage: Vantage,
    options: ProbeOptions,
    credential: TokenCredential,
    reachability: Reachability,
    context: ssl.SSLContext,
) -> StorageProbeResult:
    """Every step for one endpoint, each bounded by its own timeout in ``options``."""
    started_at = dt.datetime.now(dt.UTC)
    clock = time.perf_counter()
    request_id = str(uuid.uuid4())
    host = (urlsplit(url).hostname or url).lower()
    result = _Result(posture, subresource, vantage, host, started_at, request_id)
    try:
        endpoint = parse_endpoint_host(host, suffixes=options.storage_suffixes)
    except ValueError as exc:
        return result.done(StorageDataPlaneStep(message=f"not probed: {exc}"), clock=clock)
    if endpoint.account != posture.name.lower() or endpoint.subresource != subresource:
        return result.done(
            StorageDataPlaneStep(
                message=f"not probed: {host} is not the {subresource.value} endpoint of {posture.name}"
            ),
            clock=clock,
        )
    dns = resolve_vault(
        host,
        resolver=vantage.resolver or options.resolver,
        source_address=vantage.source_address,
        timeout_s=options.dns_timeout_s,
        address_space=options.address_space,
        private_link_zone=private_link_zone(subresource, endpoint.suffix),
    )
    result.dns = dns
    if not dns.addresses:
        reason = f"not attempted: DNS gave no address ({dns.error})"
        return result.done(
            StorageDataPlaneStep(verdict=StorageVerdict.UNREACHABLE, message=reason), clock=clock
        )
    address = dns.addresses[0]
    tls, connection = open_tls(
        host,
        address,
        port=options.port,
        source_address=vantage.source_address,
        connect_timeout_s=options.connect_timeout_s,
        tls_timeout_s=options.tls_timeout_s,
        context=context,
        reachability=reachability,
    )
    result.tls = tls
    if connection is None:
        reason = f"not attempted: {tls.certificate_error or tls.error}"
        # A client does not send its token to a server that failed TLS: neither does a probe.
        verdict = StorageVerdict.UNKNOWN if tls.connected else StorageVerdict.UNREACHABLE
        return result.done(StorageDataPlaneStep(verdict=verdict, message=reason), clock=clock)
    route = PinnedRoute(
        hostname=host,
        address=address,
        port=options.port,
        source_address=vantage.source_address,
        connect_timeout_s=options.connect_timeout_s,
        read_timeout_s=options.http_timeout_s,
    )
    with PinnedConnection(route, context=context, sock=connection) as pinned:
        step = list_containers(pinned, credential=credential, client_request_id=request_id)
    found = result.done(step, clock=clock)
    log.info(
        "probed %s from %s: dns=%s verdict=%s code=%s",
        host,
        vantage.name,
        ",".join(dns.addresses),
        found.verdict.value,
        step.error_code,
    )
    return found


@dataclass
class _Result:
    """A result's parts as the steps fill them in."""

    posture: StorageAccountPosture
    subresource: StorageSubresource
    vantage: Vantage
    hostname: str
    started_at: dt.datetime
    client_request_id: str
    dns: DnsStep | None = None
    tls: TlsStep | None = None

    def done(self, step: StorageDataPlaneStep, *, clock: float) -> StorageProbeResult:
        return StorageProbeResult(
            account_id=self.posture.id,
            account_name=self.posture.name,
            subresource=self.subresource,
            vantage=self.vantage.name,
            hostname=self.hostname,
            started_at=self.started_at,
            client_request_id=self.client_request_id,
            dns=self.dns,
            tls=self.tls,
            data_plane=step,
            ip_rules_untested=ip_rules_untested(self.posture, self.vantage),
            duration_ms=round((time.perf_counter() - clock) * 1000, 3),
        )


def ip_rules_untested(posture: StorageAccountPosture, vantage: Vantage) -> str | None:
    """Why a probe from ``vantage`` says nothing of the account's IP rules, or None when it can.

    Only an outside vantage point's probe tests IP rules (inside ones arrive by service endpoint or
    private endpoint), and only where the rules decide: default action Deny and at least one rule.
    """
    if vantage.inside is not False or posture.default_action != DefaultAction.DENY or not posture.ip_rules:
        return None
    if vantage.region is None:
        return (
            f"the region of vantage point {vantage.name} is not stated: if it runs in {posture.location}, "
            "the account's region, Storage did not apply the IP rules to it (state region in KVMON_VANTAGES)"
        )
    if vantage.region.lower() == posture.location.replace(" ", "").lower():
        return (
            f"vantage point {vantage.name} runs in {vantage.region}, the account's region: Storage does not "
            "apply IP rules to callers in the account's region, so this probe could not test them"
        )
    return None


def list_containers(
    connection: PinnedConnection, *, credential: TokenCredential, client_request_id: str
) -> StorageDataPlaneStep:
    """``GET /?comp=list`` with a token, through the real client, and the verdict of its answer."""
    route = connection.route
    client = BlobServiceClient(
        account_url=route.base_url,
        credential=credential,
        transport=PinnedTransport(connection),
        # A redirect elsewhere is refused before it is sent, and is no verdict (probes.dataplane).
        per_retry_policies=[EndpointPolicy(route.base_url)],
        retry_total=0,  # one answer per probe; a retry would hide what happened
    )
    try:
        with client:
            pages = client.list_containers(results_per_page=1, client_request_id=client_request_id).by_page()
            next(pages, None)
            return StorageDataPlaneStep(
                verdict=StorageVerdict.ADMITTED,
                status_code=200,
                message="listed the containers: the network admitted the caller, whose identity has a data role",
            )
    except HttpResponseError as exc:  # ClientAuthenticationError among them: 401 and 403
        if exc.response is None:
            return StorageDataPlaneStep(message=f"no token for the account: {type(exc).__name__}")
        return verdict_of(exc.response)
    except ServiceRequestError as exc:
        if _is_tls_failure(exc):
            return StorageDataPlaneStep(message=f"TLS failed for {route.hostname}")
        return StorageDataPlaneStep(
            verdict=StorageVerdict.UNREACHABLE, message=f"could not connect to {route.address}:{route.port}"
        )
    except ServiceResponseTimeoutError:
        return StorageDataPlaneStep(
            verdict=StorageVerdict.UNREACHABLE, message=f"no answer from {route.address}:{route.port} in time"
        )
    except ServiceResponseError as exc:
        return StorageDataPlaneStep(
            message=f"the connection to {route.address}:{route.port} dropped before an answer ({type(exc).__name__})"
        )
    except OffEndpointRequest as exc:
        return StorageDataPlaneStep(message=str(exc))


def verdict_of(response: object) -> StorageDataPlaneStep:
    """Admitted or refused only on Storage's answer proving it: a 403 whose error code (the
    ``x-ms-error-code`` header, which must agree with the XML document's ``Code`` when it has one)
    is one of the two codes. Anything else is unknown, with what was seen."""
    if not isinstance(response, HttpResponse):  # the pinned transport's answers always are
        return StorageDataPlaneStep(message=f"an answer kvmon cannot read ({type(response).__name__})")
    status = response.status_code
    body = response.content
    header_code = response.headers.get("x-ms-error-code")
    document = _storage_error(body)
    body_code, message = document if document else (None, None)
    request_id = response.headers.get("x-ms-request-id")
    seen = (
        f"Content-Type {response.content_type or 'none'}, {len(body)} bytes, starting {body[:_SEEN_BYTES]!r}"
    )
    if header_code and body_code and header_code != body_code:
        return StorageDataPlaneStep(
            status_code=status,
            error_code=header_code,
            request_id=request_id,
            message=f"{status}: x-ms-error-code {header_code} but the document says {body_code}",
        )
    code = header_code or body_code
    if code is None:
        return StorageDataPlaneStep(
            status_code=status,
            request_id=request_id,
            message=f"{status} without a Storage error code (no x-ms-error-code, no <Error><Code>; {seen})",
        )
    if status == 403 and code == ADMITTED_CODE:
        verdict = StorageVerdict.ADMITTED
        text = first_line(message or "") or "the network admitted the caller; its identity has no data role"
    elif status == 403 and code == REFUSED_CODE:
        verdict = StorageVerdict.REFUSED
        text = (
            f"{first_line(message or '') or 'not authorized'} ({REFUSED_CODE}: what Storage answers when "
            "its network rules refuse the caller, and for some other authorisation failures)"
        )
    else:
        return StorageDataPlaneStep(
            status_code=status,
            error_code=code,
            request_id=request_id,
            message=f"{status} {code} proves nothing about the network rules: {first_line(message or '') or seen}",
        )
    return StorageDataPlaneStep(
        verdict=verdict, status_code=status, error_code=code, request_id=request_id, message=text
    )


def _storage_error(body: bytes) -> tuple[str, str | None] | None:
    """(Code, Message) of Storage's ``<Error>`` document, or None for anything else. The body is at
    most ``probes.dataplane``'s answer limit, and expat refuses entity expansion bombs."""
    try:
        root = ET.fromstring(body)
    except ET.ParseError:
        return None
    code = root.findtext("Code") if root.tag == "Error" else None
    if not code:
        return None
    return code.strip(), root.findtext("Message")
