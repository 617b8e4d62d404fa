"""A small HTTPS server on loopback that every emulated Azure service in the lab builds on.

It gives each service the same three things: routing to plain handler functions, a count of
requests per route (the benchmarks read it), and injected latency and faults (the fault tests
use them): a status with headers and body, a connection reset, or a stall.
"""

from __future__ import annotations

import contextlib
import json
import re
import socket
import ssl
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
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
    times: int = 1


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
        self._httpd: ThreadingHTTPServer | None = None
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

        class _Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                return

            def _serve(self) -> None:
                server._dispatch(self)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _serve

        class _Server(ThreadingHTTPServer):
            daemon_threads = True
            allow_reuse_address = True
            request_queue_size = 128

            def get_request(self) -> tuple[socket.socket, Any]:
                sock, addr = self.socket.accept()
                # Headers and body go out in separate writes: without NODELAY each answer waits
                # for the client's delayed ACK (about 40 ms).
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                if context is not None:
                    sock = context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
                return sock, addr

            def handle_error(self, request: Any, client_address: Any) -> None:
                return  # resets and failed handshakes are part of the lab's life

        self._httpd = _Server((self.host, self.port), _Handler)
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

    def _dispatch(self, h: BaseHTTPRequestHandler) -> None:
        sock = h.connection
        if isinstance(sock, ssl.SSLSocket):
            try:
                sock.do_handshake()
            except (ssl.SSLError, OSError):
                h.close_connection = True
                return
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
            local_address=sock.getsockname()[0],
        )
        if self.latency_s:
            time.sleep(self.latency_s)
        response = self._answer(request, h)
        if response is None:
            return
        payload, headers = response.encoded()
        h.send_response(response.status)
        for key, value in headers.items():
            h.send_header(key, value)
        h.send_header("Content-Length", str(len(payload)))
        h.end_headers()
        if h.command != "HEAD":
            h.wfile.write(payload)

    def _answer(self, request: Request, h: BaseHTTPRequestHandler) -> Response | None:
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
        fault = self._take_fault(request.path)
        if fault is not None:
            if fault.delay_s:
                time.sleep(fault.delay_s)
            if fault.reset:
                _reset(h.connection)
                h.close_connection = True
                return None
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


def _reset(sock: socket.socket) -> None:
    """Close with RST rather than FIN, as a dropped connection looks to a client."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    sock.close()
