"""kvmon's settings: one table, read from the environment (app settings in Azure).

``SETTINGS`` is the single source of truth: the README's settings table is checked against it by
a test, and ``Settings.from_environ`` reads every value with one clear error per bad value,
naming the setting.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass

from monitor.config.policy import Vantage
from monitor.netaddr import AddressSpace


class SettingsError(ValueError):
    """A setting has a value kvmon cannot use; the message names the setting."""


@dataclass(frozen=True)
class SettingDoc:
    name: str
    meaning: str
    default: str
    required: str  # "yes", "no", or when it is required


SETTINGS: tuple[SettingDoc, ...] = (
    SettingDoc(
        "KVMON_SUBSCRIPTIONS", "Subscription ids to monitor, comma-separated.", "(none)", "yes, for scans"
    ),
    SettingDoc(
        "KVMON_ARM_ENDPOINT",
        "Azure Resource Manager endpoint (sovereign clouds, lab).",
        "https://management.azure.com",
        "no",
    ),
    SettingDoc(
        "KVMON_INVENTORY_SOURCE",
        "`arm` (per subscription), `resource-graph` (one query for all), or `auto`.",
        "auto",
        "no",
    ),
    SettingDoc(
        "KVMON_RESOURCE_GRAPH_THRESHOLD",
        "With `auto`: use Resource Graph from this many subscriptions on.",
        "20",
        "no",
    ),
    SettingDoc(
        "KVMON_CLOUD",
        "`AzureCloud`, `AzureChinaCloud` or `AzureUSGovernment`: the Key Vault DNS suffix probes accept.",
        "AzureCloud",
        "no",
    ),
    SettingDoc(
        "KVMON_VAULT_DNS_SUFFIX",
        "An extra Key Vault DNS suffix probes accept (emulators only).",
        "(none)",
        "no",
    ),
    SettingDoc(
        "KVMON_BASELINE", "Path of the baseline YAML file.", "(none: configuration rules use defaults)", "no"
    ),
    SettingDoc(
        "KVMON_WORKSPACES",
        "Log Analytics workspace ids holding the vaults' audit logs, comma-separated.",
        "(none: no log evidence)",
        "no",
    ),
    SettingDoc(
        "KVMON_LOGS_ENDPOINT",
        "Log Analytics query endpoint (sovereign clouds, lab).",
        "https://api.loganalytics.io/v1",
        "no",
    ),
    SettingDoc("KVMON_LOGS_TABLE", "`auto`, `AZKVAuditLogs` or `AzureDiagnostics`.", "auto", "no"),
    SettingDoc(
        "KVMON_LOGS_FIRST_WINDOW",
        "How far back the first scan reads logs (e.g. `24h`); later scans read since the previous one.",
        "24h",
        "no",
    ),
    SettingDoc(
        "KVMON_REFUSED_THRESHOLD", "Firewall refusals per caller in the window that raise KV202.", "10", "no"
    ),
    SettingDoc(
        "KVMON_ROLE",
        "`monitor` (scans) or `probe` (only answers `/api/probe`, for an outside vantage point).",
        "monitor",
        "no",
    ),
    SettingDoc("KVMON_VANTAGE", "Name of this deployment's own vantage point.", "local", "no"),
    SettingDoc(
        "KVMON_VANTAGES",
        "JSON list of vantage points (name, inside, subnet_id, endpoint, key_setting, ...).",
        "(only this deployment)",
        "no",
    ),
    SettingDoc("KVMON_PROBE_PORT", "TCP port probes connect to.", "443", "no"),
    SettingDoc(
        "KVMON_PROBE_CONCURRENCY", "Vaults probed at once per vantage point (per process).", "32", "no"
    ),
    SettingDoc(
        "KVMON_PROBE_PROCESSES",
        "Processes that share a big probe run: this one and N-1 `probes.worker` processes (at least 250 vaults each); for the CLI on a "
        "host with more than one CPU. The Functions app scales out per subscription instead.",
        "1",
        "no",
    ),
    SettingDoc("KVMON_PROBE_TIMEOUT", "Timeout of each probe step, seconds.", "5", "no"),
    SettingDoc(
        "KVMON_PRIVATE_RANGES",
        "Extra private address ranges (VNets outside RFC 1918), comma-separated CIDRs.",
        "(none)",
        "no",
    ),
    SettingDoc(
        "KVMON_CA_BUNDLE",
        "PEM file of CAs to trust instead of the system's (lab, proxies).",
        "(system)",
        "no",
    ),
    SettingDoc(
        "KVMON_SCAN_SCHEDULE", "NCRONTAB schedule of the scheduled scan (six fields).", "0 */15 * * * *", "no"
    ),
    SettingDoc(
        "KVMON_SCAN_INTERVAL",
        "The schedule's interval, for judging stale probe results (KV106).",
        "15m",
        "no",
    ),
    SettingDoc("KVMON_SCAN_QUEUE", "Storage queue the scheduled scan fans out to.", "kvmon-scan-jobs", "no"),
    SettingDoc(
        "KVMON_STORAGE",
        "Storage connection string for findings (Table storage).",
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
        "KVMON_SQLITE_PATH", "SQLite file used when no storage is configured.", "~/.kvmon/kvmon.db", "no"
    ),
    SettingDoc(
        "AzureWebJobsStorage",
        "The Functions host's storage; also kvmon's store and queue when KVMON_STORAGE is unset.",
        "(set by the platform)",
        "in Azure",
    ),
    SettingDoc(
        "KVMON_CHANNELS",
        "JSON list of notification channels (name, kind, url_setting, filters).",
        "(none: no notifications)",
        "no",
    ),
    SettingDoc("KVMON_REPORT_URL", "Link to the HTML report put in notifications.", "(none)", "no"),
    SettingDoc(
        "AZURE_CLIENT_ID",
        "Client id of the user-assigned managed identity (DefaultAzureCredential reads it).",
        "(system-assigned)",
        "in Azure",
    ),
)

CLOUD_SUFFIXES = {
    "azurecloud": "vault.azure.net",
    "azurechinacloud": "vault.azure.cn",
    "azureusgovernment": "vault.usgovcloudapi.net",
}

_DURATION = re.compile(r"^\s*(\d+)\s*([smhd])\s*$", re.IGNORECASE)
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def parse_duration(text: str, *, name: str = "duration") -> dt.timedelta:
    """``30m``, ``24h``, ``7d``, ``90s``; SettingsError naming ``name`` otherwise."""
    match = _DURATION.match(text or "")
    if not match:
        raise SettingsError(
            f"{name}: {text!r} is not a duration; use a number and a unit, e.g. 30m, 24h or 7d"
        )
    amount, unit = int(match.group(1)), match.group(2).lower()
    return dt.timedelta(**{_UNITS[unit]: amount})


def _list(value: str | None) -> tuple[str, ...]:
    return tuple(item.strip() for item in (value or "").split(",") if item.strip())


def _int(environ: Mapping[str, str], name: str, default: int, *, minimum: int = 1) -> int:
    raw = environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name}: {raw!r} is not a whole number") from None
    if value < minimum:
        raise SettingsError(f"{name}: must be at least {minimum}, got {value}")
    return value


def _choice(environ: Mapping[str, str], name: str, default: str, choices: tuple[str, ...]) -> str:
    raw = (environ.get(name) or default).strip()
    for choice in choices:
        if raw.lower() == choice.lower():
            return choice
    raise SettingsError(f"{name}: {raw!r} is not one of {', '.join(choices)}")


@dataclass(frozen=True)
class Settings:
    subscriptions: tuple[str, ...] = ()
    arm_endpoint: str = "https://management.azure.com"
    inventory_source: str = "auto"
    resource_graph_threshold: int = 20
    vault_suffixes: tuple[str, ...] = ("vault.azure.net",)
    baseline_path: str | None = None
    workspaces: tuple[str, ...] = ()
    logs_endpoint: str = "https://api.loganalytics.io/v1"
    logs_table: str = "auto"
    logs_first_window: dt.timedelta = dt.timedelta(hours=24)
    role: str = "monitor"
    vantage: str = "local"
    vantages: tuple[Vantage, ...] = ()
    probe_port: int = 443
    probe_concurrency: int = 32
    probe_processes: int = 1
    probe_timeout_s: float = 5.0
    private_ranges: tuple[str, ...] = ()
    ca_bundle: str | None = None
    scan_schedule: str = "0 */15 * * * *"
    scan_interval: dt.timedelta = dt.timedelta(minutes=15)
    scan_queue: str = "kvmon-scan-jobs"
    report_url: str | None = None

    @property
    def address_space(self) -> AddressSpace:
        return AddressSpace.with_extra(self.private_ranges)

    @property
    def connection_verify(self) -> str | bool:
        return self.ca_bundle or True

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> Settings:
        cloud = _choice(
            environ, "KVMON_CLOUD", "AzureCloud", ("AzureCloud", "AzureChinaCloud", "AzureUSGovernment")
        )
        suffixes = [CLOUD_SUFFIXES[cloud.lower()]]
        extra_suffix = (environ.get("KVMON_VAULT_DNS_SUFFIX") or "").strip().strip(".").lower()
        if extra_suffix:
            suffixes.append(extra_suffix)
        private_ranges = _list(environ.get("KVMON_PRIVATE_RANGES"))
        try:
            AddressSpace.with_extra(private_ranges)
        except ValueError as exc:
            raise SettingsError(f"KVMON_PRIVATE_RANGES: {exc}") from None
        interval = parse_duration(environ.get("KVMON_SCAN_INTERVAL") or "15m", name="KVMON_SCAN_INTERVAL")
        first_window = parse_duration(
            environ.get("KVMON_LOGS_FIRST_WINDOW") or "24h", name="KVMON_LOGS_FIRST_WINDOW"
        )
        timeout_raw = environ.get("KVMON_PROBE_TIMEOUT") or "5"
        try:
            probe_timeout = float(timeout_raw)
        except ValueError:
            raise SettingsError(f"KVMON_PROBE_TIMEOUT: {timeout_raw!r} is not a number of seconds") from None
        if not 0 < probe_timeout <= 120:
            raise SettingsError(
                f"KVMON_PROBE_TIMEOUT: must be between 0 and 120 seconds, got {probe_timeout}"
            )
        return cls(
            subscriptions=_list(environ.get("KVMON_SUBSCRIPTIONS")),
            arm_endpoint=(environ.get("KVMON_ARM_ENDPOINT") or cls.arm_endpoint).rstrip("/"),
            inventory_source=_choice(
                environ, "KVMON_INVENTORY_SOURCE", "auto", ("auto", "arm", "resource-graph")
            ),
            resource_graph_threshold=_int(environ, "KVMON_RESOURCE_GRAPH_THRESHOLD", 20),
            vault_suffixes=tuple(suffixes),
            baseline_path=(environ.get("KVMON_BASELINE") or None),
            workspaces=_list(environ.get("KVMON_WORKSPACES")),
            logs_endpoint=(environ.get("KVMON_LOGS_ENDPOINT") or cls.logs_endpoint).rstrip("/"),
            logs_table=_choice(
                environ, "KVMON_LOGS_TABLE", "auto", ("auto", "AZKVAuditLogs", "AzureDiagnostics")
            ),
            logs_first_window=first_window,
            role=_choice(environ, "KVMON_ROLE", "monitor", ("monitor", "probe")),
            vantage=(environ.get("KVMON_VANTAGE") or "local").strip(),
            vantages=_vantages(environ.get("KVMON_VANTAGES")),
            probe_port=_int(environ, "KVMON_PROBE_PORT", 443),
            probe_concurrency=_int(environ, "KVMON_PROBE_CONCURRENCY", 32),
            probe_processes=_int(environ, "KVMON_PROBE_PROCESSES", 1),
            probe_timeout_s=probe_timeout,
            private_ranges=private_ranges,
            ca_bundle=(environ.get("KVMON_CA_BUNDLE") or None),
            scan_schedule=(environ.get("KVMON_SCAN_SCHEDULE") or cls.scan_schedule),
            scan_interval=interval,
            scan_queue=(environ.get("KVMON_SCAN_QUEUE") or cls.scan_queue),
            report_url=(environ.get("KVMON_REPORT_URL") or None),
        )


def _vantages(raw: str | None) -> tuple[Vantage, ...]:
    if not raw or not raw.strip():
        return ()
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise SettingsError(
            f"KVMON_VANTAGES: not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
        ) from None
    from monitor.config.vantages import parse_vantages

    try:
        return tuple(parse_vantages(data))
    except ValueError as exc:
        raise SettingsError(f"KVMON_VANTAGES: {exc}") from None
