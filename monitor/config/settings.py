"""kvmon's settings: one pydantic model, read from the environment (app settings in Azure).

Each field of ``Settings`` is one setting, written once: its name (the field's alias), meaning,
default and constraint. ``SETTINGS`` is the table drawn from it (plus the settings other parts of
kvmon read: the store's, the channels'), which a test checks the README against.
``Settings.from_environ`` refuses an unusable value up front with one line, ``SETTING: problem``
(``KVMON_VANTAGES: vantages[0].inside: ...`` for a field inside a JSON setting).
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainValidator,
    ValidationError,
)

from monitor.config.policy import Vantage
from monitor.config.validation import choice, describe, message
from monitor.config.vantages import VantagePoints
from monitor.errors import ConfigurationError
from monitor.netaddr import AddressSpace


class SettingsError(ConfigurationError):
    """A setting has a value kvmon cannot use; the message names the setting."""


class InventoryChoice(StrEnum):
    """Where a scan lists vaults (``KVMON_INVENTORY_SOURCE``); the protocol an inventory follows is
    ``monitor.sources.inventory.InventorySource``."""

    AUTO = "auto"
    ARM = "arm"
    RESOURCE_GRAPH = "resource-graph"


class Cloud(StrEnum):
    AZURE_CLOUD = "AzureCloud"
    AZURE_CHINA_CLOUD = "AzureChinaCloud"
    AZURE_US_GOVERNMENT = "AzureUSGovernment"

    @property
    def vault_suffix(self) -> str:
        return _VAULT_SUFFIXES[self]


_VAULT_SUFFIXES = {
    Cloud.AZURE_CLOUD: "vault.azure.net",
    Cloud.AZURE_CHINA_CLOUD: "vault.azure.cn",
    Cloud.AZURE_US_GOVERNMENT: "vault.usgovcloudapi.net",
}


class LogsTable(StrEnum):
    AUTO = "auto"
    AZKV_AUDIT_LOGS = "AZKVAuditLogs"
    AZURE_DIAGNOSTICS = "AzureDiagnostics"


class Role(StrEnum):
    MONITOR = "monitor"  # scans
    PROBE = "probe"  # only answers /api/probe, for an outside vantage point


@dataclass(frozen=True)
class SettingDoc:
    """One row of the README's settings table."""

    name: str
    meaning: str
    default: str
    required: str  # "yes", "no", or when it is required


# -- value checks (each raises ValueError with the problem the operator sees) --------------------

_DURATION = re.compile(r"^\s*(\d+)\s*([smhd])\s*$", re.IGNORECASE)
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def _duration(value: Any) -> Any:
    if not isinstance(value, str):
        return value  # a timedelta given in code
    match = _DURATION.match(value)
    if not match:
        raise ValueError(f"{value!r} is not a duration; use a number and a unit, e.g. 30m, 24h or 7d")
    amount, unit = int(match.group(1)), match.group(2).lower()
    return dt.timedelta(**{_UNITS[unit]: amount})


def parse_duration(text: str, *, name: str = "duration") -> dt.timedelta:
    """``30m``, ``24h``, ``7d``, ``90s``; SettingsError naming ``name`` otherwise."""
    try:
        duration: dt.timedelta = _duration(text or "")
    except ValueError as exc:
        raise SettingsError(message(name, "", str(exc))) from None
    return duration


def _shown_duration(value: dt.timedelta) -> str:
    seconds = int(value.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0 and (unit != "d" or seconds > size):  # a day reads as 24h
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _between(low: dt.timedelta, high: dt.timedelta) -> Any:
    def check(value: dt.timedelta) -> dt.timedelta:
        if not low <= value <= high:
            raise ValueError(f"must be between {_shown_duration(low)} and {_shown_duration(high)}")
        return value

    return AfterValidator(check)


def _comma_list(value: Any) -> Any:
    if isinstance(value, str):
        return tuple(item.strip() for item in value.split(",") if item.strip())
    return value


def _cidrs(value: tuple[str, ...]) -> tuple[str, ...]:
    AddressSpace.with_extra(value)  # its ValueError names the bad range
    return value


def _dns_suffix(value: str) -> str:
    return value.strip().strip(".").lower()


def _endpoint(value: str) -> str:
    return value.rstrip("/")


def _schedule(value: str) -> str:
    if len(value.split()) != 6:
        raise ValueError(f"{value!r} is not an NCRONTAB schedule of six fields (e.g. 0 */15 * * * *)")
    return value


def _vantages(value: Any) -> tuple[Vantage, ...]:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise ValueError(f"not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
    # A ValidationError raised here is merged into the settings' own, below KVMON_VANTAGES.
    return tuple(VantagePoints.model_validate(value).to_vantages())


CommaList = Annotated[tuple[str, ...], BeforeValidator(_comma_list)]
Duration = Annotated[dt.timedelta, BeforeValidator(_duration)]
Vantages = Annotated[tuple[Vantage, ...], PlainValidator(_vantages)]


def setting(
    name: str, meaning: str, *, default: Any, shown: str | None = None, required: str = "no", **bounds: Any
) -> Any:
    """A field that is the setting ``name``: its meaning, its default (``shown`` in the README
    when the value itself does not say it), when it is required, and its bounds (ge, le, ...)."""
    return Field(
        default,
        alias=name,
        description=meaning,
        json_schema_extra={"shown": shown, "required": required},
        **bounds,
    )


class Settings(BaseModel):
    """Every setting kvmon itself reads, validated once."""

    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True, str_strip_whitespace=True)

    subscriptions: CommaList = setting(
        "KVMON_SUBSCRIPTIONS",
        "Subscription ids to monitor, comma-separated.",
        default=(),
        shown="(none)",
        required="yes, for scans",
    )
    arm_endpoint: Annotated[str, AfterValidator(_endpoint)] = setting(
        "KVMON_ARM_ENDPOINT",
        "Azure Resource Manager endpoint (sovereign clouds, lab).",
        default="https://management.azure.com",
    )
    arm_timeout_s: float = setting(
        "KVMON_ARM_TIMEOUT",
        "Connect and read timeout of each ARM request (listings, Resource Graph, its change history), "
        "seconds. A request that hangs on every try ends after (KVMON_ARM_RETRIES + 1) × 2 × this, plus "
        "the backoff between tries (none, then 1.6 s, 3.2 s, ...).",
        default=10.0,
        gt=0,
        le=300,
    )
    arm_retries: int = setting(
        "KVMON_ARM_RETRIES",
        "Retries of each ARM request (throttling, server errors, timeouts), after the first try.",
        default=2,
        ge=0,
        le=10,
    )
    token_timeout_s: float = setting(
        "KVMON_TOKEN_TIMEOUT",
        "Connect and read timeout of each token request (the managed identity endpoint, or Microsoft "
        "Entra ID for a service principal), seconds. A token request that hangs on every try ends after "
        "3 × 2 × this + 1.6 s (two retries); a service principal's first token takes two such requests.",
        default=5.0,
        gt=0,
        le=120,
    )
    inventory_source: Annotated[InventoryChoice, choice(InventoryChoice)] = setting(
        "KVMON_INVENTORY_SOURCE",
        "`arm` (per subscription), `resource-graph` (one query for all), or `auto`.",
        default=InventoryChoice.AUTO,
    )
    resource_graph_threshold: int = setting(
        "KVMON_RESOURCE_GRAPH_THRESHOLD",
        "With `auto`: use Resource Graph from this many subscriptions on.",
        default=20,
        ge=1,
        le=100_000,
    )
    perimeter_subscriptions: CommaList = setting(
        "KVMON_PERIMETER_SUBSCRIPTIONS",
        "Subscriptions holding Network Security Perimeters for the monitored vaults (e.g. a central "
        "network subscription), comma-separated: read beside the scanned subscriptions' own perimeters; "
        "kvmon's identity needs Reader there.",
        default=(),
        shown="(none: the scanned subscriptions' perimeters)",
    )
    cloud: Annotated[Cloud, choice(Cloud)] = setting(
        "KVMON_CLOUD",
        "`AzureCloud`, `AzureChinaCloud` or `AzureUSGovernment`: the Key Vault DNS suffix probes accept.",
        default=Cloud.AZURE_CLOUD,
    )
    vault_dns_suffix: Annotated[str, AfterValidator(_dns_suffix)] | None = setting(
        "KVMON_VAULT_DNS_SUFFIX",
        "An extra Key Vault DNS suffix probes accept (emulators only).",
        default=None,
        shown="(none)",
    )
    baseline_path: str | None = setting(
        "KVMON_BASELINE",
        "Path of the baseline YAML file.",
        default=None,
        shown="(none: configuration rules use defaults)",
    )
    workspaces: CommaList = setting(
        "KVMON_WORKSPACES",
        "Log Analytics workspace ids holding the vaults' audit logs, comma-separated.",
        default=(),
        shown="(none: no log evidence)",
    )
    perimeter_workspaces: CommaList = setting(
        "KVMON_NSP_WORKSPACES",
        "Log Analytics workspace ids holding the Network Security Perimeters' access logs (`NSPAccessLogs`, "
        "from a diagnostic setting on each perimeter), comma-separated; one query each per scan.",
        default=(),
        shown="(none: no perimeter log evidence)",
    )
    logs_endpoint: Annotated[str, AfterValidator(_endpoint)] = setting(
        "KVMON_LOGS_ENDPOINT",
        "Log Analytics query endpoint (sovereign clouds, lab).",
        default="https://api.loganalytics.io/v1",
    )
    logs_timeout_s: float = setting(
        "KVMON_LOGS_TIMEOUT",
        "How long kvmon waits for the answer to each Log Analytics query, seconds; the query's own time "
        "limit on the server is 10 s less (at least 1 s), so the service's error arrives first. A query is "
        "tried again only after a 500, 503 or 504, once: one that hangs on every try ends after 2 × (this + 10) s.",
        default=130.0,
        gt=0,
        le=610,
    )
    logs_table: Annotated[LogsTable, choice(LogsTable)] = setting(
        "KVMON_LOGS_TABLE", "`auto`, `AZKVAuditLogs` or `AzureDiagnostics`.", default=LogsTable.AUTO
    )
    logs_first_window: Annotated[Duration, _between(dt.timedelta(minutes=1), dt.timedelta(days=730))] = (
        setting(
            "KVMON_LOGS_FIRST_WINDOW",
            "How far back the first scan reads logs (e.g. `24h`); later scans read since the previous one.",
            default=dt.timedelta(hours=24),
        )
    )
    role: Annotated[Role, choice(Role)] = setting(
        "KVMON_ROLE",
        "`monitor` (scans) or `probe` (only answers `/api/probe`, for an outside vantage point).",
        default=Role.MONITOR,
    )
    vantage: str = setting(
        "KVMON_VANTAGE", "Name of this deployment's own vantage point.", default="local", min_length=1
    )
    vantages: Vantages = setting(
        "KVMON_VANTAGES",
        "JSON list of vantage points (name, inside, subnet_id, endpoint, key_setting, source_address, resolver, region).",
        default=(),
        shown="(only this deployment)",
    )
    probe_port: int = setting("KVMON_PROBE_PORT", "TCP port probes connect to.", default=443, ge=1, le=65535)
    probe_concurrency: int = setting(
        "KVMON_PROBE_CONCURRENCY",
        "Vaults probed at once per vantage point (per process).",
        default=32,
        ge=1,
        le=1024,
    )
    probe_processes: int = setting(
        "KVMON_PROBE_PROCESSES",
        "Processes that share a big probe run: this one and N-1 `probes.worker` processes (at least 250 vaults each); for the CLI on a "
        "host with more than one CPU. The Functions app scales out per subscription instead.",
        default=1,
        ge=1,
        le=64,
    )
    probe_timeout_s: float = setting(
        "KVMON_PROBE_TIMEOUT",
        "Timeout of each probe step (DNS, TCP connect, TLS handshake, each data-plane request), seconds; "
        "one vault's probe ends within 10 × this, plus its token.",
        default=5.0,
        gt=0,
        le=120,
    )
    remote_probe_timeout_s: float = setting(
        "KVMON_REMOTE_PROBE_TIMEOUT",
        "How long a remote vantage point (`endpoint` in KVMON_VANTAGES) may take to answer, seconds: it "
        "probes every vault it is sent before it answers. At most 230: Azure's front end ends an HTTP "
        "request to a function app after 230 s.",
        default=120.0,
        gt=0,
        le=230,
    )
    private_ranges: Annotated[CommaList, AfterValidator(_cidrs)] = setting(
        "KVMON_PRIVATE_RANGES",
        "Extra private address ranges (VNets outside RFC 1918), comma-separated CIDRs.",
        default=(),
        shown="(none)",
    )
    ca_bundle: str | None = setting(
        "KVMON_CA_BUNDLE",
        "PEM file of CAs to trust instead of the system's (lab, proxies).",
        default=None,
        shown="(system)",
    )
    scan_schedule: Annotated[str, AfterValidator(_schedule)] = setting(
        "KVMON_SCAN_SCHEDULE",
        "NCRONTAB schedule of the scheduled scan (six fields).",
        default="0 */15 * * * *",
    )
    scan_interval: Annotated[Duration, _between(dt.timedelta(minutes=1), dt.timedelta(days=7))] = setting(
        "KVMON_SCAN_INTERVAL",
        "The schedule's interval, for judging stale probe results (KV106).",
        default=dt.timedelta(minutes=15),
    )
    scan_deadline: Annotated[Duration, _between(dt.timedelta(seconds=1), dt.timedelta(hours=24))] = setting(
        "KVMON_SCAN_DEADLINE",
        "How long a scan may spend reading its sources (ARM, probes, Log Analytics, change history). "
        "A source unfinished when it passes is a scan error naming what was not read, and nothing "
        "resolves on it; the scan then judges, stores and notifies what it has (within the Functions "
        "host's 10 minutes: docs/reliability.md).",
        default=dt.timedelta(minutes=4),
    )
    scan_queue: str = setting(
        "KVMON_SCAN_QUEUE", "Storage queue the scheduled scan fans out to.", default="kvmon-scan-jobs"
    )
    event_feed: bool = setting(
        "KVMON_EVENT_FEED",
        "`true` when an Event Grid subscription delivers the vaults' ARM writes to `vault_changed`: a "
        "network change a scheduled scan finds first is then reported (KV303).",
        default=False,
        shown="false",
    )
    report_url: str | None = setting(
        "KVMON_REPORT_URL", "Link to the HTML report put in notifications.", default=None, shown="(none)"
    )

    @property
    def vault_suffixes(self) -> tuple[str, ...]:
        """The cloud's Key Vault DNS suffix, then the emulator's when one is set."""
        suffix = self.cloud.vault_suffix
        return (suffix, self.vault_dns_suffix) if self.vault_dns_suffix else (suffix,)

    @property
    def address_space(self) -> AddressSpace:
        return AddressSpace.with_extra(self.private_ranges)

    @property
    def connection_verify(self) -> str | bool:
        return self.ca_bundle or True

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> Settings:
        """The settings in ``environ``; a blank value means the default. ``SettingsError`` naming
        the setting, the field (in a JSON setting) and the problem."""
        for name, instead in RETIRED_SETTINGS.items():
            if environ.get(name, "").strip():
                raise SettingsError(message(name, "", f"is no longer read: {instead}"))
        given = {
            name: environ[name] for name in _FIELD_OF_SETTING if name in environ and environ[name].strip()
        }
        try:
            return cls.model_validate(given)
        except ValidationError as exc:
            error = exc.errors(include_url=False)[0]
            name = str(error["loc"][0])
            raise SettingsError(describe(exc, where=name, root=(name,))) from None


_FIELD_OF_SETTING = {str(field.alias): name for name, field in Settings.model_fields.items()}

# Settings kvmon once documented and never read: set, they are refused (ignoring them would let an
# operator believe they act), with where the value belongs now.
RETIRED_SETTINGS: Mapping[str, str] = {
    "KVMON_REFUSED_THRESHOLD": "KV202's threshold is the baseline's logs.refused_threshold",
}


def _row(field: Any) -> SettingDoc:
    extra = field.json_schema_extra
    default = field.default
    if extra["shown"] is not None:
        shown = extra["shown"]
    elif isinstance(default, dt.timedelta):
        shown = _shown_duration(default)
    elif isinstance(default, float) and default.is_integer():
        shown = str(int(default))
    else:
        shown = str(default)
    return SettingDoc(field.alias, field.description, shown, extra["required"])


# Settings read elsewhere: the store (``monitor.store``), the queue (``monitor.app.queue``), the
# channels (``monitor.config.channels``), the Functions host and the Azure identity library.
OTHER_SETTINGS: tuple[SettingDoc, ...] = (
    SettingDoc(
        "KVMON_EVENT_QUEUE",
        "Storage queue Event Grid writes vault changes to when it cannot push to the app "
        "(`vault_changed_queue` reads it; infra's `eventDelivery=queue`).",
        "kvmon-vault-events",
        "in Azure",
    ),
    SettingDoc(
        "KVMON_STORAGE",
        "Storage connection string for findings (Table storage) and report documents (Blob storage); never the queues, which stay on AzureWebJobsStorage where their triggers listen.",
        "falls back to AzureWebJobsStorage",
        "no",
    ),
    SettingDoc(
        "KVMON_STORAGE_ACCOUNT_URL",
        "Table endpoint used with the managed identity instead of a connection string.",
        "(none)",
        "no",
    ),
    SettingDoc(
        "KVMON_BLOB_ACCOUNT_URL",
        "Blob endpoint for whole report documents, used with the managed identity beside "
        "KVMON_STORAGE_ACCOUNT_URL (a connection string names its own).",
        "the blob endpoint of KVMON_STORAGE_ACCOUNT_URL's account (https://<account>.blob.<suffix>)",
        "no",
    ),
    SettingDoc(
        "KVMON_REPORT_CONTAINER",
        "Blob container of the findings' storage account that keeps each scan's report document "
        "whole (gzip-compressed JSON, one blob per scan); created when missing. A report that "
        "cannot be written fails the scan (ReportNotStored, exit 3); the reports before it stay.",
        "kvmon-reports",
        "no",
    ),
    SettingDoc(
        "KVMON_SQLITE_PATH", "SQLite file used when no storage is configured.", "~/.kvmon/kvmon.db", "no"
    ),
    SettingDoc(
        "AzureWebJobsStorage",
        "The Functions host's storage: the scan-job and event queues (always), and kvmon's store when KVMON_STORAGE is unset.",
        "(set by the platform)",
        "in Azure",
    ),
    SettingDoc(
        "KVMON_CHANNELS",
        "JSON list of notification channels (name, kind, url_setting, filters).",
        "(none: no notifications)",
        "no",
    ),
    SettingDoc(
        "AZURE_CLIENT_ID",
        "Client id of the user-assigned managed identity (DefaultAzureCredential reads it).",
        "(system-assigned)",
        "in Azure",
    ),
)

SETTINGS: tuple[SettingDoc, ...] = (
    *(_row(field) for field in Settings.model_fields.values()),
    *OTHER_SETTINGS,
)
