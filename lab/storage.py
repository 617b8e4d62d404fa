"""Storage's data plane for the lab: ``GET /?comp=list`` on every sub-resource host of the estate's
storage accounts, with the account's network rules enforced, and Storage's DNS names.

Network rules, as AZURE-NOTES.md (Storage) and Azure's "Configure Azure Storage firewalls and
virtual networks" document them:

- A request that arrives at a private endpoint's address passes when that endpoint is the
  account's, serves the sub-resource the Host header names, and its connection is Approved;
  anything else that reaches a private endpoint is refused.
- On the public front end, ``publicNetworkAccess`` Disabled (or SecuredByPerimeter: the lab has no
  perimeter for storage) refuses everyone.
- ``networkAcls.defaultAction`` Allow admits everyone; Deny admits a caller from a subnet with the
  Microsoft.Storage service endpoint that a virtual network rule names, or whose public address an
  IP rule holds; IP rules do not apply to a caller in the account's region (``Estate.caller_regions``),
  whose traffic arrives by Azure's private addresses. A subnet without the service endpoint leaves
  by its NAT address, as for Key Vault.
- Bypass (trusted services, resource instance rules) admits none of the lab's callers.

Answers are Storage's: its XML error document (``<Error><Code>..</Code><Message>..</Message></Error>``)
with the code in ``x-ms-error-code`` too. A refusal by the network is 403 AuthorizationFailure; a
token the network admitted but whose identity has no data role (``StorageDataPlane.readers``) is
403 AuthorizationPermissionMismatch; a reader gets the (empty) list. Storage answers
AuthorizationFailure for other failures as well, so the code alone does not prove it was the
network: the probes say so.

DNS: ``<account>.<sub>.core.lab.test`` is a CNAME to ``<account>.privatelink.<sub>.core.lab.test``
once an approved endpoint serves that sub-resource; a VNet linked to that sub-resource's zone
(``VirtualNetwork.storage_zones``) gets the endpoint's address, everyone else the public chain to
the sub-resource's front end (``<sub>.lab-prod.store.core.lab.test``).

It listens on its own addresses (``listening_addresses``) on the port the Key Vault data plane
has, so one probe port reaches both services.
"""

from __future__ import annotations

import datetime as dt
import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from xml.sax.saxutils import escape

from lab.estate import (
    LAB_STORAGE_SUFFIX,
    LAB_TENANT,
    STORAGE_SUBRESOURCES,
    Estate,
    Resolution,
    _ip_rule_admits,
    token_claims,
)
from lab.http import LabServer, Request, Response
from lab.keyvault import _stop_all

STORAGE_INGRESS = "127.40.0.20"  # the region's public Storage front end (every sub-resource's)
STORAGE_CLUSTER = f"lab-prod.store.{LAB_STORAGE_SUFFIX}"  # <sub>.<cluster>: a front end's name
STORAGE_AUDIENCE = "https://storage.azure.com"
STORAGE_HOSTNAMES = tuple(f"*.{sub}.{LAB_STORAGE_SUFFIX}" for sub in STORAGE_SUBRESOURCES)
X_MS_VERSION = "2026-02-06"

NETWORK_REFUSED = (
    "AuthorizationFailure",
    "This request is not authorized to perform this operation.",
)
NO_DATA_ROLE = (
    "AuthorizationPermissionMismatch",
    "This request is not authorized to perform this operation using this permission.",
)


@dataclass(frozen=True)
class StorageDecision:
    """The network's verdict on one request and why (the lab's tests read ``reason``)."""

    admitted: bool
    reason: str


@dataclass(frozen=True)
class StorageRequest:
    """One request the data plane answered."""

    account: str
    subresource: str
    client_address: str
    local_address: str
    client_request_id: str | None
    status: int
    error_code: str | None
    decision: StorageDecision | None  # None: not authenticated, nothing was decided


def listening_addresses(estate: Estate) -> list[str]:
    """The public front end and every storage account's private endpoint."""
    with estate._lock:
        endpoints = {
            address
            for endpoint_id, address in estate.private_endpoint_addresses.items()
            if endpoint_id in estate.private_endpoints
        }
    return [STORAGE_INGRESS, *sorted(endpoints)]


def split_host(host: str) -> tuple[str, str] | None:
    """``sa1.blob.core.lab.test`` (or its privatelink name) -> ("sa1", "blob"); None for other names."""
    name = host.rstrip(".").lower()
    if not name.endswith("." + LAB_STORAGE_SUFFIX):
        return None
    labels = name[: -len(LAB_STORAGE_SUFFIX) - 1].split(".")
    if len(labels) == 3 and labels[1] == "privatelink":
        labels = [labels[0], labels[2]]
    if len(labels) != 2 or labels[1] not in STORAGE_SUBRESOURCES:
        return None
    return labels[0], labels[1]


def _account_named(estate: Estate, name: str) -> dict[str, Any] | None:
    """The account itself (not a copy): callers hold the estate's lock."""
    for account in estate.storage_accounts.values():
        if account["name"].lower() == name:
            return account
    return None


def _approved_endpoints(estate: Estate, account: dict[str, Any], subresource: str) -> list[str]:
    """The lower-cased ids of the account's approved private endpoints for ``subresource``."""
    approved = []
    for connection in account["properties"].get("privateEndpointConnections") or []:
        props = connection["properties"]
        if props["privateLinkServiceConnectionState"]["status"] != "Approved":
            continue
        endpoint_id = props["privateEndpoint"]["id"].lower()
        endpoint = estate.private_endpoints.get(endpoint_id)
        if endpoint is None:
            continue
        for link in endpoint["properties"]["privateLinkServiceConnections"]:
            link_props = link["properties"]
            if (
                link_props["privateLinkServiceId"].lower() == account["id"].lower()
                and subresource in link_props["groupIds"]
            ):
                approved.append(endpoint_id)
    return approved


def resolve(estate: Estate, name: str, *, source_address: str) -> Resolution | None:
    """The answer for a storage name as a client at ``source_address`` gets it; None for a name
    that is not Storage's or an account that does not exist (NXDOMAIN)."""
    query = name.rstrip(".").lower()
    for sub in STORAGE_SUBRESOURCES:
        if query == f"{sub}.{STORAGE_CLUSTER}":
            return Resolution((query,), (STORAGE_INGRESS,))
    parts = split_host(query)
    if parts is None:
        return None
    account_name, sub = parts
    with estate._lock:
        account = _account_named(estate, account_name)
        if account is None or sub not in (account["properties"].get("primaryEndpoints") or {}):
            return None
        approved = _approved_endpoints(estate, account, sub)
        chain = [f"{account_name}.{sub}.{LAB_STORAGE_SUFFIX}"]
        if approved:
            zone = f"privatelink.{sub}.{LAB_STORAGE_SUFFIX}"
            chain.append(f"{account_name}.{zone}")
            located = estate.locate(source_address)
            address = estate.private_endpoint_addresses.get(approved[0])
            if located is not None and zone in located[0].storage_zones and address:
                return Resolution(tuple(chain), (address,))
    chain.append(f"{sub}.{STORAGE_CLUSTER}")
    return Resolution(tuple(chain), (STORAGE_INGRESS,))


def region_of(estate: Estate, address: str) -> str | None:
    """The Azure region a caller at ``address`` is in (``Estate.caller_regions``); None: outside Azure."""
    for prefix, region in estate.caller_regions.items():
        if _ip_rule_admits(prefix, address):
            return region
    return None


def decide(
    estate: Estate, account_name: str, subresource: str, *, client_address: str, local_address: str
) -> StorageDecision:
    """Storage's network check for one request (the module's docstring gives the order)."""
    with estate._lock:
        account = _account_named(estate, account_name)
        if account is None:
            return StorageDecision(False, f"no account {account_name}")
        props = account["properties"]
        located = estate.locate(client_address)
        if local_address != STORAGE_INGRESS:
            endpoint_id = next(
                (
                    key
                    for key, address in estate.private_endpoint_addresses.items()
                    if address == local_address
                ),
                None,
            )
            if endpoint_id in _approved_endpoints(estate, account, subresource) and located is not None:
                return StorageDecision(True, f"private endpoint {endpoint_id}")
            return StorageDecision(
                False, f"{local_address} is no approved {subresource} endpoint of the account"
            )
        access = str(props.get("publicNetworkAccess") or "Enabled").lower()
        if access in ("disabled", "securedbyperimeter"):
            return StorageDecision(False, f"publicNetworkAccess {props.get('publicNetworkAccess')}")
        acls = props.get("networkAcls") or {}
        if str(acls.get("defaultAction") or "Allow").lower() != "deny":
            return StorageDecision(True, "defaultAction Allow")
        subnet = located[1] if located is not None else None
        if subnet is not None and subnet.service_endpoint_storage:
            for rule in acls.get("virtualNetworkRules") or []:
                # A rule whose subnet was deleted (NetworkSourceDeleted) or is still being set up admits nobody.
                state = str(rule.get("state") or "Succeeded")
                if str(rule.get("id", "")).lower() == subnet.id.lower() and state == "Succeeded":
                    return StorageDecision(True, f"virtual network rule {subnet.id}")
            return StorageDecision(False, f"defaultAction Deny: no virtual network rule for {subnet.id}")
        seen = subnet.nat_public_address if subnet is not None else client_address
        region = region_of(estate, client_address)
        if region is not None and region.lower() == str(account["location"]).lower():
            return StorageDecision(
                False,
                f"defaultAction Deny: a caller in {region}, the account's region, is not matched by IP rules",
            )
        for rule in acls.get("ipRules") or []:
            if _ip_rule_admits(str(rule.get("value", "")), seen):
                return StorageDecision(True, f"IP rule {rule.get('value')}")
        return StorageDecision(False, f"defaultAction Deny: no rule admits {seen}")


def error_document(code: str, message: str, *, request_id: str) -> bytes:
    """Storage's XML error body; its message ends with the request id and time, as Azure's does."""
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f0Z")
    text = f"{message}\nRequestId:{request_id}\nTime:{now}"
    return (
        '<?xml version="1.0" encoding="utf-8"?>'
        f"<Error><Code>{escape(code)}</Code><Message>{escape(text)}</Message></Error>"
    ).encode()


class StorageDataPlane:
    """``with StorageDataPlane(estate, port=kv.port) as storage:``.

    ``readers``: object ids of identities with a data role (they get the list). ``authenticated_answers``:
    account name -> the answer to an authenticated request, in place of the network's (an answer
    without an error code, a body of another shape). ``requests``: every request answered.
    """

    def __init__(self, estate: Estate, *, port: int = 0, addresses: Sequence[str] | None = None) -> None:
        self.estate = estate
        self.port = port
        self._addresses = tuple(addresses) if addresses is not None else None
        self.servers: dict[str, LabServer] = {}
        self.readers: set[str] = set()
        self.authenticated_answers: dict[str, Response] = {}
        self.requests: list[StorageRequest] = []
        self._lock = threading.Lock()

    def start(self) -> StorageDataPlane:
        addresses = (
            self._addresses if self._addresses is not None else tuple(listening_addresses(self.estate))
        )
        started: list[LabServer] = []
        try:
            for address in addresses:
                server = LabServer(
                    name=f"storage-{address}",
                    host=address,
                    port=self.port,
                    certificate_hosts=STORAGE_HOSTNAMES,
                )
                server.route("GET", r"/", self._list, name="ListContainers")
                server.start()
                started.append(server)
                self.port = server.port  # port 0: the first server's, for every address
        except BaseException:
            for server in started:
                server.stop()
            raise
        self.servers = {server.host: server for server in started}
        return self

    def stop(self) -> None:
        _stop_all(list(self.servers.values()))
        self.servers = {}

    def __enter__(self) -> StorageDataPlane:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _list(self, request: Request) -> Response:
        request_id = str(uuid.uuid4())
        headers = {
            "x-ms-request-id": request_id,
            "x-ms-version": request.header("x-ms-version") or X_MS_VERSION,
            "Server": "Windows-Azure-Blob/1.0 Microsoft-HTTPAPI/2.0",
        }
        client_request_id = request.header("x-ms-client-request-id")
        if client_request_id:
            headers["x-ms-client-request-id"] = client_request_id
        parts = split_host((request.header("Host") or "").rsplit(":", 1)[0])
        account = None
        if parts is not None:
            with self.estate._lock:
                found = _account_named(self.estate, parts[0])
                account = found["name"] if found else None
        decision: StorageDecision | None = None
        if parts is None or account is None:
            response = self._error(
                400, "InvalidUri", "The requested URI does not represent any resource on the server.", headers
            )
        elif request.query.get("comp") != "list":
            response = self._error(
                400,
                "InvalidQueryParameterValue",
                "Value for one of the query parameters specified in the request URI is invalid.",
                headers,
            )
        else:
            claims = token_claims(request.header("Authorization"))
            if claims is None or str(claims.get("aud", "")).rstrip("/") != STORAGE_AUDIENCE:
                headers["WWW-Authenticate"] = (
                    f"Bearer authorization_uri=https://login.microsoftonline.com/{LAB_TENANT}/oauth2/authorize "
                    f"resource_id={STORAGE_AUDIENCE}"
                )
                response = self._error(
                    401, "InvalidAuthenticationInfo", "Server failed to authenticate the request.", headers
                )
            elif (answer := self.authenticated_answers.get(account.lower())) is not None:
                response = Response(answer.status, answer.body, {**headers, **answer.headers})
            else:
                decision = decide(
                    self.estate,
                    account.lower(),
                    parts[1],
                    client_address=request.client_address,
                    local_address=request.local_address,
                )
                if not decision.admitted:
                    response = self._error(403, *NETWORK_REFUSED, headers)
                elif str(claims.get("oid", "")) in self.readers:
                    response = Response(
                        200, _empty_list(parts), {**headers, "Content-Type": "application/xml"}
                    )
                else:
                    response = self._error(403, *NO_DATA_ROLE, headers)
        with self._lock:
            self.requests.append(
                StorageRequest(
                    account=parts[0] if parts else "",
                    subresource=parts[1] if parts else "",
                    client_address=request.client_address,
                    local_address=request.local_address,
                    client_request_id=client_request_id,
                    status=response.status,
                    error_code=response.headers.get("x-ms-error-code"),
                    decision=decision,
                )
            )
        return response

    @staticmethod
    def _error(status: int, code: str, message: str, headers: dict[str, str]) -> Response:
        body = error_document(code, message, request_id=headers["x-ms-request-id"])
        return Response(status, body, {**headers, "x-ms-error-code": code, "Content-Type": "application/xml"})


def _empty_list(parts: tuple[str, str]) -> bytes:
    endpoint = f"https://{parts[0]}.{parts[1]}.{LAB_STORAGE_SUFFIX}/"
    return (
        '<?xml version="1.0" encoding="utf-8"?>'
        f'<EnumerationResults ServiceEndpoint="{escape(endpoint)}"><Containers /><NextMarker /></EnumerationResults>'
    ).encode()
