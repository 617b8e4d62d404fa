"""Notification channels, as the operator states them: ``KVMON_CHANNELS`` and the settings it names.

``KVMON_CHANNELS`` holds a JSON list that names each channel, its kind and its filters; the
webhook URL (and a webhook's signing secret) each sit in a setting of their own that the entry
names, so that in Azure they can be Key Vault references while the list stays plain text::

    KVMON_CHANNELS='[{"name": "ops", "kind": "teams", "url_setting": "KVMON_TEAMS_URL",
                      "min_severity": "high", "events": ["opened", "resolved"],
                      "vault_pattern": "kv-prod-*", "report_url": "https://reports.example/{scan_id}"}]'
    KVMON_TEAMS_URL='https://prod-00.westeurope.logic.azure.com/workflows/...'

``ChannelEntries`` is the pydantic model of that list; the settings an entry names are read from
the environment given as the validation context. An error is one line naming the setting, the
entry's field and the problem (``KVMON_CHANNELS: channels[0].kind: 'email' is not one of ...``),
never quoting a URL or secret. ``load_channels`` gives the ``ChannelConfig`` of each entry.
"""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from monitor.config.secret import Secret
from monitor.config.validation import Name, SettingName, Text, choice, describe, message, problem_at
from monitor.errors import ConfigurationError
from monitor.model import ChangeKind, FindingChange, Severity

CHANNELS_SETTING = "KVMON_CHANNELS"
REPORT_URL_SETTING = "KVMON_REPORT_URL"  # the report link of channels that do not name their own


class ChannelKind(StrEnum):
    TEAMS = "teams"  # a Teams Workflows webhook ("When a Teams webhook request is received")
    SLACK = "slack"  # a Slack incoming webhook
    WEBHOOK = "webhook"  # any HTTPS endpoint taking kvmon's documented JSON schema


class Event(StrEnum):
    """What a channel can subscribe to; a reopened finding is told as opened."""

    OPENED = "opened"
    CHANGED = "changed"
    RESOLVED = "resolved"

    @classmethod
    def of(cls, kind: ChangeKind) -> Event:
        return _EVENT_OF_CHANGE[kind]


_EVENT_OF_CHANGE = {
    ChangeKind.OPENED: Event.OPENED,
    ChangeKind.REOPENED: Event.OPENED,
    ChangeKind.CHANGED: Event.CHANGED,
    ChangeKind.CONFIRMED: Event.CHANGED,  # an open finding proven by a probe
    ChangeKind.RESOLVED: Event.RESOLVED,
}

ALL_EVENTS = frozenset(Event)

_KEY_VAULT_REFERENCE = "@Microsoft.KeyVault("


class ChannelConfigError(ConfigurationError):
    """The channel settings are wrong; the message names the setting and the field."""


@dataclass(frozen=True)
class ChannelConfig:
    """One channel, resolved: its URL (and signing key) as ``Secret``, its filters."""

    name: str
    kind: ChannelKind
    url: Secret
    min_severity: Severity = Severity.INFO
    events: frozenset[Event] = ALL_EVENTS
    vault_pattern: str = "*"  # a glob over vault names, case-insensitive
    secret: Secret | None = None  # HMAC-SHA256 signing key (webhook channels)
    report_url: str | None = None  # may contain {scan_id}
    url_setting: str = field(default="", compare=False)  # where the URL came from, for messages

    def wants(self, change: FindingChange) -> bool:
        """Whether this channel is told about ``change``."""
        if Event.of(change.kind) not in self.events:
            return False
        severity = change.finding.severity
        if change.previous_severity is not None and change.previous_severity.rank > severity.rank:
            severity = change.previous_severity  # a downgrade from a level the channel follows
        if severity.rank < self.min_severity.rank:
            return False
        return fnmatch.fnmatchcase(change.finding.vault_name.lower(), self.vault_pattern.lower())

    def report_link(self, scan_id: str) -> str | None:
        if not self.report_url:
            return None
        return self.report_url.replace("{scan_id}", scan_id)

    @property
    def secrets(self) -> tuple[Secret, ...]:
        return (self.url,) if self.secret is None else (self.url, self.secret)


# -- value checks (each raises ValueError with the problem the operator sees) --------------------


def _http_url(value: str) -> str:
    parts = urlsplit(value.replace("{scan_id}", "scan"))
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ValueError(f"expected an http(s) URL, got {value!r}")
    return value


def _events(value: Any) -> Any:
    if value is None:
        return ALL_EVENTS
    if not isinstance(value, list) or not value:
        raise ValueError('expected a non-empty list such as ["opened", "resolved"]')
    events: set[Event] = set()
    for item in value:
        text = str(item).strip().lower()
        if text == "reopened":
            text = Event.OPENED.value
        try:
            events.add(Event(text))
        except ValueError:
            accepted = ", ".join(e.value for e in Event)
            raise ValueError(f"{item!r} is not one of {accepted}") from None
    return frozenset(events)


def _setting_value(environ: Mapping[str, str], setting: str) -> str:
    """The value of ``setting``, never quoted in a problem: it is the credential."""
    value = (environ.get(setting) or "").strip()
    if not value:
        raise ValueError(f"setting {setting} is not set or empty")
    if value.startswith(_KEY_VAULT_REFERENCE):
        raise ValueError(
            f"setting {setting} is an unresolved Key Vault reference "
            "(check that the app's identity may read the secret)"
        )
    return value


def _check_webhook_url(environ: Mapping[str, str], setting: str) -> None:
    value = _setting_value(environ, setting)
    parts = urlsplit(value)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ValueError(f"setting {setting} does not hold an http(s) URL")
    if parts.scheme == "http" and not _loopback(parts.hostname):
        raise ValueError(f"setting {setting} must be an https URL (plain http only on loopback)")


def _loopback(hostname: str) -> bool:
    return hostname == "localhost" or hostname == "::1" or hostname.startswith("127.")


# -- the setting ----------------------------------------------------------------------------------


class ChannelEntry(BaseModel):
    """One entry of ``KVMON_CHANNELS``; the settings it names must hold usable values."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    name: Name
    kind: Annotated[ChannelKind, choice(ChannelKind)]
    url_setting: SettingName
    secret_setting: SettingName | None = None
    min_severity: Annotated[Severity, BeforeValidator(Severity.parse)] = Severity.INFO
    events: Annotated[frozenset[Event], BeforeValidator(_events)] = ALL_EVENTS
    vault_pattern: Text | None = None  # a glob over vault names; None: every vault
    report_url: Annotated[Text, AfterValidator(_http_url)] | None = None

    @field_validator("url_setting", mode="after")
    @classmethod
    def _holds_a_url(cls, setting: str, info: ValidationInfo) -> str:
        _check_webhook_url(info.context or {}, setting)  # the context is the environment
        return setting

    @field_validator("secret_setting", mode="after")
    @classmethod
    def _holds_a_secret(cls, setting: str | None, info: ValidationInfo) -> str | None:
        if setting is None:
            return None
        kind = info.data.get("kind")
        if kind is not None and kind is not ChannelKind.WEBHOOK:
            raise ValueError(f"only webhook channels are signed ({kind.value} channels are not)")
        _setting_value(info.context or {}, setting)
        return setting

    def to_channel(self, environ: Mapping[str, str], *, default_report_url: str | None) -> ChannelConfig:
        """The channel, with its URL and signing key read from the settings validation checked."""
        return ChannelConfig(
            name=self.name,
            kind=self.kind,
            url=Secret(environ[self.url_setting]),
            min_severity=self.min_severity,
            events=self.events,
            vault_pattern=self.vault_pattern or "*",
            secret=Secret(environ[self.secret_setting]) if self.secret_setting else None,
            report_url=self.report_url or default_report_url,
            url_setting=self.url_setting,
        )


class ChannelEntries(BaseModel):
    """``KVMON_CHANNELS``: a JSON list of channels, each name used once."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    channels: list[ChannelEntry]

    @model_validator(mode="before")
    @classmethod
    def _a_list(cls, data: Any) -> Any:
        if not isinstance(data, list):
            raise ValueError("expected a JSON list of channels")
        return {"channels": data}

    @field_validator("channels", mode="after")
    @classmethod
    def _unique_names(cls, entries: list[ChannelEntry]) -> list[ChannelEntry]:
        seen: set[str] = set()
        for index, entry in enumerate(entries):
            if entry.name in seen:
                raise problem_at((index, "name"), f"{entry.name!r} is used twice", given=entry.name)
            seen.add(entry.name)
        return entries


def load_channels(environ: Mapping[str, str]) -> list[ChannelConfig]:
    """The channels configured in ``environ``; none when ``KVMON_CHANNELS`` is unset or empty.

    Raises ``ChannelConfigError`` naming the setting, the entry's field and the problem; never
    quoting a URL or secret."""
    text = (environ.get(CHANNELS_SETTING) or "").strip()
    if not text:
        return []
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ChannelConfigError(
            message(
                CHANNELS_SETTING, "", f"not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})"
            )
        ) from None
    try:
        entries = ChannelEntries.model_validate(data, context=environ).channels
    except ValidationError as exc:
        raise ChannelConfigError(describe(exc, where=CHANNELS_SETTING)) from None
    default_report_url = _default_report_url(environ) if entries else None
    return [entry.to_channel(environ, default_report_url=default_report_url) for entry in entries]


def _default_report_url(environ: Mapping[str, str]) -> str | None:
    value = (environ.get(REPORT_URL_SETTING) or "").strip()
    if not value:
        return None
    try:
        return _http_url(value)
    except ValueError as exc:
        raise ChannelConfigError(message(REPORT_URL_SETTING, "", str(exc))) from None
