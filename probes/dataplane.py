"""The health and data-plane steps: what the vault says to a caller at this place.

Both go to the address the probe's DNS step found, not to whatever the system resolver says,
while SNI, the Host header and the certificate check keep the vault's name: a requests adapter
whose only connection pool is pinned to (address, port) and bound to the vantage's source
address. The data-plane call is real azure-keyvault-secrets (challenge, token, request) reading
a secret name that cannot exist, so it needs no data-plane permission.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from typing import Any

import requests
import urllib3
from azure.core.credentials import TokenCredential
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ServiceRequestError,
    ServiceResponseError,
    ServiceResponseTimeoutError,
)
from azure.core.pipeline.transport import RequestsTransport
from azure.keyvault.secrets import SecretClient

from monitor.model import DataPlaneStep, HealthStep, Verdict
from monitor.netaddr import AddressSpace
from probes.network import tls_context

NETWORK_INFO_HEADER = "x-ms-keyvault-network-info"
_CLIENT_ADDRESS = re.compile(r"Client address:\s*([0-9A-Fa-f:.]+)")
_MESSAGE_CHARS = 300


@dataclass(frozen=True)
class PinnedRoute:
    """Where and how to reach one vault: its name, the probed address, and the client side."""

    hostname: str
    address: str
    port: int
    source_address: str | None
    ca_bundle: str | None
    connect_timeout_s: float
    read_timeout_s: float

    @property
    def base_url(self) -> str:
        return f"https://{self.hostname}" if self.port == 443 else f"https://{self.hostname}:{self.port}"

    @property
    def host_header(self) -> str:
        return self.hostname if self.port == 443 else f"{self.hostname}:{self.port}"


class PinnedAdapter(requests.adapters.HTTPAdapter):
    """Sends every request of its session to one address, checked as the vault's name."""

    def __init__(self, route: PinnedRoute) -> None:
        super().__init__(max_retries=0)
        self._route = route
        # The process's shared context checks the chain and, against server_hostname, the name.
        # Neither assert_hostname (urllib3 would turn the shared context's name check off for
        # every user) nor ca_certs (it would load the bundle into it on every connection).
        self._pool = urllib3.HTTPSConnectionPool(
            route.address,
            route.port,
            server_hostname=route.hostname,
            ssl_context=tls_context(route.ca_bundle),
            cert_reqs="CERT_REQUIRED",
            source_address=(route.source_address, 0) if route.source_address else None,
            timeout=urllib3.Timeout(connect=route.connect_timeout_s, read=route.read_timeout_s),
            maxsize=1,
            retries=False,
        )

    def get_connection_with_tls_context(
        self, request: requests.PreparedRequest, verify: Any, proxies: Any = None, cert: Any = None
    ) -> urllib3.HTTPSConnectionPool:
        return self._pool

    def cert_verify(self, conn: Any, url: str, verify: Any, cert: Any) -> None:
        # The pinned pool carries the verification settings; requests must not swap in its own
        # CA bundle or turn verification off.
        return None

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> requests.Response:
        # urllib3 would send the pool's address as Host; Key Vault routes by the vault's name.
        request.headers["Host"] = self._route.host_header
        return super().send(request, *args, **kwargs)

    def close(self) -> None:
        self._pool.close()
        super().close()


def pinned_session(route: PinnedRoute) -> requests.Session:
    session = requests.Session()
    session.trust_env = False  # no proxies or CA bundles from the environment: the route is the path
    session.mount("https://", PinnedAdapter(route))
    return session


def check_health(route: PinnedRoute, *, session: requests.Session, address_space: AddressSpace) -> HealthStep:
    """``GET /healthstatus`` without a token: the address the vault saw, from its header."""
    try:
        response = session.get(
            f"{route.base_url}/healthstatus",
            timeout=(route.connect_timeout_s, route.read_timeout_s),
            allow_redirects=False,
        )
    except requests.exceptions.SSLError:
        return HealthStep(error=f"TLS to {route.address}:{route.port} failed for {route.hostname}")
    except requests.exceptions.Timeout:
        return HealthStep(error=f"no answer from {route.address}:{route.port} in time")
    except requests.exceptions.RequestException as exc:
        return HealthStep(error=f"request failed: {type(exc).__name__}")
    seen = parse_network_info(response.headers.get(NETWORK_INFO_HEADER)).get("addr")
    return HealthStep(
        status_code=response.status_code,
        seen_address=seen,
        seen_address_private=address_space.is_private(seen) if seen else None,
        error=None if response.ok else f"healthstatus answered {response.status_code}",
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
    route: PinnedRoute,
    *,
    session: requests.Session,
    credential: TokenCredential,
    address_space: AddressSpace,
) -> DataPlaneStep:
    """Read a secret that does not exist and turn the answer into a verdict.

    404, or a 403 that is not a network refusal, means the network admitted the caller.
    """
    secret_name = f"kvmon-probe-{uuid.uuid4().hex}"
    transport = RequestsTransport(
        session=session,
        session_owner=False,
        connection_timeout=route.connect_timeout_s,
        read_timeout=route.read_timeout_s,
    )
    client = SecretClient(
        vault_url=route.base_url,
        credential=credential,
        transport=transport,
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
    except ValueError as exc:  # the SDK refuses a challenge whose resource is not the vault's
        return DataPlaneStep(verdict=Verdict.ERROR, message=_first_line(str(exc)))


def _verdict_of(exc: HttpResponseError, *, address_space: AddressSpace) -> DataPlaneStep:
    status = exc.status_code
    error = exc.error
    code = error.code if error is not None else None
    inner_code = None
    message = ""
    if error is not None:
        inner = error.innererror or {}
        inner_code = inner.get("code") if isinstance(inner, dict) else None
        message = error.message or ""
    match = _CLIENT_ADDRESS.search(message)
    client_address = match.group(1) if match else None
    if status == 404:
        verdict = Verdict.ADMITTED
    elif status == 403 and inner_code == "ForbiddenByFirewall":
        verdict = Verdict.REFUSED_FIREWALL
    elif status == 403 and inner_code == "ForbiddenByConnection":
        verdict = Verdict.REFUSED_PUBLIC_DISABLED
    elif status == 403:
        verdict = Verdict.ADMITTED  # the network let the caller in; authorisation said no
    else:
        verdict = Verdict.ERROR
    return DataPlaneStep(
        verdict=verdict,
        status_code=status,
        error_code=code,
        inner_code=inner_code,
        client_address=client_address,
        client_address_private=address_space.is_private(client_address) if client_address else None,
        message=_first_line(message) or (exc.reason or None),
    )


def _first_line(message: str) -> str:
    """The message's first line only: later lines of Key Vault's 403 carry the caller's token
    claims (appid, oid, issuer), which are not logged or stored."""
    first = re.split(r"[\r\n]+", message.strip(), maxsplit=1)[0] if message.strip() else ""
    first = first.split("Caller:", 1)[0].strip()
    return first if len(first) <= _MESSAGE_CHARS else first[: _MESSAGE_CHARS - 3] + "..."


def _is_tls_failure(exc: BaseException) -> bool:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, requests.exceptions.SSLError | urllib3.exceptions.SSLError):
            return True
        inner = getattr(current, "inner_exception", None)
        current = inner if isinstance(inner, BaseException) else current.__cause__ or current.__context__
    return False
