"""Getting each message to its channel exactly once, through the store's outbox.

``Notifier.enqueue`` composes one message per channel for a scan and stores it (the id comes
from scan and channel, so enqueuing again changes nothing). ``Notifier.deliver_pending`` then
takes each pending message, whichever run enqueued it: it leases the message in the store (so a
concurrent run leaves it alone), POSTs it with bounded timeouts, retries with backoff that honours
``Retry-After``, paces itself within each service's rate, and marks it delivered (never sent
again) or leaves it pending with the redacted reason (tried again next run).

A crash between a service accepting a message and the store recording it would send that message
once more after the lease expires: delivery is at least once, and the generic webhook carries the
message id for receivers to drop a repeat.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import hashlib
import hmac
import logging
import re
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import requests

from monitor.config.channels import ChannelConfig, ChannelKind, load_channels
from monitor.config.secret import Secret
from monitor.httpsession import SettledSession
from monitor.model import ErrorSource, FindingChange, ScanError, Severity
from monitor.outputs.notify.compose import ScanDigest, body_bytes, compose, message_id, open_counts
from monitor.outputs.notify.redact import redact, redacting_logs
from monitor.scan_report import ScanReport
from monitor.store.base import OutboxMessage, Store, StoreUnavailable

logger = logging.getLogger("monitor.outputs.notify")

USER_AGENT = "kvmon-notify/1"
SIGNATURE_HEADER = "X-Kvmon-Signature"
TIMESTAMP_HEADER = "X-Kvmon-Timestamp"
MESSAGE_ID_HEADER = "X-Kvmon-Message-Id"

# Seconds between two messages to one channel: Teams allows about 4 requests a second per
# webhook, Slack about 1 message a second.
PACE_S = {ChannelKind.TEAMS: 0.25, ChannelKind.SLACK: 1.0, ChannelKind.WEBHOOK: 0.0}

# A Teams endpoint that is throttling may answer 200 with the 429 in the body text.
_TEAMS_THROTTLED = re.compile(r"\b429\b|throttl|too many requests", re.IGNORECASE)


class Clock(Protocol):
    def monotonic(self) -> float: ...

    def time(self) -> float: ...

    def sleep(self, seconds: float) -> None: ...


class SystemClock:
    def monotonic(self) -> float:
        return time.monotonic()

    def time(self) -> float:
        return time.time()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


@dataclass(frozen=True)
class DeliveryPolicy:
    connect_timeout_s: float = 5.0
    read_timeout_s: float = 15.0
    attempts: int = 3  # tries per message per run
    backoff_s: float = 1.0  # the first wait; doubles per try
    max_backoff_s: float = 30.0
    # A Retry-After longer than this ends the tries of this run; the next run tries again.
    max_retry_after_s: float = 60.0
    # How long one run spends delivering: the messages it has not started by then stay pending for
    # the next run. An outbox holds every message a run could not send, so a webhook that hangs
    # would otherwise cost a scan each held message's tries.
    run_budget_s: float = 60.0

    @property
    def message_worst_case_s(self) -> float:
        """One message whose every try hangs, or is throttled for as long as a run waits."""
        waits = (self.attempts - 1) * max(self.max_backoff_s, self.max_retry_after_s)
        return self.attempts * (self.connect_timeout_s + self.read_timeout_s) + waits

    @property
    def run_worst_case_s(self) -> float:
        """One run: its budget, and the message it started last."""
        return self.run_budget_s + self.message_worst_case_s

    @property
    def lease(self) -> dt.timedelta:
        """Longer than one message's worst case, so no one else sends while a sender may."""
        return dt.timedelta(seconds=self.message_worst_case_s + 60)


@dataclass(frozen=True)
class SendResult:
    delivered: bool
    attempts: int
    status: int | None = None
    code: str | None = None  # HTTP status, "throttled", "timeout", "connection" or "request"
    error: str | None = None  # redacted


@dataclass(frozen=True)
class DeliveryReport:
    delivered: tuple[str, ...] = ()  # message ids sent and recorded this run
    pending: tuple[str, ...] = ()  # tried and failed: left for the next run
    skipped: tuple[str, ...] = ()  # held by another sender, already delivered, or channel gone
    errors: tuple[ScanError, ...] = ()


def sign(secret: Secret, body: bytes, *, timestamp: int) -> str:
    """``sha256=<hex>``: HMAC-SHA256 keyed with the secret over ``<timestamp>.<body>``."""
    material = str(timestamp).encode("ascii") + b"." + body
    return "sha256=" + hmac.new(secret.reveal().encode("utf-8"), material, hashlib.sha256).hexdigest()


def default_session(*, verify: str | bool = True) -> requests.Session:
    """A session for webhooks; ``verify`` is a CA bundle path where the system's CAs do not apply."""
    session = SettledSession()  # the environment's proxy settings read once per host
    session.verify = verify
    session.headers["User-Agent"] = USER_AGENT
    return session


class Sender:
    """POSTs one payload to one channel: timeouts, retries, ``Retry-After`` and pacing."""

    def __init__(self, *, session: requests.Session, clock: Clock, policy: DeliveryPolicy) -> None:
        self._session = session
        self._clock = clock
        self._policy = policy
        self._last_sent: dict[str, float] = {}

    def send(self, channel: ChannelConfig, payload: Mapping[str, Any], *, message_id: str) -> SendResult:
        body = body_bytes(payload)
        result = SendResult(delivered=False, attempts=0)
        for attempt in range(1, self._policy.attempts + 1):
            self._pace(channel)
            result, wait = self._attempt(channel, body, message_id=message_id, attempt=attempt)
            if result.delivered or wait is None or attempt == self._policy.attempts:
                break
            logger.info(
                "notify: channel %s: try %d failed (%s); next try in %.1f s",
                channel.name,
                attempt,
                result.code,
                wait,
            )
            self._clock.sleep(wait)
        return result

    def _pace(self, channel: ChannelConfig) -> None:
        last = self._last_sent.get(channel.name)
        if last is not None:
            wait = last + PACE_S[channel.kind] - self._clock.monotonic()
            if wait > 0:
                self._clock.sleep(wait)
        self._last_sent[channel.name] = self._clock.monotonic()

    def _attempt(
        self, channel: ChannelConfig, body: bytes, *, message_id: str, attempt: int
    ) -> tuple[SendResult, float | None]:
        """One POST: the result, and how long to wait before another try (None: do not retry)."""
        headers = {"Content-Type": "application/json; charset=utf-8", "User-Agent": USER_AGENT}
        if channel.kind is ChannelKind.WEBHOOK:
            headers[MESSAGE_ID_HEADER] = message_id
            if channel.secret is not None:
                timestamp = int(self._clock.time())
                headers[TIMESTAMP_HEADER] = str(timestamp)
                headers[SIGNATURE_HEADER] = sign(channel.secret, body, timestamp=timestamp)
        backoff = min(self._policy.backoff_s * 2 ** (attempt - 1), self._policy.max_backoff_s)
        try:
            response = self._session.post(
                channel.url.reveal(),
                data=body,
                headers=headers,
                timeout=(self._policy.connect_timeout_s, self._policy.read_timeout_s),
                allow_redirects=False,
                # requests lets REQUESTS_CA_BUNDLE override a session's own CA bundle; this one wins.
                verify=self._session.verify,
            )
        except requests.Timeout:
            return self._failed(channel, attempt, "timeout", "no answer within the timeout"), backoff
        except requests.ConnectionError as exc:
            return self._failed(channel, attempt, "connection", f"connection failed: {exc}"), backoff
        except requests.RequestException as exc:
            return self._failed(channel, attempt, "request", f"request failed: {exc}"), None
        with response:
            status = response.status_code
            text = response.text[:300]
            retry_after = _retry_after(response.headers.get("Retry-After"), now=self._clock.time())
        if status == 429 or (
            channel.kind is ChannelKind.TEAMS and 200 <= status < 300 and _TEAMS_THROTTLED.search(text)
        ):
            wait = retry_after if retry_after is not None else backoff
            reason = f"throttled (HTTP {status}): {text.strip() or 'no body'}"
            if wait > self._policy.max_retry_after_s:
                reason += f"; Retry-After {wait:.0f} s is longer than this run waits"
                return self._failed(channel, attempt, "throttled", reason, status=status), None
            return self._failed(channel, attempt, "throttled", reason, status=status), wait
        if 200 <= status < 300:
            return SendResult(delivered=True, attempts=attempt, status=status), None
        reason = f"HTTP {status}: {text.strip() or 'no body'}"
        if status >= 500 or status == 408:
            wait = min(retry_after, self._policy.max_retry_after_s) if retry_after is not None else backoff
            return self._failed(channel, attempt, str(status), reason, status=status), wait
        # Other answers (400 bad payload, 403/404/410 webhook removed) will not change on a retry
        # within seconds; the message stays pending for the next run.
        return self._failed(channel, attempt, str(status), reason, status=status), None

    @staticmethod
    def _failed(
        channel: ChannelConfig, attempt: int, code: str, reason: str, *, status: int | None = None
    ) -> SendResult:
        return SendResult(
            delivered=False,
            attempts=attempt,
            status=status,
            code=code,
            error=redact(f"{channel.kind.value} channel {channel.name}: {reason}", channel.secrets),
        )


def _retry_after(value: str | None, *, now: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return max(0.0, when.timestamp() - now)


class SweepPacer:
    """Says when a sweep of the outbox is due again: at most once every ``every_s``, whichever
    run asks (thread-safe)."""

    def __init__(self, every_s: float, *, clock: Clock) -> None:
        self._every_s = every_s
        self._clock = clock
        self._last: float | None = None
        self._lock = threading.Lock()

    def due(self) -> bool:
        with self._lock:
            now = self._clock.monotonic()
            if self._last is not None and now - self._last < self._every_s:
                return False
            self._last = now
            return True


class Notifier:
    """Composes and delivers a scan's notifications through ``store``'s outbox."""

    def __init__(
        self,
        store: Store,
        channels: Sequence[ChannelConfig],
        *,
        session: requests.Session | None = None,
        clock: Clock | None = None,
        policy: DeliveryPolicy | None = None,
        sweeps: SweepPacer | None = None,
    ) -> None:
        """``sweeps``: how often ``notify`` sweeps the whole outbox, shared by the runs of one
        process (``for_another_run``); None: every run does."""
        self._store = store
        self._sweeps = sweeps
        self._channels = {channel.name: channel for channel in channels}
        self._clock = clock or SystemClock()
        self._policy = policy or DeliveryPolicy()
        self._session = session or default_session()
        self._sender = Sender(session=self._session, clock=self._clock, policy=self._policy)

    @property
    def channels(self) -> tuple[ChannelConfig, ...]:
        return tuple(self._channels.values())

    def for_another_run(self) -> Notifier:
        """The same store, channels and connections (the session's pool), with pacing of its own:
        a process that notifies for several runs at once paces each run as before, and reuses the
        connections instead of a TLS handshake per message."""
        return Notifier(
            self._store,
            tuple(self._channels.values()),
            session=self._session,
            clock=self._clock,
            policy=self._policy,
            sweeps=self._sweeps,
        )

    def sweeping_every(self, seconds: float) -> Notifier:
        """This notifier, its runs (``for_another_run``) sweeping the outbox for other runs'
        leftovers at most once every ``seconds`` between them; each still sends its own messages.
        For a process that notifies for many runs (the Functions app in a burst of events): one
        query of the outbox per run, and the pending messages of every run running at once in
        its answer, was a share of every event's CPU."""
        return Notifier(
            self._store,
            tuple(self._channels.values()),
            session=self._session,
            clock=self._clock,
            policy=self._policy,
            sweeps=SweepPacer(seconds, clock=self._clock),
        )

    def enqueue(
        self,
        changes: Iterable[FindingChange],
        *,
        scan_id: str,
        now: dt.datetime,
        open_by_severity: Mapping[Severity, int] | None = None,
        lease_until: dt.datetime | None = None,
    ) -> list[OutboxMessage]:
        """Store one message per channel that has something to be told; returns them.
        ``lease_until``: stored leased to this sender until then (see ``notify``)."""
        digest = ScanDigest(
            scan_id=scan_id,
            scanned_at=now,
            changes=tuple(changes),
            open_by_severity=dict(open_by_severity or {}),
        )
        messages = []
        for channel in self._channels.values():
            payload = compose(channel, digest)
            if payload is not None:
                messages.append(
                    OutboxMessage(
                        id=message_id(scan_id, channel.name),
                        channel=channel.name,
                        payload=payload,
                        created_at=now,
                        lease_until=lease_until,
                    )
                )
        if messages:
            stored = {message.id: message for message in self._store.enqueue_messages(messages)}
            messages = [stored.get(message.id, message) for message in messages]
        return messages

    def deliver_pending(self, now: dt.datetime, *, held: Sequence[OutboxMessage] = ()) -> DeliveryReport:
        """Send every pending message of the outbox once; failures stay pending for the next run.
        ``held``: messages this sender stored leased to itself (as the store gave them back, with
        their etags): sent in their turn without a claim."""
        try:
            pending = sorted(self._store.pending_messages(), key=lambda m: (m.created_at, m.id))
        except StoreUnavailable as exc:
            return DeliveryReport(errors=(self._outbox_error(exc),))
        return self._deliver(pending, now, own={message.id: message for message in held})

    def _deliver(
        self, pending: Sequence[OutboxMessage], now: dt.datetime, *, own: Mapping[str, OutboxMessage]
    ) -> DeliveryReport:
        """Claim (unless ``own``), send and finish each message in turn."""
        started = self._clock.monotonic()
        delivered: list[str] = []
        failed: list[str] = []
        skipped: list[str] = []
        errors: list[ScanError] = []
        for index, message in enumerate(pending):
            if self._clock.monotonic() - started >= self._policy.run_budget_s:
                errors.append(self._budget_spent(len(pending) - index))
                break
            channel = self._channels.get(message.channel)
            if channel is None:
                skipped.append(message.id)
                errors.append(
                    ScanError(
                        source=ErrorSource.NOTIFY,
                        scope=message.channel,
                        message=f"message {message.id} is for channel {message.channel!r}, which is no "
                        "longer configured; it stays pending until the channel is configured again",
                        code="unknown-channel",
                    )
                )
                continue
            try:
                claim_time = self._at(now, started)
                # With ``now`` the store also refuses a message whose lease another run still holds
                # (one that run stored leased to itself, too), without a request.
                claimed = own.get(message.id) or self._store.claim_message(
                    message, lease_until=claim_time + self._policy.lease, now=claim_time
                )
            except StoreUnavailable as exc:
                errors.append(self._outbox_error(exc))
                break
            if claimed is None:
                skipped.append(message.id)
                continue
            with redacting_logs(channel.secrets):
                result = self._sender.send(channel, claimed.payload, message_id=claimed.id)
            try:
                self._store.finish_message(
                    claimed, delivered=result.delivered, error=result.error, now=self._at(now, started)
                )
            except StoreUnavailable as exc:
                errors.append(self._outbox_error(exc))
                break
            if result.delivered:
                delivered.append(claimed.id)
                logger.info(
                    "notify: channel %s: message %s delivered (HTTP %s, %d tries)",
                    channel.name,
                    claimed.id,
                    result.status,
                    result.attempts,
                )
            else:
                failed.append(claimed.id)
                message_text = f"{result.error}; message {claimed.id} stays pending for the next run"
                logger.warning("notify: %s", message_text)
                errors.append(
                    ScanError(
                        source=ErrorSource.NOTIFY, scope=channel.name, message=message_text, code=result.code
                    )
                )
        return DeliveryReport(
            delivered=tuple(delivered), pending=tuple(failed), skipped=tuple(skipped), errors=tuple(errors)
        )

    def notify(self, report: ScanReport, *, now: dt.datetime) -> list[ScanError]:
        """The scan's hook (``monitor.app.scan.Notifier``): enqueue this scan, deliver all pending.

        This scan's messages are stored leased to this run, as a claim would leave them, so the
        run sends them without claiming them first, and other runs sweeping the outbox at the same
        time (a burst of events) leave them alone without a request. A run that dies between the
        two leaves them to the next sweep after the lease, as a claimed message was."""
        errors: list[ScanError] = []
        held: list[OutboxMessage] = []
        try:
            held = self.enqueue(
                report.changes,
                scan_id=report.scan_id,
                now=now,
                open_by_severity=open_counts(report.findings),
                lease_until=now + self._policy.lease,
            )
        except StoreUnavailable as exc:
            errors.append(self._outbox_error(exc))
        if self._sweeps is None or self._sweeps.due():
            errors.extend(self.deliver_pending(now, held=held).errors)
        else:  # another run of this process swept the outbox a moment ago
            errors.extend(self._deliver(held, now, own={message.id: message for message in held}).errors)
        return errors

    def _at(self, now: dt.datetime, started: float) -> dt.datetime:
        """``now`` moved on by the time this run has spent (leases are taken as it goes)."""
        return now + dt.timedelta(seconds=self._clock.monotonic() - started)

    def _budget_spent(self, left: int) -> ScanError:
        return ScanError(
            source=ErrorSource.NOTIFY,
            scope="outbox",
            message=f"{left} message(s) not sent by this run, which spent its {self._policy.run_budget_s:g} s "
            "of delivery: they stay pending for the next run",
            code="delivery-budget",
        )

    def _outbox_error(self, exc: Exception) -> ScanError:
        secrets = [secret for channel in self._channels.values() for secret in channel.secrets]
        return ScanError(
            source=ErrorSource.STORE,
            scope="outbox",
            message=redact(f"the notification outbox is unavailable: {exc}", secrets),
            code="store-unavailable",
        )


def notifier_from_environ(
    store: Store, environ: Mapping[str, str], *, verify: str | bool = True
) -> Notifier | None:
    """The notifier for the channels configured in ``environ`` (``KVMON_CHANNELS``), or None when
    there are none. ``verify`` is ``Settings.connection_verify``. Raises ``ChannelConfigError``."""
    channels = load_channels(environ)
    if not channels:
        return None
    return Notifier(store, channels, session=default_session(verify=verify))
