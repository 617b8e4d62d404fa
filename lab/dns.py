"""Split-horizon DNS for the lab (dnslib), on 127.0.0.1 over UDP and TCP on one free port.

Answers come from ``Estate.resolve`` (``lab.storage.resolve`` for Storage's names) for the query's
SOURCE address: a client in a VNet whose private DNS zone is linked gets the Private Endpoint's address, everyone else the public chain,
as Azure DNS does. Modes for fault tests: ``silent`` (never answers), ``truncate`` (every UDP
answer truncated, so clients must retry over TCP), ``servfail`` (every answer SERVFAIL) and
``empty`` (every answer NOERROR with no record); ``mode`` sets one for every name,
``set_name_mode`` for one name only (one vault's zone broken, the others answering).
"""

from __future__ import annotations

import itertools
import socket
import socketserver
import threading
from collections import Counter

from dnslib import CNAME, QTYPE, RCODE, RR, A, DNSRecord
from dnslib.server import DNSError, DNSHandler, DNSLogger, DNSServer

from lab import storage
from lab.estate import INGRESS_NAME, PUBLIC_INGRESS, Estate

LOOPBACK = "127.0.0.1"
TTL = 60
MODES = ("answer", "silent", "truncate", "servfail", "empty")


class _EstateResolver:
    def __init__(self, lab: LabDns) -> None:
        self._lab = lab

    def resolve(self, request: DNSRecord, handler: DNSHandler) -> DNSRecord:
        lab = self._lab
        source = handler.client_address[0]
        qname = str(request.q.qname).rstrip(".")
        lab._count(handler.protocol, source, qname)
        mode = lab.name_modes.get(qname.lower(), lab.mode)
        if mode == "silent":
            raise DNSError("silent mode: no answer")  # dnslib drops the query without a reply
        reply = request.reply()
        if mode == "servfail":
            reply.header.rcode = RCODE.SERVFAIL
            return reply
        if mode == "empty":
            return reply
        if mode == "truncate" and handler.protocol == "udp":
            # The question kept, no records, TC set: what a server says when the answer is too big.
            reply.header.tc = 1
            return reply
        if qname.lower() == INGRESS_NAME:
            chain: tuple[str, ...] = (INGRESS_NAME,)
            addresses: tuple[str, ...] = (PUBLIC_INGRESS,)
        else:
            resolution = lab.estate.resolve(qname, source_address=source) or storage.resolve(
                lab.estate, qname, source_address=source
            )
            if resolution is None:
                reply.header.rcode = RCODE.NXDOMAIN
                return reply
            chain, addresses = resolution.chain, resolution.addresses
        # The chain is answered as the query's spelling first, then each CNAME target.
        names = [qname, *chain[1:]]
        for current, target in itertools.pairwise(names):
            reply.add_answer(RR(current, QTYPE.CNAME, rdata=CNAME(target), ttl=TTL))
        if request.q.qtype == QTYPE.A:
            for address in addresses:
                reply.add_answer(RR(names[-1], QTYPE.A, rdata=A(address), ttl=TTL))
        return reply


class LabDns:
    """``with LabDns(estate) as dns: dns.resolver`` -> ``"127.0.0.1:<port>"``."""

    def __init__(self, estate: Estate, *, mode: str = "answer") -> None:
        if mode not in MODES:
            raise ValueError(f"mode: {mode!r} is not one of {', '.join(MODES)}")
        self.estate = estate
        self.mode = mode
        self.port = 0
        self.queries: Counter[tuple[str, str]] = Counter()  # (protocol, source address) -> count
        self.names: Counter[str] = Counter()
        self.name_modes: dict[str, str] = {}  # lower-cased query name -> its mode (see set_name_mode)
        self._lock = threading.Lock()
        self._servers: list[DNSServer] = []

    def set_name_mode(self, name: str, mode: str) -> None:
        """Answer queries for ``name`` (exactly, case-insensitive) in ``mode``, whatever ``mode``
        the other names are answered in; "answer" puts the name back."""
        if mode not in MODES:
            raise ValueError(f"mode: {mode!r} is not one of {', '.join(MODES)}")
        self.name_modes[name.lower().rstrip(".")] = mode

    def clear_faults(self) -> None:
        """Every name answered again."""
        self.mode = "answer"
        self.name_modes.clear()

    @property
    def resolver(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    @property
    def total_queries(self) -> int:
        with self._lock:
            return sum(self.queries.values())

    def protocol_counts(self) -> dict[str, int]:
        """Queries per protocol ("udp", "tcp"): the TCP fallback test reads it."""
        counts: Counter[str] = Counter()
        with self._lock:
            for (protocol, _), n in self.queries.items():
                counts[protocol] += n
        return dict(counts)

    def _count(self, protocol: str, source: str, qname: str) -> None:
        with self._lock:
            self.queries[(protocol, source)] += 1
            self.names[qname.lower()] += 1

    def start(self) -> LabDns:
        resolver = _EstateResolver(self)
        quiet = DNSLogger("-recv,-send,-request,-reply,-truncated,-error,-data", prefix=False)
        for _ in range(20):
            port = _free_port()
            try:
                udp = DNSServer(resolver, address=LOOPBACK, port=port, logger=quiet, server=_UdpServer)
                tcp = DNSServer(resolver, address=LOOPBACK, port=port, tcp=True, logger=quiet)
            except OSError:
                continue
            self.port = port
            self._servers = [udp, tcp]
            for server in self._servers:
                # A short poll interval: stopping waits for it.
                threading.Thread(
                    target=server.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
                ).start()
            return self
        raise RuntimeError("no free port for the lab DNS on 127.0.0.1")

    def stop(self) -> None:
        stoppers = [threading.Thread(target=_shutdown, args=(s,)) for s in self._servers]
        for thread in stoppers:
            thread.start()
        for thread in stoppers:
            thread.join()
        self._servers = []

    def __enter__(self) -> LabDns:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class _UdpServer(socketserver.UDPServer):
    """dnslib's UDP server answers each query in a thread of its own; this one answers in the
    server's thread: an answer waits for nothing (the estate is in memory, a silent query is
    dropped at once), and starting a thread cost the lab more CPU than answering."""

    allow_reuse_address = True


def _shutdown(server: DNSServer) -> None:
    server.stop()
    server.server.server_close()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((LOOPBACK, 0))
        port: int = probe.getsockname()[1]
    return port
