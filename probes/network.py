"""The TCP and TLS step: connect to the address DNS gave, handshake with the vault's name.

``Reachability`` remembers, for one run, which (address, port, source) could not be connected
to, so that a dead address costs its timeout once rather than once per vault behind it.
"""

from __future__ import annotations

import os
import socket
import ssl
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from monitor.model import TlsStep

ConnectKey = tuple[str, int, str | None]  # address, port, source address

# The one application protocol the probes speak over TLS.
_ALPN_PROTOCOLS = ["http/1.1"]


class _SharedClientContext(ssl.SSLContext):
    """A client context that many threads handshake with at once, so it never changes once built.

    A client library that sets the ALPN protocols for every connection (urllib3 does) would have
    OpenSSL free the list that another thread's handshake (run without the GIL) is copying. They are
    set once when the context is built: setting the same ones again does nothing, setting others is
    refused.
    """

    def set_alpn_protocols(self, alpn_protocols: Iterable[str]) -> None:
        if list(alpn_protocols) != _ALPN_PROTOCOLS:
            raise ValueError(f"the probes' shared TLS context offers only {_ALPN_PROTOCOLS}")


_contexts_lock = threading.Lock()
# CA bundle -> (the bundle file's stamp when read, its context)
_contexts: dict[str | None, tuple[tuple[int, int] | None, ssl.SSLContext]] = {}


def tls_context(ca_bundle: str | None) -> ssl.SSLContext:
    """The verifying client context for ``ca_bundle`` (None: the system's trust store).

    Shared by every TLS step and pinned connection of the process: building one reads and parses the
    bundle (about a millisecond of CPU), which once per vault was a tenth of a probe's cost. Built
    again when the bundle file changes. The checks are ``ssl.create_default_context``'s: the chain
    to the bundle, and the name (``server_hostname``) by OpenSSL. Thread-safe.
    """
    stamp = _file_stamp(ca_bundle)
    with _contexts_lock:
        cached = _contexts.get(ca_bundle)
        if cached is None or cached[0] != stamp:
            cached = _contexts[ca_bundle] = (stamp, _build_context(ca_bundle))
        return cached[1]


def _file_stamp(path: str | None) -> tuple[int, int] | None:
    try:
        status = os.stat(path) if path else None
    except OSError:
        return None  # building the context reports the missing or unreadable file
    return (status.st_mtime_ns, status.st_size) if status else None


def _build_context(ca_bundle: str | None) -> ssl.SSLContext:
    # create_default_context's settings (verification required, names checked; a test compares),
    # in a class that stays unchanged while shared.
    context = _SharedClientContext(ssl.PROTOCOL_TLS_CLIENT)
    if ca_bundle:
        context.load_verify_locations(cafile=ca_bundle)
    else:
        context.load_default_certs(ssl.Purpose.SERVER_AUTH)
    ssl.SSLContext.set_alpn_protocols(context, _ALPN_PROTOCOLS)
    return context


@dataclass
class _Attempt:
    done: threading.Event = field(default_factory=threading.Event)
    failure: str | None = None


class Reachability:
    """Per-run memory of addresses that did not answer, shared by every probe of a run.

    The first probe of a key (address, port, source) connects and handshakes; probes of the same
    key that arrive meanwhile wait for its outcome instead of paying the timeout in parallel, and
    after a connect failure or a handshake timeout, later probes reuse that failure.
    Thread-safe.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._attempts: dict[ConnectKey, _Attempt] = {}

    def claim(self, key: ConnectKey) -> _Attempt | None:
        """The attempt to settle when this caller is the first for ``key``; None otherwise."""
        with self._lock:
            if key in self._attempts:
                return None
            attempt = self._attempts[key] = _Attempt()
            return attempt

    def failure(self, key: ConnectKey, *, wait_s: float) -> str | None:
        """The first attempt's failure (None: reachable), waiting at most ``wait_s`` for it."""
        with self._lock:
            attempt = self._attempts.get(key)
        if attempt is None:
            return None
        attempt.done.wait(wait_s)
        return attempt.failure

    @staticmethod
    def settle(attempt: _Attempt, failure: str | None) -> None:
        attempt.failure = failure
        attempt.done.set()


def open_tls(
    hostname: str,
    address: str,
    *,
    port: int,
    source_address: str | None,
    connect_timeout_s: float,
    tls_timeout_s: float,
    context: ssl.SSLContext,
    reachability: Reachability,
) -> tuple[TlsStep, ssl.SSLSocket | None]:
    """Connect and handshake with ``hostname`` as SNI: the step, and the open connection when the
    handshake succeeded (the caller's to use and close; the probe's HTTP requests go over it).

    A certificate not valid for the name is recorded (``certificate_valid=False``), never raised.
    """
    key: ConnectKey = (address, port, source_address)
    attempt = reachability.claim(key)
    if attempt is None:
        failure = reachability.failure(key, wait_s=connect_timeout_s + tls_timeout_s + 1.0)
        if failure is not None:
            return TlsStep(address=address, port=port, error=f"{failure} (not retried in this run)"), None
        step, tls, _ = _connect_and_handshake(
            hostname, key, connect_timeout_s=connect_timeout_s, tls_timeout_s=tls_timeout_s, context=context
        )
        return step, tls
    failure = "probe interrupted"
    try:
        step, tls, dead = _connect_and_handshake(
            hostname, key, connect_timeout_s=connect_timeout_s, tls_timeout_s=tls_timeout_s, context=context
        )
        failure = step.error if dead else None
        return step, tls
    finally:
        reachability.settle(attempt, failure)


def connect_pinned(
    hostname: str, key: ConnectKey, *, timeout_s: float, context: ssl.SSLContext
) -> ssl.SSLSocket:
    """A new connection to ``key``'s address, verified as ``hostname``; raises ``OSError`` (with
    ``ssl.SSLError`` among them) on failure. For reconnecting after the server closed one."""
    address, port, source = key
    sock = socket.create_connection(
        (address, port), timeout=timeout_s, source_address=(source, 0) if source else None
    )
    try:
        _tune(sock)
        return context.wrap_socket(sock, server_hostname=hostname)
    except BaseException:
        sock.close()
        raise


def _tune(sock: socket.socket) -> None:
    # Requests are written whole; waiting to coalesce them (Nagle) only adds a delayed-ACK stall.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _connect_and_handshake(
    hostname: str,
    key: ConnectKey,
    *,
    connect_timeout_s: float,
    tls_timeout_s: float,
    context: ssl.SSLContext,
) -> tuple[TlsStep, ssl.SSLSocket | None, bool]:
    """The step, the open connection (when the handshake succeeded), and whether the address is
    dead (no connection, or no answer to the handshake)."""
    address, port, _ = key
    sock, connect_ms, failure = _connect(key, timeout_s=connect_timeout_s)
    if sock is None:
        return TlsStep(address=address, port=port, error=failure), None, True
    connected = TlsStep(address=address, port=port, connected=True, connect_ms=connect_ms)
    try:
        _tune(sock)
        sock.settimeout(tls_timeout_s)
        tls = context.wrap_socket(sock, server_hostname=hostname)
    except ssl.SSLCertVerificationError as exc:
        sock.close()
        reason = exc.verify_message or exc.reason or "certificate verification failed"
        step = replace(
            connected,
            certificate_valid=False,
            certificate_error=f"certificate not valid for {hostname}: {reason}",
            error="TLS handshake aborted: the server's certificate did not verify",
        )
        return step, None, False
    except TimeoutError:
        sock.close()
        error = f"TLS handshake with {address}:{port} got no answer within {tls_timeout_s:g}s"
        return replace(connected, error=error), None, True
    except (ssl.SSLError, OSError) as exc:
        sock.close()
        reason = getattr(exc, "reason", None) or getattr(exc, "strerror", None) or type(exc).__name__
        return replace(connected, error=f"TLS handshake with {address}:{port} failed: {reason}"), None, False
    return replace(connected, handshake_ok=True, certificate_valid=True), tls, False


def _connect(key: ConnectKey, *, timeout_s: float) -> tuple[socket.socket | None, float | None, str | None]:
    """(socket, connect time in ms, failure): exactly one of socket and failure is set."""
    address, port, source = key
    started = time.perf_counter()
    try:
        sock = socket.create_connection(
            (address, port), timeout=timeout_s, source_address=(source, 0) if source else None
        )
    except TimeoutError:
        return None, None, f"TCP connect to {address}:{port} got no answer within {timeout_s:g}s"
    except ConnectionRefusedError:
        return None, None, f"TCP connect to {address}:{port} refused"
    except OSError as exc:
        return None, None, f"TCP connect to {address}:{port} failed: {exc.strerror or exc}"
    return sock, round((time.perf_counter() - started) * 1000, 3), None
