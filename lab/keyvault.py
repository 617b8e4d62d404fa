"""Key Vault's data plane for the lab: HTTPS on the public front end and every Private Endpoint.

It answers like Key Vault (see AZURE-NOTES.md): a 401 challenge without a token, ``/healthstatus``
with the network-info header, and for ``GET /secrets/{name}`` the network's verdict from
``Estate.decide`` (403 ForbiddenByFirewall / ForbiddenByConnection, a perimeter's refusal) or 404
SecretNotFound. The vault is the one the Host header names, as in Azure, and every secret request
is appended to the estate's access log, which the Log Analytics emulator serves. A request to a
vault a perimeter governs (Learning or Enforced) also goes to ``perimeter_logs`` as the
``NSPAccessLogs`` row that perimeter writes (``LogAnalyticsEmulator.perimeter_decided`` in
``LabServices``), with the category of the decision.

Refusal texts are Azure's. A Network Security Perimeter in Learning or Enforced mode refuses with
"Request was not allowed by NSP rules and the client address is not authorized and caller was
ignored because bypass is set to None" and inner code ``ForbiddenByFirewall`` (as Key Vault
answers; ``Estate.perimeter_refusal_code`` plays ``ForbiddenByNsp`` instead). Key Vault gives the
same text for a firewall refusal on a vault whose bypass is None, perimeter or not, so the text
proves no association.

All listening addresses share one port (unprivileged), so a client configured with one port
reaches the public front end and the Private Endpoints alike.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any
from urllib.parse import urlencode

from lab.estate import (
    LAB_PRIVATELINK_ZONE,
    LAB_TENANT,
    LAB_VAULT_SUFFIX,
    AccessDecision,
    AccessRecord,
    Estate,
    Refusal,
    token_claims,
)
from lab.http import LabServer, Request, Response
from lab.loganalytics import PerimeterAccessRecord
from lab.tls import LAB_HOSTNAMES

NETWORK_INFO_HEADER = "x-ms-keyvault-network-info"

_FIREWALL_MESSAGE = "Client address is not authorized and caller is not a trusted service."
_CONNECTION_MESSAGE = "Public network access is disabled and request is not from a trusted service nor via an approved private link."
_NSP_MESSAGE = (
    "Request was not allowed by NSP rules and the client address is not authorized and caller was "
    "ignored because bypass is set to None"
)


class KeyVaultDataPlane:
    """``with KeyVaultDataPlane(estate) as kv: kv.port``.

    ``addresses`` defaults to ``estate.listening_addresses()`` at start; ``certificates`` gives
    some addresses a different certificate (the names it covers), e.g. to play a TLS-intercepting
    middlebox with a certificate for another name. ``perimeter_logs`` receives each perimeter
    decision's access-log row (None: perimeters log nowhere).
    """

    def __init__(
        self,
        estate: Estate,
        *,
        port: int = 0,
        addresses: Sequence[str] | None = None,
        certificates: Mapping[str, tuple[str, ...]] | None = None,
        latency_s: float = 0.0,
        perimeter_logs: Callable[[PerimeterAccessRecord], object] | None = None,
    ) -> None:
        self.estate = estate
        self.perimeter_logs = perimeter_logs
        self.port = port
        self._addresses = tuple(addresses) if addresses is not None else None
        self._certificates = dict(certificates or {})
        self._latency_s = latency_s
        self.servers: dict[str, LabServer] = {}
        # Vault name (lower-case) -> the answer to an authenticated secret read, in place of the
        # firewall's: a body cut off, not JSON, or of another shape, after the challenge as in Azure.
        self.authenticated_answers: dict[str, Response] = {}

    @property
    def total_requests(self) -> int:
        return sum(server.total_requests for server in self.servers.values())

    # -- life cycle ----------------------------------------------------------------------------

    def start(self) -> KeyVaultDataPlane:
        addresses = (
            self._addresses if self._addresses is not None else tuple(self.estate.listening_addresses())
        )
        for _ in range(20):
            servers: dict[str, LabServer] = {}
            port = self.port
            try:
                for address in addresses:
                    server = self._server(address, port)
                    server.start()
                    servers[address] = server
                    port = server.port
            except OSError:
                _stop_all(list(servers.values()))
                if self.port:
                    raise
                continue
            self.servers, self.port = servers, port
            return self
        raise RuntimeError(f"no port free on all of {', '.join(addresses)}")

    def stop(self) -> None:
        _stop_all(list(self.servers.values()))
        self.servers = {}

    def __enter__(self) -> KeyVaultDataPlane:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _server(self, address: str, port: int) -> LabServer:
        server = LabServer(
            name=f"keyvault-{address}",
            host=address,
            port=port,
            certificate_hosts=self._certificates.get(address, LAB_HOSTNAMES),
            latency_s=self._latency_s,
        )
        server.route("GET", r"/healthstatus", self._healthstatus, name="healthstatus")
        server.route(
            "GET",
            r"/secrets/(?P<name>[0-9A-Za-z-]+)(?:/(?P<version>[0-9A-Za-z]*))?",
            self._get_secret,
            name="SecretGet",
        )
        return server

    # -- handlers ------------------------------------------------------------------------------

    def _vault_for(self, request: Request) -> dict[str, Any] | None:
        """The id, name and location of the vault the Host header names (``Estate.vault_summary``)."""
        host = (request.header("Host") or "").rsplit(":", 1)[0].rstrip(".").lower()
        for suffix in (LAB_VAULT_SUFFIX, LAB_PRIVATELINK_ZONE):
            if host.endswith("." + suffix):
                return self.estate.vault_summary(host[: -len(suffix) - 1])
        return None

    def _decide(
        self, vault: dict[str, Any], request: Request, claims: Mapping[str, Any] | None = None
    ) -> AccessDecision:
        return self.estate.decide(
            vault["id"].lower(),
            client_address=request.client_address,
            local_address=request.local_address,
            caller_subscription=_identity_subscription(claims),
        )

    def _healthstatus(self, request: Request) -> Response:
        # Health answers whatever the firewall says: it is how Azure's own diagnostics show
        # which address a caller arrives with.
        vault = self._vault_for(request)
        seen = self._decide(vault, request).seen_address if vault else request.client_address
        info = f"conn_type=Ipv4;addr={seen};act_addr_fam=InterNetwork;"
        return Response(200, None, {NETWORK_INFO_HEADER: info})

    def _get_secret(self, request: Request) -> Response:
        started = time.perf_counter()
        vault = self._vault_for(request)
        if vault is None:
            host = request.header("Host") or ""
            return Response(404, _error("VaultNotFound", f"No vault is known by the name in Host {host!r}."))
        secret = request.params["name"]
        claims = token_claims(request.header("Authorization"))
        decision = self._decide(vault, request, claims)
        resource = challenge_resource(self.port)
        if claims is None:
            response = Response(
                401,
                _error("Unauthorized", "AKV10000: Request is missing a Bearer or PoP token."),
                {"WWW-Authenticate": _challenge(self.port)},
            )
            signature, description = "Unauthorized", "Unauthorized"
        elif str(claims.get("aud", "")).rstrip("/") != resource:
            response = Response(
                401,
                _error("Unauthorized", f"AKV10022: Invalid audience. Expected {resource}."),
                {"WWW-Authenticate": _challenge(self.port)},
            )
            signature, description = "Unauthorized", "Invalid audience"
        elif (answer := self.authenticated_answers.get(vault["name"].lower())) is not None:
            response = answer
            signature, description = str(answer.status), "an answer set by the test"
        elif not decision.admitted:
            caller = f"appid={claims.get('appid', '')};oid={claims.get('oid', '')};iss=https://sts.windows.net/{claims.get('tid', LAB_TENANT)}/"
            vault_line = f"Vault: {vault['name']};location={vault['location']}"
            if decision.refusal is Refusal.CONNECTION:
                description = _CONNECTION_MESSAGE
                message = f"{_CONNECTION_MESSAGE}\r\nCaller: {caller}\r\n{vault_line}"
            else:
                description = (
                    _FIREWALL_MESSAGE
                    if decision.refusal is Refusal.FIREWALL and not decision.bypass_none
                    else _NSP_MESSAGE
                )
                message = f"{description}\r\nClient address: {decision.seen_address}\r\nCaller: {caller}\r\n{vault_line}"
            response = Response(403, _error("Forbidden", message, inner_code=decision.inner_code))
            signature = "Forbidden"
        else:
            description = (
                f"A secret with (name/id) {secret} was not found in this key vault. If you recently deleted this "
                "secret you may be able to recover it using the correct recovery command. For help resolving "
                "this issue, please see https://go.microsoft.com/fwlink/?linkid=2125182"
            )
            response = Response(404, _error("SecretNotFound", description))
            signature = "NotFound"
        self._record(vault, request, decision, claims, response.status, signature, description, started)
        return response

    def _record(
        self,
        vault: dict[str, Any],
        request: Request,
        decision: AccessDecision,
        claims: Mapping[str, Any] | None,
        status: int,
        signature: str,
        description: str,
        started: float,
    ) -> None:
        query = f"?{urlencode(request.query)}" if request.query else ""
        now = self.estate.now()
        governing, category = decision.perimeter, decision.perimeter_log
        # The network check runs after the token's: a 401 challenge took no perimeter decision.
        if (
            self.perimeter_logs is not None
            and governing is not None
            and category is not None
            and status != 401
        ):
            self.perimeter_logs(
                PerimeterAccessRecord(
                    time=now,
                    vault_id=vault["id"],
                    perimeter_id=governing.perimeter_id,
                    category=category.value,
                    source_address=decision.seen_address,
                    source_app_id=str((claims or {}).get("appid", "")),
                    matched_rule=decision.matched_rule,
                    traffic_type="Private" if decision.private_endpoint_id else "Public",
                    profile=governing.profile,
                    access_rules_version=governing.access_rules_version,
                    location=vault["location"],
                )
            )
        self.estate.record(
            AccessRecord(
                time=now,
                vault_id=vault["id"],
                vault_name=vault["name"],
                operation="SecretGet",
                request_uri=f"https://{request.header('Host') or ''}{request.path}{query}",
                caller_address=decision.seen_address,
                http_status=status,
                result_signature=signature,
                result_type=signature,
                result_description=description,
                is_address_authorized=decision.admitted,
                address_auth_type=decision.address_auth_type,
                subnet_id=decision.subnet_id,
                private_endpoint_id=decision.private_endpoint_id,
                identity_oid=str((claims or {}).get("oid", "")),
                identity_appid=str((claims or {}).get("appid", "")),
                duration_ms=max(1, round((time.perf_counter() - started) * 1000)),
            )
        )


def _identity_subscription(claims: Mapping[str, Any] | None) -> str | None:
    """The subscription of a managed identity's token (``xms_mirid``, its resource id), if any."""
    resource = str((claims or {}).get("xms_mirid") or "")
    parts = resource.strip("/").split("/")
    return parts[1] if len(parts) > 1 and parts[0].lower() == "subscriptions" else None


def challenge_resource(port: int) -> str:
    """The resource the 401 challenge names (Azure: ``https://vault.azure.net``).

    On a port other than 443 it carries the port: SecretClient checks that the request's
    authority (host and port) ends with the resource's, so a bare ``https://vault.lab.test``
    would be refused for ``https://kv.vault.lab.test:8443``.
    """
    return f"https://{LAB_VAULT_SUFFIX}" if port == 443 else f"https://{LAB_VAULT_SUFFIX}:{port}"


def _challenge(port: int) -> str:
    return f'Bearer authorization="https://login.windows.net/{LAB_TENANT}", resource="{challenge_resource(port)}"'


def _error(code: str, message: str, *, inner_code: str | None = None) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message}
    if inner_code:
        error["innererror"] = {"code": inner_code}
    return {"error": error}


def _stop_all(servers: list[LabServer]) -> None:
    """In parallel: each server's shutdown waits for its poll interval."""
    threads = [threading.Thread(target=server.stop) for server in servers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
