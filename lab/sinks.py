"""Webhook sinks: what Teams Workflows, Slack incoming webhooks and a generic receiver would get.

One ``LabServer`` serves the three URL shapes (with their secret parts, so redaction is tested on
realistic URLs), records every body and header it accepts, and checks what the real services
check cheaply: Teams wants the Workflows message envelope with an Adaptive Card and at most about
28 KB; Slack wants ``text`` or at most 50 ``blocks``; the generic receiver checks kvmon's HMAC
signature when it is given the secret. Faults come from ``LabServer.inject`` (429 with
``Retry-After``, 500, stall, reset) plus the Teams habit of answering 200 with a throttling text.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from lab.http import LOOPBACK, Fault, LabServer, Request, Response

TEAMS_PATH = r"/workflows/(?P<workflow>[^/]+)/triggers/manual/paths/invoke"
SLACK_PATH = r"/services/(?P<team>[^/]+)/(?P<bot>[^/]+)/(?P<token>[^/]+)"
WEBHOOK_PATH = r"/hooks/(?P<token>[^/]+)"
_PREFIX = {"teams": r"^/workflows/", "slack": r"^/services/", "webhook": r"^/hooks/"}

TEAMS_MAX_BYTES = 28 * 1024
SLACK_MAX_BLOCKS = 50
# What a throttled Teams endpoint has been seen to answer with status 200.
TEAMS_THROTTLED_TEXT = (
    "Microsoft Teams endpoint returned HTTP error 429 with ContextId "
    "tcid=0,server=msgapi-production-weu-azsc1-1-25,cv=lab.0"
)
ADAPTIVE_CARD = "application/vnd.microsoft.card.adaptive"


@dataclass(frozen=True)
class Received:
    """One request a sink accepted (or rejected, with ``rejected`` saying why)."""

    service: str  # teams | slack | webhook
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    rejected: str | None = None

    def json(self) -> Any:
        return json.loads(self.body.decode("utf-8"))

    def header(self, name: str) -> str | None:
        return next((value for key, value in self.headers.items() if key.lower() == name.lower()), None)


class WebhookSink:
    """Teams-like, Slack-like and generic webhook endpoints on one loopback server."""

    def __init__(
        self,
        *,
        tls: bool = True,
        host: str = LOOPBACK,
        port: int = 0,
        webhook_secret: str | None = None,
        signature_tolerance_s: float = 300.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.server = LabServer(name="webhook-sink", host=host, port=port, tls=tls)
        self.webhook_secret = webhook_secret
        self._tolerance_s = signature_tolerance_s
        self._clock = clock
        self._lock = threading.Lock()
        self._received: list[Received] = []
        self._rejected: list[Received] = []
        self.server.route("POST", TEAMS_PATH, self._teams, name="teams")
        self.server.route("POST", SLACK_PATH, self._slack, name="slack")
        self.server.route("POST", WEBHOOK_PATH, self._webhook, name="webhook")

    # -- life cycle ----------------------------------------------------------------------------

    def start(self) -> WebhookSink:
        self.server.start()
        return self

    def stop(self) -> None:
        self.server.stop()

    def __enter__(self) -> WebhookSink:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- the URLs a user would paste into kvmon's settings ------------------------------------

    def teams_url(
        self,
        *,
        workflow: str = "6f1c9d0e2b7a4c5e8d3f0a1b2c3d4e5f",
        signature: str = "Xq3vLabSig0nature-9kT2wPzR7mN4",
    ) -> str:
        return (
            f"{self.server.url}/workflows/{workflow}/triggers/manual/paths/invoke"
            f"?api-version=2016-06-01&sp=%2Ftriggers%2Fmanual%2Frun&sv=1.0&sig={signature}"
        )

    def slack_url(
        self, *, team: str = "T0LAB0001", bot: str = "B0LAB0002", token: str = "labSlackT0ken7Hq2xW9vR4mZ"
    ) -> str:
        return f"{self.server.url}/services/{team}/{bot}/{token}"

    def webhook_url(self, *, token: str = "hook-7f3a9c2e5b1d4f60") -> str:
        return f"{self.server.url}/hooks/{token}"

    # -- what arrived --------------------------------------------------------------------------

    @property
    def received(self) -> list[Received]:
        """Accepted requests, in arrival order."""
        with self._lock:
            return list(self._received)

    @property
    def rejected(self) -> list[Received]:
        with self._lock:
            return list(self._rejected)

    def messages(self, service: str) -> list[Received]:
        return [item for item in self.received if item.service == service]

    def clear(self) -> None:
        with self._lock:
            self._received.clear()
            self._rejected.clear()

    # -- faults --------------------------------------------------------------------------------

    def throttle(self, service: str, *, retry_after: str | None = "1", times: int = 1) -> None:
        """429 Too Many Requests, with ``Retry-After`` when given."""
        headers = {"Retry-After": retry_after} if retry_after is not None else {}
        body = "ratelimited" if service == "slack" else {"error": {"code": "TooManyRequests"}}
        self.server.inject(_PREFIX[service], Fault(status=429, headers=headers, body=body, times=times))

    def fail(self, service: str, *, status: int = 500, times: int = 1) -> None:
        self.server.inject(_PREFIX[service], Fault(status=status, body="internal error", times=times))

    def stall(self, service: str, *, seconds: float, times: int = 1) -> None:
        """Say nothing for ``seconds``, then drop the connection without processing the request."""
        self.server.inject(_PREFIX[service], Fault(delay_s=seconds, reset=True, times=times))

    def reset(self, service: str, *, times: int = 1) -> None:
        """Drop the connection (RST) without an answer."""
        self.server.inject(_PREFIX[service], Fault(reset=True, times=times))

    def teams_throttled_ok(self, *, times: int = 1) -> None:
        """Teams' way of throttling: 200 OK whose body reports the 429."""
        self.server.inject(_PREFIX["teams"], Fault(status=200, body=TEAMS_THROTTLED_TEXT, times=times))

    def clear_faults(self) -> None:
        self.server.clear_faults()

    # -- handlers ------------------------------------------------------------------------------

    def _record(self, service: str, request: Request, rejected: str | None = None) -> None:
        item = Received(
            service=service,
            path=request.path,
            query=dict(request.query),
            headers=dict(request.headers),
            body=request.body,
            rejected=rejected,
        )
        with self._lock:
            (self._rejected if rejected else self._received).append(item)

    def _reject(self, service: str, request: Request, status: int, reason: str, body: Any) -> Response:
        self._record(service, request, rejected=reason)
        return Response(status, body)

    def _teams(self, request: Request) -> Response:
        if len(request.body) > TEAMS_MAX_BYTES:
            return self._reject(
                "teams", request, 413, "too large", {"error": {"code": "RequestEntityTooLarge"}}
            )
        try:
            message = request.json()
            attachments = message["attachments"]
            valid = (
                message.get("type") == "message"
                and isinstance(attachments, list)
                and bool(attachments)
                and all(
                    a.get("contentType") == ADAPTIVE_CARD
                    and a.get("content", {}).get("type") == "AdaptiveCard"
                    for a in attachments
                )
            )
        except (ValueError, KeyError, TypeError, AttributeError):
            valid = False
        if not valid:
            return self._reject(
                "teams",
                request,
                400,
                "not a message with Adaptive Card attachments",
                {"error": {"code": "InvalidRequestContent"}},
            )
        self._record("teams", request)
        return Response(202)

    def _slack(self, request: Request) -> Response:
        try:
            message = request.json()
        except ValueError:
            return self._reject("slack", request, 400, "invalid_payload", "invalid_payload")
        if not isinstance(message, dict) or not (message.get("text") or message.get("blocks")):
            return self._reject("slack", request, 400, "no_text", "no_text")
        blocks = message.get("blocks", [])
        if not isinstance(blocks, list) or len(blocks) > SLACK_MAX_BLOCKS:
            return self._reject("slack", request, 400, "invalid_blocks", "invalid_blocks")
        self._record("slack", request)
        return Response(200, "ok", {"Content-Type": "text/html"})

    def _webhook(self, request: Request) -> Response:
        try:
            request.json()
        except ValueError:
            return self._reject("webhook", request, 400, "not JSON", {"error": "body is not JSON"})
        if self.webhook_secret is not None:
            problem = self._signature_problem(request)
            if problem:
                return self._reject("webhook", request, 401, problem, {"error": problem})
        self._record("webhook", request)
        return Response(202)

    def _signature_problem(self, request: Request) -> str | None:
        """What a receiver following docs/webhook-schema.md checks."""
        assert self.webhook_secret is not None
        timestamp = request.header("X-Kvmon-Timestamp") or ""
        signature = request.header("X-Kvmon-Signature") or ""
        if not timestamp.isdigit() or not signature.startswith("sha256="):
            return "missing or malformed signature headers"
        if abs(self._clock() - int(timestamp)) > self._tolerance_s:
            return "timestamp outside the tolerance"
        expected = hmac.new(
            self.webhook_secret.encode("utf-8"),
            timestamp.encode("ascii") + b"." + request.body,
            hashlib.sha256,
        ).hexdigest()
        if not hmac.compare_digest(expected, signature.removeprefix("sha256=")):
            return "signature does not match"
        return None
