"""A small HTTPS server on loopback that every emulated Azure service in the lab builds on.

It gives each service the same three things: routing to plain handler functions, a count of
requests per route (the benchmarks read it), and injected latency and faults (the fault tests
use them): a status with headers and body, a redirect to another server, a connection reset, a
stall before the answer, an answer whose body stalls after its headers, or one that trickles in.
``LinkFault`` names the ways a paged answer can misdirect its client (the ARM and Resource
Graph emulators serve them), and ``RecordingServer`` plays the other host such an answer points
to, keeping every request it gets.
"""

from __future__ import annotations

import contextlib
import email.parser
import json
import queue
import re
import socket
import ssl
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from http import HTTPStatus
from http.client import HTTPException, HTTPMessage, LineTooLong
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from lab.tls import lab_pki

LOOPBACK = "127.0.0.1"


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: Mapping[str, str]
    body: bytes
    client_address: str
    local_address: str
    params: dict[str, str] = field(default_factory=dict)  # named groups of the route pattern

    def json(self) -> Any:
        return json.loads(self.body.decode("utf-8")) if self.body else None

    def header(self, name: str) -> str | None:
        for key, value in self.headers.items():
            if key.lower() == name.lower():
                return value
        return None


@dataclass
class Response:
    status: int = 200
    body: Any = None  # dict/list -> JSON; str/bytes sent as they are
    headers: dict[str, str] = field(default_factory=dict)

    def encoded(self) -> tuple[bytes, dict[str, str]]:
        headers = dict(self.headers)
        if self.body is None:
            return b"", headers
        if isinstance(self.body, bytes):
            return self.body, headers
        if isinstance(self.body, str):
            headers.setdefault("Content-Type", "text/plain; charset=utf-8")
            return self.body.encode("utf-8"), headers
        headers.setdefault("Content-Type", "application/json; charset=utf-8")
        return json.dumps(self.body).encode("utf-8"), headers


Handler = Callable[[Request], Response]


@dataclass
class Fault:
    """What to do instead of answering. ``times`` counts down; 0 means forever."""

    status: int | None = None
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    reset: bool = False  # close the connection without an answer
    delay_s: float = 0.0  # stall before acting (past a client's timeout = a timeout)
    # The answer (the fault's status, or the route's), sent slowly: the status line, the headers
    # and half the body, then nothing for ``stall_body_s``; or the body in ``TRICKLE_PIECES``
    # pieces, ``trickle_s`` apart (each gap shorter than a read timeout, the whole longer).
    stall_body_s: float = 0.0
    trickle_s: float = 0.0
    times: int = 1
    # Answer ``status`` (307 when None) with ``Location`` on this origin ("https://host:port"),
    # the request's own path and query kept: a redirect of the same call to another server.
    redirect_to: str | None = None

    @property
    def slow(self) -> bool:
        return bool(self.stall_body_s or self.trickle_s)


class LinkFault(StrEnum):
    """How a paged answer misdirects its client, on demand (the emulators' ``mislink``)."""

    FOREIGN = "foreign"  # the link to the next page points to another server, path and query kept
    SELF = "self"  # every page's link points back at that page itself
    CYCLE = "cycle"  # the last page links back to the first: the pages go round in a ring
    ENDLESS = "endless"  # every page links to a further one, empty past the end: it never ends


TRICKLE_PIECES = 20


@dataclass
class _Route:
    method: str
    pattern: re.Pattern[str]
    handler: Handler
    name: str


class LabServer:
    """HTTPS (or plain HTTP) on loopback with routes, request counts, latency and faults."""

    def __init__(
        self,
        *,
        name: str,
        host: str = LOOPBACK,
        port: int = 0,
        tls: bool = True,
        certificate_hosts: tuple[str, ...] = (),
        latency_s: float = 0.0,
    ) -> None:
        if not host.startswith("127.") and host != "::1":
            raise ValueError(f"lab servers listen on loopback only, not {host}")
        self.name = name
        self.host = host
        self.port = port
        self.tls = tls
        self.latency_s = latency_s
        self.request_counts: Counter[str] = Counter()
        self._certificate_hosts = certificate_hosts
        self._routes: list[_Route] = []
        self._faults: list[tuple[re.Pattern[str], Fault]] = []
        self._lock = threading.Lock()
        self._httpd: _PooledHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- configuration -------------------------------------------------------------------------

    def route(self, method: str, pattern: str, handler: Handler, *, name: str | None = None) -> None:
        """``pattern`` is a regular expression over the path, matched whole; named groups become
        ``request.params``."""
        self._routes.append(_Route(method.upper(), re.compile(pattern), handler, name or pattern))

    def inject(self, path_pattern: str, fault: Fault) -> None:
        """The next matching request(s) get ``fault`` instead of their answer."""
        with self._lock:
            self._faults.append((re.compile(path_pattern), fault))

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    @property
    def total_requests(self) -> int:
        return sum(self.request_counts.values())

    @property
    def url(self) -> str:
        scheme = "https" if self.tls else "http"
        return f"{scheme}://{self.host}:{self.port}"

    # -- life cycle ----------------------------------------------------------------------------

    def start(self) -> LabServer:
        server = self
        context = lab_pki().server_context(*self._certificate_hosts) if self.tls else None

        class _Handler(_ConnectionHandler):
            def _serve(self) -> None:
                server._dispatch(self)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _serve

        class _Server(_PooledHTTPServer):
            def get_request(self) -> tuple[socket.socket, Any]:
                sock, addr = self.socket.accept()
                # What the standard library writes in pieces (100 Continue, errors for malformed
                # requests) would otherwise wait for the client's delayed ACK (about 40 ms).
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                if context is not None:
                    sock = context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
                return sock, addr

        self._httpd = _Server((self.host, self.port), _Handler, name=self.name)
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, name=f"lab-{self.name}", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> LabServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- request handling ----------------------------------------------------------------------

    def _take_fault(self, path: str) -> Fault | None:
        with self._lock:
            for index, (pattern, fault) in enumerate(self._faults):
                if pattern.search(path):
                    if fault.times == 1:
                        del self._faults[index]
                    elif fault.times > 1:
                        fault.times -= 1
                    return fault
        return None

    def _dispatch(self, h: _ConnectionHandler) -> None:
        parts = urlsplit(h.path)
        length = int(h.headers.get("Content-Length") or 0)
        body = h.rfile.read(length) if length else b""
        request = Request(
            method=h.command,
            path=parts.path,
            query={k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()},
            headers=dict(h.headers.items()),
            body=body,
            client_address=h.client_address[0],
            local_address=h.local_address,
        )
        if self.latency_s:
            time.sleep(self.latency_s)
        fault = self._take_fault(request.path)
        response = self._answer(request, h, fault)
        if response is None:
            return
        payload, headers = response.encoded()
        if fault is not None and fault.slow:
            h.send_slowly(response.status, headers, payload, fault)
        else:
            h.send_whole_response(response.status, headers, payload)

    def _answer(self, request: Request, h: _ConnectionHandler, fault: Fault | None) -> Response | None:
        route = next(
            (
                r
                for r in self._routes
                if r.method == request.method and (match := r.pattern.fullmatch(request.path))
            ),
            None,
        )
        with self._lock:
            self.request_counts[route.name if route else "unrouted"] += 1
        if fault is not None:
            if fault.delay_s:
                time.sleep(fault.delay_s)
            if fault.reset:
                _reset(h.connection)
                h.close_connection = True
                return None
            if fault.redirect_to is not None:
                query = urlsplit(h.path).query
                location = f"{fault.redirect_to.rstrip('/')}{request.path}" + (f"?{query}" if query else "")
                return Response(fault.status or 307, fault.body, {**fault.headers, "Location": location})
            if fault.status is not None:
                return Response(fault.status, fault.body, dict(fault.headers))
        if route is None:
            return Response(404, {"error": {"code": "NotFound", "message": f"no route for {request.path}"}})
        match = route.pattern.fullmatch(request.path)
        assert match is not None
        request.params = {k: v for k, v in match.groupdict().items() if v is not None}
        try:
            return route.handler(request)
        except Exception as exc:  # a bug in the lab should look like a server error, loudly
            return Response(500, {"error": {"code": "LabError", "message": f"{type(exc).__name__}: {exc}"}})


class RecordingServer(LabServer):
    """Another host on loopback that answers every request with ``answer`` and keeps each one
    (method, path, headers, body) in ``requests``: where a misdirected client would go, so a test
    can prove none went there and that no token did. ``answer`` is what a hostile host would
    say (a page of vaults, a secret found) so a client that did follow would show it."""

    def __init__(self, *, name: str = "elsewhere", answer: Response | None = None) -> None:
        super().__init__(name=name)
        self.answer = answer or Response(200, {"value": []})
        self.requests: list[Request] = []
        for method in ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"):
            self.route(method, r"/.*", self._record, name=f"elsewhere.{method.lower()}")

    def _record(self, request: Request) -> Response:
        with self._lock:
            self.requests.append(request)
        return Response(self.answer.status, self.answer.body, dict(self.answer.headers))

    @property
    def authorization_headers(self) -> list[str]:
        """Every Authorization header it was sent (a token that left)."""
        return [value for request in self.requests if (value := request.header("Authorization"))]


class _ConnectionHandler(BaseHTTPRequestHandler):
    """One connection: HTTP/1.1 keep-alive, quiet, with the costs per request kept low.

    What a client sees is what ``BaseHTTPRequestHandler`` sends; three things cost less: the TLS
    handshake is done once per connection before the first read, the request's headers are
    parsed without the ``email`` package when they are plain ``Name: value`` lines (anything
    else goes to the same parser ``http.client.parse_headers`` uses), and an answer leaves in
    one write (status line, headers and body: one TLS record, one system call).
    """

    protocol_version = "HTTP/1.1"
    raw_requestline: bytes  # set by handle_one_request
    local_address = ""

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        return

    def handle(self) -> None:
        sock = self.connection
        if isinstance(sock, ssl.SSLSocket):
            try:
                sock.do_handshake()
            except (ssl.SSLError, OSError):
                return  # failed handshakes are part of the lab's life
        try:
            self.local_address = sock.getsockname()[0]
        except OSError:
            return
        super().handle()

    def parse_request(self) -> bool:
        """``BaseHTTPRequestHandler.parse_request``, the same checks and errors, in that order."""
        self.command = None  # type: ignore[assignment]  # set in case of error on the first line
        self.request_version = version = self.default_request_version
        self.close_connection = True
        requestline = str(self.raw_requestline, "iso-8859-1").rstrip("\r\n")
        self.requestline = requestline
        words = requestline.split()
        if len(words) == 0:
            return False
        if len(words) >= 3:  # enough to determine the protocol version
            version = words[-1]
            try:
                if not version.startswith("HTTP/"):
                    raise ValueError
                base_version_number = version.split("/", 1)[1]
                parts = base_version_number.split(".")
                if len(parts) != 2 or any(not p.isdigit() or len(p) > 10 for p in parts):
                    raise ValueError
                version_number = int(parts[0]), int(parts[1])
            except (ValueError, IndexError):
                self.send_error(HTTPStatus.BAD_REQUEST, f"Bad request version ({version!r})")
                return False
            if version_number >= (1, 1) and self.protocol_version >= "HTTP/1.1":
                self.close_connection = False
            if version_number >= (2, 0):
                self.send_error(
                    HTTPStatus.HTTP_VERSION_NOT_SUPPORTED, f"Invalid HTTP version ({base_version_number})"
                )
                return False
            self.request_version = version
        if not 2 <= len(words) <= 3:
            self.send_error(HTTPStatus.BAD_REQUEST, f"Bad request syntax ({requestline!r})")
            return False
        command, path = words[:2]
        if len(words) == 2:
            self.close_connection = True
            if command != "GET":
                self.send_error(HTTPStatus.BAD_REQUEST, f"Bad HTTP/0.9 request type ({command!r})")
                return False
        self.command, self.path = command, path
        if self.path.startswith("//"):  # gh-87389: no open redirects through '//host/path'
            self.path = "/" + self.path.lstrip("/")
        try:
            self.headers = _read_headers(self.rfile, self.MessageClass)
        except LineTooLong as err:
            self.send_error(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "Line too long", str(err))
            return False
        except HTTPException as err:
            self.send_error(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "Too many headers", str(err))
            return False
        conntype = self.headers.get("Connection", "")
        if conntype.lower() == "close":
            self.close_connection = True
        elif conntype.lower() == "keep-alive" and self.protocol_version >= "HTTP/1.1":
            self.close_connection = False
        expect = self.headers.get("Expect", "")
        return not (
            expect.lower() == "100-continue"
            and self.protocol_version >= "HTTP/1.1"
            and self.request_version >= "HTTP/1.1"
            and not self.handle_expect_100()
        )

    def send_whole_response(self, status: int, headers: Mapping[str, str], payload: bytes) -> None:
        """What ``send_response``, ``send_header`` for each header and Content-Length,
        ``end_headers`` and writing the body send, in one write."""
        head = self._head(status, headers, len(payload))
        self.wfile.write(head + payload if self.command != "HEAD" else head)

    def send_slowly(self, status: int, headers: Mapping[str, str], payload: bytes, fault: Fault) -> None:
        """The answer as ``send_whole_response`` writes it, but slowly (``Fault.stall_body_s``,
        ``Fault.trickle_s``); a client that stopped listening ends it."""
        head = self._head(status, headers, len(payload))
        self.close_connection = True  # what a client read of it is not worth another request
        with contextlib.suppress(OSError):
            if fault.stall_body_s:
                half = len(payload) // 2
                self.wfile.write(head + payload[:half])
                time.sleep(fault.stall_body_s)
                self.wfile.write(payload[half:])
                return
            self.wfile.write(head)
            size = max(1, -(-len(payload) // TRICKLE_PIECES))
            for start in range(0, len(payload), size):
                time.sleep(fault.trickle_s)
                self.wfile.write(payload[start : start + size])

    def _head(self, status: int, headers: Mapping[str, str], length: int) -> bytes:
        """The status line and headers (Content-Length ``length``), logged as the request's answer."""
        self.log_request(status)
        if self.request_version == "HTTP/0.9":
            lines = []  # HTTP/0.9 answers are the body alone
        else:
            reason = self.responses[status][0] if status in self.responses else ""
            lines = [
                f"{self.protocol_version} {status} {reason}\r\n",
                f"Server: {self.version_string()}\r\n",
                f"Date: {self.date_time_string()}\r\n",
            ]
            for key, value in (*headers.items(), ("Content-Length", str(length))):
                lines.append(f"{key}: {value}\r\n")
            lines.append("\r\n")
        for key, value in headers.items():
            if key.lower() == "connection":
                if value.lower() == "close":
                    self.close_connection = True
                elif value.lower() == "keep-alive":
                    self.close_connection = False
        return "".join(lines).encode("latin-1", "strict")


# http.client's limits: a header line, and the number of header lines.
_MAX_LINE = 65536
_MAX_HEADERS = 100
# A header line both parsers read alike: a field name (RFC 5322 ftext), a colon, a value without
# CR, and the line's end. Anything else (folded lines, a bare CR, a line without a colon) goes
# to the email parser, exactly as http.client.parse_headers would.
_PLAIN_HEADER = re.compile(r"([!-9;-~]+):[ \t]*([^\r\n]*)\r?\n")


def _read_headers(rfile: Any, message_class: type[HTTPMessage]) -> HTTPMessage:
    """``http.client.parse_headers(rfile, _class=message_class)``: the same lines read with the
    same limits, and the same message, built directly when every line is plain."""
    lines: list[str] = []
    while True:
        line = rfile.readline(_MAX_LINE + 1)
        if len(line) > _MAX_LINE:
            raise LineTooLong("header line")
        lines.append(line.decode("iso-8859-1"))
        if len(lines) > _MAX_HEADERS:
            raise HTTPException(f"got more than {_MAX_HEADERS} headers")
        if line in (b"\r\n", b"\n", b""):
            break
    message = message_class()
    if lines[-1]:  # ended by the empty line (not by the end of the stream)
        fields = [_PLAIN_HEADER.fullmatch(line) for line in lines[:-1]]
        if all(fields):
            for match in fields:
                assert match is not None
                message.set_raw(match.group(1), match.group(2))
            message.set_payload("")
            return message
    return email.parser.Parser(_class=message_class).parsestr("".join(lines))


class _PooledHTTPServer(HTTPServer):
    """An HTTP server whose connections are served by reusable threads.

    Like ``ThreadingHTTPServer`` (one thread per connection at a time, daemon threads), but a
    thread that has finished with a connection waits for the next instead of ending: starting a
    thread cost more CPU than a whole keep-alive request. There is no limit: a new thread starts
    whenever no idle one is waiting, so idle keep-alive connections never hold up new ones.
    """

    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], *, name: str) -> None:
        super().__init__(address, handler)
        self._name = name
        self._connections: queue.SimpleQueue[tuple[Any, Any] | None] = queue.SimpleQueue()
        self._pool_lock = threading.Lock()
        self._idle = 0  # threads waiting for a connection
        self._workers = 0
        self._closed = False

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._pool_lock:
            if self._closed:
                self.shutdown_request(request)
                return
            self._connections.put((request, client_address))  # under the lock: see _work
            if self._idle:
                self._idle -= 1  # that thread takes it
                return
            self._workers += 1
        threading.Thread(target=self._work, name=f"lab-{self._name}-connection", daemon=True).start()

    def _work(self) -> None:
        while True:
            item = self._connections.get()
            if item is None:
                return
            request, client_address = item
            try:
                try:
                    self.finish_request(request, client_address)
                except Exception:
                    self.handle_error(request, client_address)
                # Idle before the client can see the connection closed: its next connection
                # then finds this thread.
                with self._pool_lock:
                    self._idle += 1
            finally:
                self.shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        return  # resets and failed handshakes are part of the lab's life

    def server_close(self) -> None:
        super().server_close()
        with self._pool_lock:
            self._closed = True
            for _ in range(self._workers):
                self._connections.put(None)  # each thread ends when it next waits


def _reset(sock: socket.socket) -> None:
    """Close with RST rather than FIN, as a dropped connection looks to a client."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    sock.close()
