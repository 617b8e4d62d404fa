"""Probe faults: a resolver that never answers, a Private Endpoint address that swallows
connections, a TLS handshake or a request answered with a reset, a remote vantage point that is
down. Each step stops at its timeout and says what it saw (the verdict); a vantage point that
said nothing is KV106 and what it saw before stays open. The scans finish: bounded by the
timeouts, never by luck (no timing is asserted)."""

from __future__ import annotations

import io
import json
from collections import Counter
from collections.abc import Callable, Iterator

import pytest

from lab.estate import PUBLIC_INGRESS
from lab.http import Fault
from lab.services import LabServices, _vantage_json
from monitor.app.scan import ScanRequest, run_scan
from monitor.model import ChangeKind, ErrorSource, FindingStatus, Verdict
from monitor.outputs.formats import FORMATS, write_report
from monitor.scan_report import ScanReport
from monitor.store import Store
from tests.faults.conftest import (
    REMOTE_KEY,
    SUB_A,
    SUB_B,
    HandshakeResetter,
    RemoteVantage,
    fast_runtime,
    fault_environ,
    fault_estate,
    free_loopback_port,
)

PRIVATE_ENDPOINT = "127.10.2.10"  # kv-pl-demo's Private Endpoint (lab.estate.walkthrough_estate)
REQUEST = ScanRequest(subscriptions=(SUB_A, SUB_B), notify=False)


def _verdicts(report: ScanReport, vault: str) -> dict[str, Verdict]:
    return {p.vantage: p.verdict for p in report.probes if p.vault_name == vault}


def _change_line(report: ScanReport) -> str:
    counts = Counter(f"{c.kind.value} {c.finding.rule_id}" for c in report.changes)
    return ", ".join(f"{n}× {what}" for what, n in sorted(counts.items())) or "no change"


@pytest.fixture(scope="module")
def pe_lab() -> Iterator[LabServices]:
    """A lab whose data plane does not listen at the Private Endpoint's address: a blackhole does."""
    with LabServices(fault_estate(), blackholed=[PRIVATE_ENDPOINT]) as services:
        yield services


@pytest.fixture(scope="module")
def reset_lab() -> Iterator[tuple[LabServices, HandshakeResetter]]:
    """A lab whose Private Endpoint address resets every TLS handshake (its blackhole replaced)."""
    with LabServices(fault_estate(), blackholed=[PRIVATE_ENDPOINT]) as services:
        services.world.blackholes[0].stop()
        resetter = HandshakeResetter(PRIVATE_ENDPOINT, services.world.port).start()
        try:
            yield services, resetter
        finally:
            resetter.stop()


@pytest.mark.fault("Probes", "resolver silent")
def test_a_silent_resolver_is_each_probe_s_dns_verdict(
    lab: LabServices, sqlite_store: Store, observe: Callable[[str], None]
) -> None:
    runtime = fast_runtime(fault_environ(lab), store=sqlite_store)
    run_scan(REQUEST, runtime)
    before = set(sqlite_store.load_findings(status=FindingStatus.OPEN))
    lab.world.dns.mode = "silent"

    report = run_scan(REQUEST, runtime).report

    assert report.finished_at is not None and len(report.postures) == 4
    assert report.probes and all(
        p.verdict is Verdict.UNREACHABLE and p.dns is not None and "no answer from" in (p.dns.error or "")
        for p in report.probes
    )
    first_dns = report.probes[0].dns
    observe(f"{len(report.probes)} probes: verdict unreachable ({first_dns.error if first_dns else ''})")
    kv102 = {f.subject for f in report.findings if f.rule_id == "KV102" and f.vault_name == "kv-se-demo"}
    assert kv102 == {"se-subnet"}  # the one place the baseline expects kv-se-demo to be reachable from
    assert {c.kind for c in report.changes} == {ChangeKind.OPENED}
    assert before <= set(sqlite_store.load_findings(status=FindingStatus.OPEN))
    observe(f"changes: {_change_line(report)}; {len(before)} findings open before, all still open")


@pytest.mark.fault("Probes", "Private Endpoint address blackholed")
def test_a_blackholed_address_is_unreachable_at_the_connect_timeout(
    pe_lab: LabServices, observe: Callable[[str], None]
) -> None:
    pe_lab.use(fault_estate())
    runtime = fast_runtime(fault_environ(pe_lab), store=None)

    report = run_scan(REQUEST, runtime).report

    private = [
        p
        for p in report.probes
        if p.vault_name == "kv-pl-demo" and p.dns and p.dns.addresses == (PRIVATE_ENDPOINT,)
    ]
    assert {p.vantage for p in private} == {"se-subnet", "pl-subnet", "default-subnet"}
    assert all(p.verdict is Verdict.UNREACHABLE and p.tls and not p.tls.connected for p in private)
    observe(
        f"{len(private)} probes to {PRIVATE_ENDPOINT}: unreachable ({private[0].tls.error if private[0].tls else ''})"
    )
    assert _verdicts(report, "kv-se-demo")["se-subnet"] is Verdict.ADMITTED  # the public path still works
    kv102 = {f.subject for f in report.findings if f.rule_id == "KV102" and f.vault_name == "kv-pl-demo"}
    assert kv102 == {"se-subnet", "pl-subnet", "default-subnet"}
    observe(
        "KV102 (expected admitted, unreachable) from the 3 zone-linked vantage points; other vaults unaffected"
    )


@pytest.mark.fault("Probes", "TLS handshake reset")
def test_a_reset_handshake_is_an_error_verdict_and_sends_no_token(
    reset_lab: tuple[LabServices, HandshakeResetter], observe: Callable[[str], None]
) -> None:
    lab, resetter = reset_lab
    lab.use(fault_estate())
    runtime = fast_runtime(fault_environ(lab), store=None)

    report = run_scan(REQUEST, runtime).report

    private = [
        p
        for p in report.probes
        if p.vault_name == "kv-pl-demo" and p.dns and p.dns.addresses == (PRIVATE_ENDPOINT,)
    ]
    assert len(private) == 3 and resetter.resets >= 3
    for probe in private:
        assert probe.tls is not None and probe.tls.connected and not probe.tls.handshake_ok
        assert probe.verdict is Verdict.ERROR
        assert probe.health is not None and probe.health.status_code is None  # nothing sent after TLS failed
    observe(
        f"{len(private)} probes: connected, handshake failed ({private[0].tls.error if private[0].tls else ''}), verdict error"
    )
    pl_vault = next(p for p in report.postures if p.name == "kv-pl-demo")
    assert report.incomplete_vaults == {pl_vault.key}
    observe("kv-pl-demo marked incomplete (its findings cannot resolve); other vaults judged as usual")


@pytest.mark.fault("Probes", "connection reset after TLS, mid-request")
def test_a_request_answered_with_a_reset_is_an_error_verdict_and_resolves_nothing(
    lab: LabServices, sqlite_store: Store, observe: Callable[[str], None]
) -> None:
    runtime = fast_runtime(fault_environ(lab), store=sqlite_store)
    run_scan(REQUEST, runtime)
    before = set(sqlite_store.load_findings(status=FindingStatus.OPEN))
    lab.world.keyvault.servers[PUBLIC_INGRESS].inject(r"^/", Fault(reset=True, times=0))

    report = run_scan(REQUEST, runtime).report

    public = [p for p in report.probes if p.dns and p.dns.addresses == (PUBLIC_INGRESS,)]
    assert public and all(p.tls and p.tls.handshake_ok for p in public)
    assert all(p.verdict is Verdict.ERROR and p.data_plane and p.data_plane.message for p in public)
    message = public[0].data_plane.message if public[0].data_plane else None
    observe(f"{len(public)} probes: TLS ok, then reset; verdict error ({(message or '')[:50]})")
    assert _verdicts(report, "kv-pl-demo")["pl-subnet"] is Verdict.ADMITTED  # through the Private Endpoint
    assert not [c for c in report.changes if c.kind is ChangeKind.RESOLVED]
    assert before <= set(sqlite_store.load_findings(status=FindingStatus.OPEN))
    observe(f"{len(before)} findings open before, all still open, 0 resolved")


@pytest.mark.fault("Probes", "remote vantage point down")
def test_a_remote_vantage_point_that_is_down_is_kv106_and_keeps_what_it_saw_open(
    lab: LabServices, sqlite_store: Store, observe: Callable[[str], None]
) -> None:
    remote = RemoteVantage(lab)
    with remote.server:  # started first: its address has its port only once it listens
        environ = fault_environ(lab, KVMON_OUTSIDE_KEY=REMOTE_KEY)
        environ["KVMON_VANTAGES"] = json.dumps(
            [*(_vantage_json(v) for v in lab.vantages()), remote.vantage_json()]
        )
        runtime = fast_runtime(environ, store=sqlite_store)
        good = run_scan(REQUEST, runtime).report
    seen_from_outside = {
        i
        for i, r in sqlite_store.load_findings(status=FindingStatus.OPEN).items()
        if r.finding.subject == "outside"
    }
    assert good.errors == [] and seen_from_outside  # kv-se-demo and kv-pl-demo admit the outside: KV101

    report = run_scan(REQUEST, runtime).report  # the remote's server is stopped now

    kv106 = {f.vault_name: f for f in report.findings if f.rule_id == "KV106"}
    assert set(kv106) == {"kv-se-demo", "kv-pl-demo", "kv-b-open", "kv-b-wide"}
    assert all(f.subject == "outside" and "could not reach" in f.summary for f in kv106.values())
    observe(f"KV106 on all 4 vaults: {next(iter(kv106.values())).summary[:70]}")
    assert _verdicts(report, "kv-se-demo")["se-subnet"] is Verdict.ADMITTED  # local vantages unaffected
    assert not [c for c in report.changes if c.kind is ChangeKind.RESOLVED]
    assert seen_from_outside <= set(sqlite_store.load_findings(status=FindingStatus.OPEN))
    observe(f"{len(seen_from_outside)} findings seen from 'outside' still open, 0 resolved")


@pytest.mark.fault("Probes", "remote vantage endpoint never listened")
def test_a_remote_endpoint_nobody_listens_on_is_kv106(
    lab: LabServices, observe: Callable[[str], None]
) -> None:
    remote = RemoteVantage(lab, name="nowhere")
    environ = fault_environ(lab, KVMON_OUTSIDE_KEY=REMOTE_KEY)
    dead = f"https://127.0.0.1:{free_loopback_port()}/api/probe"
    environ["KVMON_VANTAGES"] = json.dumps(
        [*(_vantage_json(v) for v in lab.vantages()), remote.vantage_json(dead)]
    )

    report = run_scan(REQUEST, fast_runtime(environ, store=None)).report

    kv106 = [f for f in report.findings if f.rule_id == "KV106"]
    assert {f.vault_name for f in kv106} == {"kv-se-demo", "kv-pl-demo", "kv-b-open", "kv-b-wide"}
    assert {f.subject for f in kv106} == {"nowhere"}
    assert {p.key for p in report.postures} <= report.incomplete_vaults
    observe(f"KV106 on all 4 vaults; vaults marked incomplete ({kv106[0].summary[:60]})")


def _errors_part(output_format: str, text: str) -> str:
    """The part of a rendered report that lists the scan's errors."""
    if output_format == "json":
        return json.dumps(json.loads(text)["errors"])
    if output_format == "sarif":
        return json.dumps(json.loads(text)["runs"][0]["invocations"][0]["toolExecutionNotifications"])
    if output_format == "markdown":
        return text.split("## Errors", 1)[1]
    return "\n".join(line for line in text.splitlines() if line.startswith("error: "))


def _servfail(lab: LabServices) -> None:
    lab.world.dns.mode = "servfail"


def _empty_answer(lab: LabServices) -> None:
    lab.world.dns.mode = "empty"


def _dns_timeout(lab: LabServices) -> None:
    lab.world.dns.mode = "silent"


def _data_plane_503(lab: LabServices) -> None:
    lab.world.keyvault.servers[PUBLIC_INGRESS].inject(r"^/secrets/", Fault(status=503, times=0))


def _data_plane_hangs(lab: LabServices) -> None:
    lab.world.keyvault.servers[PUBLIC_INGRESS].inject(r"^/secrets/", Fault(delay_s=3.0, status=503, times=0))


@pytest.mark.parametrize(
    "break_it", [_servfail, _empty_answer, _dns_timeout, _data_plane_503, _data_plane_hangs]
)
@pytest.mark.fault("Probes", "DNS SERVFAIL, no answer, DNS timeout, data plane 503 or hanging")
def test_a_probe_that_proved_nothing_names_its_vault_in_every_format(
    lab: LabServices,
    sqlite_store: Store,
    break_it: Callable[[LabServices], None],
    observe: Callable[[str], None],
) -> None:
    runtime = fast_runtime(fault_environ(lab), store=sqlite_store)
    exposed = {f.vault_id for f in run_scan(REQUEST, runtime).report.findings if f.rule_id == "KV101"}
    assert exposed  # the lab's open vaults admit the internet: KV101, open in the store
    break_it(lab)

    report = run_scan(REQUEST, runtime).report

    blind = {p.vault_name for p in report.probes if p.verdict in (Verdict.ERROR, Verdict.UNREACHABLE)}
    silenced = exposed - {f.vault_id for f in report.findings if f.rule_id == "KV101"}
    assert silenced  # the store keeps them open; the report alone must say why they are not seen
    assert {vault_id.rsplit("/", 1)[1] for vault_id in silenced} <= blind
    still_open = sqlite_store.load_findings(status=FindingStatus.OPEN).values()
    assert exposed <= {record.finding.vault_id for record in still_open if record.finding.rule_id == "KV101"}
    for output_format in FORMATS:
        stream = io.StringIO()
        write_report(output_format, report.findings, stream=stream, errors=report.errors)
        named = _errors_part(output_format, stream.getvalue())
        assert all(vault_id in named for vault_id in silenced), output_format
    probe_error = next(e for e in report.errors if e.source is ErrorSource.PROBE and e.scope in silenced)
    observe(f"{len(silenced)} KV101 unseen, each vault named in every format's errors: {probe_error.message}")
