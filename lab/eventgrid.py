"""Event Grid for the lab: a subscription's system topic, one event subscription, and delivery.

``PublishedEvent`` is one event of a ``Microsoft.Resources.Subscriptions`` system topic as ARM
hands it to Event Grid (the lab's ARM builds them on every write it serves, see ``lab.arm``);
``rendered(schema)`` gives it in an event subscription's delivery schema: the Event Grid schema
(``topic, subject, eventType, eventTime, id, data, dataVersion, metadataVersion``) or CloudEvents
1.0 (``source, subject, type, time, id, data, specversion``), in the shape of Azure's published
examples (azure-rest-api-specs, ``eventgrid/data-plane/Microsoft.Resources/stable/2018-01-01``).

``EventGridEmulator`` is one event subscription: it takes published events and delivers them,
on its own threads, to a ``WebhookTarget`` (an HTTPS endpoint on loopback, posted to as Event
Grid posts to a webhook) or a ``FunctionTarget`` (an Event Grid triggered function, decoded and
called as the Functions host and worker do). What it emulates:

- at-least-once, unordered delivery, as faults to configure: a delay before every delivery,
  duplicates (also after a success), batches shuffled within a window; seeded, so reproducible;
- batching (``maxEventsPerBatch``, 1 by default as in Azure) and Event Grid's delivery headers
  (``aeg-event-type``, ``aeg-subscription-name``, ``aeg-delivery-count``...); content types:
  a JSON array in the Event Grid schema, one structured CloudEvent (or a CloudEvents batch);
- success is 200-204; a failure (another status, an exception, no answer in time) is retried on
  Event Grid's schedule (10 s, 30 s, 1 min, 5 min, 10 min, 30 min, 1 h, 3 h, 6 h, then 12 h)
  times ``time_scale``, until ``max_delivery_attempts`` (1-30, default 30) or the event's time
  to live (24 h, scaled) ends; the statuses Event Grid never retries (400, 413, 401 and 403 for
  a webhook; 400, 413 and 403 for a function) end it at once;
- dead letters, written the scaled 5 minutes after the last attempt Event Grid waits: each
  event as delivered plus ``deadLetterReason`` (MaxDeliveryAttemptsExceeded, TimeToLiveExceeded,
  UndeliverableDueToHttp<Outcome>), ``deliveryAttempts``, ``lastDeliveryOutcome`` (.NET status
  names, TimedOut, GenericError when there was no answer), ``lastHttpStatusCode`` (0 without an
  answer), ``publishTime``, ``lastDeliveryAttemptTime``; kept in ``dead_letters`` and, given a
  directory, written to it one JSON array per batch, as blobs in a dead-letter container.

What it does not: filters (``includedEventTypes``, advanced filters: every event is delivered,
so a subscriber sees what a filter would have let through and more), the subscription validation
handshake (the Functions host answers it), probation (Azure delays all deliveries to an endpoint
that keeps failing; here only the failed event waits), retry jitter and the best-effort removal
of retries answered late, batch sizes in kilobytes, Storage queue destinations, and delivery
with Entra ID authentication. The lab's dead letters use the Event Grid schema's key names in
both schemas. ``UndeliverableDueToHttp<Outcome>`` is documented for 400 (BadRequest); the other
outcomes follow that pattern.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import heapq
import inspect
import ipaddress
import itertools
import json
import random
import threading
import time
import uuid
from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from http import HTTPStatus
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

import azure.functions as func
import requests
from azure.functions.decorators.function_app import Function
from azure.functions.eventgrid import EventGridEventInConverter
from azure.functions.meta import Datum, get_binding_registry

from lab.tls import lab_pki


class EventSchema(StrEnum):
    """An event subscription's ``eventDeliverySchema``."""

    EVENT_GRID = "EventGridSchema"
    CLOUD_EVENTS = "CloudEventSchemaV1_0"


class ResourceEventType(StrEnum):
    """The system topic's event types the lab's ARM publishes (succeeded writes only)."""

    WRITE_SUCCESS = "Microsoft.Resources.ResourceWriteSuccess"
    DELETE_SUCCESS = "Microsoft.Resources.ResourceDeleteSuccess"


# What Azure's Microsoft.Resources events carry: data version 2, metadata version 1.
DATA_VERSION = "2"
METADATA_VERSION = "1"


@dataclass(frozen=True)
class PublishedEvent:
    """One event as its topic published it, before a subscription renders it in its schema."""

    id: str
    topic: str  # /subscriptions/{id} for a subscription's system topic
    subject: str  # the resource id
    event_type: ResourceEventType
    event_time: dt.datetime  # aware
    data: Mapping[str, Any]

    def rendered(self, schema: EventSchema) -> dict[str, Any]:
        if schema is EventSchema.CLOUD_EVENTS:
            return {
                "source": self.topic,
                "subject": self.subject,
                "type": self.event_type.value,
                "time": azure_time(self.event_time),
                "id": self.id,
                "data": dict(self.data),
                "specversion": "1.0",
            }
        return {
            "subject": self.subject,
            "eventType": self.event_type.value,
            "eventTime": azure_time(self.event_time),
            "id": self.id,
            "data": dict(self.data),
            "dataVersion": DATA_VERSION,
            "metadataVersion": METADATA_VERSION,
            "topic": self.topic,
        }


def azure_time(moment: dt.datetime) -> str:
    """Event Grid's timestamps: UTC with seven fractional digits (``2018-07-19T18:38:04.6117357Z``),
    one more than Python parses, which the Functions worker strips."""
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") + "0Z"


# -- delivery -------------------------------------------------------------------------------------

# Event Grid's retry schedule after a failed delivery (then every 12 hours, until the event's
# time to live ends); ``EventGridEmulator(time_scale=...)`` compresses it for tests.
RETRY_SCHEDULE_S = (10.0, 30.0, 60.0, 300.0, 600.0, 1800.0, 3600.0, 10800.0, 21600.0, 43200.0)
MAX_DELIVERY_ATTEMPTS = 30  # Azure's default and its maximum
EVENT_TIME_TO_LIVE_S = 1440 * 60.0  # Azure's default and its maximum
DEAD_LETTER_DELAY_S = 300.0  # how long after the last attempt Event Grid writes a dead letter
SUCCESS_STATUSES = range(200, 205)  # what Event Grid takes for an acknowledgement


class EndpointType(StrEnum):
    """An event subscription's destination, as far as delivery differs between them."""

    WEBHOOK = "WebHook"
    AZURE_FUNCTION = "AzureFunction"


# Answers Event Grid does not retry: it dead-letters the event at once.
_NOT_RETRIED = {
    EndpointType.WEBHOOK: frozenset({400, 401, 403, 413}),
    EndpointType.AZURE_FUNCTION: frozenset({400, 403, 413}),
}


class DeadLetterReason(StrEnum):
    MAX_DELIVERY_ATTEMPTS = "MaxDeliveryAttemptsExceeded"
    TIME_TO_LIVE = "TimeToLiveExceeded"
    UNDELIVERABLE = "UndeliverableDueToHttp"  # + the outcome: UndeliverableDueToHttpBadRequest


@dataclass(frozen=True)
class Answer:
    """What a delivery target answered: an HTTP status, and for the lab's records, why."""

    status: int
    detail: str = ""


class DeliveryTarget(Protocol):
    """Where an event subscription delivers: one call per delivery, with the batch rendered in
    the subscription's schema and Event Grid's headers; raising is a delivery with no answer."""

    endpoint_type: EndpointType

    def deliver(self, events: Sequence[dict[str, Any]], *, headers: Mapping[str, str]) -> Answer: ...


@dataclass(frozen=True)
class DeliveryAttempt:
    """One delivery of a batch, as the lab recorded it."""

    event_ids: tuple[str, ...]
    attempt: int  # 1 for the first delivery of the batch, 2 for its first retry...
    duplicate: bool  # a second delivery of a batch that had already been delivered
    status: int  # the HTTP status answered; 0 when there was no answer
    outcome: str  # Succeeded, or the failure: BadRequest, InternalServerError, TimedOut, GenericError
    detail: str
    at: dt.datetime

    @property
    def succeeded(self) -> bool:
        return self.outcome == "Succeeded"


class _Step(StrEnum):
    DELIVER = "deliver"
    DEAD_LETTER = "dead-letter"


@dataclass
class _Job:
    step: _Step
    events: tuple[PublishedEvent, ...]
    published_at: dt.datetime
    published_mono: float
    attempt: int = 1
    duplicate_after_success: bool = False  # decided when the batch is formed (seeded)
    duplicate: bool = False
    reason: str = ""  # why a dead letter was written
    last: DeliveryAttempt | None = None  # the last attempt, for a dead letter


class EventGridEmulator:
    """One event subscription to a system topic: ``publish`` is the topic's input (give it to
    ``ArmEmulator(publish=...)``), ``target`` the subscription's destination.

    Faults as Event Grid has them, configured and reproducible (``seed``): ``delay_s`` before
    every delivery; ``duplicate_fraction`` of the batches delivered a second time after they
    succeeded; batches formed within ``reorder_window_s`` of the first shuffled; at most
    ``max_events_per_batch`` events per delivery (1, as the Functions trigger gets one event per
    invocation); retries on Event Grid's schedule times ``time_scale`` (which also scales the
    time to live and the dead-letter delay, so a test runs in milliseconds); then dead letters.
    ``attempts`` and ``dead_letters`` record what happened; ``wait_idle`` waits for it to end.
    The random choices are made in publication order on one thread, so a seed and the same
    batches give the same duplicates and the same order, whatever the number of ``workers``
    (concurrent deliveries, as Event Grid and the Functions host have; 1 for a strict order).
    """

    def __init__(
        self,
        *,
        target: DeliveryTarget,
        schema: EventSchema = EventSchema.EVENT_GRID,
        name: str = "kvmon-vault-changes",
        delay_s: float = 0.0,
        duplicate_fraction: float = 0.0,
        reorder_window_s: float = 0.0,
        max_events_per_batch: int = 1,
        max_delivery_attempts: int = MAX_DELIVERY_ATTEMPTS,
        time_scale: float = 1.0,
        dead_letter_dir: Path | None = None,
        seed: int = 0,
        workers: int = 4,
    ) -> None:
        if not 0.0 <= duplicate_fraction <= 1.0:
            raise ValueError(f"duplicate_fraction must be between 0 and 1, not {duplicate_fraction}")
        if not 1 <= max_delivery_attempts <= MAX_DELIVERY_ATTEMPTS:
            raise ValueError(
                f"max_delivery_attempts must be 1 to {MAX_DELIVERY_ATTEMPTS}, not {max_delivery_attempts}"
            )
        if max_events_per_batch < 1 or workers < 1:
            raise ValueError("max_events_per_batch and workers must be at least 1")
        if delay_s < 0 or reorder_window_s < 0 or time_scale <= 0:
            raise ValueError("delay_s and reorder_window_s must not be negative, time_scale must be positive")
        self.target = target
        self.schema = schema
        self.name = name
        self.delay_s = delay_s
        self.duplicate_fraction = duplicate_fraction
        self.reorder_window_s = reorder_window_s
        self.max_events_per_batch = max_events_per_batch
        self.max_delivery_attempts = max_delivery_attempts
        self.time_scale = time_scale
        self.dead_letter_dir = dead_letter_dir
        self.published: list[PublishedEvent] = []
        self.attempts: list[DeliveryAttempt] = []
        self.dead_letters: list[dict[str, Any]] = []
        self._rng = random.Random(seed)
        self._workers = workers
        self._cv = threading.Condition()
        self._inbox: list[tuple[PublishedEvent, dt.datetime, float]] = []
        self._due: list[tuple[float, int, _Job]] = []  # a heap by due time
        self._sequence = itertools.count()
        self._in_flight = 0
        self._stopping = False
        self._threads: list[threading.Thread] = []

    # -- life cycle ----------------------------------------------------------------------------

    def start(self) -> EventGridEmulator:
        """Start delivering (events published before are delivered now, as one window)."""
        self._stopping = False
        self._threads = [
            threading.Thread(target=self._dispatch, name=f"lab-eventgrid-{self.name}", daemon=True)
        ]
        self._threads += [
            threading.Thread(target=self._work, name=f"lab-eventgrid-{self.name}-{index}", daemon=True)
            for index in range(self._workers)
        ]
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        """Stop delivering; what was still to be delivered is dropped."""
        with self._cv:
            self._stopping = True
            self._cv.notify_all()
        for thread in self._threads:
            thread.join()
        self._threads = []

    def __enter__(self) -> EventGridEmulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- the topic's side ----------------------------------------------------------------------

    def publish(self, event: PublishedEvent) -> None:
        """Accept ``event`` for delivery; returns at once, as a publisher's call to a topic does."""
        with self._cv:
            self.published.append(event)
            self._inbox.append((event, dt.datetime.now(dt.UTC), time.monotonic()))
            self._cv.notify_all()

    def wait_idle(self, timeout: float) -> None:
        """Wait until every published event is delivered or dead-lettered (duplicates and
        retries included); TimeoutError if that takes longer than ``timeout`` seconds."""
        with self._cv:
            if not self._cv.wait_for(
                lambda: not self._inbox and not self._due and not self._in_flight, timeout
            ):
                raise TimeoutError(
                    f"Event Grid emulator {self.name} still busy after {timeout} s: {len(self._inbox)} "
                    f"events not yet batched, {len(self._due)} deliveries scheduled, {self._in_flight} under way"
                )

    @property
    def deliveries(self) -> list[DeliveryAttempt]:
        """The successful deliveries, in the order they were made."""
        with self._cv:
            return [attempt for attempt in self.attempts if attempt.succeeded]

    # -- threads -------------------------------------------------------------------------------

    def _dispatch(self) -> None:
        """Form batches from what was published, shuffle a window of them, decide duplicates."""
        while True:
            with self._cv:
                self._cv.wait_for(lambda: self._stopping or bool(self._inbox))
                if self._stopping:
                    return
                if self.reorder_window_s:
                    self._cv.wait_for(lambda: self._stopping, self.reorder_window_s)
                    if self._stopping:
                        return
                inbox, self._inbox = self._inbox, []
                batches = [
                    inbox[start : start + self.max_events_per_batch]
                    for start in range(0, len(inbox), self.max_events_per_batch)
                ]
                if self.reorder_window_s:
                    self._rng.shuffle(batches)
                for batch in batches:
                    job = _Job(
                        _Step.DELIVER,
                        events=tuple(event for event, _, _ in batch),
                        published_at=min(at for _, at, _ in batch),
                        published_mono=min(mono for _, _, mono in batch),
                        duplicate_after_success=self._rng.random() < self.duplicate_fraction,
                    )
                    self._schedule(job, after_s=self.delay_s)
                self._cv.notify_all()

    def _schedule(self, job: _Job, *, after_s: float) -> None:
        heapq.heappush(self._due, (time.monotonic() + after_s, next(self._sequence), job))

    def _work(self) -> None:
        while True:
            with self._cv:
                while True:
                    if self._stopping:
                        return
                    now = time.monotonic()
                    if self._due and self._due[0][0] <= now:
                        _, _, job = heapq.heappop(self._due)
                        self._in_flight += 1
                        break
                    self._cv.wait(self._due[0][0] - now if self._due else None)
            try:
                if job.step is _Step.DEAD_LETTER:
                    self._write_dead_letter(job)
                else:
                    self._deliver(job)
            finally:
                with self._cv:
                    self._in_flight -= 1
                    self._cv.notify_all()

    def _deliver(self, job: _Job) -> None:
        headers = {
            "aeg-event-type": "Notification",
            "aeg-subscription-name": self.name.upper(),
            "aeg-delivery-count": str(job.attempt - 1),
            "aeg-data-version": DATA_VERSION,
            "aeg-metadata-version": METADATA_VERSION,
        }
        try:
            answer = self.target.deliver(
                [event.rendered(self.schema) for event in job.events], headers=headers
            )
            outcome = "Succeeded" if answer.status in SUCCESS_STATUSES else _outcome(answer.status)
        except TimeoutError as exc:
            answer, outcome = Answer(0, f"{type(exc).__name__}: {exc}"), "TimedOut"
        except Exception as exc:  # the target had no answer: a failed delivery, retried
            answer, outcome = Answer(0, f"{type(exc).__name__}: {exc}"), "GenericError"
        attempt = DeliveryAttempt(
            event_ids=tuple(event.id for event in job.events),
            attempt=job.attempt,
            duplicate=job.duplicate,
            status=answer.status,
            outcome=outcome,
            detail=answer.detail,
            at=dt.datetime.now(dt.UTC),
        )
        with self._cv:
            self.attempts.append(attempt)
            if job.duplicate:
                return  # a duplicate is Event Grid's mistake, never retried
            if attempt.succeeded:
                if job.duplicate_after_success:
                    self._schedule(replace(job, duplicate=True), after_s=self.delay_s)
                return
            retry_after = RETRY_SCHEDULE_S[min(job.attempt, len(RETRY_SCHEDULE_S)) - 1] * self.time_scale
            if answer.status in _NOT_RETRIED[self.target.endpoint_type]:
                reason = DeadLetterReason.UNDELIVERABLE + outcome
            elif job.attempt >= self.max_delivery_attempts:
                reason = DeadLetterReason.MAX_DELIVERY_ATTEMPTS
            elif time.monotonic() + retry_after - job.published_mono > EVENT_TIME_TO_LIVE_S * self.time_scale:
                reason = DeadLetterReason.TIME_TO_LIVE
            else:
                self._schedule(replace(job, attempt=job.attempt + 1), after_s=retry_after + self.delay_s)
                return
            self._schedule(
                replace(job, step=_Step.DEAD_LETTER, reason=reason, last=attempt),
                after_s=DEAD_LETTER_DELAY_S * self.time_scale,
            )

    def _write_dead_letter(self, job: _Job) -> None:
        """Event Grid's dead-letter record for each event of the batch: the event as delivered,
        and why it was given up, after how many attempts, and how the last one ended."""
        last = job.last
        assert last is not None
        records = [
            event.rendered(self.schema)
            | {
                "deadLetterReason": job.reason,
                "deliveryAttempts": job.attempt,
                "lastDeliveryOutcome": last.outcome,
                "lastHttpStatusCode": last.status,
                "publishTime": azure_time(job.published_at),
                "lastDeliveryAttemptTime": azure_time(last.at),
            }
            for event in job.events
        ]
        if self.dead_letter_dir is not None:
            self.dead_letter_dir.mkdir(parents=True, exist_ok=True)
            (self.dead_letter_dir / f"{uuid.uuid4()}.json").write_text(json.dumps(records, indent=2))
        with self._cv:
            self.dead_letters.extend(records)


def _outcome(status: int) -> str:
    """A failed status as Event Grid names it in a dead letter (.NET's names: NotFound, BadRequest)."""
    try:
        name = HTTPStatus(status).name
    except ValueError:
        return "GenericError"
    return "TimedOut" if status == 408 else "".join(word.capitalize() for word in name.split("_"))


# -- targets --------------------------------------------------------------------------------------


class WebhookTarget:
    """An HTTPS (or HTTP) endpoint on loopback, as Event Grid posts to a webhook: the batch as a
    JSON array (``application/json``) in the Event Grid schema; in CloudEvents, one event as
    ``application/cloudevents+json`` or a batch as ``application/cloudevents-batch+json``.
    An answer slower than ``timeout_s`` (Event Grid waits 30 s) is a failed delivery."""

    endpoint_type = EndpointType.WEBHOOK

    def __init__(self, url: str, *, timeout_s: float = 30.0, verify: str | bool | None = None) -> None:
        host = urlsplit(url).hostname or ""
        if host != "localhost" and not _is_loopback(host):
            raise ValueError(f"lab deliveries stay on loopback, not {host or url}")
        self.url = url
        self.timeout_s = timeout_s
        self.verify = lab_pki().ca_path if verify is None else verify

    def deliver(self, events: Sequence[dict[str, Any]], *, headers: Mapping[str, str]) -> Answer:
        cloud_events = bool(events) and "specversion" in events[0]
        if cloud_events and len(events) == 1:
            body: Any = events[0]
            content_type = "application/cloudevents+json; charset=utf-8"
        else:
            body = list(events)
            content_type = (
                "application/cloudevents-batch+json; charset=utf-8" if cloud_events else "application/json"
            )
        try:
            response = requests.post(
                self.url,
                data=json.dumps(body).encode(),
                headers={**headers, "Content-Type": content_type},
                timeout=self.timeout_s,
                verify=self.verify,
            )
        except requests.Timeout as exc:
            raise TimeoutError(f"no answer from {self.url} in {self.timeout_s} s") from exc
        return Answer(response.status_code, response.text[:200])


class FunctionTarget:
    """An Event Grid triggered function, called as the Functions host and the Python worker call
    it: each event of a delivery decoded by the worker's own converter
    (``azure.functions.eventgrid.EventGridEventInConverter``) from the ``Datum`` the host's
    invocation carries, then the user function called with it. A function that raises fails
    the delivery (the host answers 500), and Event Grid delivers the whole batch again.

    ``function`` is one of ``app.get_functions()``; ``FunctionTarget.of(app, name)`` indexes the
    app itself (an app can be indexed once only, as the host does: a test that has indexed it
    already passes the function)."""

    endpoint_type = EndpointType.AZURE_FUNCTION

    def __init__(self, function: Function) -> None:
        trigger = function.get_trigger()
        # The converter the worker looks up for the trigger's binding type.
        if trigger is None or get_binding_registry().get(trigger.type) is not EventGridEventInConverter:
            raise ValueError(f"{function.get_function_name()} is not triggered by Event Grid")
        self.function_name = str(function.get_function_name())
        self._argument = trigger.name
        self._call = function.get_user_function()
        self._lock = threading.Lock()
        self.invocations = 0
        self.failures: list[str] = []  # why each failed invocation failed

    @classmethod
    def of(cls, app: func.FunctionApp, function_name: str) -> FunctionTarget:
        found = {str(function.get_function_name()): function for function in app.get_functions()}
        if function_name not in found:
            raise ValueError(f"the app has no function {function_name!r} (it has {', '.join(sorted(found))})")
        return cls(found[function_name])

    def deliver(self, events: Sequence[dict[str, Any]], *, headers: Mapping[str, str]) -> Answer:
        failed: list[str] = []
        for event in events:
            datum = Datum(json.dumps(event), "json")  # the host sends the event as JSON typed data
            decoded = EventGridEventInConverter.decode(datum, trigger_metadata={"data": datum})
            with self._lock:
                self.invocations += 1
            try:
                result = self._call(**{self._argument: decoded})
                if inspect.isawaitable(result):
                    asyncio.run(_awaited(result))
            except Exception as exc:
                failed.append(f"{type(exc).__name__}: {exc}")
        if failed:
            with self._lock:
                self.failures.extend(failed)
            return Answer(500, "; ".join(failed))
        return Answer(200)


async def _awaited(result: Awaitable[Any]) -> Any:
    return await result


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
