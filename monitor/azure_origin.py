"""A token goes only to the endpoint its client was built for.

Two things in an Azure answer can send an SDK client elsewhere: a link the client follows (ARM's
``nextLink``, which the pager requests as it is, host included) and an HTTP redirect (azure-core's
``RedirectPolicy`` follows 300-303, 307 and 308 by default, 30 times). azure-core 1.41 drops the
``Authorization`` header when a redirect changes host (``SensitiveHeaderCleanupPolicy``), but
still sends the request, its body (a KQL query, the subscriptions asked for) and judges the
answer as if the service had sent it; a ``nextLink`` to another host gets the bearer token
itself. Neither is left to the SDK's defaults: every client kvmon builds that sends a token
carries ``EndpointPolicy`` among its ``per_retry_policies``, which refuses, before anything is
sent, any request whose scheme, host and port are not the client's endpoint's.

Installed per retry on purpose: azure-core runs the per-retry policies inside the redirect and
retry loops (after ``RetryPolicy``, before the authentication policy), so each redirected request
and each page passes through it, and it refuses before a token is asked for. ``OffEndpointRequest``
is a ``SourceError`` and not an ``AzureError``, so the retry policy does not try again: one refusal
ends the operation, and the reader turns it into a scan error.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from azure.core.pipeline import PipelineRequest
from azure.core.pipeline.policies import SansIOHTTPPolicy

from monitor.errors import SourceError

_DEFAULT_PORTS = {"https": 443, "http": 80}
# azure-core's RedirectPolicy marks a request it redirected to another host with this context key.
_REDIRECTED_ELSEWHERE = "insecure_domain_change"


def origin_of(url: str) -> str:
    """``scheme://host:port`` of ``url``, lower-cased, the port always written: two URLs reach the
    same server exactly when their origins are equal. No path, query or credentials: it is safe
    to show."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port
    except ValueError:  # a port that is no number: no server kvmon would reach
        port = None
    host = (parts.hostname or "").lower()
    if ":" in host:
        host = f"[{host}]"
    return f"{scheme}://{host}:{port or _DEFAULT_PORTS.get(scheme, 0)}"


class OffEndpointRequest(SourceError):
    """An answer tried to send the client to another server (a link or a redirect); nothing was sent."""

    def __init__(self, *, target: str, endpoint: str, redirect: bool) -> None:
        self.target = target  # an origin: no path, no query
        self.endpoint = endpoint
        self.redirect = redirect
        how = "follow a redirect" if redirect else "follow a link from an answer (nextLink)"
        super().__init__(
            f"refused to {how} to {target}: this client sends only to {endpoint}, so nothing was sent"
        )

    @property
    def code(self) -> str:
        """The ``ScanError`` code of this refusal."""
        return "RedirectElsewhere" if self.redirect else "LinkElsewhere"


class EndpointPolicy(SansIOHTTPPolicy[Any, Any]):
    """Refuses every request whose origin is not ``endpoint``'s (``OffEndpointRequest``).

    Give it to a client as ``per_retry_policies=[EndpointPolicy(endpoint)]``, ``endpoint`` being the
    URL the client was built with (ARM's, Log Analytics', the vault's).
    """

    def __init__(self, endpoint: str) -> None:
        super().__init__()
        self.endpoint = origin_of(endpoint)

    def on_request(self, request: PipelineRequest[Any]) -> None:
        target = origin_of(request.http_request.url)
        if target != self.endpoint:
            raise OffEndpointRequest(
                target=target,
                endpoint=self.endpoint,
                redirect=bool(request.context.get(_REDIRECTED_ELSEWHERE, False)),
            )
