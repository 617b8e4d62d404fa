"""The monitor role's functions: the scheduled scan, its queue workers, the Event Grid handler,
and the HTTP functions over the scan and the store (check, findings, report). Free of the Functions SDK so they read
(and test) plainly.

``function_app.py`` parses each trigger and calls one of these, and imports this module only in
the monitor role (``probe_functions`` has what every deployment answers). They call the same
``monitor``/``probes`` functions the CLI calls and return an ``Answer`` for HTTP. Settings are
read from the environment on each call (the platform may change app settings between calls); the
adapters built from them are kept for the process while they stay the same (``SharedRuntime``).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fnmatch
import json
import logging
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from azure.core.exceptions import AzureError

from monitor.app.answers import Answer, answers_errors, error_answer, json_answer
from monitor.app.deployment import credential
from monitor.app.events import HandledEvents, handle_delivery
from monitor.app.runtime import SharedRuntime
from monitor.app.scan import ScanRequest, run_scan
from monitor.azure_errors import describe_exception
from monitor.config.channels import ChannelConfigError, load_channels
from monitor.config.secret import Secret
from monitor.config.settings import Role, Settings, SettingsError
from monitor.model import ErrorSource, FindingStatus, ScanError, ScanTrigger, VaultChange
from monitor.outputs import formats
from monitor.outputs.notify.redact import redact
from monitor.outputs.report import render_html
from monitor.sources.arm import vault_id_parts
from monitor.sources.events import EventPayloadError, parse_payload
from monitor.store import ScanRun, Store, StoreUnavailable, store_from_environment
from probes.scope import OutOfScope, ProbeScope
from probes.wire import result_to_json

log = logging.getLogger("kvmon.functions")

# The adapters of this worker process's invocations (see SharedRuntime).
_RUNTIME = SharedRuntime()
_SUBSCRIPTION = re.compile(r"[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}")
_STATUSES = ("open", "resolved", "suppressed", "all")


def _store() -> Store:
    return store_from_environment(os.environ, credential=credential())


def without_secrets(text: str) -> str:
    """``text`` with the values of the settings that hold secrets hidden: the remote vantage
    points' function keys and the channels' webhook URLs and signing secrets. Those that cannot
    be read are left out: their error names the setting, never its value."""
    secrets: list[Secret] = []
    with contextlib.suppress(SettingsError):
        keys = (v.key_setting for v in Settings.from_environ(os.environ).vantages if v.key_setting)
        secrets.extend(Secret(os.environ[name]) for name in keys if os.environ.get(name, "").strip())
    with contextlib.suppress(ChannelConfigError):
        secrets.extend(secret for channel in load_channels(os.environ) for secret in channel.secrets)
    return redact(text, secrets)


_http_handler = answers_errors(redact=without_secrets)


def _monitor_only(settings: Settings) -> Answer | None:
    if settings.role is Role.PROBE:
        return error_answer(404, "NotAMonitor", "this deployment is a probe vantage point (KVMON_ROLE=probe)")
    return None


# -- the scheduled scan and its fan-out -----------------------------------------------------------


def scheduled_scan(*, past_due: bool = False, now: dt.datetime | None = None) -> int:
    """Enqueue one scan job per subscription; the queue's workers scan them in parallel.
    Returns how many jobs were enqueued."""
    settings = Settings.from_environ(os.environ)
    if settings.role is Role.PROBE:
        return 0
    if past_due:
        log.warning("the scheduled scan is running late (past due)")
    if not settings.subscriptions:
        log.error("KVMON_SUBSCRIPTIONS is empty: nothing to scan")
        return 0
    from monitor.app.queue import send_scan_job

    moment = now or dt.datetime.now(dt.UTC)
    scheduled_at = moment.isoformat()
    for subscription in settings.subscriptions:
        job = json.dumps({"subscription": subscription, "scheduled_at": scheduled_at})
        send_scan_job(os.environ, settings.scan_queue, job, credential=credential)
    log.info("enqueued %d scan job(s) on %s", len(settings.subscriptions), settings.scan_queue)
    # Housekeeping: the record of processed events only has to outlive Event Grid's retries. A store
    # that is down now is the scan jobs' to report; the next tick purges.
    try:
        purged = _store().purge_processed_events(now=moment)
    except StoreUnavailable as exc:
        log.warning("processed events not purged: %s", exc)
    else:
        log.info("forgot %d processed event(s) past their expiry", purged)
    return len(settings.subscriptions)


@dataclass(frozen=True)
class ScanJob:
    """One message of the scan-job queue: a subscription to scan, or (``vault_id``) the probe
    follow-up of one vault an event changed."""

    subscription: str
    vault_id: str | None = None

    def message(self) -> str:
        body = {"subscription": self.subscription}
        if self.vault_id is not None:
            body["vault_id"] = self.vault_id
        return json.dumps(body)


def _scan_job(body: bytes) -> ScanJob:
    try:
        data = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ValueError("the message is not JSON") from None
    subscription = data.get("subscription") if isinstance(data, dict) else None
    if not isinstance(subscription, str) or not _SUBSCRIPTION.fullmatch(subscription):
        raise ValueError('the message has no valid "subscription" id')
    vault_id = data.get("vault_id")
    if vault_id is None:
        return ScanJob(subscription=subscription)
    if not isinstance(vault_id, str) or vault_id_parts(vault_id)[0] != subscription.lower():
        raise ValueError('"vault_id" is not the id of a vault in the job\'s subscription')
    return ScanJob(subscription=subscription, vault_id=vault_id)


def scan_worker(body: bytes, *, dequeue_count: int = 1) -> None:
    """Scan one subscription, or probe one vault an event changed (its verdict, told as a
    follow-up when it opens or resolves a probe finding). A store that is down raises, so the
    platform retries the message (and after host.json's maxDequeueCount moves it to the poison
    queue)."""
    settings = Settings.from_environ(os.environ)
    try:
        job = _scan_job(body)
    except ValueError as exc:
        # Retrying cannot fix a malformed job: record it and let the message go.
        _record_job_error(scope="queue", message=f"malformed scan job dropped: {exc}")
        return
    subscription = job.subscription
    if subscription.lower() not in {s.lower() for s in settings.subscriptions}:
        _record_job_error(
            scope=subscription, message="scan job for a subscription outside KVMON_SUBSCRIPTIONS dropped"
        )
        return
    scan_runtime = _RUNTIME.get(settings, environ=os.environ, credential=credential())
    # A follow-up reads the vault again (one GET) with the probes: the posture it judges them
    # against is the current one, whatever happened since the event.
    request = ScanRequest(
        subscriptions=(subscription,),
        vault_id=job.vault_id,
        logs=job.vault_id is None,
        trigger=ScanTrigger.QUEUE,
    )
    outcome = run_scan(request, scan_runtime)
    log.info(
        "scanned %s (attempt %d): %d vaults, %d findings, %d changes, %d errors",
        job.vault_id or f"subscription {subscription}",
        dequeue_count,
        len(outcome.report.postures),
        len(outcome.report.findings),
        len(outcome.report.changes),
        len(outcome.report.errors),
    )


def poison_scan_job(body: bytes, *, message_id: str) -> None:
    """A job that failed every attempt: a recorded scan error, never a silent loss."""
    try:
        scope = _scan_job(body).subscription
    except ValueError:
        scope = "queue"
    _record_job_error(
        scope=scope,
        message=f"scan job {message_id} failed on every attempt and was moved to the poison queue",
    )


def _record_job_error(
    *,
    scope: str,
    message: str,
    source: ErrorSource = ErrorSource.QUEUE,
    trigger: ScanTrigger = ScanTrigger.QUEUE,
) -> None:
    log.error("%s: %s", scope, message)
    now = dt.datetime.now(dt.UTC)
    _store().record_scan(
        ScanRun(
            scan_id=f"{now.strftime('%Y%m%dT%H%M%SZ')}-{trigger.value}-error",
            scope=(scope,),
            started_at=now,
            finished_at=now,
            counts={"errors": 1},
            errors=(ScanError(source=source, scope=scope, message=message),),
            trigger=trigger,
        )
    )


# -- Event Grid -----------------------------------------------------------------------------------


def vault_changed(event: Any, *, source: str = "event") -> HandledEvents:
    """One Event Grid event as the Functions worker decoded it (``func.EventGridEvent`` or
    ``func.CloudEvent``), or as the bytes of a Storage queue message Event Grid wrote: read, judged
    and told at once without probes, the probes queued as a follow-up. Raises ``EventRetry`` for a transient ARM fault and ``StoreUnavailable`` when the
    store is down, so Event Grid delivers the event again; everything else is logged and answered
    (see ``monitor.app.events`` for why)."""
    settings = Settings.from_environ(os.environ)
    if settings.role is Role.PROBE:
        return HandledEvents()
    handled = handle_delivery(
        event,
        source=source,
        subscriptions=settings.subscriptions,
        runtime=lambda: _RUNTIME.get(settings, environ=os.environ, credential=credential()),
        follow_up=_probe_follow_up(settings),
    )
    handled.raise_for_retry()
    return handled


def poison_vault_change(body: bytes, *, message_id: str) -> None:
    """An event from Event Grid's Storage queue destination that failed every attempt: a recorded
    scan error naming the event and its vault, never a silent loss; the timer's next scan reads
    the vault (and reports a change no event announced as KV303)."""
    settings = Settings.from_environ(os.environ)
    try:
        changes = parse_payload(body, source="poison message", subscriptions=settings.subscriptions).changes
    except EventPayloadError:
        changes = ()
    named = ", ".join(f"event {c.event_id} for {c.vault_id}" for c in changes) or f"message {message_id}"
    _record_job_error(
        scope=changes[0].vault_id if changes else "event queue",
        message=f"{named} failed on every attempt and was moved to the poison queue; "
        "the next scheduled scan reads the vault",
        source=ErrorSource.EVENT,
        trigger=ScanTrigger.EVENT,
    )


def _probe_follow_up(settings: Settings) -> Callable[[VaultChange], None]:
    """Queues the probes of a vault an event changed on the scan-job queue, for ``scan_worker``."""
    from monitor.app.queue import send_scan_job

    def enqueue(change: VaultChange) -> None:
        job = ScanJob(subscription=change.subscription_id, vault_id=change.vault_id)
        try:
            send_scan_job(os.environ, settings.scan_queue, job.message(), credential=credential)
        except (AzureError, ValueError) as exc:  # the queue's service, or no storage configured
            # The event was judged and told; the timer's next scan probes the vault.
            log.warning("probes of %s not queued: %s", change.vault_id, describe_exception(exc))

    return enqueue


# -- HTTP -----------------------------------------------------------------------------------------


@_http_handler
def check_vault(name: str, params: Mapping[str, str]) -> Answer:
    """GET /api/vaults/{name}/check[?subscription=ID][&notify=true]"""
    settings = Settings.from_environ(os.environ)
    if (refused := _monitor_only(settings)) is not None:
        return refused
    if "." in name or "/" in name:
        return error_answer(400, "InvalidVaultName", "give the vault's name only, not a host name or path")
    try:
        ProbeScope(suffixes=settings.vault_suffixes).hostname_for(name)
    except OutOfScope as exc:
        return error_answer(400, "InvalidVaultName", str(exc))
    unknown = sorted(set(params) - {"subscription", "notify", "code"})
    if unknown:
        return error_answer(400, "InvalidParameter", f"unknown query parameter(s): {', '.join(unknown)}")
    notify = params.get("notify", "false").lower()
    if notify not in ("true", "false"):
        return error_answer(400, "InvalidParameter", "notify: use true or false")
    scope = settings.subscriptions
    if "subscription" in params:
        wanted = params["subscription"].strip().lower()
        scope = tuple(s for s in settings.subscriptions if s.lower() == wanted)
        if not scope:
            return error_answer(
                400, "OutOfScope", "subscription: not one of the subscriptions kvmon monitors"
            )
    if not scope:
        raise SettingsError("KVMON_SUBSCRIPTIONS is empty: no subscription to look the vault up in")
    scan_runtime = _RUNTIME.get(settings, environ=os.environ, credential=credential())
    request = ScanRequest(
        subscriptions=scope, vault_name=name, notify=notify == "true", trigger=ScanTrigger.HTTP
    )
    outcome = run_scan(request, scan_runtime)
    report = outcome.report
    if not report.postures:
        if report.errors:
            return json_answer(
                502,
                {
                    "error": {"code": "InventoryFailed", "message": "the vault could not be looked up"},
                    "errors": [formats.error_json(e) for e in report.errors],
                },
            )
        return error_answer(404, "VaultNotFound", f"no vault named {name!r} in the monitored subscriptions")
    posture = report.postures[0]
    return json_answer(
        200,
        {
            "scan_id": report.scan_id,
            "vault": posture,
            "probes": {r.vantage: result_to_json(r) for r in report.probes},
            "evidence": report.evidence,
            "perimeter_evidence": report.perimeter_evidence,
            "findings": [formats.finding_json(f) for f in formats.ordered(report.findings)],
            "changes": [formats.change_json(c) for c in report.changes],
            "errors": [formats.error_json(e) for e in report.errors],
        },
    )


@_http_handler
def findings(params: Mapping[str, str]) -> Answer:
    """GET /api/findings[?status=open|resolved|suppressed|all][&vault=PATTERN]"""
    settings = Settings.from_environ(os.environ)
    if (refused := _monitor_only(settings)) is not None:
        return refused
    status = params.get("status", "open").lower()
    if status not in _STATUSES:
        return error_answer(400, "InvalidParameter", f"status: use one of {', '.join(_STATUSES)}")
    pattern = params.get("vault", "*").lower()
    if len(pattern) > 256:
        return error_answer(400, "InvalidParameter", "vault: a pattern of at most 256 characters")
    records = _store().load_findings(status=None if status == "all" else FindingStatus(status))
    chosen = [r for r in records.values() if fnmatch.fnmatchcase(r.finding.vault_name.lower(), pattern)]
    chosen.sort(key=lambda r: (-r.finding.severity.rank, r.finding.vault_name, r.finding.rule_id))
    return json_answer(
        200,
        {
            "findings": [
                {
                    **formats.finding_json(r.finding),
                    "status": r.status,
                    "first_seen": r.first_seen,
                    "last_seen": r.last_seen,
                    "last_changed": r.last_changed,
                    "occurrences": r.occurrences,
                    "resolved_at": r.resolved_at,
                }
                for r in chosen
            ]
        },
    )


@_http_handler
def report(params: Mapping[str, str]) -> Answer:
    """GET /api/report[?scan=ID]: the HTML report of the latest (or a given) scan."""
    settings = Settings.from_environ(os.environ)
    if (refused := _monitor_only(settings)) is not None:
        return refused
    scan_id = params.get("scan")
    if scan_id is not None and not re.fullmatch(r"[0-9A-Za-z-]{1,64}", scan_id):
        return error_answer(400, "InvalidParameter", "scan: not a scan id")
    document = _store().load_report(scan_id)
    if document is None:
        return error_answer(
            404, "ReportNotFound", "no report stored" + (f" for scan {scan_id}" if scan_id else "")
        )
    return Answer(status=200, body=render_html(document), mimetype="text/html")
