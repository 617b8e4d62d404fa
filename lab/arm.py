"""Azure Resource Manager for Key Vault vaults, emulated over HTTPS on loopback.

It serves the REST shapes azure-mgmt-keyvault reads and writes, from the lab's ``Estate``:

- ``GET  /subscriptions/{sub}/providers/Microsoft.KeyVault/vaults``: paged with ``$top`` and a
  ``nextLink`` (``$skiptoken``) pointing back at this server, as ARM pages;
- ``GET | PATCH | PUT  /subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.KeyVault/vaults/{name}``:
  PATCH merges properties (``vaults.update``), PUT creates or replaces the given properties
  (``vaults.begin_create_or_update``); both stamp ``systemData.lastModifiedBy`` with the caller
  named by the bearer token, so the demo's "fix the firewall" shows who did it;
- ``DELETE .../vaults/{name}``: 200, or 204 when there was no such vault (``vaults.delete``
  accepts both, as ARM answers both); the lab forgets the vault (Azure keeps it soft-deleted);
- ``GET  .../vaults/{name}/privateEndpointConnections``;
- ``PUT  .../vaults/{name}/privateEndpointConnections/{connection}``: approves or rejects the
  connection (``properties.privateLinkServiceConnectionState.status``,
  ``private_endpoint_connections.put``); 404 for a connection the vault does not have.

And Microsoft.Network's Network Security Perimeters from ``estate.perimeters`` (``lab.nsp``), in
the shapes of Azure's published examples, each list paged like the vaults' (``$skipToken``):

- ``GET  /subscriptions/{sub}/providers/Microsoft.Network/networkSecurityPerimeters`` and
  ``GET .../networkSecurityPerimeters/{perimeter}``;
- ``GET  .../{perimeter}/profiles``, ``.../profiles/{profile}``;
- ``GET  .../profiles/{profile}/accessRules``, ``GET | PUT | DELETE .../accessRules/{rule}``: a PUT
  or DELETE bumps the profile's ``accessRulesVersion``;
- ``GET  .../{perimeter}/resourceAssociations``, ``GET | PUT | DELETE .../resourceAssociations/{name}``
  (PUT answers 200 or 201 with the association, provisioned at once, so the SDK's poller is done);
- ``GET  .../{perimeter}/links``.

And Microsoft.Storage's accounts from ``estate.storage_accounts`` in the shapes of Azure's published
examples (api-version 2025-06-01; ``lab.estate.Estate.add_storage_account``), with the private
endpoints that say which sub-resource each serves:

- ``GET  /subscriptions/{sub}/providers/Microsoft.Storage/storageAccounts`` (``storage_accounts.list``),
  paged like the vaults' (``$skipToken``, and ``mislink`` bends it too);
- ``GET  .../resourceGroups/{rg}/providers/Microsoft.Storage/storageAccounts/{name}``
  (``storage_accounts.get_properties``);
- ``GET  /subscriptions/{sub}/providers/Microsoft.Network/privateEndpoints``
  (``private_endpoints.list_by_subscription``): the endpoints in that subscription.

A read under a perimeter or profile in ``estate.perimeters.forbidden`` answers 403
``AuthorizationFailed``, as ARM answers a reader without permission there. Perimeter writes are
not announced to ``publish`` (kvmon's event subscription asks for Key Vault's operations only).

ARM's answers for the faults the inventory must survive: 401 without a bearer token, 400 without
``api-version``, 403 ``AuthorizationFailed`` for ``estate.forbidden_subscriptions``, 404
``SubscriptionNotFound`` for a subscription the estate does not have, 404 ``ResourceNotFound``
for a vault it does not have. Throttling, resets, server errors and redirects come from the
``LabServer``'s fault injection (``emulator.server.inject``). Paths match case-insensitively, as
ARM's do. ``mislink(subscription, fault)`` makes one subscription's listing misdirect its client
(``LinkFault``): a ``nextLink`` to another host, a page that links to itself, a ring of pages, or
pages without end.

Every vault write it serves (a PUT or PATCH of a vault, a PUT of a connection, a DELETE) is announced
to ``publish``, when given, as the ``Microsoft.Resources.Subscriptions`` system topic announces
it: a ``ResourceWriteSuccess`` or ``ResourceDeleteSuccess`` naming the resource (a connection's
own id for a connection), the operation, the caller's token claims under ARM's claim names, the
authorization (the lab states one fixed role, ``LAB_WRITER_ROLE``), the correlation id (the
request's ``x-ms-correlation-request-id`` or a new one, sent back in that header) and, for
updates and deletes, the HTTP request (with the address it came from). Refused or failed writes
and GETs announce nothing, as in Azure. A DELETE of a vault that was already gone (204) is a
succeeded delete and is announced too.

Unlike Azure, a PUT on an existing vault keeps the properties its body leaves out (Azure resets
some of them to their defaults); the lab only needs PUT for the properties it sends.
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlencode

from lab.estate import LAB_TENANT, Estate, token_claims
from lab.eventgrid import PublishedEvent, ResourceEventType
from lab.http import LabServer, LinkFault, Request, Response
from lab.nsp import LAB_MODIFIER, PerimeterError

LIST_ROUTE = "arm.vaults.list_by_subscription"
GET_ROUTE = "arm.vaults.get"
UPDATE_ROUTE = "arm.vaults.update"
CREATE_OR_UPDATE_ROUTE = "arm.vaults.create_or_update"
DELETE_ROUTE = "arm.vaults.delete"
CONNECTIONS_ROUTE = "arm.private_endpoint_connections.list"
CONNECTION_PUT_ROUTE = "arm.private_endpoint_connections.put"
PERIMETERS_ROUTE = "arm.network_security_perimeters.list_by_subscription"
PERIMETER_ROUTE = "arm.network_security_perimeters.get"
PROFILES_ROUTE = "arm.network_security_perimeter_profiles.list"
PROFILE_ROUTE = "arm.network_security_perimeter_profiles.get"
ACCESS_RULES_ROUTE = "arm.network_security_perimeter_access_rules.list"
ACCESS_RULE_ROUTE = "arm.network_security_perimeter_access_rules.get"
ACCESS_RULE_PUT_ROUTE = "arm.network_security_perimeter_access_rules.create_or_update"
ACCESS_RULE_DELETE_ROUTE = "arm.network_security_perimeter_access_rules.delete"
ASSOCIATIONS_ROUTE = "arm.network_security_perimeter_associations.list"
ASSOCIATION_ROUTE = "arm.network_security_perimeter_associations.get"
ASSOCIATION_PUT_ROUTE = "arm.network_security_perimeter_associations.create_or_update"
ASSOCIATION_DELETE_ROUTE = "arm.network_security_perimeter_associations.delete"
LINKS_ROUTE = "arm.network_security_perimeter_links.list"
STORAGE_LIST_ROUTE = "arm.storage_accounts.list"
STORAGE_GET_ROUTE = "arm.storage_accounts.get_properties"
PRIVATE_ENDPOINTS_ROUTE = "arm.private_endpoints.list_by_subscription"
# Every request to a perimeter's routes: what a perimeter reader sent.
PERIMETER_ROUTES = (
    PERIMETERS_ROUTE,
    PERIMETER_ROUTE,
    PROFILES_ROUTE,
    PROFILE_ROUTE,
    ACCESS_RULES_ROUTE,
    ACCESS_RULE_ROUTE,
    ASSOCIATIONS_ROUTE,
    ASSOCIATION_ROUTE,
    LINKS_ROUTE,
)

# Who a change is stamped with when the token names nobody (the lab's fixed operator).
FALLBACK_MODIFIED_BY = LAB_MODIFIER
# The role assignment every write is authorised by, as the event's authorization evidence says
# (the lab has no role assignments to look up).
LAB_WRITER_ROLE = "Key Vault Contributor"

VAULT_WRITE = "Microsoft.KeyVault/vaults/write"
VAULT_DELETE = "Microsoft.KeyVault/vaults/delete"
CONNECTION_WRITE = "Microsoft.KeyVault/vaults/privateEndpointConnections/write"

Publisher = Callable[[PublishedEvent], None]

# A token's claims under the names ARM's events give them; other claims keep their own names.
_PUBLISHED_CLAIM_NAMES = {
    "oid": "http://schemas.microsoft.com/identity/claims/objectidentifier",
    "tid": "http://schemas.microsoft.com/identity/claims/tenantid",
    "scp": "http://schemas.microsoft.com/identity/claims/scope",
    "upn": "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn",
    "unique_name": "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/name",
    "given_name": "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/givenname",
    "family_name": "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/surname",
    "sub": "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/nameidentifier",
}

_SUBSCRIPTION = r"(?i)/subscriptions/(?P<subscription>[^/]+)"
_VAULT = (
    _SUBSCRIPTION + r"/resourceGroups/(?P<group>[^/]+)/providers/Microsoft\.KeyVault/vaults/(?P<name>[^/]+)"
)
_CONNECTION = _VAULT + r"/privateEndpointConnections/(?P<connection>[^/]+)"
_PERIMETERS = _SUBSCRIPTION + r"/providers/Microsoft\.Network/networkSecurityPerimeters"
_STORAGE_ACCOUNTS = _SUBSCRIPTION + r"/providers/Microsoft\.Storage/storageAccounts"
_STORAGE_ACCOUNT = (
    _SUBSCRIPTION
    + r"/resourceGroups/(?P<group>[^/]+)/providers/Microsoft\.Storage/storageAccounts/(?P<name>[^/]+)"
)
_PRIVATE_ENDPOINTS = _SUBSCRIPTION + r"/providers/Microsoft\.Network/privateEndpoints"
_PERIMETER = (
    _SUBSCRIPTION
    + r"/resourceGroups/(?P<group>[^/]+)/providers/Microsoft\.Network/networkSecurityPerimeters/(?P<perimeter>[^/]+)"
)
_PROFILE = _PERIMETER + r"/profiles/(?P<profile>[^/]+)"
_ACCESS_RULE = _PROFILE + r"/accessRules/(?P<rule>[^/]+)"
_ASSOCIATION = _PERIMETER + r"/resourceAssociations/(?P<association>[^/]+)"
_PERIMETER_READ = "Microsoft.Network/networkSecurityPerimeters/read"
_PRIVATE_ENDPOINT_READ = "Microsoft.Network/privateEndpoints/read"
_STORAGE_READ = "Microsoft.Storage/storageAccounts/read"
# What a vault owner may set a connection to (Pending is the endpoint's request, Disconnected
# the endpoint's removal: neither is the owner's to set).
_OWNER_CONNECTION_STATES = ("Approved", "Rejected")
# Set by the service, never taken from a request body.
_READ_ONLY_PROPERTIES = frozenset(
    {"privateendpointconnections", "provisioningstate", "hsmpoolresourceid", "vaulturi"}
)


def _error(status: int, code: str, message: str) -> Response:
    return Response(status, {"error": {"code": code, "message": message}})


class ArmEmulator:
    """ARM's Key Vault provider over ``estate``; ``url`` is the endpoint to give the SDK client
    (``base_url``) and ``server`` the ``LabServer`` (request counts per route, fault injection);
    ``publish`` receives an event for every write served (None: nobody listens)."""

    def __init__(
        self,
        estate: Estate,
        *,
        page_size: int = 100,
        latency_s: float = 0.0,
        publish: Publisher | None = None,
    ) -> None:
        if page_size < 1:
            raise ValueError(f"page_size must be at least 1, not {page_size}")
        self.estate = estate
        self.page_size = page_size
        self.publish = publish
        self.server = LabServer(name="arm", latency_s=latency_s)
        # Lower-cased subscription id -> how its listing misdirects, and where a foreign link goes.
        self._link_faults: dict[str, tuple[LinkFault, str | None]] = {}
        self._route(
            "GET", _SUBSCRIPTION + r"/providers/Microsoft\.KeyVault/vaults", self._list, name=LIST_ROUTE
        )
        self._route("GET", _VAULT, self._get, name=GET_ROUTE)
        self._route("PATCH", _VAULT, self._update, name=UPDATE_ROUTE)
        self._route("PUT", _VAULT, self._create_or_update, name=CREATE_OR_UPDATE_ROUTE)
        self._route("DELETE", _VAULT, self._delete, name=DELETE_ROUTE)
        self._route("GET", _VAULT + r"/privateEndpointConnections", self._connections, name=CONNECTIONS_ROUTE)
        self._route("PUT", _CONNECTION, self._put_connection, name=CONNECTION_PUT_ROUTE)
        self._route("GET", _PERIMETERS, self._list_perimeters, name=PERIMETERS_ROUTE)
        self._route("GET", _PERIMETER, self._get_perimeter, name=PERIMETER_ROUTE)
        self._route("GET", _PERIMETER + r"/profiles", self._list_profiles, name=PROFILES_ROUTE)
        self._route("GET", _PROFILE, self._get_profile, name=PROFILE_ROUTE)
        self._route("GET", _PROFILE + r"/accessRules", self._list_access_rules, name=ACCESS_RULES_ROUTE)
        self._route("GET", _ACCESS_RULE, self._get_access_rule, name=ACCESS_RULE_ROUTE)
        self._route("PUT", _ACCESS_RULE, self._put_access_rule, name=ACCESS_RULE_PUT_ROUTE)
        self._route("DELETE", _ACCESS_RULE, self._delete_access_rule, name=ACCESS_RULE_DELETE_ROUTE)
        self._route(
            "GET", _PERIMETER + r"/resourceAssociations", self._list_associations, name=ASSOCIATIONS_ROUTE
        )
        self._route("GET", _ASSOCIATION, self._get_association, name=ASSOCIATION_ROUTE)
        self._route("PUT", _ASSOCIATION, self._put_association, name=ASSOCIATION_PUT_ROUTE)
        self._route("DELETE", _ASSOCIATION, self._delete_association, name=ASSOCIATION_DELETE_ROUTE)
        self._route("GET", _PERIMETER + r"/links", self._list_links, name=LINKS_ROUTE)
        self._route("GET", _STORAGE_ACCOUNTS, self._list_storage_accounts, name=STORAGE_LIST_ROUTE)
        self._route("GET", _STORAGE_ACCOUNT, self._get_storage_account, name=STORAGE_GET_ROUTE)
        self._route("GET", _PRIVATE_ENDPOINTS, self._list_private_endpoints, name=PRIVATE_ENDPOINTS_ROUTE)

    @property
    def url(self) -> str:
        return self.server.url

    def start(self) -> ArmEmulator:
        self.server.start()
        return self

    def stop(self) -> None:
        self.server.stop()

    def __enter__(self) -> ArmEmulator:
        return self.start()

    def mislink(self, subscription_id: str, fault: LinkFault, *, elsewhere: str | None = None) -> None:
        """The listing of ``subscription_id`` misdirects its client with ``fault`` until
        ``clear_link_faults``; a ``FOREIGN`` link goes to ``elsewhere`` (an origin)."""
        if (fault is LinkFault.FOREIGN) != (elsewhere is not None):
            raise ValueError("a foreign link needs elsewhere, and only a foreign link takes it")
        self._link_faults[subscription_id.lower()] = (fault, elsewhere)

    def clear_link_faults(self) -> None:
        self._link_faults.clear()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- what every request passes first -------------------------------------------------------

    def _route(self, method: str, pattern: str, handler: Callable[[Request], Response], *, name: str) -> None:
        """Serve ``handler`` on ``pattern`` behind ARM's checks (``_refusal``), as every ARM route is."""

        def checked(request: Request) -> Response:
            refused = self._refusal(request)
            return refused if refused is not None else handler(request)

        self.server.route(method, pattern, checked, name=name)

    def _refusal(self, request: Request) -> Response | None:
        """ARM's checks in ARM's order: token, api-version, subscription."""
        authorization = request.header("Authorization")
        if not authorization:
            return _error(
                401, "AuthenticationFailed", "Authentication failed. The 'Authorization' header is missing."
            )
        if token_claims(authorization) is None:
            return _error(401, "InvalidAuthenticationToken", "The access token is invalid.")
        if not request.query.get("api-version"):
            return _error(
                400,
                "MissingApiVersionParameter",
                "The api-version query parameter (?api-version=) is required for all requests.",
            )
        subscription = request.params["subscription"]
        known = {s.lower(): s for s in self.estate.subscriptions}
        network = "/providers/microsoft.network/" in request.path.lower()
        action = _read_action(request.path)
        if subscription.lower() in {s.lower() for s in self.estate.forbidden_subscriptions}:
            return _forbidden(request, action=action, scope=f"/subscriptions/{subscription}")
        if subscription.lower() not in known:
            return _error(
                404, "SubscriptionNotFound", f"The subscription '{subscription}' could not be found."
            )
        if network and request.method == "GET" and self.estate.perimeters.is_forbidden(request.path):
            return _forbidden(request, action=action, scope=request.path)
        return None

    def _vault_id(self, request: Request) -> str:
        subscription = request.params["subscription"]
        canonical = next(
            (s for s in self.estate.subscriptions if s.lower() == subscription.lower()), subscription
        )
        return (
            f"/subscriptions/{canonical}/resourceGroups/{request.params['group']}"
            f"/providers/Microsoft.KeyVault/vaults/{request.params['name']}"
        )

    def _not_found(self, request: Request) -> Response:
        return _error(
            404,
            "ResourceNotFound",
            f"The Resource 'Microsoft.KeyVault/vaults/{request.params['name']}' under resource group "
            f"'{request.params['group']}' was not found.",
        )

    # -- routes --------------------------------------------------------------------------------

    def _list(self, request: Request) -> Response:
        return self._page(
            request,
            self.estate.vaults_in(self._subscription(request)),
            token="$skiptoken",
            link_fault=self._link_faults.get(request.params["subscription"].lower()),
        )

    def _page(
        self,
        request: Request,
        items: list[dict[str, Any]],
        *,
        token: str,
        link_fault: tuple[LinkFault, str | None] | None = None,
    ) -> Response:
        """One page of ``items`` as ARM pages a list: ``$top`` (or the server's page size) from the
        offset ``token`` carries, and a ``nextLink`` back to this path while more remain; a
        ``link_fault`` (``mislink``) bends that link."""
        try:
            size = int(request.query.get("$top") or self.page_size)
            offset = _decode_skiptoken(request.query.get(token))
        except ValueError as exc:
            return _error(400, "InvalidQueryParameterValue", str(exc))
        if size < 1:
            return _error(400, "InvalidQueryParameterValue", f"$top must be positive, not {size}")
        body: dict[str, Any] = {"value": items[offset : offset + size]}
        fault, elsewhere = link_fault or (None, None)
        more = offset + size < len(items)
        following = {
            None: offset + size if more else None,
            LinkFault.FOREIGN: offset + size if more else None,
            LinkFault.SELF: offset,
            LinkFault.CYCLE: offset + size if more else 0,
            LinkFault.ENDLESS: offset + size,
        }[fault]
        if following is not None:
            query = f"api-version={request.query['api-version']}&{token}={_encode_skiptoken(following)}"
            if "$top" in request.query:
                query += f"&$top={size}"
            body["nextLink"] = f"{elsewhere or self.url}{request.path}?{query}"
        return Response(200, body)

    def _subscription(self, request: Request) -> str:
        subscription = request.params["subscription"]
        return next(s for s in self.estate.subscriptions if s.lower() == subscription.lower())

    def _get(self, request: Request) -> Response:
        vault = self.estate.vault(self._vault_id(request))
        return Response(200, vault) if vault is not None else self._not_found(request)

    def _connections(self, request: Request) -> Response:
        vault = self.estate.vault(self._vault_id(request))
        if vault is None:
            return self._not_found(request)
        connections = vault["properties"].get("privateEndpointConnections") or []
        return Response(200, {"value": [_connection_resource(c) for c in connections]})

    def _put_connection(self, request: Request) -> Response:
        vault_id = self._vault_id(request)
        if self.estate.vault(vault_id) is None:
            return self._not_found(request)
        body = _json_object(request)
        if isinstance(body, Response):
            return body
        properties = body.get("properties")
        state = properties.get("privateLinkServiceConnectionState") if isinstance(properties, dict) else None
        if not isinstance(state, dict) or state.get("status") not in _OWNER_CONNECTION_STATES:
            return _error(
                400,
                "BadRequest",
                "properties.privateLinkServiceConnectionState.status must be one of "
                f"{', '.join(_OWNER_CONNECTION_STATES)}.",
            )
        status = state["status"]
        connection_id = f"{vault_id}/privateEndpointConnections/{request.params['connection']}"
        updated = self.estate.set_connection_state(
            connection_id, status=status, description=str(state.get("description") or "")
        )
        if updated is None:
            return _error(
                404,
                "PrivateEndpointConnectionNotFound",
                f"Private endpoint connection '{request.params['connection']}' of vault "
                f"'{request.params['name']}' was not found.",
            )
        return self._announced(
            request,
            Response(200, _connection_resource(updated)),
            resource_id=updated["id"],
            operation=CONNECTION_WRITE,
            update=True,
        )

    def _delete(self, request: Request) -> Response:
        vault_id = self._vault_id(request)
        existed = self.estate.vault(vault_id) is not None
        if existed:
            self.estate.remove_vault(vault_id)
        return self._announced(
            request,
            Response(200 if existed else 204),
            resource_id=vault_id,
            operation=VAULT_DELETE,
            update=True,
        )

    def _update(self, request: Request) -> Response:
        vault_id = self._vault_id(request)
        if self.estate.vault(vault_id) is None:
            return self._not_found(request)
        body = _json_object(request)
        if isinstance(body, Response):
            return body
        properties = body.get("properties") or {}
        tags = body.get("tags")
        if not isinstance(properties, dict) or (tags is not None and not isinstance(tags, dict)):
            return _error(400, "InvalidRequestContent", "'properties' and 'tags' must be objects.")
        by, by_type = _caller(request)
        updated = self.estate.update_vault(
            vault_id, properties=_writable(properties), modified_by=by, modified_by_type=by_type, tags=tags
        )
        return self._announced(
            request, Response(200, updated), resource_id=updated["id"], operation=VAULT_WRITE, update=True
        )

    def _create_or_update(self, request: Request) -> Response:
        body = _json_object(request)
        if isinstance(body, Response):
            return body
        properties = body.get("properties")
        location = body.get("location")
        tags = body.get("tags")
        if not isinstance(properties, dict) or not isinstance(location, str) or not location:
            return _error(400, "InvalidRequestContent", "A vault needs 'location' and 'properties'.")
        missing = [key for key in ("tenantId", "sku") if key not in properties]
        if missing:
            return _error(400, "BadRequest", f"The property '{missing[0]}' is required.")
        if tags is not None and not isinstance(tags, dict):
            return _error(400, "InvalidRequestContent", "'tags' must be an object.")
        vault_id = self._vault_id(request)
        by, by_type = _caller(request)
        existed = self.estate.vault(vault_id) is not None
        if not existed:
            created = self.estate.add_vault(
                subscription_id=vault_id.split("/")[2],
                resource_group=request.params["group"],
                name=request.params["name"],
                location=location,
                public_network_access=properties.get("publicNetworkAccess"),
                network_acls=properties.get("networkAcls"),
                tags=tags,
                modified_by=by,
            )
            vault_id = created["id"]
        updated = self.estate.update_vault(
            vault_id, properties=_writable(properties), modified_by=by, modified_by_type=by_type, tags=tags
        )
        return self._announced(
            request, Response(200, updated), resource_id=updated["id"], operation=VAULT_WRITE, update=existed
        )

    # -- Network Security Perimeters ---------------------------------------------------------

    def _perimeter_id(self, request: Request) -> str:
        return (
            f"/subscriptions/{self._subscription(request)}/resourceGroups/{request.params['group']}"
            f"/providers/Microsoft.Network/networkSecurityPerimeters/{request.params['perimeter']}"
        )

    def _nsp_not_found(self, kind: str, name: str) -> Response:
        return _error(404, "ResourceNotFound", f"The {kind} '{name}' was not found.")

    def _list_perimeters(self, request: Request) -> Response:
        found = self.estate.perimeters.in_subscription(self._subscription(request))
        return self._page(request, found, token="$skipToken")

    def _get_perimeter(self, request: Request) -> Response:
        found = self.estate.perimeters.perimeter(self._perimeter_id(request))
        if found is None:
            return self._nsp_not_found("network security perimeter", request.params["perimeter"])
        return Response(200, found)

    def _listed(self, request: Request, found: list[dict[str, Any]] | None, kind: str, name: str) -> Response:
        if found is None:
            return self._nsp_not_found(kind, name)
        return self._page(request, found, token="$skipToken")

    def _list_profiles(self, request: Request) -> Response:
        found = self.estate.perimeters.profiles(self._perimeter_id(request))
        return self._listed(request, found, "network security perimeter", request.params["perimeter"])

    def _get_profile(self, request: Request) -> Response:
        found = self.estate.perimeters.profile(self._perimeter_id(request), request.params["profile"])
        if found is None:
            return self._nsp_not_found("network security perimeter profile", request.params["profile"])
        return Response(200, found)

    def _list_access_rules(self, request: Request) -> Response:
        found = self.estate.perimeters.access_rules(self._perimeter_id(request), request.params["profile"])
        return self._listed(request, found, "network security perimeter profile", request.params["profile"])

    def _get_access_rule(self, request: Request) -> Response:
        found = self.estate.perimeters.access_rule(
            self._perimeter_id(request), request.params["profile"], request.params["rule"]
        )
        if found is None:
            return self._nsp_not_found("access rule", request.params["rule"])
        return Response(200, found)

    def _put_access_rule(self, request: Request) -> Response:
        body = _json_object(request)
        if isinstance(body, Response):
            return body
        properties = body.get("properties")
        if not isinstance(properties, dict):
            return _error(400, "InvalidRequestContent", "An access rule needs 'properties'.")
        perimeter_id, profile, name = (
            self._perimeter_id(request),
            request.params["profile"],
            request.params["rule"],
        )
        existed = self.estate.perimeters.access_rule(perimeter_id, profile, name) is not None
        subscriptions = properties.get("subscriptions") or []
        modified_by, modified_by_type = _caller(request)
        try:
            rule = self.estate.perimeters.put_access_rule(
                perimeter_id,
                profile,
                name,
                direction=str(properties.get("direction") or "Inbound"),
                address_prefixes=[str(p) for p in properties.get("addressPrefixes") or []],
                subscriptions=[
                    str(entry.get("id", "")) for entry in subscriptions if isinstance(entry, dict)
                ],
                service_tags=[str(t) for t in properties.get("serviceTags") or []],
                fully_qualified_domain_names=[
                    str(n) for n in properties.get("fullyQualifiedDomainNames") or []
                ],
                modified_by=modified_by,
                modified_by_type=modified_by_type,
            )
        except PerimeterError as exc:
            return _error(400, "InvalidRequestContent", str(exc))
        return Response(200 if existed else 201, rule)

    def _delete_access_rule(self, request: Request) -> Response:
        try:
            removed = self.estate.perimeters.delete_access_rule(
                self._perimeter_id(request), request.params["profile"], request.params["rule"]
            )
        except PerimeterError as exc:
            return _error(404, "ResourceNotFound", str(exc))
        return Response(200 if removed else 204)

    def _list_associations(self, request: Request) -> Response:
        found = self.estate.perimeters.associations(self._perimeter_id(request))
        return self._listed(request, found, "network security perimeter", request.params["perimeter"])

    def _get_association(self, request: Request) -> Response:
        found = self.estate.perimeters.association(self._perimeter_id(request), request.params["association"])
        if found is None:
            return self._nsp_not_found("resource association", request.params["association"])
        return Response(200, found)

    def _put_association(self, request: Request) -> Response:
        body = _json_object(request)
        if isinstance(body, Response):
            return body
        properties = body.get("properties")
        resource = properties.get("privateLinkResource") if isinstance(properties, dict) else None
        profile = properties.get("profile") if isinstance(properties, dict) else None
        if (
            not isinstance(resource, dict)
            or not isinstance(profile, dict)
            or not isinstance(properties, dict)
        ):
            return _error(
                400,
                "InvalidRequestContent",
                "An association needs properties.privateLinkResource and profile.",
            )
        perimeter_id, name = self._perimeter_id(request), request.params["association"]
        existed = self.estate.perimeters.association(perimeter_id, name) is not None
        modified_by, modified_by_type = _caller(request)
        try:
            association = self.estate.perimeters.associate(
                perimeter_id,
                name,
                resource_id=str(resource.get("id", "")),
                profile=str(profile.get("id", "")),
                access_mode=str(properties.get("accessMode") or "Learning"),
                modified_by=modified_by,
                modified_by_type=modified_by_type,
            )
        except PerimeterError as exc:
            return _error(400, "InvalidRequestContent", str(exc))
        return Response(200 if existed else 201, association)

    def _delete_association(self, request: Request) -> Response:
        try:
            removed = self.estate.perimeters.dissociate(
                self._perimeter_id(request), request.params["association"]
            )
        except PerimeterError as exc:
            return _error(404, "ResourceNotFound", str(exc))
        return Response(200 if removed else 204)

    def _list_links(self, request: Request) -> Response:
        found = self.estate.perimeters.links(self._perimeter_id(request))
        return self._listed(request, found, "network security perimeter", request.params["perimeter"])

    # -- what every served write does last -----------------------------------------------------

    def _list_storage_accounts(self, request: Request) -> Response:
        return self._page(
            request,
            self.estate.storage_accounts_in(self._subscription(request)),
            token="$skipToken",
            link_fault=self._link_faults.get(request.params["subscription"].lower()),
        )

    def _get_storage_account(self, request: Request) -> Response:
        subscription = self._subscription(request)
        account = self.estate.storage_account(
            f"/subscriptions/{subscription}/resourceGroups/{request.params['group']}"
            f"/providers/Microsoft.Storage/storageAccounts/{request.params['name']}"
        )
        if account is not None:
            return Response(200, account)
        return _error(
            404,
            "ResourceNotFound",
            f"The Resource 'Microsoft.Storage/storageAccounts/{request.params['name']}' under resource "
            f"group '{request.params['group']}' was not found.",
        )

    def _list_private_endpoints(self, request: Request) -> Response:
        return self._page(
            request, self.estate.private_endpoints_in(self._subscription(request)), token="$skipToken"
        )

    def _announced(
        self, request: Request, answer: Response, *, resource_id: str, operation: str, update: bool
    ) -> Response:
        """``answer`` with ARM's correlation id, once ``publish`` has the event of the write it
        reports (``update``: the resource existed before, so the event carries the request)."""
        correlation_id = request.header("x-ms-correlation-request-id") or str(uuid.uuid4())
        answer.headers["x-ms-correlation-request-id"] = correlation_id
        if self.publish is None:
            return answer
        claims = token_claims(request.header("Authorization")) or {}
        _, caller_type = _caller(request)
        data: dict[str, Any] = {
            "authorization": {
                "scope": resource_id,
                "action": operation,
                "evidence": {
                    "role": LAB_WRITER_ROLE,
                    "principalId": str(claims.get("oid", "")),
                    "principalType": "User" if caller_type == "User" else "ServicePrincipal",
                },
            },
            "claims": _published_claims(claims),
            "correlationId": correlation_id,
        }
        if update:
            data["httpRequest"] = {
                "clientRequestId": request.header("x-ms-client-request-id") or "",
                "clientIpAddress": request.client_address,
                "method": request.method,
                "url": f"{self.url}{request.path}?{urlencode(request.query)}",
            }
        subscription = resource_id.split("/")[2]
        data |= {
            "resourceProvider": "Microsoft.KeyVault",
            "resourceUri": resource_id,
            "operationName": operation,
            "status": "Succeeded",
            "subscriptionId": subscription,
            "tenantId": str(claims.get("tid") or LAB_TENANT),
        }
        self.publish(
            PublishedEvent(
                id=str(uuid.uuid4()),
                topic=f"/subscriptions/{subscription}",
                subject=resource_id,
                event_type=(
                    ResourceEventType.DELETE_SUCCESS
                    if request.method == "DELETE"
                    else ResourceEventType.WRITE_SUCCESS
                ),
                event_time=self.estate.now(),
                data=data,
            )
        )
        return answer


def _forbidden(request: Request, *, action: str, scope: str) -> Response:
    claims = token_claims(request.header("Authorization")) or {}
    return _error(
        403,
        "AuthorizationFailed",
        f"The client '{claims.get('appid', '')}' with object id '{claims.get('oid', '')}' does not "
        f"have authorization to perform action '{action}' over scope '{scope}' or the scope is invalid. "
        "If access was recently granted, please refresh your credentials.",
    )


def _read_action(path: str) -> str:
    """The permission a GET of ``path`` needs, as ARM names it in a 403."""
    lowered = path.lower()
    if "/providers/microsoft.network/privateendpoints" in lowered:
        return _PRIVATE_ENDPOINT_READ
    if "/providers/microsoft.network/" in lowered:
        return _PERIMETER_READ
    if "/providers/microsoft.storage/" in lowered:
        return _STORAGE_READ
    return "Microsoft.KeyVault/vaults/read"


def _published_claims(claims: Mapping[str, Any]) -> dict[str, str]:
    """A token's claims as ARM's events give them: under ARM's names, every value a string."""
    return {
        _PUBLISHED_CLAIM_NAMES.get(name, name): value if isinstance(value, str) else json.dumps(value)
        for name, value in claims.items()
    }


def _connection_resource(connection: dict[str, Any]) -> dict[str, Any]:
    """A connection as its own ARM resource: with the ``name`` and ``type`` the vault's copy omits."""
    return {
        "name": connection["id"].rsplit("/", 1)[-1],
        "type": "Microsoft.KeyVault/vaults/privateEndpointConnections",
        **connection,
    }


def _writable(properties: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in properties.items() if k.lower() not in _READ_ONLY_PROPERTIES}


def _json_object(request: Request) -> dict[str, Any] | Response:
    try:
        body = request.json()
    except ValueError:
        return _error(400, "InvalidRequestContent", "The request content is not valid JSON.")
    if not isinstance(body, dict):
        return _error(400, "InvalidRequestContent", "The request content must be a JSON object.")
    return body


def _caller(request: Request) -> tuple[str, str]:
    """Who the token names, as ARM stamps systemData: a user by UPN, an application by app id."""
    claims = token_claims(request.header("Authorization")) or {}
    for claim in ("upn", "unique_name", "preferred_username"):
        if isinstance(claims.get(claim), str) and claims[claim]:
            return claims[claim], "User"
    if isinstance(claims.get("appid"), str) and claims["appid"]:
        return claims["appid"], "Application"
    return FALLBACK_MODIFIED_BY, "User"


def _encode_skiptoken(offset: int) -> str:
    return base64.urlsafe_b64encode(f"offset:{offset}".encode()).decode()


def _decode_skiptoken(token: str | None) -> int:
    if not token:
        return 0
    try:
        text = base64.urlsafe_b64decode(token.encode()).decode()
        offset = int(text.removeprefix("offset:")) if text.startswith("offset:") else -1
    except (binascii.Error, UnicodeDecodeError, ValueError):
        offset = -1
    if offset < 0:
        raise ValueError(f"$skiptoken {token!r} is not one this server issued")
    return offset
