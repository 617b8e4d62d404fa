"""Event Grid payloads read into ``VaultChange`` records: who asked ARM to change which vault.

An event is evidence from Azure that a request succeeded, never a description of the vault: the
handler reads the vault again (one GET) before anything is judged. ``parse_payload`` is the one
entry; it does no I/O and reads no clock.

Shapes accepted (the body may hold several, even mixed):

- **Event Grid schema**, one event object or the array Event Grid delivers: ``id``, ``eventType``,
  ``eventTime``, ``data`` (``subject``, ``topic``, ``dataVersion``, ``metadataVersion`` are not used).
- **CloudEvents 1.0** in structured JSON, one event or an array: ``specversion`` (``specVersion``,
  as Azure's published examples spell it, is taken too), ``id``, ``type``, ``time``, ``data``.
- **A dead-lettered record**, as Event Grid writes it to the dead-letter blob: an Event Grid event
  with ``deadLetterReason``, ``deliveryAttempts``, ``lastDeliveryOutcome``, ``lastHttpStatusCode``,
  ``publishTime``, ``lastDeliveryAttemptTime`` beside its fields, or a CloudEvent wrapped as
  ``{"event": {...}, "deadletterproperties": {"deadletterreason", "deliveryattempts",
  "deliveryresult", "publishutc", "deliveryattemptutc"}}``. The delivery history is kept as
  ``DeadLetter`` on the event's outcome.
- **The Functions worker's event**: what ``azure.functions.eventgrid.EventGridEventInConverter``
  hands an Event Grid trigger (``func.EventGridEvent`` or ``func.CloudEvent``), read as the JSON it
  was decoded from.

A body that is not UTF-8 JSON, is larger than ``MAX_BODY_BYTES``, or holds something that is none of
these shapes raises ``EventPayloadError`` naming the source and the place. Within a readable body
every event gets an ``EventOutcome`` with a ``Verdict`` and a reason; none is skipped silently:

- ``RELEVANT``: ``Microsoft.Resources.ResourceWriteSuccess`` / ``ResourceDeleteSuccess`` with
  ``data.status`` Succeeded for a vault (``Microsoft.KeyVault/vaults/write``, ``/delete``) or for one
  of its private endpoint connections (``vaults/privateEndpointConnections/write|delete``, and the
  ``privateEndpointConnectionProxies`` through which Microsoft.Network creates one), the connection's
  id mapped back to its vault. ``VaultChange.kind`` is what the request did to ``resource_id``: a
  connection's delete leaves the vault in place, and only the fresh GET says whether a vault exists.
- ``RELEVANT`` too, with ``VaultChange.service`` storage: the same operations of a storage account
  (``Microsoft.Storage/storageAccounts/write``, ``/delete``,
  ``storageAccounts/privateEndpointConnections/write|delete`` and
  ``privateEndpointConnectionProxies``), the id mapped back to the account (name 3-24 lower-case
  letters and digits). ``EventBatch.accounts`` holds them, apart from
  the vaults' ``changes``: the event path reads vaults by id only so far.
- ``IGNORED``: any other event type (an action, a failure, a cancellation, another service's event),
  a status other than Succeeded, another provider's or resource type's operation (managed HSMs are
  not vaults), and Key Vault operations that change no network setting: ``vaults/accessPolicies/write``
  (who may use the data plane, not from where), secrets, keys and the rest below a vault; likewise a
  storage account's services, containers, shares and the rest below it.
- ``OUT_OF_SCOPE``: a relevant event in a subscription kvmon does not watch (kvmon must never GET
  outside its scope; an empty scope lets nothing through).
- ``INVALID``: the event's fields are missing or mistyped, or its resource id is not what its
  operation names; the reason is ``<source>: <field path>: <problem>``, e.g.
  ``event.json: [2].data.resourceUri: required``.

The resource is ``data.resourceUri``, never ``subject``: ``resourceUri`` is the field every
Microsoft.Resources event carries in both schemas, whereas ``subject`` belongs to the envelope
(optional in CloudEvents, shaped by the topic). Resource ids compare case-insensitively; a vault id
is written in ARM's canonical form ``/subscriptions/{sub}/resourceGroups/{rg}/providers/
Microsoft.KeyVault/vaults/{name}`` (subscription in lower case, as ``normalise_vault`` keeps it;
resource group and name as the event spelt them).

The actor (``ChangeActor``, source ``event``) comes from ``data.claims`` (the ``name``, ``appid``,
``ipaddr`` claims, the UPN and object id under their URI keys), ``data.authorization`` (the role;
the principal type only when ``evidence.principalId`` is the caller's own object id, since a role
held through a group names the group) and ``data.httpRequest.clientIpAddress``, which wins over the
``ipaddr`` claim: that claim is where the token was issued, possibly hours before and from another
network, while ``clientIpAddress`` is where ARM received this very request. A claim that is absent
is None. Nothing else of the claims (audience, times, the raw token's other contents) is kept.

Delivery is at least once and unordered: ``EventBatch`` folds copies of one event id (counted in
``duplicates``) and groups the relevant changes per vault (``VaultChanges``: one GET per vault per
batch, every actor kept; the newest by event time, then by event id, is *the* actor). Nothing that
``EventBatch`` exposes to a handler depends on the order of the events in the body.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from functools import cache
from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import (
    AfterValidator,
    AliasChoices,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictInt,
    ValidationError,
)

from monitor.config.validation import Text, describe, field_path, message
from monitor.errors import InputError
from monitor.model import ActorSource, ChangeActor, Service, VaultChange, WriteKind
from monitor.model_storage import STORAGE_ACCOUNT_NAME
from monitor.naming.keyvault import VAULT_NAME

# Event Grid refuses an event over 1 MB and delivers batches of at most 1 MB, and an ARM event is a
# few kilobytes: a body larger than this is not from Event Grid, and is refused before it is parsed.
MAX_BODY_BYTES = 1024 * 1024

_SUCCEEDED = "succeeded"


class EventPayloadError(InputError):
    """A body that is not an event payload; the message names the source, the place and the problem."""


class Verdict(StrEnum):
    """What kvmon does with one event."""

    RELEVANT = "relevant"  # a vault's network may have changed: GET it
    IGNORED = "ignored"  # not a succeeded write or delete of a vault's network settings
    OUT_OF_SCOPE = "out-of-scope"  # relevant, but in a subscription kvmon does not watch
    INVALID = "invalid"  # fields missing or mistyped


class EventSchema(StrEnum):
    EVENT_GRID = "event-grid"
    CLOUD_EVENTS = "cloudevents"


@dataclass(frozen=True)
class DeadLetter:
    """Event Grid's account of a delivery that failed for good, kept beside a dead-lettered event."""

    reason: str | None = None  # MaxDeliveryAttemptsExceeded, UndeliverableDueToHttpBadRequest, ...
    delivery_attempts: int | None = None
    last_outcome: str | None = None  # TimedOut, BadRequest, ... (CloudEvents: deliveryresult)
    last_http_status: int | None = None
    published_at: dt.datetime | None = None
    last_attempt_at: dt.datetime | None = None


@dataclass(frozen=True)
class EventOutcome:
    """One distinct event of a body (copies of one id folded into ``deliveries``) and its verdict."""

    position: str  # where in the body: "[2]", or "" for a body that is one event
    event_id: str | None  # None when the event has no readable id
    event_type: str | None
    schema: EventSchema
    verdict: Verdict
    reason: str
    change: VaultChange | None = None  # set exactly when the verdict is RELEVANT
    dead_letter: DeadLetter | None = None
    deliveries: int = 1


@dataclass(frozen=True)
class VaultChanges:
    """The relevant changes of one batch to one vault: one GET answers them all."""

    changes: tuple[VaultChange, ...]  # newest first (event time, then event id)

    @property
    def vault_id(self) -> str:
        return self.changes[0].vault_id

    @property
    def vault_key(self) -> str:
        return self.changes[0].vault_key

    @property
    def actor(self) -> ChangeActor:
        """The newest change's actor: the person whose write the fresh GET most likely shows."""
        return self.changes[0].actor

    @property
    def actors(self) -> tuple[ChangeActor, ...]:
        """Every actor seen, newest first; equal ones once (copies of one event differ in nothing)."""
        return tuple(dict.fromkeys(change.actor for change in self.changes))


@dataclass(frozen=True)
class EventBatch:
    """What one body told: every distinct event's outcome, and the relevant changes per vault."""

    source: str
    outcomes: tuple[EventOutcome, ...]  # in the order their first copy came

    @property
    def duplicates(self) -> int:
        """Deliveries folded into an earlier copy of the same event id."""
        return sum(outcome.deliveries - 1 for outcome in self.outcomes)

    @property
    def changes(self) -> tuple[VaultChange, ...]:
        """The relevant changes to vaults, one per event id, by vault then newest first (a storage
        account's are in ``accounts``)."""
        return tuple(change for group in self.vaults for change in group.changes)

    @property
    def vaults(self) -> tuple[VaultChanges, ...]:
        """The relevant changes to vaults grouped per vault (by key), vaults in key order."""
        return self._grouped(Service.KEYVAULT)

    @property
    def accounts(self) -> tuple[VaultChanges, ...]:
        """The relevant changes to storage accounts grouped per account (by key), in key order."""
        return self._grouped(Service.STORAGE)

    def _grouped(self, service: Service) -> tuple[VaultChanges, ...]:
        grouped: dict[str, list[VaultChange]] = {}
        for outcome in self.outcomes:
            if outcome.change is not None and outcome.change.service is service:
                grouped.setdefault(outcome.change.vault_key, []).append(outcome.change)
        return tuple(VaultChanges(changes=_newest_first(grouped[key])) for key in sorted(grouped))

    @property
    def actors(self) -> dict[str, ChangeActor]:
        """Vault key -> the actor, as ``ScanRequest.actors`` takes it."""
        return {group.vault_key: group.actor for group in self.vaults}

    def count(self, verdict: Verdict) -> int:
        return sum(1 for outcome in self.outcomes if outcome.verdict is verdict)


def parse_payload(body: bytes | str | Any, *, source: str, subscriptions: Collection[str]) -> EventBatch:
    """Read ``body`` into an ``EventBatch``: raw bytes or text, JSON already decoded, or one event
    as the Functions worker hands it to an Event Grid trigger (``func.EventGridEvent``,
    ``func.CloudEvent``).

    ``source`` names the body in every message (a file name, ``event``); ``subscriptions`` is the
    scope: a relevant event outside it is ``OUT_OF_SCOPE``. Raises ``EventPayloadError`` for a body
    that is not an event payload (see the module's docstring).
    """
    document = _decode(body, source=source)
    elements: list[tuple[str, int | None, Any]]
    if isinstance(document, list):
        if not document:
            raise EventPayloadError(message(source, "", "an empty array holds no event"))
        elements = [(f"[{index}]", index, item) for index, item in enumerate(document)]
    else:
        elements = [("", None, document)]
    scope = frozenset(subscription.strip().lower() for subscription in subscriptions)
    read = [
        (item, _read(item, source=source, position=position, index=index, scope=scope))
        for position, index, item in elements
    ]
    return EventBatch(source=source, outcomes=_fold(read))


# -- the body ------------------------------------------------------------------------------------


def _decode(body: bytes | str | Any, *, source: str) -> Any:
    if isinstance(body, str):
        body = body.encode("utf-8", "surrogatepass")  # bounded as the bytes it is, like a delivery
    if isinstance(body, bytes | bytearray | memoryview):
        document = _json(bytes(body), source=source)
    else:
        document = _worker_event(body)
    if not isinstance(document, dict | list):
        raise EventPayloadError(
            message(source, "", f"expected an event or an array of events, got {_kind(document)}")
        )
    return document


def _json(raw: bytes, *, source: str) -> Any:
    if len(raw) > MAX_BODY_BYTES:
        raise EventPayloadError(
            message(
                source,
                "",
                f"{len(raw)} bytes, more than the {MAX_BODY_BYTES} an Event Grid delivery can hold",
            )
        )
    try:
        text = raw.decode("utf-8-sig")  # a blob saved by a Windows tool may start with a BOM
    except UnicodeDecodeError as exc:
        raise EventPayloadError(
            message(source, "", f"not UTF-8 (byte 0x{raw[exc.start]:02x} at offset {exc.start})")
        ) from None
    try:
        return json.loads(text, parse_constant=_refuse_constant)
    except json.JSONDecodeError as exc:
        raise EventPayloadError(
            message(source, "", f"not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}")
        ) from None
    except ValueError as exc:  # NaN, Infinity
        raise EventPayloadError(message(source, "", f"not JSON: {exc}")) from None
    except RecursionError:
        raise EventPayloadError(message(source, "", "not JSON an event can be: nested too deeply")) from None


def _worker_event(body: Any) -> Any:
    """The JSON of an event the Functions worker decoded (``azure.functions.EventGridEvent`` or
    ``CloudEvent``, as ``EventGridEventInConverter`` makes them), or ``body`` itself (JSON already)."""
    if not callable(getattr(body, "get_json", None)):
        return body
    if hasattr(body, "event_type"):
        return {
            "id": body.id,
            "eventType": body.event_type,
            "eventTime": body.event_time,
            "subject": body.subject,
            "topic": body.topic,
            "dataVersion": body.data_version,
            "data": body.get_json(),
        }
    return {
        "specversion": body.specversion,
        "id": body.id,
        "type": body.type,
        "source": body.source,
        "time": body.time,
        "subject": body.subject,
        "data": body.get_json(),
    }


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _kind(value: Any) -> str:
    """A JSON value's kind in JSON's words (the body's own faults, before any model reads it)."""
    names = {bool: "true or false", int: "a number", float: "a number", str: "a text", list: "an array"}
    return "null" if value is None else names.get(type(value), "an object")


def _canonical(item: Any) -> str:
    """A copy's content, to choose among copies of one id whatever order they came in."""
    return json.dumps(item, sort_keys=True, default=str)


def _fold(read: list[tuple[Any, EventOutcome]]) -> tuple[EventOutcome, ...]:
    """One outcome per event id (each id-less event its own), in the order its first copy came.

    Copies of one id are identical as Event Grid delivers them; were they not, the copy whose
    content sorts first is kept, so the outcome still does not depend on the order of delivery.
    """
    copies: dict[str | int, list[tuple[Any, EventOutcome]]] = {}
    for index, (item, outcome) in enumerate(read):
        copies.setdefault(outcome.event_id if outcome.event_id is not None else index, []).append(
            (item, outcome)
        )
    folded = []
    for group in copies.values():
        if len(group) == 1:
            folded.append(group[0][1])
        else:
            _, kept = min(group, key=lambda pair: _canonical(pair[0]))
            folded.append(replace(kept, deliveries=len(group)))
    return tuple(folded)


def _newest_first(changes: Iterable[VaultChange]) -> tuple[VaultChange, ...]:
    """Newest event time first; an event without a time counts as the oldest, and the event id breaks
    ties, so no order of delivery decides which actor is *the* actor."""
    return tuple(
        sorted(
            changes,
            key=lambda change: (change.event_time is not None, change.event_time or _EPOCH, change.event_id),
            reverse=True,
        )
    )


_EPOCH = dt.datetime.min.replace(tzinfo=dt.UTC)


# -- one event -----------------------------------------------------------------------------------


class _Invalid(Exception):
    """An event's fields do not validate; the argument is the one-line message."""


def _read(item: Any, *, source: str, position: str, index: int | None, scope: frozenset[str]) -> EventOutcome:
    if not isinstance(item, dict):
        raise EventPayloadError(
            message(source, position, f"expected an event (an object), got {_kind(item)}")
        )
    shape = _shape(item)
    if shape is None:
        raise EventPayloadError(
            message(
                source,
                position,
                "neither an Event Grid event (no eventType) nor a CloudEvent (no specversion)",
            )
        )
    schema, model = shape
    location = () if index is None else (index,)
    try:
        envelope = _validated(_PARAMETRIZED[model][0], item, source=source, location=location).envelope()
    except _Invalid as problem:
        return EventOutcome(
            position=position,
            event_id=_readable_id(item),
            event_type=None,
            schema=schema,
            verdict=Verdict.INVALID,
            reason=str(problem),
        )

    def outcome(verdict: Verdict, reason: str, change: VaultChange | None = None) -> EventOutcome:
        return EventOutcome(
            position=position,
            event_id=envelope.event_id,
            event_type=envelope.event_type,
            schema=schema,
            verdict=verdict,
            reason=reason,
            change=change,
            dead_letter=envelope.dead_letter,
        )

    event_kind = _RESOURCE_EVENTS.get(envelope.event_type.lower())
    if event_kind is None:
        return outcome(Verdict.IGNORED, f"{envelope.event_type} is not a succeeded ARM write or delete")
    try:
        read = _validated(_PARAMETRIZED[model][1], item, source=source, location=location)
        data = read.envelope().data
    except _Invalid as problem:
        return outcome(Verdict.INVALID, str(problem))
    data_path = field_path([*location, *envelope.data_location])
    if data.status.lower() != _SUCCEEDED:
        return outcome(Verdict.IGNORED, f"status {data.status}: the request did not succeed")
    operation = data.operation_name.lower()
    target = _NETWORK_OPERATIONS.get(operation)
    if target is None:
        return outcome(Verdict.IGNORED, _why_ignored(data.operation_name))
    if target.kind is not event_kind:
        return outcome(
            Verdict.INVALID,
            message(
                source,
                f"{data_path}.operationName",
                f"{data.operation_name} does not match the event type {envelope.event_type}",
            ),
        )
    try:
        vault_id = _parent_id(data.resource_uri, target)
    except ValueError as problem:
        return outcome(Verdict.INVALID, message(source, f"{data_path}.resourceUri", str(problem)))
    subscription = vault_id.split("/")[2]
    noun = target.parent.short.removeprefix("a ")  # "vault", "storage account"
    if subscription not in scope:
        return outcome(
            Verdict.OUT_OF_SCOPE,
            f"subscription {subscription} is not one kvmon watches: the {noun} is not read",
        )
    actor = _actor(data, event_time=envelope.event_time)
    change = VaultChange(
        event_id=envelope.event_id,
        vault_id=vault_id,
        resource_id=data.resource_uri.rstrip("/"),
        operation_name=data.operation_name,
        kind=target.kind,
        actor=actor,
        event_time=envelope.event_time,
        correlation_id=data.correlation_id,
        service=target.parent.service,
    )
    return outcome(Verdict.RELEVANT, f"{data.operation_name} succeeded: read the {noun} again", change)


def _shape(item: Mapping[str, Any]) -> tuple[EventSchema, Any] | None:
    if "eventType" in item:
        return EventSchema.EVENT_GRID, _EventGridEvent
    if "specversion" in item or "specVersion" in item:
        return EventSchema.CLOUD_EVENTS, _CloudEvent
    if "deadletterproperties" in item and isinstance(item.get("event"), dict):
        return EventSchema.CLOUD_EVENTS, _CloudDeadLetter
    return None


def _readable_id(item: Mapping[str, Any]) -> str | None:
    inner = item.get("event")
    candidate = item.get("id", inner.get("id") if isinstance(inner, dict) else None)
    return candidate.strip() if isinstance(candidate, str) and candidate.strip() else None


def _validated(model: type[_AnyEvent], item: Any, *, source: str, location: tuple[int, ...]) -> _AnyEvent:
    try:
        return model.model_validate(item)
    except ValidationError as exc:
        raise _Invalid(describe(_below(exc, location), where=source)) from None


def _below(exc: ValidationError, location: tuple[int, ...]) -> ValidationError:
    """``exc`` with every error's location under ``location`` (the event's place in an array)."""
    if not location:
        return exc
    errors: list[Any] = [
        {
            "type": error["type"],
            "loc": (*location, *error["loc"]),
            "input": error["input"],
            **({"ctx": error["ctx"]} if "ctx" in error else {}),
        }
        for error in exc.errors(include_url=False)
    ]
    return ValidationError.from_exception_data(exc.title, errors)


# -- what is relevant ----------------------------------------------------------------------------

# Event types of a request ARM served; actions, failures and cancellations change nothing kvmon reads.
_RESOURCE_EVENTS = {
    "microsoft.resources.resourcewritesuccess": WriteKind.WRITE,
    "microsoft.resources.resourcedeletesuccess": WriteKind.DELETE,
}


@dataclass(frozen=True)
class _Parent:
    """A resource type whose network settings kvmon judges: the operations on it, or on its private
    endpoint connections, are relevant."""

    service: Service
    provider: str
    type: str
    short: str  # in reasons: "a vault"
    noun: str  # in an id's problem: "a Key Vault"
    name: re.Pattern[str]

    @property
    def prefix(self) -> str:
        return f"{self.provider}/{self.type}"


_VAULTS = _Parent(Service.KEYVAULT, "Microsoft.KeyVault", "vaults", "a vault", "a Key Vault", VAULT_NAME)
_ACCOUNTS = _Parent(
    Service.STORAGE,
    "Microsoft.Storage",
    "storageAccounts",
    "a storage account",
    "a storage account",
    STORAGE_ACCOUNT_NAME,
)
PARENTS = (_VAULTS, _ACCOUNTS)


@dataclass(frozen=True)
class _Target:
    kind: WriteKind
    parent: _Parent
    child: str | None  # the child resource type below the parent the operation names, if any


def _network_operations(parent: _Parent) -> dict[str, _Target]:
    """The operations that can change who may reach a vault or a storage account over the network:
    its own PUT, PATCH and DELETE (networkAcls, publicNetworkAccess), and its private endpoint
    connections, created through a proxy when Microsoft.Network builds an endpoint and approved,
    rejected or removed directly. Both providers name them alike."""
    operations = {
        f"{parent.prefix}/write".lower(): _Target(WriteKind.WRITE, parent, None),
        f"{parent.prefix}/delete".lower(): _Target(WriteKind.DELETE, parent, None),
    }
    for child in ("privateEndpointConnections", "privateEndpointConnectionProxies"):
        operations[f"{parent.prefix}/{child}/write".lower()] = _Target(WriteKind.WRITE, parent, child)
        operations[f"{parent.prefix}/{child}/delete".lower()] = _Target(WriteKind.DELETE, parent, child)
    return operations


_NETWORK_OPERATIONS = {
    operation: t for parent in PARENTS for operation, t in _network_operations(parent).items()
}
# What the event subscription's filter (infra/modules/vault-event-topic.bicep) must let through.
NETWORK_OPERATIONS = frozenset(_NETWORK_OPERATIONS)


def _why_ignored(operation_name: str) -> str:
    folded = operation_name.lower()
    for parent in PARENTS:
        if folded.startswith(f"{parent.prefix}/".lower()):
            return f"{operation_name} changes no network setting of {parent.short}"
        if folded.startswith(f"{parent.provider}/".lower()):
            return f"{operation_name} is not an operation on {parent.short} ({parent.prefix})"
    return f"{operation_name} is another resource provider's operation"


@cache
def _id_pattern(parent: _Parent, child: str | None) -> re.Pattern[str]:
    tail = f"/{re.escape(child)}/[^/]+" if child else ""
    return re.compile(
        r"/subscriptions/(?P<subscription>[^/]+)/resourceGroups/(?P<group>[^/]+)"
        f"/providers/{re.escape(parent.prefix)}/(?P<name>[^/]+){tail}/?",
        re.IGNORECASE,
    )


def _parent_id(resource_id: str, target: _Target) -> str:
    """The vault's or account's id in ARM's canonical form (subscription in lower case, as the
    normalisers keep it; group and name as the event spelt them), from its own id or a child's;
    ValueError naming the expected form otherwise."""
    parent, child = target.parent, target.child
    match = _id_pattern(parent, child).fullmatch(resource_id.strip())
    form = f"/subscriptions/SUB/resourceGroups/RG/providers/{parent.prefix}/NAME"
    expected = f"{form}/{child}/NAME" if child else form
    if match is None or not parent.name.fullmatch(match["name"].lower()):
        raise ValueError(
            f"{_shown(resource_id)} is not {'a child of ' if child else ''}{parent.noun} ({expected})"
        )
    return (
        f"/subscriptions/{match['subscription'].lower()}/resourceGroups/{match['group']}"
        f"/providers/{parent.prefix}/{match['name']}"
    )


def _shown(value: str) -> str:
    """``value`` quoted for a message, at most 200 characters of it (an id may be anything)."""
    return repr(value if len(value) <= 200 else value[:200] + "...")


# -- who -----------------------------------------------------------------------------------------


def _actor(data: _ResourceData, *, event_time: dt.datetime | None) -> ChangeActor:
    claims = data.claims or _NO_CLAIMS
    evidence = data.authorization.evidence if data.authorization else None
    # The evidence names the principal the role assignment was made to: the caller, or a group the
    # caller belongs to. Its type is the caller's only when its id is the caller's object id.
    own_assignment = (
        evidence is not None
        and evidence.principal_id is not None
        and claims.object_id is not None
        and _guid_key(evidence.principal_id) == _guid_key(claims.object_id)
    )
    return ChangeActor(
        source=ActorSource.EVENT,
        name=claims.name,
        upn=claims.upn,
        app_id=claims.app_id,
        object_id=claims.object_id,
        principal_type=evidence.principal_type if own_assignment and evidence else None,
        role=evidence.role if evidence else None,
        client_ip=(data.http_request.client_ip_address if data.http_request else None) or claims.ipaddr,
        operation=data.operation_name,
        changed_at=event_time,
        correlation_id=data.correlation_id,
    )


def _guid_key(guid: str) -> str:
    # ARM writes the evidence's ids as 32 hex digits, the token's object id with hyphens.
    return guid.replace("-", "").lower()


# -- the shapes, as pydantic models --------------------------------------------------------------

_UPN_CLAIM = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn"
_OBJECT_ID_CLAIM = "http://schemas.microsoft.com/identity/claims/objectidentifier"


def _blank_is_none(value: str | None) -> str | None:
    return value.strip() or None if value is not None else None


def _text_timestamp(value: Any) -> Any:
    # pydantic would read a number as seconds since 1970: an event's times are texts.
    if not isinstance(value, str | dt.datetime):
        raise ValueError(f"expected an ISO 8601 date-time, got {_kind(value)}")
    return value


Claim = Annotated[str | None, AfterValidator(_blank_is_none)]  # an empty claim is an absent one
Timestamp = Annotated[AwareDatetime, BeforeValidator(_text_timestamp)]
_RECORD = ConfigDict(extra="ignore", frozen=True)  # events carry many fields kvmon does not read


class _Claims(BaseModel):
    """The claims kvmon keeps; a v2 token's short names are taken where a v1 token's are absent."""

    model_config = _RECORD
    name: Claim = None
    upn: Claim = Field(None, validation_alias=AliasChoices(_UPN_CLAIM, "upn"))
    app_id: Claim = Field(None, validation_alias=AliasChoices("appid", "azp"))
    object_id: Claim = Field(None, validation_alias=AliasChoices(_OBJECT_ID_CLAIM, "oid"))
    ipaddr: Claim = None


class _Evidence(BaseModel):
    model_config = _RECORD
    role: Claim = None
    principal_id: Claim = Field(None, alias="principalId")
    principal_type: Claim = Field(None, alias="principalType")


class _Authorization(BaseModel):
    model_config = _RECORD
    evidence: _Evidence | None = None


class _HttpRequest(BaseModel):
    model_config = _RECORD
    client_ip_address: Claim = Field(None, alias="clientIpAddress")


class _ResourceData(BaseModel):
    """``data`` of a Microsoft.Resources event (Azure's Resources.json, its published examples)."""

    model_config = _RECORD
    resource_uri: Text = Field(alias="resourceUri")
    operation_name: Text = Field(alias="operationName")
    status: Text
    correlation_id: Claim = Field(None, alias="correlationId")
    claims: _Claims | None = None
    authorization: _Authorization | None = None
    http_request: _HttpRequest | None = Field(None, alias="httpRequest")


DataT = TypeVar("DataT")


@dataclass(frozen=True)
class _Envelope(Generic[DataT]):
    """What kvmon reads of any shape."""

    event_id: str
    event_type: str
    event_time: dt.datetime | None
    data: DataT
    data_location: tuple[str, ...]  # where ``data`` sits in the element
    dead_letter: DeadLetter | None


class _EventGridEvent(BaseModel, Generic[DataT]):
    model_config = _RECORD
    id: Text
    event_type: Text = Field(alias="eventType")
    event_time: Timestamp = Field(alias="eventTime")
    data: DataT
    # A dead-letter blob's additions.
    dead_letter_reason: Claim = Field(None, alias="deadLetterReason")
    delivery_attempts: StrictInt | None = Field(None, alias="deliveryAttempts")
    last_delivery_outcome: Claim = Field(None, alias="lastDeliveryOutcome")
    last_http_status_code: StrictInt | None = Field(None, alias="lastHttpStatusCode")
    publish_time: Timestamp | None = Field(None, alias="publishTime")
    last_delivery_attempt_time: Timestamp | None = Field(None, alias="lastDeliveryAttemptTime")

    def envelope(self) -> _Envelope[DataT]:
        context = (
            self.dead_letter_reason,
            self.delivery_attempts,
            self.last_delivery_outcome,
            self.last_http_status_code,
            self.publish_time,
            self.last_delivery_attempt_time,
        )
        dead_letter = DeadLetter(*context) if any(value is not None for value in context) else None
        return _Envelope(self.id, self.event_type, self.event_time, self.data, ("data",), dead_letter)


class _CloudEvent(BaseModel, Generic[DataT]):
    model_config = _RECORD
    specversion: Literal["1.0"] = Field(validation_alias=AliasChoices("specversion", "specVersion"))
    id: Text
    type: Text
    source: Text
    time: Timestamp | None = None  # optional in CloudEvents 1.0; Event Grid sets it
    data: DataT

    def envelope(self) -> _Envelope[DataT]:
        return _Envelope(self.id, self.type, self.time, self.data, ("data",), None)


class _CloudDeadLetterProperties(BaseModel):
    model_config = _RECORD
    deadletterreason: Claim = None
    deliveryattempts: StrictInt | None = None
    deliveryresult: Claim = None
    publishutc: Timestamp | None = None
    deliveryattemptutc: Timestamp | None = None


class _CloudDeadLetter(BaseModel, Generic[DataT]):
    model_config = _RECORD
    event: _CloudEvent[DataT]
    deadletterproperties: _CloudDeadLetterProperties

    def envelope(self) -> _Envelope[DataT]:
        found = self.deadletterproperties
        dead_letter = DeadLetter(
            reason=found.deadletterreason,
            delivery_attempts=found.deliveryattempts,
            last_outcome=found.deliveryresult,
            published_at=found.publishutc,
            last_attempt_at=found.deliveryattemptutc,
        )
        inner = self.event.envelope()
        return replace(inner, data_location=("event", "data"), dead_letter=dead_letter)


# Each shape's model for the envelope and for a resource event, parametrized once: subscripting a
# pydantic generic looks its parametrization up again each time, which was a share of every event.
_PARAMETRIZED: dict[Any, tuple[Any, Any]] = {
    model: (model[Any], model[_ResourceData]) for model in (_EventGridEvent, _CloudEvent, _CloudDeadLetter)
}
_AnyEvent = TypeVar("_AnyEvent", bound=BaseModel)
_NO_CLAIMS = _Claims.model_validate({})
