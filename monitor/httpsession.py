"""One HTTP session class for kvmon's busiest clients (Table storage, the scan queue, one-vault ARM
reads, webhooks): ``requests`` with the environment's proxy and CA settings read once per host.

``requests`` honours ``HTTPS_PROXY``, ``NO_PROXY``, ``REQUESTS_CA_BUNDLE`` and the like by scanning
the whole environment two or three times on every request (``merge_environment_settings``): with a
Functions worker's hundred-odd variables, a tenth of kvmon's CPU in a burst of events, most of
it Table storage's twenty-odd requests per event. ``SettledSession`` keeps what the environment
gave for each host and request options, so the settings are still honoured, read when a host is
first used. A worker's environment does not change while it runs (a changed app setting restarts
it); the Functions app builds new clients, and so new sessions, when it sees a changed one
(``monitor.app.runtime.SharedRuntime``).
"""

from __future__ import annotations

import threading
from collections.abc import MutableMapping
from typing import Any
from urllib.parse import urlsplit

import requests
from azure.core.pipeline.transport import RequestsTransport


class SettledSession(requests.Session):
    def __init__(self) -> None:
        super().__init__()
        self._settled: dict[tuple[Any, ...], dict[str, Any]] = {}
        self._settled_lock = threading.Lock()

    def merge_environment_settings(
        self,
        url: str | bytes | None,
        proxies: MutableMapping[str, str] | None,
        stream: Any,
        verify: Any,
        cert: Any,
    ) -> Any:  # requests' _Settings, a TypedDict its stubs keep private
        hashable = all(isinstance(value, str | bool | tuple | type(None)) for value in (stream, verify, cert))
        if proxies or not hashable or not isinstance(url, str):  # a request's own proxies: as requests does
            return dict(super().merge_environment_settings(url, proxies, stream, verify, cert))
        parts = urlsplit(url)
        key = (parts.scheme, parts.netloc, stream, verify, cert, self.trust_env)
        with self._settled_lock:
            settled = self._settled.get(key)
        if settled is None:
            settled = dict(super().merge_environment_settings(url, proxies, stream, verify, cert))
            with self._settled_lock:
                self._settled[key] = settled
        return {**settled, "proxies": dict(settled["proxies"])}


def settled_transport(
    *, connection_verify: str | bool = True, connection_timeout: float = 300, read_timeout: float = 300
) -> RequestsTransport:
    """An azure-core transport over a ``SettledSession`` of its own (closed with it). A client given
    a transport no longer builds one from its own connection options: they are given here."""
    return RequestsTransport(
        session=SettledSession(),
        session_owner=True,
        connection_verify=connection_verify,
        connection_timeout=connection_timeout,
        read_timeout=read_timeout,
    )
