"""``make demo``: the walkthrough kvmon automates, end to end on one machine, with no Azure account.

``python -m lab.demo [--quick] [--report PATH] [--no-color]`` starts the emulated Azure of
``lab/`` (ARM, split-horizon DNS, the Key Vault data plane with its firewall, Log Analytics fed
by the vault's request log, Teams and Slack webhook sinks) and Azurite (so findings live in Table
storage, as in production), all on loopback, and runs kvmon's one scan path
(``monitor.app.scan.run_scan`` with the adapters ``monitor.app.runtime.build_runtime`` makes from
settings) through the walkthrough:

1. kv-se-demo has a Service Endpoint rule but defaultAction Allow: KV001/KV002 from its
   configuration, KV101 from the internet probe, KV201 from the logs; Teams and Slack are told.
2. The platform team's pipeline sets defaultAction Deny through ARM (the real SDK's
   ``vaults.update``): KV301 names who and when, the internet probe is refused with
   ForbiddenByFirewall, the Service Endpoint vantage arrives with its private address, and the
   findings resolve.
3. kv-pl-demo has a Private Endpoint but public network access still Enabled (KV008), and the
   spoke VNet's private DNS zone is not linked, so the spoke resolves the public address (KV103).
4. kvmon's Event Grid subscription is switched on. A second person (a user: display name, UPN,
   object id, and the ``ipaddr`` claim of the loopback address their requests come from)
   reopens kv-se-demo (defaultAction Allow) through ARM between two scheduled scans. The lab's
   ARM publishes the write; the lab's Event Grid delivers it twice (at least once) to an Event
   Grid triggered function, each delivery decoded by azure-functions' own converter
   (``lab.eventgrid.FunctionTarget``), which runs kvmon's event path as ``vault_changed`` does:
   ``monitor.app.events.handle_delivery`` (one GET, judged without probes, stored, told; the
   duplicate folded). Teams and Slack name the person and the
   address ARM saw within seconds, with no timer scan. The probe follow-up the handler queued is
   then run as the queue worker runs it (``scan_worker``'s one-vault request): the internet
   probe is admitted (KV101), and the message says so: the configuration findings it proves
   (KV001, KV002) are told as confirmed. The pipeline's Deny resolves the
   configuration findings by event, and its follow-up resolves KV101.
5. kv-nsp-demo is locked: publicNetworkAccess Disabled. A scheduled scan finds it closed (the
   internet probe is refused with ForbiddenByConnection). Then someone associates it, in Learning
   mode, with a Network Security Perimeter whose profile admits 0.0.0.0/0 (through ARM, the real
   azure-mgmt-network client's ``network_security_perimeter_associations.begin_create_or_update``).
   The vault's own document still says Disabled, and a configuration scanner reading it calls
   the vault closed; kvmon reads the association and the profile's rules, so its configuration
   verdict says open (KV001, KV014, KV015, KV301 naming the association), its internet probe
   is admitted (KV101), and the perimeter's access log (a diagnostic setting to the network team's
   workspace, ``KVMON_NSP_WORKSPACES``) shows that probe let in by the 0.0.0.0/0 rule (KV205).

The function of step 4 is the demo's own, not the app's ``vault_changed``: that one reads its
settings, credential and clock from the process (the environment, ``DefaultAzureCredential``,
the wall clock) and builds its own runtime, while the demo's kvmon runs on the demo clock (some
fifty minutes ahead of the wall clock by step 4, the store's records dated on it), the lab's
credential and dated probes. Its body is ``vault_changed``'s (parse, handle, fail the delivery
on a transient fault) with the demo's runtime; the app's own shell is tested end to end in
``tests/events_handler/functions``.

The scans of steps 1-3 are the timer's: each covers the whole subscription. Between scans the
demo moves one clock on by the scan interval instead of waiting for it; kvmon
(``ScanRuntime.clock``), the lab (``Estate.clock``: ARM's systemData, the vault's access log,
Log Analytics) and the probes' dates all read it. That keeps the logs window honest: a scan
reads the logs since the previous scan with five minutes of overlap, so the first scan after the
fix still sees step 1's public admissions (KV201 stays open) and the next one resolves it.

The lab stops on every way out: normally, on Ctrl-C, on SIGTERM and on failure.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import logging
import os
import re
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import FrameType
from typing import Any
from urllib.parse import urlsplit

import azure.functions as func
from azure.mgmt.keyvault import KeyVaultManagementClient
from azure.mgmt.keyvault.models import VaultPatchParameters, VaultPatchProperties
from azure.mgmt.network import NetworkManagementClient
from azure.mgmt.network.models import NspAssociation, NspAssociationProperties, SubResource
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from lab.azurite import AzuriteUnavailable
from lab.credential import LabCredential
from lab.estate import WALKTHROUGH_SUBSCRIPTION, WALKTHROUGH_WORKSPACE, walkthrough_estate
from lab.eventgrid import DeliveryAttempt, EventGridEmulator, FunctionTarget, PublishedEvent
from lab.loganalytics import NSP_TABLE
from lab.services import LabServices
from lab.sinks import Received
from lab.tls import lab_pki
from monitor.app.events import EventStatus, HandledEvents, handle_delivery
from monitor.app.runtime import build_runtime
from monitor.app.scan import ProbeRunner, ScanOutcome, ScanRequest, ScanRuntime, run_scan
from monitor.config.policy import Vantage
from monitor.config.settings import Settings
from monitor.judge.perimeter import effective_exposure
from monitor.model import (
    ChangeKind,
    Finding,
    LogEvidence,
    Outcome,
    PerimeterReading,
    ProbeResult,
    ScanTrigger,
    Severity,
    VaultChange,
)
from monitor.outputs.report import MET, build_report_document, render_html
from monitor.store import ScanRun

DEFAULT_REPORT = Path("demo-report.html")
SE_VAULT = "kv-se-demo"
PL_VAULT = "kv-pl-demo"
NSP_VAULT = "kv-nsp-demo"
# Step 5's perimeter: another team's, whose profile admits every address while they onboard.
PERIMETER_GROUP = "rg-network"
PERIMETER = "nsp-walkthrough"
PERIMETER_PROFILE = "defaultProfile"
PERIMETER_RULE = "allow-all-inbound"
PERIMETER_OWNER_OBJECT_ID = "1f4a6c80-0000-4000-8000-0000000005e7"
# The perimeter's diagnostic setting sends its access log (NSPAccessLogs) to the network team's workspace.
PERIMETER_WORKSPACE = "66666666-7777-8888-9999-000000000a5e"
ASSOCIATE_AFTER = dt.timedelta(minutes=6)  # after step 5's first scan
SINKS = ("teams", "slack")
# Step 2's fix is deployed by the platform team's pipeline, a service principal: ARM stamps
# systemData.lastModifiedBy with its application id.
PLATFORM_PIPELINE_APP_ID = "3c5e7a90-0000-4000-8000-0000000f1a7e"
PLATFORM_PIPELINE_OBJECT_ID = "9b2d4f61-0000-4000-8000-0000000f1a7e"
FIX_AFTER = dt.timedelta(minutes=9)  # after step 1's scan
# Step 4's second person: a user who signs in and reopens the vault through ARM.
SECOND_PERSON_NAME = "Dana Whitfield"
SECOND_PERSON_UPN = "dana.whitfield@contoso.example"
SECOND_PERSON_OBJECT_ID = "6e0b3c2a-0000-4000-8000-00000000da7a"
REOPEN_AFTER = dt.timedelta(minutes=4)  # after step 3's scan, well before the next one
REFIX_AFTER = dt.timedelta(minutes=3)  # after the reopening
EVENT_TIMEOUT_S = 30.0  # Event Grid's own wait for an answer: a message later than that is a failure
READING_PAUSE_S = 1.5  # between steps on a terminal, so a person can read
PIPE_WIDTH = 120  # columns of the output when it is not a terminal


class DemoClock:
    """The wall clock moved on by what the demo skips: time runs during a scan as it does, and
    ``advance_to`` jumps to the next scheduled scan."""

    def __init__(self) -> None:
        self._offset = dt.timedelta(0)
        self._lock = threading.Lock()

    def __call__(self) -> dt.datetime:
        with self._lock:
            return dt.datetime.now(dt.UTC) + self._offset

    def advance_to(self, moment: dt.datetime) -> None:
        """Jump forward to ``moment`` (never back: a clock that runs backwards is a bug)."""
        with self._lock:
            self._offset += max(dt.timedelta(0), moment - (dt.datetime.now(dt.UTC) + self._offset))

    def from_wall(self, moment: dt.datetime) -> dt.datetime:
        """A moment read from the machine's clock, on this clock."""
        with self._lock:
            return moment + self._offset


@dataclass(frozen=True)
class DatedProber:
    """The scan's prober with its results dated on the demo clock: probes date results by the
    clock of the machine they run on (a remote vantage point's own), here the wall clock."""

    prober: ProbeRunner
    clock: DemoClock

    def __call__(self, names: Sequence[str], vantage: Vantage) -> list[ProbeResult]:
        return [
            replace(result, started_at=self.clock.from_wall(result.started_at))
            for result in self.prober(names, vantage)
        ]


@dataclass(frozen=True)
class ScanView:
    """One scan of the demo and what the sinks received because of it."""

    label: str
    outcome: ScanOutcome
    document: dict[str, Any]  # the HTML report's document (``monitor.outputs.report``) of this scan
    messages: dict[str, list[Received]]  # service -> the messages this scan sent

    @property
    def at(self) -> dt.datetime:
        return self.outcome.report.started_at

    def changed(self, *kinds: ChangeKind) -> dict[str, set[str]]:
        """Vault name -> rule ids whose findings changed this way in this scan."""
        found: dict[str, set[str]] = {}
        for change in self.outcome.report.changes:
            if change.kind in kinds:
                found.setdefault(change.finding.vault_name, set()).add(change.finding.rule_id)
        return found

    @property
    def opened(self) -> dict[str, set[str]]:
        return self.changed(ChangeKind.OPENED, ChangeKind.REOPENED)

    @property
    def resolved(self) -> dict[str, set[str]]:
        return self.changed(ChangeKind.RESOLVED)

    def findings(self, vault_name: str) -> list[Finding]:
        return [f for f in self.outcome.report.findings if f.vault_name == vault_name]

    def probe(self, vault_name: str, vantage: str) -> ProbeResult | None:
        return next(
            (p for p in self.outcome.report.probes if p.vault_name == vault_name and p.vantage == vantage),
            None,
        )

    def evidence(self, vault_name: str) -> LogEvidence | None:
        posture = next((p for p in self.outcome.report.postures if p.name == vault_name), None)
        if posture is None:
            return None
        return next((e for e in self.outcome.report.evidence if e.vault_id == posture.key), None)


@dataclass(frozen=True)
class EventView:
    """One ARM write told by event: what Event Grid delivered, what kvmon's handler made of it,
    what the sinks received and when (seconds from the write), and the probe follow-up."""

    label: str
    written_at: dt.datetime  # on the demo clock, just before the write
    published: list[PublishedEvent]  # what the lab's ARM published for the write
    deliveries: list[DeliveryAttempt]  # duplicates included
    handled: list[HandledEvents]  # one per invocation of the handler, in order
    runs: list[ScanRun]  # the store's record of every scan from the write to the messages
    messages: dict[str, list[Received]]  # service -> the messages the event path sent
    arrived_s: dict[str, float]  # service -> seconds from the write to the sink's message
    follow_ups: list[ScanView]  # the probe follow-ups the handler queued, as the worker ran them
    follow_up_s: float  # seconds from the write to the end of the last follow-up

    def statuses(self) -> list[EventStatus]:
        return [result.status for handled in self.handled for result in handled.results]

    def changed(self, *kinds: ChangeKind) -> dict[str, set[str]]:
        """Vault name -> rule ids whose findings the handler changed this way (no probes yet)."""
        found: dict[str, set[str]] = {}
        for handled in self.handled:
            for result in handled.results:
                for change in result.changes:
                    if change.kind in kinds:
                        found.setdefault(change.finding.vault_name, set()).add(change.finding.rule_id)
        return found

    def findings(self, vault_name: str) -> list[Finding]:
        """The vault's findings as the (last) handled read judged them."""
        processed = [
            result
            for handled in self.handled
            for result in handled.results
            if result.status is EventStatus.PROCESSED
        ]
        return [f for f in (processed[-1].findings if processed else ()) if f.vault_name == vault_name]


@dataclass
class StepResult:
    number: int
    title: str
    vault: str  # the vault the step is about
    scans: list[ScanView] = field(default_factory=list)
    events: list[EventView] = field(default_factory=list)


@dataclass
class DemoResult:
    steps: list[StepResult]
    report_path: Path
    elapsed_s: float


class DemoFailed(RuntimeError):
    """The walkthrough could not go on (a scan recorded errors, the lab lost a vault): the
    message says what happened."""


class Terminated(BaseException):
    """SIGTERM arrived: unwind as Ctrl-C does, so the lab stops. A BaseException like
    KeyboardInterrupt: an ``except Exception`` on the way (a source turning any failure into a
    scan error, a log line with its traceback) must not swallow it mid-scan."""


# ---------------------------------------------------------------------------------------------
# Display: a spinner and colours on a terminal, plain lines in a pipe.
# ---------------------------------------------------------------------------------------------


class Display:
    def __init__(self, *, color: bool, pauses: bool, console: Console | None = None) -> None:
        self.console = console or Console(no_color=not color, highlight=False)
        self.live = self.console.is_terminal
        if not self.live:
            self.console.width = PIPE_WIDTH
        self._pauses = pauses and self.live

    @contextlib.contextmanager
    def progress(self, text: str) -> Iterator[None]:
        started = time.monotonic()
        if self.live:
            with self.console.status(escape(text)):
                yield
            self.console.print(f"[green]✓[/] {escape(text)} [dim]({time.monotonic() - started:.1f} s)[/]")
        else:
            self.console.print(Text(f"... {text}"))
            yield
            self.console.print(Text(f"    done in {time.monotonic() - started:.1f} s"))

    def heading(self, text: str) -> None:
        self.console.print()
        self.console.rule(Text(text, style="bold"), align="left")

    def line(self, text: str = "", *, style: str = "") -> None:
        # In a pipe a line stays one line (greppable, paths copyable); a terminal wraps it.
        self.console.print(Text(text, style=style), soft_wrap=not self.live)

    def show(self, renderable: Any) -> None:
        self.console.print(renderable)

    def pause(self) -> None:
        if self._pauses:
            time.sleep(READING_PAUSE_S)


# ---------------------------------------------------------------------------------------------
# The walkthrough
# ---------------------------------------------------------------------------------------------


def run_demo(*, report_path: Path, display: Display) -> DemoResult:
    """Run the walkthrough against a fresh lab and write the HTML report; the lab is stopped
    whatever happens."""
    started = time.monotonic()
    clock = DemoClock()
    estate = walkthrough_estate()
    estate.clock = clock
    lab = LabServices(estate, azurite=True)
    try:
        with display.progress("Starting the lab: ARM, DNS, Key Vault, Log Analytics, Teams, Slack, Azurite"):
            lab.start()
        # The network team's workspace has held the perimeter's access log (its other resources'
        # rows) since long before the walkthrough: the table is there from scan 1.
        lab.logs.set_tables(PERIMETER_WORKSPACE, NSP_TABLE)
        environ = lab.environ(perimeter_workspaces=(PERIMETER_WORKSPACE,))
        settings = Settings.from_environ(environ)
        runtime = build_runtime(settings, environ=environ, credential=LabCredential())
        runtime.clock = clock
        if runtime.prober is not None:
            runtime.prober = DatedProber(runtime.prober, clock)
        display.line(
            f"All on loopback: ARM {lab.arm.url}, DNS {lab.world.resolver}, findings in Azurite's "
            f"Table storage; vantage points {', '.join(v.name for v in runtime.vantages)}.",
            style="dim",
        )
        try:
            steps = _walkthrough(lab, settings, runtime, clock, display)
            last_scan = [view for step in steps for view in step.scans][-1]
            with display.progress(f"Writing the HTML report of the last scheduled scan to {report_path}"):
                try:
                    report_path.parent.mkdir(parents=True, exist_ok=True)
                    report_path.write_text(render_html(last_scan.document), encoding="utf-8")
                except OSError as exc:
                    raise DemoFailed(
                        f"cannot write the report to {report_path}: {exc.strerror or exc}"
                    ) from None
        finally:
            if runtime.store is not None:
                runtime.store.close()
    finally:
        with display.progress("Stopping the lab"):
            lab.stop()
    return DemoResult(steps=steps, report_path=report_path, elapsed_s=time.monotonic() - started)


class SinkCursor:
    """What Teams and Slack received since the last look."""

    def __init__(self, lab: LabServices) -> None:
        self._lab = lab
        self._seen = {service: len(lab.sinks.messages(service)) for service in SINKS}

    def pending(self) -> dict[str, int]:
        """Service -> how many messages arrived since the last ``take``."""
        return {service: len(self._lab.sinks.messages(service)) - self._seen[service] for service in SINKS}

    def take(self) -> dict[str, list[Received]]:
        messages = {}
        for service in SINKS:
            received = self._lab.sinks.messages(service)
            messages[service] = received[self._seen[service] :]
            self._seen[service] = len(received)
        return messages


class EventHandler:
    """kvmon's Event Grid handler as the Functions host would call it: an Event Grid triggered
    function the lab's ``FunctionTarget`` decodes each event for with azure-functions' own
    converter. It calls ``handle_delivery`` as ``monitor_functions.vault_changed`` does, with the
    demo's runtime (see the module's docstring); the probe follow-ups it queues wait in
    ``follow_ups``."""

    def __init__(self, runtime: ScanRuntime, *, subscriptions: tuple[str, ...]) -> None:
        self.handled: list[HandledEvents] = []
        self.follow_ups: list[VaultChange] = []
        app = func.FunctionApp()

        @app.event_grid_trigger(arg_name="event")
        def vault_changed(event: func.EventGridEvent) -> None:
            handled = handle_delivery(
                event,
                source="event",
                subscriptions=subscriptions,
                runtime=lambda: runtime,
                follow_up=self.follow_ups.append,
            )
            self.handled.append(handled)
            handled.raise_for_retry()

        # Indexing an app without an HTTP function makes azure-functions warn through the root
        # logger (that there is no auth level to apply), which would also set up the root logger
        # to print every later warning of the lab's threads on stderr.
        logging.disable(logging.WARNING)
        try:
            self.target = FunctionTarget.of(app, "vault_changed")
        finally:
            logging.disable(logging.NOTSET)


def _walkthrough(
    lab: LabServices, settings: Settings, runtime: ScanRuntime, clock: DemoClock, display: Display
) -> list[StepResult]:
    request = ScanRequest(subscriptions=settings.subscriptions, trigger=ScanTrigger.TIMER)
    sinks = SinkCursor(lab)

    def scan(label: str, scan_request: ScanRequest = request, *, what: str | None = None) -> ScanView:
        what = what or f"inventory, probes from {len(runtime.vantages)} vantage points, logs, store, notify"
        with display.progress(f"{label}: {what}"):
            outcome = run_scan(scan_request, runtime)
        if outcome.report.errors:
            problems = "; ".join(f"{e.source} {e.scope}: {e.message}" for e in outcome.report.errors)
            raise DemoFailed(f"{label} recorded errors: {problems}")
        document = build_report_document(
            outcome.report, vantages=runtime.vantages, policies=outcome.policies, generated_at=clock()
        )
        return ScanView(label=label, outcome=outcome, document=document, messages=sinks.take())

    interval = settings.scan_interval
    steps: list[StepResult] = []

    step = StepResult(1, f"{SE_VAULT}: a Service Endpoint rule, but defaultAction Allow", SE_VAULT)
    display.heading(f"Step 1 · {step.title}")
    display.line(
        f"What is there: {SE_VAULT} has a virtual network rule for subnet serviceEndpoint, but its "
        "default action is Allow, so the rule restricts nothing. kvmon runs its first scheduled scan."
    )
    step.scans.append(scan("Scan 1"))
    first = step.scans[0].at
    _show_scan(display, step.scans[-1], vault=SE_VAULT, others="step 3 looks at it")
    steps.append(step)
    display.pause()

    step = StepResult(2, "the firewall is fixed (defaultAction Deny)", SE_VAULT)
    display.heading(f"Step 2 · {step.title}")
    clock.advance_to(first + FIX_AFTER)
    with display.progress("The platform pipeline sets defaultAction Deny (vaults.update through ARM)"):
        _set_default_action(lab, vault_name=SE_VAULT, default_action="Deny", credential=_pipeline())
    display.line(
        f"What changed: at {_hhmm(clock())} the platform team's pipeline (application "
        f"{PLATFORM_PIPELINE_APP_ID}) set networkAcls.defaultAction to Deny, as "
        "`az keyvault update --default-action Deny` does."
    )
    clock.advance_to(first + interval)
    step.scans.append(scan("Scan 2"))
    _show_scan(display, step.scans[-1], vault=SE_VAULT, others="unchanged")
    _explain_logs_window(display, step.scans[-1], vault=SE_VAULT, previous=steps[0].scans[0])
    clock.advance_to(first + 2 * interval)
    step.scans.append(scan("Scan 3"))
    _show_scan(display, step.scans[-1], vault=SE_VAULT, others="unchanged", matrix=False)
    steps.append(step)
    display.pause()

    step = StepResult(3, f"{PL_VAULT}: Private Link, but public access still Enabled", PL_VAULT)
    display.heading(f"Step 3 · {step.title}")
    display.line(
        f"What is there: {PL_VAULT} has an approved Private Endpoint at 127.10.2.10, but public "
        "network access is still Enabled with defaultAction Allow, and the spoke VNet's private DNS "
        "zone privatelink.vaultcore.lab.test is not linked. Its findings opened in scan 1; kvmon "
        "announces a change once, so this scan tells the sinks nothing new."
    )
    clock.advance_to(first + 3 * interval)
    step.scans.append(scan("Scan 4"))
    _show_scan(display, step.scans[-1], vault=PL_VAULT, others="unchanged", open_findings=True)
    steps.append(step)
    display.pause()

    step = StepResult(4, f"{SE_VAULT} reopened by a second person, told by event in seconds", SE_VAULT)
    display.heading(f"Step 4 · {step.title}")
    store = runtime.store
    if store is None:
        raise DemoFailed("the event path records the events it handled: it needs the store")
    handler = EventHandler(runtime, subscriptions=settings.subscriptions)
    # Every event is delivered twice (Event Grid delivers at least once, duplicates even after a
    # success); one worker keeps the demo's order fixed.
    events = lab.subscribe(
        EventGridEmulator(target=handler.target, duplicate_fraction=1.0, workers=1, seed=16)
    )
    display.line(
        "kvmon's Event Grid subscription to the subscription's system topic is now on: every write "
        "ARM serves there reaches kvmon's event handler, which reads the vault it names again (one "
        "GET), judges it without waiting for probes, tells Teams and Slack, and queues the probes."
    )

    def by_event(label: str, write: Any) -> EventView:
        """``write`` through ARM, then what the event path made of it: the sinks' messages, the
        store's scans since, and the probe follow-ups run as the queue worker runs them."""
        written_at, started = clock(), time.monotonic()
        published, attempts = len(events.published), len(events.attempts)
        handled, follow_ups = len(handler.handled), len(handler.follow_ups)
        write()
        arrived: dict[str, float] = {}
        while len(arrived) < len(SINKS) and time.monotonic() - started < EVENT_TIMEOUT_S:
            for service, count in sinks.pending().items():
                if count and service not in arrived:
                    arrived[service] = time.monotonic() - started
            time.sleep(0.01)
        missing = [service for service in SINKS if service not in arrived]
        if missing:
            raise DemoFailed(f"{label}: {', '.join(missing)} heard nothing within {EVENT_TIMEOUT_S:.0f} s")
        events.wait_idle(EVENT_TIMEOUT_S)  # the duplicate delivery too
        runs = [run for run in store.scan_runs(limit=10) if run.started_at >= written_at]
        view = EventView(
            label=label,
            written_at=written_at,
            published=events.published[published:],
            deliveries=events.attempts[attempts:],
            handled=handler.handled[handled:],
            runs=sorted(runs, key=lambda run: run.started_at),
            messages=sinks.take(),
            arrived_s=arrived,
            follow_ups=[],
            follow_up_s=0.0,
        )
        failed = [e for h in view.handled for r in h.results for e in r.errors]
        if failed or any(not attempt.succeeded for attempt in view.deliveries):
            problems = "; ".join(f"{e.source} {e.scope}: {e.message}" for e in failed) or "a delivery failed"
            raise DemoFailed(f"{label}: the event path recorded errors: {problems}")
        _show_event(display, view, vault=SE_VAULT)
        ran = [
            scan(
                "Probe follow-up",
                # What scan_worker runs for a follow-up job: the vault read again, with the probes.
                ScanRequest(
                    subscriptions=(change.subscription_id,),
                    vault_id=change.vault_id,
                    logs=False,
                    trigger=ScanTrigger.QUEUE,
                ),
                what=f"{change.vault_id.rsplit('/', 1)[-1]} read again, probes from {len(runtime.vantages)} vantage points",
            )
            for change in handler.follow_ups[follow_ups:]
        ]
        view = replace(view, follow_ups=ran, follow_up_s=time.monotonic() - started)
        for follow_up in ran:
            _show_follow_up(display, follow_up, vault=SE_VAULT, after_s=view.follow_up_s)
        return view

    person = LabCredential(
        object_id=SECOND_PERSON_OBJECT_ID,
        claims={"name": SECOND_PERSON_NAME, "upn": SECOND_PERSON_UPN, "ipaddr": _client_address(lab)},
    )
    clock.advance_to(first + 3 * interval + REOPEN_AFTER)
    display.line()
    display.line(
        f"What changes: at {_hhmm(clock())}, {round((interval - REOPEN_AFTER).total_seconds() / 60)} minutes "
        f"before the next scheduled scan, {SECOND_PERSON_NAME} ({SECOND_PERSON_UPN}, object id {SECOND_PERSON_OBJECT_ID}) sets "
        f"{SE_VAULT}'s networkAcls.defaultAction back to Allow through ARM, as "
        "`az keyvault update --default-action Allow` does."
    )
    step.events.append(
        by_event(
            "Reopened",
            lambda: _set_default_action(lab, vault_name=SE_VAULT, default_action="Allow", credential=person),
        )
    )
    display.pause()
    clock.advance_to(step.events[-1].written_at + REFIX_AFTER)
    display.line()
    display.line(
        f"The fix: at {_hhmm(clock())} the platform team's pipeline (application {PLATFORM_PIPELINE_APP_ID}) "
        "sets defaultAction Deny again, still before the next scheduled scan."
    )
    step.events.append(
        by_event(
            "Fixed",
            lambda: _set_default_action(
                lab, vault_name=SE_VAULT, default_action="Deny", credential=_pipeline()
            ),
        )
    )
    if any(f.rule_id == "KV301" for f in step.events[-1].findings(SE_VAULT)):
        display.line(
            "  KV301 stays open, now the pipeline's tightening (told as changed, high to info): a one-vault "
            "read keeps the drift it found, and the next scheduled scan of the subscription resolves it, "
            "as scan 3 did.",
            style="dim",
        )
    steps.append(step)
    display.pause()

    lab.unsubscribe()  # step 5 is the timer's again
    step = StepResult(
        5, f"{NSP_VAULT}: public access Disabled, then a Learning perimeter admitting 0.0.0.0/0", NSP_VAULT
    )
    display.heading(f"Step 5 · {step.title}")
    _add_locked_vault_and_perimeter(lab)
    display.line(
        f"What is there: {NSP_VAULT} has publicNetworkAccess Disabled and no private endpoint: locked. "
        f"In {PERIMETER_GROUP}, another team's Network Security Perimeter {PERIMETER} has a profile "
        f"{PERIMETER_PROFILE} whose inbound rule {PERIMETER_RULE} admits 0.0.0.0/0 while they onboard; "
        f"its diagnostic setting sends its access log to workspace {PERIMETER_WORKSPACE}."
    )
    clock.advance_to(first + 4 * interval)
    step.scans.append(scan("Scan 5"))
    _show_scan(display, step.scans[-1], vault=NSP_VAULT, others="unchanged")
    clock.advance_to(first + 4 * interval + ASSOCIATE_AFTER)
    with display.progress(
        f"The perimeter's owner associates {NSP_VAULT} with {PERIMETER} in Learning mode (azure-mgmt-network)"
    ):
        _associate(lab, vault_name=NSP_VAULT, access_mode="Learning")
    [posture] = [p for p in step.scans[-1].outcome.report.postures if p.name == NSP_VAULT]
    document_only = effective_exposure(
        posture=replace(posture, perimeter=PerimeterReading()),
        policy=step.scans[-1].outcome.policies[posture.key],
    )
    display.line(
        f"What changed: at {_hhmm(clock())} {NSP_VAULT} was associated with {PERIMETER} (profile "
        f"{PERIMETER_PROFILE}) in Learning mode, as `az network perimeter association create "
        "--access-mode Learning` does. The vault's own document did not change: publicNetworkAccess "
        f"is still {posture.public_network_access}, so a configuration scanner reading it calls the vault "
        f"{'open' if document_only.public else 'closed'}."
    )
    clock.advance_to(first + 5 * interval)
    step.scans.append(scan("Scan 6"))
    _show_scan(display, step.scans[-1], vault=NSP_VAULT, others="unchanged")
    _show_perimeter_verdict(display, step.scans[-1], vault=NSP_VAULT)
    steps.append(step)
    return steps


def _add_locked_vault_and_perimeter(lab: LabServices) -> None:
    """Step 5's world: the locked vault (its requests logged to the walkthrough's workspace) and the
    other team's perimeter, with no association yet, logging its decisions to its team's workspace."""
    estate = lab.estate
    estate.add_vault(
        subscription_id=WALKTHROUGH_SUBSCRIPTION,
        resource_group="rg-walkthrough",
        name=NSP_VAULT,
        public_network_access="Disabled",
        network_acls={
            "bypass": "AzureServices",
            "defaultAction": "Deny",
            "ipRules": [],
            "virtualNetworkRules": [],
        },
        tags={"env": "lab"},
        workspace_id=WALKTHROUGH_WORKSPACE,
    )
    perimeter = estate.add_perimeter(
        subscription_id=WALKTHROUGH_SUBSCRIPTION, resource_group=PERIMETER_GROUP, name=PERIMETER
    )
    estate.perimeters.add_profile(perimeter, PERIMETER_PROFILE)
    estate.perimeters.put_access_rule(
        perimeter, PERIMETER_PROFILE, PERIMETER_RULE, address_prefixes=["0.0.0.0/0"]
    )
    lab.logs.send_perimeter_logs(perimeter, PERIMETER_WORKSPACE)


def _associate(lab: LabServices, *, vault_name: str, access_mode: str) -> None:
    """What ``az network perimeter association create`` does, as the perimeter's owner."""
    vault = lab.estate.vault_by_name(vault_name)
    if vault is None:
        raise DemoFailed(f"the lab has no vault {vault_name}")
    with NetworkManagementClient(
        LabCredential(object_id=PERIMETER_OWNER_OBJECT_ID),
        WALKTHROUGH_SUBSCRIPTION,
        base_url=lab.arm.url,
        credential_scopes=[f"{lab.arm.url}/.default"],
        connection_verify=lab_pki().ca_path,
    ) as client:
        profile = client.network_security_perimeter_profiles.get(
            PERIMETER_GROUP, PERIMETER, PERIMETER_PROFILE
        )
        client.network_security_perimeter_associations.begin_create_or_update(
            PERIMETER_GROUP,
            PERIMETER,
            f"assoc-{vault_name}",
            NspAssociation(
                properties=NspAssociationProperties(
                    private_link_resource=SubResource(id=vault["id"]),
                    profile=SubResource(id=profile.id),
                    access_mode=access_mode,
                )
            ),
        ).result()


def _show_perimeter_verdict(display: Display, view: ScanView, *, vault: str) -> None:
    """Configuration and probe side by side: what kvmon made of the perimeter."""
    kv001 = [f for f in view.findings(vault) if f.rule_id == "KV001"]
    if kv001:
        exposure = kv001[0].evidence.get("perimeter") or {}
        display.line(
            f"  configuration: open to the public: {exposure.get('reason', kv001[0].summary)}",
            style="bold red",
        )
    internet = view.probe(vault, "internet")
    if internet is not None:
        display.line(
            f"  internet probe: {internet.verdict.value} (the vault saw {internet.seen_address or 'no address'})",
            style="bold red" if internet.verdict.value == "admitted" else "green",
        )
    admitted = sorted(str(f.subject) for f in view.findings(vault) if f.rule_id == "KV205")
    if admitted:
        display.line(
            f"  perimeter access log: public source(s) {', '.join(admitted)} admitted by a perimeter rule (KV205)",
            style="bold red",
        )


def _pipeline() -> LabCredential:
    return LabCredential(object_id=PLATFORM_PIPELINE_OBJECT_ID, app_id=PLATFORM_PIPELINE_APP_ID)


def _client_address(lab: LabServices) -> str:
    """The address the person's requests come from: the loopback address of the lab's ARM (a
    connection to a loopback address leaves from that address)."""
    return urlsplit(lab.arm.url).hostname or "127.0.0.1"


def _set_default_action(
    lab: LabServices, *, vault_name: str, default_action: str, credential: LabCredential
) -> None:
    """What ``az keyvault update --default-action ...`` does: read the vault, then PATCH its
    networkAcls with the default action changed (a PATCH replaces networkAcls as a whole)."""
    vault = lab.estate.vault_by_name(vault_name)
    if vault is None:
        raise DemoFailed(f"the lab has no vault {vault_name}")
    subscription, resource_group = vault["id"].split("/")[2], vault["id"].split("/")[4]
    with KeyVaultManagementClient(
        credential,
        subscription,
        base_url=lab.arm.url,
        credential_scopes=[f"{lab.arm.url}/.default"],
        connection_verify=lab_pki().ca_path,
    ) as client:
        current = client.vaults.get(resource_group, vault_name)
        acls = current.properties.network_acls
        if acls is None:
            raise DemoFailed(f"{vault_name} has no networkAcls to change")
        acls.default_action = default_action
        client.vaults.update(
            resource_group,
            vault_name,
            VaultPatchParameters(properties=VaultPatchProperties(network_acls=acls)),
        )


# ---------------------------------------------------------------------------------------------
# What each step shows
# ---------------------------------------------------------------------------------------------


def _show_scan(
    display: Display,
    view: ScanView,
    *,
    vault: str,
    others: str,
    matrix: bool = True,
    open_findings: bool = False,
) -> None:
    display.line()
    display.line(f"{view.label} at {_hhmm(view.at)} (demo clock)", style="bold")
    if matrix:
        display.show(vantage_table(view, vault))
        _show_logs(display, view, vault)
    _show_changes(display, view, vault=vault, others=others)
    if open_findings:
        display.line(f"  {vault} open findings:")
        for finding in sorted(view.findings(vault), key=lambda f: (f.rule_id, f.subject)):
            display.line(
                f"    {finding.rule_id} {finding.severity.value:<8} {finding.summary}",
                style="bold" if finding.rule_id in ("KV008", "KV103") else "",
            )
    _show_sinks(display, view)


def vantage_table(view: ScanView, vault: str) -> Table:
    """The report's matrix row of ``vault`` (expected vs observed) with what the vault saw and
    the DNS answer, one line per vantage point."""
    entry = next(v for v in view.document["vaults"] if v["name"] == vault)
    table = Table(title=f"{vault} from each vantage point", title_justify="left", pad_edge=False)
    for column in ("vantage", "expected", "observed", "vault saw", "DNS answer"):
        table.add_column(column)
    for vantage, cell in entry["reachability"].items():
        probe = view.probe(vault, vantage)
        observed = cell["observed_reach"]
        if probe and probe.verdict.refused and probe.data_plane and probe.data_plane.inner_code:
            observed = f"refused: {probe.data_plane.inner_code}"
        seen = cell["seen_address"] or "-"
        if cell["seen_address_private"] is not None:
            seen += " (private)" if cell["seen_address_private"] else " (public)"
        answer = ", ".join(probe.dns.addresses) if probe and probe.dns and probe.dns.addresses else "none"
        table.add_row(
            vantage,
            f"{cell['expected_reach'] or '-'}, {cell['expected_dns'] or '-'} DNS",
            Text(observed, style="green" if cell["reach_state"] == MET else "bold red"),
            seen,
            Text(
                f"{answer} ({cell['observed_dns']})",
                style="green" if cell["dns_state"] == MET else "bold red",
            ),
        )
    return table


def _show_logs(display: Display, view: ScanView, vault: str) -> None:
    evidence = view.evidence(vault)
    if evidence is None:
        display.line("  logs: none read")
        return
    display.line(f"  logs {_span(evidence.window_start, evidence.window_end)}, what the vault recorded:")
    callers: Counter[tuple[Outcome, str, bool]] = Counter()
    for activity in evidence.activity:
        callers[(activity.outcome, activity.caller_address, activity.address_private)] += activity.count
    for (outcome, address, private), count in sorted(callers.items()):
        alarming = outcome is Outcome.ADMITTED and not private
        display.line(
            f"    {outcome.value:<16} {address:<12} {'private' if private else 'public':<8} {count} request(s)",
            style="red" if alarming else "",
        )
    if any(outcome is Outcome.REFUSED_OTHER for outcome, _, _ in callers):
        display.line(
            "    (refused-other: answered before the network check, such as the 401 that asks a client "
            "for its token; it says nothing about the firewall)",
            style="dim",
        )


def _show_changes(display: Display, view: ScanView, *, vault: str, others: str) -> None:
    changes = view.outcome.report.changes
    mine = sorted(
        (c for c in changes if c.finding.vault_name == vault),
        key=lambda c: (c.kind is not ChangeKind.OPENED, c.finding.rule_id, c.finding.subject),
    )
    if not mine:
        display.line(f"  {vault}: no finding opened or resolved")
    for change in mine:
        finding = change.finding
        style = (
            "green"
            if change.kind is ChangeKind.RESOLVED
            else "red"
            if finding.severity.rank >= Severity.HIGH.rank
            else "yellow"
        )
        display.line(
            f"  {change.kind.value:<8} {finding.rule_id} {finding.severity.value:<8} {finding.summary}",
            style=style,
        )
    still_open = sorted({f.rule_id for f in view.findings(vault) if not f.suppressed})
    display.line(f"  {vault} open now: {', '.join(still_open) or 'nothing'}")
    elsewhere: dict[str, dict[str, set[str]]] = {}
    for change in changes:
        if change.finding.vault_name != vault:
            kinds = elsewhere.setdefault(change.finding.vault_name, {})
            kinds.setdefault(change.kind.value, set()).add(change.finding.rule_id)
    for name, kinds in sorted(elsewhere.items()):
        parts = "; ".join(f"{kind} {', '.join(sorted(rules))}" for kind, rules in sorted(kinds.items()))
        display.line(f"  {name}: {parts} ({others})", style="dim")


def _explain_logs_window(display: Display, view: ScanView, *, vault: str, previous: ScanView) -> None:
    evidence = view.evidence(vault)
    if evidence is not None and any(f.rule_id == "KV201" for f in view.findings(vault)):
        display.line(
            f"  KV201 stays open: this scan read the logs {_span(evidence.window_start, evidence.window_end)}, "
            f"since {previous.label.lower()} with five minutes of overlap, and that window still holds "
            f"{previous.label.lower()}'s public admissions. The next scheduled scan's window does not.",
            style="dim",
        )


def _show_event(display: Display, view: EventView, *, vault: str) -> None:
    display.line()
    display.line(f"{view.label} at {_hhmm(view.written_at)} (demo clock), told by event", style="bold")
    for event in view.published:
        data = event.data
        request = data.get("httpRequest") or {}
        display.line(
            f"  ARM published {event.event_type.value} {event.id} for {event.subject.rsplit('/', 1)[-1]}: "
            f"{data.get('operationName')}, {request.get('method', '')} from {request.get('clientIpAddress', '-')}"
        )
    statuses = Counter(view.statuses())
    display.line(
        f"  Event Grid delivered it {len(view.deliveries)} times (at least once): "
        + ", ".join(f"{status.value} {count}" for status, count in sorted(statuses.items()))
        + " (a duplicate is folded: no GET, no message)"
    )
    triggers = sorted({run.trigger.value for run in view.runs})
    display.line(
        f"  scans recorded since the write: {len(view.runs)}, trigger {', '.join(triggers) or 'none'}"
    )
    for kinds, word, style in (
        ((ChangeKind.OPENED, ChangeKind.REOPENED), "opened", "red"),
        ((ChangeKind.CONFIRMED,), "confirmed by the probes", "red"),
        ((ChangeKind.CHANGED,), "changed", "yellow"),
        ((ChangeKind.RESOLVED,), "resolved", "green"),
    ):
        rules = view.changed(*kinds).get(vault)
        if rules:
            display.line(f"  {word} {', '.join(sorted(rules))}", style=style)
    for finding in view.findings(vault):
        if finding.rule_id == "KV301":
            display.line(f"  KV301 {finding.severity.value}: {finding.summary}", style="bold")
    _show_messages(display, view.messages, arrived_s=view.arrived_s)
    actors = {result.change.actor.who for h in view.handled for result in h.results if result.handled}
    for service in SINKS:
        for message in view.messages[service]:
            for text in message_texts(service, message.json()):
                if any(who in text for who in actors):
                    display.line(f"    {service} says: {text.removeprefix('>')}", style="bold")


def _show_follow_up(display: Display, view: ScanView, *, vault: str, after_s: float) -> None:
    display.line()
    display.line(f"{view.label} ({after_s:.1f} s after the write): the probes' verdict", style="bold")
    display.show(vantage_table(view, vault))
    internet = view.probe(vault, "internet")
    if internet is not None:
        display.line(
            f"  internet probe: {internet.verdict.value}"
            + (f", the vault saw {internet.seen_address}" if internet.seen_address else "")
        )
    _show_changes(display, view, vault=vault, others="unchanged")
    _show_sinks(display, view)


def _show_sinks(display: Display, view: ScanView) -> None:
    _show_messages(display, view.messages)


def _show_messages(
    display: Display, received: dict[str, list[Received]], *, arrived_s: dict[str, float] | None = None
) -> None:
    for service in SINKS:
        messages = received.get(service, [])
        if not messages:
            display.line(f"  {service}: nothing new")
            continue
        after = f", {arrived_s[service]:.1f} s after the write" if arrived_s and service in arrived_s else ""
        heard = f"{service}{after}"
        for message in messages:
            lines = change_lines(service, message.json())
            by_kind: dict[str, Counter[str]] = {}
            for kind, rule in lines:
                by_kind.setdefault(kind, Counter())[rule] += 1
            summary = "; ".join(
                f"{kind} {sum(rules.values())}: "
                + ", ".join(f"{rule}×{n}" if n > 1 else rule for rule, n in sorted(rules.items()))
                for kind, rules in by_kind.items()
            )
            display.line(f"  {heard}: 1 message, {summary}")


# A severity reads HIGH, or HIGH → INFO on a change of severity.
_CHANGE = r"(Opened|Reopened|Changed|Confirmed|Resolved)\*{1,2} · \*?[A-Z]+(?: → [A-Z]+)?\*? · `?(KV\d{3})"
_TEAMS_LINE = re.compile(r"^\*\*" + _CHANGE)
_SLACK_LINE = re.compile(r"^:[a-z_]+: \*" + _CHANGE)


def message_texts(service: str, payload: Any) -> list[str]:
    """The text lines of a Teams card (its TextBlocks) or of a Slack message's sections, in order."""
    if service == "teams":
        return [t for attachment in payload.get("attachments", []) for t in _card_texts(attachment)]
    return [
        row
        for block in payload.get("blocks", [])
        if block.get("type") == "section"
        for row in str((block.get("text") or {}).get("text", "")).splitlines()
    ]


def change_lines(service: str, payload: Any) -> list[tuple[str, str]]:
    """(event, rule id) of every change line a Teams card or a Slack message carries, in order."""
    pattern = _TEAMS_LINE if service == "teams" else _SLACK_LINE
    found: list[tuple[str, str]] = []
    for text in message_texts(service, payload):
        match = pattern.match(text)
        if match:
            found.append((match.group(1), match.group(2)))
    return found


def _card_texts(element: Any) -> Iterator[str]:
    """Every TextBlock's text in an Adaptive Card, in document order."""
    if isinstance(element, dict):
        if element.get("type") == "TextBlock" and isinstance(element.get("text"), str):
            yield element["text"]
        for value in element.values():
            yield from _card_texts(value)
    elif isinstance(element, list):
        for item in element:
            yield from _card_texts(item)


def _hhmm(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%H:%M")


def _span(start: dt.datetime, end: dt.datetime) -> str:
    if end - start >= dt.timedelta(hours=12):
        return f"of the last {round((end - start).total_seconds() / 3600)} h"
    return f"{_hhmm(start)}-{_hhmm(end)}"


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------


def _unwritable(path: Path) -> str | None:
    """Why the report cannot be written at ``path`` (checked before the lab starts)."""
    if path.is_dir():
        return "is a directory"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        return f"cannot create its directory: {exc.strerror or exc}"
    if not os.access(path.parent, os.W_OK):
        return f"cannot write in {path.parent}"
    return None


class _StopSignals:
    """The first Ctrl-C or SIGTERM unwinds (KeyboardInterrupt, Terminated); later ones are
    ignored, so they cannot cut the lab's shutdown short and leave Azurite behind."""

    def __init__(self) -> None:
        self.received = False

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        if self.received:
            return
        self.received = True
        raise KeyboardInterrupt() if signum == signal.SIGINT else Terminated()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m lab.demo",
        description="kvmon's walkthrough end to end against the emulated Azure in lab/ (loopback only).",
    )
    parser.add_argument(
        "--quick", action="store_true", help="no reading pauses between the steps (for scripts and tests)"
    )
    parser.add_argument(
        "--report",
        type=Path,
        default=DEFAULT_REPORT,
        metavar="PATH",
        help=f"where to write the HTML report (default: {DEFAULT_REPORT})",
    )
    parser.add_argument("--no-color", action="store_true", help="no colours (NO_COLOR is honoured too)")
    args = parser.parse_args(argv)
    display = Display(color=not args.no_color and not os.environ.get("NO_COLOR"), pauses=not args.quick)
    problem = _unwritable(args.report)
    if problem:
        display.line(f"--report {args.report}: {problem}", style="bold red")
        return 2
    handler = _StopSignals()
    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        result = run_demo(report_path=args.report, display=display)
    except KeyboardInterrupt:
        display.line("Interrupted; the lab is stopped.")
        return 130
    except Terminated:
        display.line("Terminated; the lab is stopped.")
        return 143
    except (DemoFailed, AzuriteUnavailable) as exc:
        display.line(f"The demo failed: {exc}. The lab is stopped.", style="bold red")
        return 1
    finally:
        for sig, before in previous.items():
            signal.signal(sig, before)
    display.heading("Done")
    display.line(f"HTML report (matrix and findings of scan 6): {result.report_path.resolve()}")
    display.line(f"The walkthrough took {result.elapsed_s:.1f} s; the lab is stopped.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
