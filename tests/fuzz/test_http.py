"""The Functions app's HTTP endpoints, called as the host calls them (``function_app`` with
``azure.functions.HttpRequest``), with hostile names, parameters and bodies.

Every answer is JSON (HTML for a report) with a 2xx, a 4xx or the documented 502; never a 500,
which would mean an exception escaped a handler. Whenever a request is refused as bad input
(400, 413), no connection was attempted: Python's audit hook sees every ``connect``, ``sendto`` and
``getaddrinfo`` in the C socket module, so this is observed, not assumed. Requests that are
accepted run against the lab, and every connection they make goes to loopback."""

from __future__ import annotations

import ipaddress
import json
import os
from collections.abc import Iterator
from typing import Any
from unittest import mock

import azure.functions as func
import pytest
from hypothesis import given
from hypothesis import strategies as st

from lab.credential import LabCredential
from lab.estate import WALKTHROUGH_SUBSCRIPTION, walkthrough_estate
from lab.services import LabServices
from tests.functions.test_function_app import functions  # the app is indexed once per process
from tests.fuzz.conftest import COMMAND, tally
from tests.fuzz.strategies import any_json, exotic_text, huge_text, vault_names
from tests.probes.conftest import SocketAudit

_TRAVERSAL = [
    "..",
    "../../etc/passwd",
    "..%2F..%2Fetc%2Fpasswd",
    "%2e%2e",
    "kv-se-demo/../kv-pl-demo",
    "kv-se-demo%00",
    "kv-se-demo.vault.azure.net",
    "kv-se-demo.vault.lab.test",
    "kv-se-demo.evil.example",
    "kv-se-demo:443",
    "https://kv-se-demo.vault.azure.net/",
    "127.0.0.1",
    "localhost",
    "\\\\server\\share",
    "kv-SE-demo",
    "KV-PL-DEMO",
]
names = st.one_of(vault_names, st.sampled_from(_TRAVERSAL), exotic_text, huge_text.map(lambda t: t[:5000]))
query_values = st.one_of(
    st.sampled_from(
        ["true", "false", "TRUE", "yes", "", WALKTHROUGH_SUBSCRIPTION, WALKTHROUGH_SUBSCRIPTION.upper()]
    ),
    st.sampled_from(["open", "resolved", "all", "closed", "*", "kv-*", "[", "[!a-", "*" * 300, "../.."]),
    exotic_text,
)
check_params = st.dictionaries(
    st.sampled_from(["subscription", "notify", "code", "scan", "../", ""]), query_values, max_size=3
)
findings_params = st.dictionaries(st.sampled_from(["status", "vault", "x"]), query_values, max_size=2)
report_params = st.dictionaries(
    st.sampled_from(["scan", "format"]), query_values | st.text(max_size=80), max_size=2
)
probe_bodies = st.one_of(
    st.binary(max_size=200),
    any_json.map(lambda d: json.dumps(d).encode()),
    st.fixed_dictionaries({"vaults": st.lists(names, max_size=4)}).map(lambda d: json.dumps(d).encode()),
    st.fixed_dictionaries({"vaults": st.lists(names, max_size=2)}, optional={"port": st.integers()}).map(
        lambda d: json.dumps(d).encode()
    ),
    st.sampled_from([b"{" * 50_000, b'{"vaults": ["' + b"a" * 70_000 + b'"]}', b"\xff\xfe{", b"null", b"[]"]),
)


def _call(name: str, request: func.HttpRequest) -> func.HttpResponse:
    return functions()[name].get_user_function()(request)


@pytest.fixture(scope="module")
def app() -> Iterator[LabServices]:
    """The app's settings in the environment, pointing at the lab; SQLite as the store; this
    deployment probes as the lab's internet vantage point (the lab's resolver, never the system's)."""
    with LabServices(walkthrough_estate()) as lab, mock.patch.dict(os.environ, clear=False):
        os.environ.update(lab.environ(channels=True))
        os.environ["KVMON_VANTAGE"] = "internet"
        with mock.patch("monitor.app.deployment._CREDENTIAL", LabCredential()):
            yield lab


_AUDIT: SocketAudit | None = None


@pytest.fixture(scope="module")
def audit() -> SocketAudit:
    global _AUDIT
    if _AUDIT is None:
        _AUDIT = SocketAudit()
    return _AUDIT


def _loopback(target: Any) -> bool:
    host = target[0] if isinstance(target, tuple) and target else target
    try:
        return ipaddress.ip_address(str(host).split("%")[0]).is_loopback
    except ValueError:
        return False


def _judge(endpoint: str, response: func.HttpResponse, events: list[tuple[str, Any]]) -> None:
    status = response.status_code
    assert status != 500, response.get_body()[:300]
    assert status in (200, 400, 404, 413, 502), status
    body = response.get_body().decode("utf-8")
    if response.mimetype == "application/json":
        document = json.loads(body)
        if status >= 400:
            assert document["error"]["code"] and document["error"]["message"]
    if status in (400, 413):  # refused as bad input: nothing may have gone out
        assert events == [], f"{endpoint} refused the request ({status}) yet connected: {events[:3]}"
        code = json.loads(body)["error"]["code"]
        tally(f"HTTP {endpoint}", f"{status} {code}, no connection")
        return
    # Looked up (200, 404 not found, 502 ARM failed): only ever on loopback, the lab.
    outside = [
        (event, target) for event, target in events if event != "socket.getaddrinfo" and not _loopback(target)
    ]
    assert outside == [], outside
    code = json.loads(body)["error"]["code"] if status >= 400 else ""
    tally(f"HTTP {endpoint}", f"{status} {code}".strip())


@COMMAND
@given(name=names, params=check_params)
def test_check_vault(app: LabServices, audit: SocketAudit, name: str, params: dict[str, str]) -> None:
    request = func.HttpRequest(
        method="GET", url=f"/api/vaults/{name}/check", route_params={"name": name}, params=params, body=b""
    )
    with audit.watch() as events:
        response = _call("check_vault", request)
    _judge("GET /api/vaults/{name}/check", response, list(events))


@COMMAND
@given(body=probe_bodies)
def test_probe(app: LabServices, audit: SocketAudit, body: bytes) -> None:
    request = func.HttpRequest(method="POST", url="/api/probe", route_params={}, params={}, body=body)
    with audit.watch() as events:
        response = _call("probe", request)
    _judge("POST /api/probe", response, list(events))


@COMMAND
@given(params=findings_params)
def test_findings(app: LabServices, audit: SocketAudit, params: dict[str, str]) -> None:
    request = func.HttpRequest(method="GET", url="/api/findings", route_params={}, params=params, body=b"")
    with audit.watch() as events:
        response = _call("findings", request)
    _judge("GET /api/findings", response, list(events))


@COMMAND
@given(params=report_params)
def test_report(app: LabServices, audit: SocketAudit, params: dict[str, str]) -> None:
    request = func.HttpRequest(method="GET", url="/api/report", route_params={}, params=params, body=b"")
    with audit.watch() as events:
        response = _call("report", request)
    _judge("GET /api/report", response, list(events))
