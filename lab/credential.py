"""A token credential for the lab: the Azure SDK clients need one; production uses
``DefaultAzureCredential``."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from azure.core.credentials import AccessToken

from lab.estate import lab_token

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
