"""The health and data-plane steps: what the vault says to a caller at this place.

Both go over the connection the TLS step opened to the address the probe's DNS step found, not to
whatever the system resolver says, while SNI, the Host header and the certificate check keep the
vault's name: one handshake per vault and probe. The data-plane call is real
azure-keyvault-secrets (challenge, token, request) over a transport pinned to that connection,
reading a secret name that cannot exist, so it needs no data-plane permission.
"""

from __future__ import annotations

import http.client
import json
import logging
import re
import select
import ssl
import uuid
from collections.abc import Iterator, MutableMapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from azure.core.credentials import TokenCredential
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ServiceRequestError,
    ServiceResponseError,
    ServiceResponseTimeoutError,
)
from azure.core.pipeline.transport import HttpTransport
from azure.core.rest import HttpRequest, HttpResponse
from azure.core.utils import case_insensitive_dict
from azure.keyvault.secrets import SecretClient

from monitor.azure_errors import first_line
from monitor.azure_origin import EndpointPolicy, OffEndpointRequest
from monitor.model import DataPlaneStep, HealthStep, Verdict
from monitor.netaddr import AddressSpace
from probes.network import connect_pinned

NETWORK_INFO_HEADER = "x-ms-keyvault-network-info"
_CLIENT_ADDRESS = re.compile(r"Client address:\s*([0-9A-Fa-f:.]+)")
_MAX_BODY_BYTES = 1024 * 1024  # a Key Vault answer to a probe is an error document or a secret
# The SDK logs a warning with a traceback when an error body is not Key Vault's shape; the probe
# reads that body itself and reports what it saw, so the traceback is noise on a user's terminal.
logging.getLogger("azure.keyvault.secrets._generated._utils.model_base").setLevel(logging.ERROR)


@dataclass(frozen=True)
class PinnedRoute:
    """Where and how to reach one vault: its name, the probed address, and the client side."""

    hostname: str
    address: str
    port: int
    source_address: str | None
    connect_timeout_s: float
    read_timeout_s: float

    @property
    def base_url(self) -> str:
        return f"https://{self.hostname}" if self.port == 443 else f"https://{self.hostname}:{self.port}"

    @property
    def host_header(self) -> str:
        return self.hostname if self.port == 443 else f"{self.hostname}:{self.port}"


@dataclass(frozen=True)
class PinnedAnswer:
    """One HTTP answer, read whole."""

    status: int
    reason: str
    headers: MutableMapping[str, str]  # case-insensitive
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class PinnedConnection:
    """HTTP/1.1 over one TLS connection to the route's address, verified as the vault's name.

    Starts from the connection the TLS step opened (``sock``), or opens one on the first request;
    when the server has closed it, the next request opens a new one with the same checks. Not
    thread-safe: one probe, one connection. ``http.client`` does the HTTP; the pinning is
    ``connect``'s.
    """

    def __init__(
        self, route: PinnedRoute, *, context: ssl.SSLContext, sock: ssl.SSLSocket | None = None
    ) -> None:
        self.route = route
        self._http = _PinnedHTTPConnection(route, context=context)
        if sock is not None:
            sock.settimeout(route.read_timeout_s)
            self._http.sock = sock

    def request(
        self, method: str, target: str, *, headers: dict[str, str] | None = None, body: bytes | None = None
    ) -> PinnedAnswer:
        """Send ``method target`` (path and query) and read the whole answer.

        Raises ``OSError`` (``ssl.SSLError``, ``TimeoutError`` and ``ConnectionError`` among them)
        or ``http.client.HTTPException`` for what the network or the server did.
        """
        if isinstance(self._http.sock, ssl.SSLSocket) and _dropped(self._http.sock):
            self._http.close()
        sent = {"Host": self.route.host_header, **(headers or {})}
        self._http.request(method, target, body=body, headers=sent)
        response = self._http.getresponse()
        body_read = response.read(_MAX_BODY_BYTES + 1)
        if len(body_read) > _MAX_BODY_BYTES:
            self._http.close()
            raise http.client.HTTPException(f"the answer is larger than {_MAX_BODY_BYTES} bytes")
        if not response.isclosed():
            self._http.close()  # more body than Content-Length said, or chunked without an end
        return PinnedAnswer(
            status=response.status,
            reason=response.reason,
            headers=case_insensitive_dict(response.getheaders()),
            body=body_read,
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> PinnedConnection:
        return self

    def __exit__(self, *args: object) -> None:
        self.close()


class _PinnedHTTPConnection(http.client.HTTPConnection):
    def __init__(self, route: PinnedRoute, *, context: ssl.SSLContext) -> None:
        super().__init__(route.address, route.port, timeout=route.connect_timeout_s)
        self._route = route
        self._context = context

    def connect(self) -> None:
        route = self._route
        try:
            self.sock = connect_pinned(
                route.hostname,
                (route.address, route.port, route.source_address),
                timeout_s=route.connect_timeout_s,
                context=self._context,
            )
        except OSError as exc:
            raise PinnedConnectFailed(
                f"could not connect to {route.address}:{route.port} as {route.hostname}: {exc}"
            ) from exc
        self.sock.settimeout(route.read_timeout_s)


class PinnedConnectFailed(ConnectionError):
    """No connection could be made (none yet, or the server had closed it): nothing was sent."""


def _dropped(sock: ssl.SSLSocket) -> bool:
    """True when the server closed an idle connection (or sent what nobody asked for).

    Readable alone does not say closed: a TLS 1.3 server sends its session tickets after the
    handshake. Reading without waiting consumes those and tells an open connection (nothing to
    read yet) from a closed one (end of stream, or an error).
    """
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return True
    if not readable:
        return False
    timeout = sock.gettimeout()
    sock.settimeout(0.0)
    try:
        sock.recv(1)
    except ssl.SSLWantReadError:
        return False
    except OSError:
        return True
    finally:
        sock.settimeout(timeout)
    return True  # end of stream, or bytes before any request: either way not reusable


class PinnedTransport(HttpTransport):
    """An azure-core transport whose every request goes over one ``PinnedConnection``.

    Refuses a request for any other host: the SDK's token is only ever sent to the probed vault.
    """

    def __init__(self, connection: PinnedConnection) -> None:
        self._connection = connection

    def __enter__(self) -> PinnedTransport:
        return self

    def __exit__(self, *args: object) -> None:
        return None  # the probe owns the connection

    def open(self) -> None:
        return None

    def close(self) -> None:
        return None

    def send(self, request: HttpRequest, **kwargs: Any) -> HttpResponse:
        url = urlsplit(request.url)
        route = self._connection.route
        if (
            url.scheme != "https"
            or (url.hostname or "").lower() != route.hostname.lower()
            or (url.port or 443) != route.port
        ):
            raise ServiceRequestError(f"refused: the pinned transport only sends to {route.base_url}")
        target = url.path + (f"?{url.query}" if url.query else "")
        body = request.content
        if isinstance(body, str):
            body = body.encode("utf-8")
        if body is not None and not isinstance(body, bytes):
            raise ServiceRequestError("the pinned transport sends whole bodies only")
        try:
            answer = self._connection.request(
                request.method, target, headers=dict(request.headers), body=body
            )
        except (PinnedConnectFailed, ssl.SSLError) as exc:
            raise ServiceRequestError(exc, error=exc) from exc
        except TimeoutError as exc:
            raise ServiceResponseTimeoutError(exc, error=exc) from exc
        except (OSError, http.client.HTTPException) as exc:
            raise ServiceResponseError(exc, error=exc) from exc
        return _PinnedHttpResponse(request, answer)


class _PinnedHttpResponse(HttpResponse):
    """azure-core's public response interface over an answer already read whole."""

    def __init__(self, request: HttpRequest, answer: PinnedAnswer) -> None:
        self._request = request
        self._answer = answer
        self._encoding: str | None = None

    @property
    def request(self) -> HttpRequest:
        return self._request

    @property
    def status_code(self) -> int:
        return self._answer.status

    @property
    def headers(self) -> MutableMapping[str, str]:
        return self._answer.headers

    @property
    def reason(self) -> str:
        return self._answer.reason

    @property
    def content_type(self) -> str | None:
        return self._answer.headers.get("Content-Type")

    @property
    def is_closed(self) -> bool:
        return True

    @property
    def is_stream_consumed(self) -> bool:
        return True

    @property
    def encoding(self) -> str | None:
        return self._encoding

    @encoding.setter
    def encoding(self, value: str | None) -> None:
        self._encoding = value

    @property
    def url(self) -> str:
        return self._request.url

    @property
    def content(self) -> bytes:
        return self._answer.body

    def text(self, encoding: str | None = None) -> str:
        return self._answer.body.decode(encoding or self._encoding or "utf-8", errors="replace")

    def json(self) -> Any:
        return json.loads(self._answer.body)

    def raise_for_status(self) -> None:
        if self.status_code >= 400:
            raise HttpResponseError(response=self)

    def __enter__(self) -> _PinnedHttpResponse:
        return self

    def __exit__(self, *args: object) -> None:
        return None

    def close(self) -> None:
        return None

    def read(self) -> bytes:
        return self._answer.body

    def body(self) -> bytes:
        """The legacy transport response's name for the content: azure-storage-blob's generated
        deserializer reads a response with ``body()`` by its Content-Type, and anything else as
        bytes it cannot parse."""
        return self._answer.body

    def iter_raw(self, **kwargs: Any) -> Iterator[bytes]:
        yield self._answer.body

    def iter_bytes(self, **kwargs: Any) -> Iterator[bytes]:
        yield self._answer.body


def check_health(connection: PinnedConnection, *, address_space: AddressSpace) -> HealthStep:
    """``GET /healthstatus`` without a token: the address the vault saw, from its header."""
    route = connection.route
    try:
        answer = connection.request("GET", "/healthstatus")
    except ssl.SSLError:
        return HealthStep(error=f"TLS to {route.address}:{route.port} failed for {route.hostname}")
    except TimeoutError:
        return HealthStep(error=f"no answer from {route.address}:{route.port} in time")
    except (OSError, http.client.HTTPException) as exc:
        return HealthStep(error=f"request failed: {type(exc).__name__}")
    seen = parse_network_info(answer.headers.get(NETWORK_INFO_HEADER)).get("addr")
    return HealthStep(
        status_code=answer.status,
        seen_address=seen,
        seen_address_private=address_space.is_private(seen) if seen else None,
        error=None if 200 <= answer.status < 400 else f"healthstatus answered {answer.status}",
    )


def parse_network_info(header: str | None) -> dict[str, str]:
    """``conn_type=Ipv4;addr=1.2.3.4;act_addr_fam=InterNetwork;`` -> its key/value pairs."""
    pairs: dict[str, str] = {}
    for part in (header or "").split(";"):
        key, sep, value = part.partition("=")
        if sep and key.strip():
            pairs[key.strip().lower()] = value.strip()
    return pairs


def probe_secret_read(
    connection: PinnedConnection,
    *,
    credential: TokenCredential,
    address_space: AddressSpace,
) -> DataPlaneStep:
    """Read a secret that does not exist and turn the answer into a verdict.

    404 SecretNotFound, or a 403 from Key Vault that is not a network refusal, means the network
    admitted the caller (``_verdict_of``).
    """
    route = connection.route
    secret_name = f"kvmon-probe-{uuid.uuid4().hex}"
    client = SecretClient(
        vault_url=route.base_url,
        credential=credential,
        transport=PinnedTransport(connection),
        # A redirect elsewhere is refused before it is sent, and is no verdict: the answer of
        # another host says nothing about this vault's firewall (the pinned transport would not
        # reach it either, but that would read as "unreachable").
        per_retry_policies=[EndpointPolicy(route.base_url)],
        retry_total=0,  # one answer per probe; a retry would hide what happened
    )
    try:
        with client:
            secret = client.get_secret(secret_name)
        return DataPlaneStep(verdict=Verdict.ADMITTED, status_code=200, message=f"read {secret.name}")
    except HttpResponseError as exc:
        return _verdict_of(exc, address_space=address_space)
    except ClientAuthenticationError as exc:
        return DataPlaneStep(verdict=Verdict.ERROR, message=f"no token for the vault: {type(exc).__name__}")
    except ServiceRequestError as exc:
        if _is_tls_failure(exc):
            return DataPlaneStep(verdict=Verdict.ERROR, message=f"TLS failed for {route.hostname}")
        return DataPlaneStep(
            verdict=Verdict.UNREACHABLE, message=f"could not connect to {route.address}:{route.port}"
        )
    except ServiceResponseTimeoutError:
        return DataPlaneStep(
            verdict=Verdict.UNREACHABLE, message=f"no answer from {route.address}:{route.port} in time"
        )
    except ServiceResponseError as exc:
        # The request went out and the connection dropped before an answer: the address is
        # reachable, so this says nothing about the firewall either way.
        return DataPlaneStep(
            verdict=Verdict.ERROR,
            message=f"the connection to {route.address}:{route.port} dropped before an answer "
            f"({type(exc).__name__})",
        )
    except OffEndpointRequest as exc:
        return DataPlaneStep(verdict=Verdict.ERROR, message=str(exc))
    except ValueError as exc:  # the SDK refuses a challenge whose resource is not the vault's
        return DataPlaneStep(verdict=Verdict.ERROR, message=first_line(str(exc)))


# An inner code that says the network refused the caller (AZURE-NOTES.md, Key Vault data plane).
_NETWORK_REFUSALS = {
    "ForbiddenByFirewall": Verdict.REFUSED_FIREWALL,
    "ForbiddenByConnection": Verdict.REFUSED_PUBLIC_DISABLED,
    "ForbiddenByNsp": Verdict.REFUSED_PERIMETER,
}
_SEEN_BYTES = 80  # how much of an answer that proves nothing the verdict quotes


@dataclass(frozen=True)
class _KeyVaultError:
    """``{"error": {"code": ..., "message": ..., "innererror": {"code": ...}}}``, read whole."""

    code: str
    message: str
    inner_code: str | None


def _key_vault_error(body: bytes) -> _KeyVaultError | None:
    """Key Vault's JSON error document, or None for anything else (cut off, not JSON, other shape)."""
    try:
        document = json.loads(body)
    except ValueError:
        return None
    error = document.get("error") if isinstance(document, dict) else None
    if not isinstance(error, dict):
        return None
    code, message, inner = error.get("code"), error.get("message"), error.get("innererror")
    if not isinstance(code, str) or not isinstance(message, str):
        return None
    if inner is None:
        return _KeyVaultError(code=code, message=message, inner_code=None)
    inner_code = inner.get("code") if isinstance(inner, dict) else None
    if not isinstance(inner_code, str):
        return None  # an innererror without a readable code: its reason cannot be told
    return _KeyVaultError(code=code, message=message, inner_code=inner_code)


def _verdict_of(exc: HttpResponseError, *, address_space: AddressSpace) -> DataPlaneStep:
    """Admitted or refused only on what Key Vault's answer proves; anything else is an error.

    A status line alone proves nothing (a proxy or a cut-off answer has one too): admitted needs
    a 404 SecretNotFound or a 403 in Key Vault's error shape with a non-network inner code (or
    none), refused needs a network inner code.
    """
    status = exc.status_code
    # The pinned transport's own answer, read whole (azure-core types it as its common API only).
    response = exc.response if isinstance(exc.response, HttpResponse) else None
    body = response.content if response is not None else b""
    error = _key_vault_error(body)
    if error is None:
        content_type = response.content_type if response is not None else None
        return DataPlaneStep(
            verdict=Verdict.ERROR,
            status_code=status,
            message=f"{status} is not Key Vault's error document (Content-Type {content_type or 'none'}, "
            f"{len(body)} bytes, starting {body[:_SEEN_BYTES]!r})",
        )
    match = _CLIENT_ADDRESS.search(error.message)
    client_address = match.group(1) if match else None
    if status == 404 and error.code == "SecretNotFound":
        verdict = Verdict.ADMITTED
    elif status == 403 and error.inner_code in _NETWORK_REFUSALS:
        verdict = _NETWORK_REFUSALS[error.inner_code]
    elif status == 403:
        verdict = Verdict.ADMITTED  # the network let the caller in; authorisation said no
    else:
        verdict = Verdict.ERROR
    return DataPlaneStep(
        verdict=verdict,
        status_code=status,
        error_code=error.code,
        inner_code=error.inner_code,
        client_address=client_address,
        client_address_private=address_space.is_private(client_address) if client_address else None,
        # Only the first line, redacted: later lines of Key Vault's 403 carry the caller's token
        # claims (appid, oid, issuer), which are not logged or stored.
        message=first_line(error.message) or (exc.reason or None),
    )


def _is_tls_failure(exc: BaseException) -> bool:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, ssl.SSLError):
            return True
        inner = getattr(current, "inner_exception", None)
        current = inner if isinstance(inner, BaseException) else current.__cause__ or current.__context__
    return False
