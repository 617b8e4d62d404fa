"""lab/http.py's server: what clients see is what http.server would send, over kept-alive
connections served by reused threads."""

from __future__ import annotations

import http.client
import io
import socket
import ssl
import threading
from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lab.arm import ArmEmulator
from lab.estate import Estate
from lab.http import Fault, LabServer, LinkFault, RecordingServer, Request, Response, _read_headers
from lab.resourcegraph import ResourceGraphEmulator
from lab.tls import LabPki

HEADER_BLOCKS = [
    b"Host: h\r\nX-Dup: 1\r\nx-dup: 2\r\n\r\n",
    b"Host:   spaced  \r\nEmpty:\r\nTab:\tvalue\r\n\r\n",
    b"Host: lf-only\nAccept: */*\n\n",
    b"X-Fold: a\r\n b\r\n\r\n",  # folded: the email parser's business
    b" leading: continuation\r\nHost: h\r\n\r\n",
    b"bad header line\r\nHost: h\r\n\r\n",
    b": no name\r\nHost: h\r\n\r\n",
    b"X: a\rb\r\n\r\n",
    b"X-Latin: caf\xe9\r\n\r\n",
    b"From nobody\r\nHost: h\r\n\r\n",
    b"Host: h\r\n",  # the stream ends before the empty line
    b"\r\n",
]


def _stdlib(block: bytes) -> list[tuple[str, str]]:
    message = http.client.parse_headers(io.BytesIO(block))
    return [*message.items(), ("payload", repr(message.get_payload())), ("defects", repr(message.defects))]


def _lab(block: bytes) -> list[tuple[str, str]]:
    message = _read_headers(io.BytesIO(block), http.client.HTTPMessage)
    return [*message.items(), ("payload", repr(message.get_payload())), ("defects", repr(message.defects))]


@pytest.mark.parametrize("block", HEADER_BLOCKS)
def test_headers_are_read_as_http_client_reads_them(block: bytes) -> None:
    assert _lab(block) == _stdlib(block)


@given(st.lists(st.binary(max_size=40).map(lambda b: b.replace(b"\n", b"") + b"\r\n"), max_size=6))
def test_any_header_lines_are_read_as_http_client_reads_them(lines: list[bytes]) -> None:
    block = b"".join(lines) + b"\r\n"
    assert _lab(block) == _stdlib(block)


def test_too_many_or_too_long_header_lines_are_refused_as_http_client_refuses_them() -> None:
    with pytest.raises(http.client.HTTPException, match="got more than 100 headers"):
        _read_headers(io.BytesIO(b"X: y\r\n" * 101 + b"\r\n"), http.client.HTTPMessage)
    with pytest.raises(http.client.LineTooLong):
        _read_headers(io.BytesIO(b"X: " + b"y" * 70000 + b"\r\n\r\n"), http.client.HTTPMessage)


@pytest.fixture
def server() -> Iterator[LabServer]:
    lab = LabServer(name="test-http", tls=False)
    for method in ("GET", "HEAD"):
        lab.route(method, r"/echo", lambda r: Response(200, {"headers": dict(r.headers), "query": r.query}))
    lab.route("POST", r"/upload", lambda r: Response(201, r.body.decode()))
    lab.route("GET", r"/bye", lambda r: Response(200, "bye", {"Connection": "close"}))
    with lab:
        yield lab


def _exchange(port: int, data: bytes) -> bytes:
    """Send ``data``, read until the server closes or goes quiet."""
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(data)
        sock.settimeout(0.5)
        received = b""
        try:
            while chunk := sock.recv(65536):
                received += chunk
            return received + b"<closed>"
        except TimeoutError:
            return received + b"<open>"


def test_one_connection_serves_request_after_request(server: LabServer) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    try:
        for index in range(3):
            connection.request("GET", f"/echo?n={index}", headers={"X-Index": str(index)})
            answer = connection.getresponse()
            body = answer.read()
            assert answer.status == 200
            assert answer.getheader("Content-Length") == str(len(body))
            assert answer.getheader("Server", "").startswith("BaseHTTP/")
            assert answer.getheader("Date")
            assert b'"X-Index": "%d"' % index in body
        connection.request("POST", "/upload", body=b"hello")
        answer = connection.getresponse()
        assert (answer.status, answer.read()) == (201, b"hello")
        first_socket = connection.sock
        connection.request("HEAD", "/echo")
        answer = connection.getresponse()
        assert answer.status == 200 and answer.read() == b""
        assert connection.sock is first_socket  # never reconnected
    finally:
        connection.close()
    assert server.request_counts["/echo"] == 4  # three GETs and a HEAD


def test_a_redirect_fault_keeps_the_path_and_query_and_another_host_records_what_it_gets(
    server: LabServer, pki: LabPki
) -> None:
    server.inject(r"^/echo$", Fault(redirect_to="https://127.0.0.9:8443/", times=1))
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    try:
        connection.request("GET", "/echo?n=1&$skiptoken=abc")
        answer = connection.getresponse()
        answer.read()
        assert (answer.status, answer.getheader("Location")) == (
            307,
            "https://127.0.0.9:8443/echo?n=1&$skiptoken=abc",
        )
    finally:
        connection.close()
    with RecordingServer(answer=Response(200, {"value": []})) as elsewhere:
        elsewhere_connection = http.client.HTTPSConnection(
            "127.0.0.1",
            elsewhere.port,
            timeout=5,
            context=ssl.create_default_context(cafile=pki.ca_path),
        )
        try:
            elsewhere_connection.request("DELETE", "/any/path?x=1", headers={"Authorization": "Bearer t0ken"})
            assert elsewhere_connection.getresponse().read() == b'{"value": []}'
        finally:
            elsewhere_connection.close()
    assert [(r.method, r.path, r.query) for r in elsewhere.requests] == [("DELETE", "/any/path", {"x": "1"})]
    assert elsewhere.authorization_headers == ["Bearer t0ken"]


def test_a_foreign_link_fault_needs_its_host_and_only_it_takes_one() -> None:
    arm = ArmEmulator(Estate())
    with pytest.raises(ValueError, match="foreign link needs elsewhere"):
        arm.mislink("sub", LinkFault.FOREIGN)
    with pytest.raises(ValueError, match="foreign link needs elsewhere"):
        ResourceGraphEmulator(Estate(), server=arm.server).mislink(
            LinkFault.SELF, elsewhere="https://127.0.0.9"
        )


def test_pipelined_requests_are_answered_in_order_and_the_connection_stays_open(server: LabServer) -> None:
    received = _exchange(server.port, b"GET /echo?n=1 HTTP/1.1\r\n\r\nGET /echo?n=2 HTTP/1.1\r\n\r\n")
    assert received.count(b"HTTP/1.1 200 OK\r\n") == 2
    assert received.index(b'"n": "1"') < received.index(b'"n": "2"')
    assert received.endswith(b"<open>")


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GET /echo HTTP/1.1\r\nConnection: close\r\n\r\n",
        b"GET /echo HTTP/1.0\r\n\r\n",
        b"GET /bye HTTP/1.1\r\n\r\n",  # the answer says Connection: close
    ],
)
def test_the_connection_closes_when_either_side_says_so(server: LabServer, request_bytes: bytes) -> None:
    received = _exchange(server.port, request_bytes)
    assert received.startswith(b"HTTP/1.1 200 OK\r\n")
    assert received.endswith(b"<closed>")


def test_malformed_requests_get_http_servers_own_errors(server: LabServer) -> None:
    too_long = _exchange(server.port, b"GET /echo HTTP/1.1\r\nX: " + b"y" * 70_000 + b"\r\n\r\n")
    assert too_long.startswith(b"HTTP/1.1 431 Line too long\r\n")
    assert b"Content-Type: text/html;charset=utf-8\r\n" in too_long
    assert too_long.endswith(b"<closed>")
    bad_version = _exchange(server.port, b"GET /echo HTTP/x.y\r\n\r\n")  # answered as HTTP/0.9: no head
    assert bad_version.startswith(b"<!DOCTYPE HTML>")
    assert b"Bad request version ('HTTP/x.y')" in bad_version
    assert bad_version.endswith(b"<closed>")


def _worker_threads(server: LabServer) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == f"lab-{server.name}-connection" and t.is_alive()]


def test_connections_one_after_another_reuse_one_thread(server: LabServer) -> None:
    for _ in range(5):
        assert _exchange(server.port, b"GET /echo HTTP/1.1\r\nConnection: close\r\n\r\n").endswith(
            b"<closed>"
        )
    assert len(_worker_threads(server)) == 1


def test_idle_kept_alive_connections_do_not_hold_up_a_new_one(server: LabServer) -> None:
    idle = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(3)]
    try:
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
        connection.request("GET", "/echo")
        assert connection.getresponse().status == 200
        connection.close()
    finally:
        for sock in idle:
            sock.close()


def test_stopping_ends_the_servers_threads() -> None:
    lab = LabServer(name="test-http-stop", tls=False)
    lab.route("GET", r"/", lambda r: Response(204))
    with lab:
        assert _exchange(lab.port, b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n").endswith(b"<closed>")
        threads = _worker_threads(lab)
        assert threads
    for thread in threads:
        thread.join(timeout=5)
        assert not thread.is_alive()


def test_tls_connections_are_kept_alive_and_a_failed_handshake_is_only_closed(pki: LabPki) -> None:
    seen: list[Request] = []
    lab = LabServer(name="test-https")
    lab.route("GET", r"/who", lambda r: seen.append(r) or Response(200, r.local_address))
    with lab:
        with socket.create_connection(("127.0.0.1", lab.port)) as plain:
            plain.sendall(b"GET /who HTTP/1.1\r\n\r\n")  # no TLS at all: the handshake fails
            plain.settimeout(5)
            assert plain.recv(100) == b""
        context = ssl.create_default_context(cafile=pki.ca_path)
        connection = http.client.HTTPSConnection("localhost", lab.port, context=context, timeout=5)
        try:
            for _ in range(2):
                connection.request("GET", "/who")
                answer = connection.getresponse()
                assert (answer.status, answer.read()) == (200, b"127.0.0.1")
        finally:
            connection.close()
    assert [request.client_address for request in seen] == ["127.0.0.1", "127.0.0.1"]
