"""Tokens for the lab: ``LabCredential``, the token credential the tests and the demo give the
Azure SDK clients, and ``IdentityEndpoint``, the managed identity endpoint App Service and Azure
Functions give an app, which production's ``DefaultAzureCredential`` asks over HTTP."""

from __future__ import annotations

import secrets
import time
from collections.abc import Mapping
from typing import Any

from azure.core.credentials import AccessToken

from lab.estate import lab_token
from lab.http import LabServer, Request, Response

MONITOR_OBJECT_ID = "5a1c8f9e-0000-4000-8000-00000000c0de"
MONITOR_APP_ID = "7d0b2f3e-0000-4000-8000-00000000a99e"


class LabCredential:
    """Issues unsigned tokens whose claims the lab services read (who called); ``claims`` adds
    to them (a person's ``upn``, ``name``, ``ipaddr``)."""

    def __init__(
        self,
        *,
        object_id: str = MONITOR_OBJECT_ID,
        app_id: str = MONITOR_APP_ID,
        claims: Mapping[str, Any] | None = None,
    ) -> None:
        self.object_id = object_id
        self.app_id = app_id
        self.claims = dict(claims or {})

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        audience = scopes[0].removesuffix("/.default") if scopes else "https://management.azure.com"
        token = lab_token(object_id=self.object_id, app_id=self.app_id, audience=audience, claims=self.claims)
        return AccessToken(token, int(time.time()) + 3600)

    def close(self) -> None:
        return None

    def __enter__(self) -> LabCredential:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


class IdentityEndpoint:
    """App Service's managed identity endpoint (``IDENTITY_ENDPOINT``, ``IDENTITY_HEADER``), which
    azure-identity's ``ManagedIdentityCredential`` (in ``DefaultAzureCredential``'s chain) asks
    through MSAL: ``GET ?api-version=2019-08-01&resource=R`` with the header ``X-IDENTITY-HEADER``,
    answered ``{"access_token", "expires_on", "resource", "token_type", "client_id"}``. Plain HTTP
    on loopback, like the platform's own endpoint on localhost; its tokens are ``LabCredential``'s.
    ``server`` takes the lab's faults (a stall, a reset) like every lab service."""

    PATH = "/msi/token"

    def __init__(self, *, object_id: str = MONITOR_OBJECT_ID, app_id: str = MONITOR_APP_ID) -> None:
        self.object_id = object_id
        self.app_id = app_id
        self.header = secrets.token_urlsafe(16)
        self.server = LabServer(name="identity", tls=False)
        self.server.route("GET", self.PATH, self._token, name="token")

    def start(self) -> IdentityEndpoint:
        self.server.start()
        return self

    def stop(self) -> None:
        self.server.stop()

    def __enter__(self) -> IdentityEndpoint:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def environ(self) -> dict[str, str]:
        """What the platform sets for an app with a managed identity."""
        return {"IDENTITY_ENDPOINT": f"{self.server.url}{self.PATH}", "IDENTITY_HEADER": self.header}

    def _token(self, request: Request) -> Response:
        if request.header("X-IDENTITY-HEADER") != self.header:
            return Response(401, {"statusCode": 401, "message": "the X-IDENTITY-HEADER is missing or wrong"})
        resource = request.query.get("resource", "")
        if request.query.get("api-version") != "2019-08-01" or not resource:
            return Response(
                400, {"statusCode": 400, "message": "api-version 2019-08-01 and resource are required"}
            )
        token = lab_token(object_id=self.object_id, app_id=self.app_id, audience=resource)
        return Response(
            200,
            {
                "access_token": token,
                "expires_on": str(int(time.time()) + 3600),
                "resource": resource,
                "token_type": "Bearer",
                "client_id": self.app_id,
            },
        )
