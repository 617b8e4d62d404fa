"""The pieces the links tests build on, checked on their own: what counts as the same server
(``origin_of``), the policy's refusal inside a real azure-core pipeline, and ``PageGuard``'s
counting. The SDK clients against the lab are in ``tests/inventory/test_links.py``,
``tests/logs/test_reader.py``, ``tests/probes/test_dataplane_verdicts.py`` and
``tests/faults/test_arm.py``."""

from __future__ import annotations

import pytest
from azure.core import PipelineClient
from azure.core.pipeline.policies import RedirectPolicy, RetryPolicy
from azure.core.pipeline.transport import HttpTransport
from azure.core.rest import HttpRequest, HttpResponse

from monitor.azure_origin import EndpointPolicy, OffEndpointRequest, origin_of
from monitor.errors import SourceError
from monitor.sources.paging import PageGuard, PagingStopped


@pytest.mark.parametrize(
    ("url", "origin"),
    [
        ("https://management.azure.com", "https://management.azure.com:443"),
        (
            "https://Management.Azure.com:443/subscriptions/x?api-version=1",
            "https://management.azure.com:443",
        ),
        ("https://user:secret@evil.example:8443/path?sig=abc", "https://evil.example:8443"),
        ("http://127.0.0.1/x", "http://127.0.0.1:80"),
        ("https://[::1]:9000/", "https://[::1]:9000"),
    ],
)
def test_an_origin_is_scheme_host_and_port_and_nothing_else(url: str, origin: str) -> None:
    assert origin_of(url) == origin


def test_scheme_host_and_port_each_make_another_server() -> None:
    endpoint = origin_of("https://management.azure.com")
    for other in (
        "http://management.azure.com",
        "https://management.azure.com.evil.example",
        "https://management.azure.com:8443",
    ):
        assert origin_of(other) != endpoint


class _Refusing(HttpTransport):
    """A transport that must never be reached."""

    def __init__(self) -> None:
        self.sent: list[str] = []

    def __enter__(self) -> _Refusing:
        return self

    def __exit__(self, *args: object) -> None:
        return None

    def open(self) -> None:
        return None

    def close(self) -> None:
        return None

    def send(self, request: HttpRequest, **kwargs: object) -> HttpResponse:
        self.sent.append(request.url)
        raise AssertionError(f"sent to {request.url}")


def test_the_policy_refuses_before_the_transport_and_the_retry_policy_does_not_retry() -> None:
    transport = _Refusing()
    client: PipelineClient[HttpRequest, HttpResponse] = PipelineClient(
        "https://management.azure.com",
        transport=transport,
        policies=[
            RedirectPolicy(),
            RetryPolicy(retry_total=3),
            EndpointPolicy("https://management.azure.com"),
        ],
    )

    with pytest.raises(OffEndpointRequest) as raised:
        client.send_request(HttpRequest("GET", "https://evil.example/subscriptions?sig=secret"))

    assert transport.sent == []
    assert isinstance(raised.value, SourceError)
    assert (raised.value.target, raised.value.code) == ("https://evil.example:443", "LinkElsewhere")
    assert "sig=secret" not in str(raised.value)  # an origin only: no path, no query


def test_a_guard_counts_pages_and_remembers_each_continuation_once() -> None:
    guard = PageGuard("listing of subscription s", link="nextLink", max_pages=3)
    guard.arrived("a")
    guard.follow("a")
    guard.arrived("b")
    guard.follow("b")
    with pytest.raises(PagingStopped, match=r"page 3 gave the nextLink page 1 gave") as raised:
        guard.arrived("a")
    assert raised.value.code == "PageLoop"

    bounded = PageGuard("listing of subscription s", link="nextLink", max_pages=2)
    for link in ("a", "b"):
        bounded.arrived(link)
        if link == "b":
            with pytest.raises(PagingStopped, match="more than 2 pages") as too_many:
                bounded.follow(link)
            assert too_many.value.code == "TooManyPages"
        else:
            bounded.follow(link)

    last = PageGuard("listing", link="nextLink", max_pages=1)
    last.arrived(None)  # one page and no more: within any bound
    with pytest.raises(ValueError, match="at least 1"):
        PageGuard("listing", link="nextLink", max_pages=0)
