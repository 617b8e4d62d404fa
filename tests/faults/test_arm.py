"""ARM faults: one subscription (B) misbehaves after a good scan; subscription A must be scanned as
usual, the fault must be in ``report.errors``, and nothing B's vaults had open may resolve."""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from azure.core.credentials import TokenCredential
from azure.identity import ClientSecretCredential

from lab.arm import LIST_ROUTE
from lab.credential import LabCredential
from lab.http import Fault, RecordingServer, Response
from lab.services import LabServices
from monitor.app.runtime import build_runtime
from monitor.app.scan import ScanRequest, ScanRuntime, run_scan
from monitor.cli import main
from monitor.config.settings import Settings
from monitor.model import ChangeKind, FindingStatus, Service
from monitor.scan_report import ScanReport
from monitor.store import Store
from tests.faults.conftest import (
    FAULT_TIMEOUT_S,
    SUB_A,
    SUB_B,
    fast_runtime,
    fault_environ,
    free_loopback_port,
)

SUB_B_PATH = f"(?i)^/subscriptions/{SUB_B}/"
# The vault list alone: a vault page served on the perimeter listing's route would be a fault of
# the perimeter reader too (tests/perimeters has those).
SUB_B_VAULTS = f"(?i)^/subscriptions/{SUB_B}/providers/Microsoft\\.KeyVault/vaults$"
# The vaults' listing: a fault on a subscription's whole path reaches its storage listing too (tests/
# storage/test_scan.py has those).
BOTH = ScanRequest(subscriptions=(SUB_A, SUB_B), notify=False, services=frozenset({Service.KEYVAULT}))


def _open(store: Store) -> dict[str, str]:
    """Open finding id -> vault name."""
    return {
        finding_id: record.finding.vault_name
        for finding_id, record in store.load_findings(status=FindingStatus.OPEN).items()
    }


def _good_scan(lab: LabServices, store: Store) -> tuple[ScanRuntime, dict[str, str]]:
    runtime = fast_runtime(fault_environ(lab), store=store)
    report = run_scan(BOTH, runtime).report
    assert report.errors == [], report.errors
    assert report.unread_subscriptions == ()
    opened = _open(store)
    assert {"kv-b-open", "kv-b-wide", "kv-se-demo", "kv-pl-demo"} <= set(opened.values())
    return runtime, opened


def _vaults(report: ScanReport) -> set[str]:
    return {posture.name for posture in report.postures}


def _assert_nothing_resolved(
    report: ScanReport, store: Store, before: dict[str, str], observe: Callable[[str], None]
) -> None:
    resolved = [c for c in report.changes if c.kind is ChangeKind.RESOLVED]
    still_open = _open(store)
    assert resolved == []
    assert set(before) <= set(still_open), "a finding resolved on missing evidence"
    observe(f"{len(before)} findings open before, all still open, 0 resolved")


def _error_line(report: ScanReport, source: str) -> str:
    return "; ".join(
        f"{e.source} [{e.code or '-'}] {e.message[:70]}" for e in report.errors if e.source == source
    )


def _throttle(lab: LabServices) -> None:
    lab.arm.server.inject(
        SUB_B_PATH,
        Fault(
            status=429,
            headers={"Retry-After": "1"},
            body={"error": {"code": "TooManyRequests", "message": "Too many requests, retry after 1 s"}},
            times=0,
        ),
    )


def _server_error(lab: LabServices) -> None:
    lab.arm.server.inject(
        SUB_B_PATH,
        Fault(
            status=500,
            body={"error": {"code": "InternalServerError", "message": "ARM had a bad day"}},
            times=0,
        ),
    )


def _reset(lab: LabServices) -> None:
    lab.arm.server.inject(SUB_B_PATH, Fault(reset=True, times=0))


def _stall(lab: LabServices) -> None:
    lab.arm.server.inject(SUB_B_PATH, Fault(delay_s=FAULT_TIMEOUT_S * 2, times=0))


def _forbid(lab: LabServices) -> None:
    lab.estate.forbidden_subscriptions.add(SUB_B)


@pytest.mark.parametrize(
    ("inject", "code", "words"),
    [
        pytest.param(
            _throttle,
            "429",
            "TooManyRequests",
            marks=pytest.mark.fault("ARM", "429 + Retry-After, past the retries"),
        ),
        pytest.param(_server_error, "500", "InternalServerError", marks=pytest.mark.fault("ARM", "500")),
        pytest.param(_reset, None, "Connection aborted", marks=pytest.mark.fault("ARM", "connection reset")),
        pytest.param(
            _stall, None, "timed out", marks=pytest.mark.fault("ARM", "slow answer past the timeout")
        ),
        pytest.param(
            _forbid, "403", "AuthorizationFailed", marks=pytest.mark.fault("ARM", "subscription forbidden")
        ),
    ],
)
def test_a_subscription_that_fails_is_an_error_and_keeps_its_findings_open(
    inject: Callable[[LabServices], None],
    code: str | None,
    words: str,
    lab: LabServices,
    sqlite_store: Store,
    observe: Callable[[str], None],
) -> None:
    runtime, before = _good_scan(lab, sqlite_store)
    inject(lab)

    report = run_scan(BOTH, runtime).report

    errors = [e for e in report.errors if e.source == "arm"]
    assert [(e.scope, e.code) for e in errors] == [(SUB_B, code)]
    assert report.unread_subscriptions == (SUB_B,)  # kvmon scan exits 3
    assert words in errors[0].message
    observe(f"report.errors: {_error_line(report, 'arm')}")
    assert _vaults(report) == {"kv-se-demo", "kv-pl-demo"}
    a_findings = {f.vault_name for f in report.findings}
    assert a_findings == {"kv-se-demo", "kv-pl-demo"}
    observe(f"subscription A scanned ({len(report.findings)} findings)")
    _assert_nothing_resolved(report, sqlite_store, before, observe)


@pytest.mark.fault("ARM", "one 429 + Retry-After, then an answer")
def test_a_single_throttle_is_waited_out_and_the_scan_is_whole(
    lab: LabServices, sqlite_store: Store, observe: Callable[[str], None]
) -> None:
    runtime, before = _good_scan(lab, sqlite_store)
    lab.arm.server.inject(
        SUB_B_PATH,
        Fault(status=429, headers={"Retry-After": "1"}, body={"error": {"code": "TooManyRequests"}}),
    )
    requests_before = lab.arm.server.request_counts[LIST_ROUTE]

    report = run_scan(BOTH, runtime).report

    assert report.errors == []
    assert _vaults(report) == {"kv-se-demo", "kv-pl-demo", "kv-b-open", "kv-b-wide"}
    retried = lab.arm.server.request_counts[LIST_ROUTE] - requests_before
    assert retried == 3  # A once, B throttled then answered
    observe(f"retried after Retry-After ({retried} list requests for 2 subscriptions), no error")
    _assert_nothing_resolved(report, sqlite_store, before, observe)


def _page_with(lab: LabServices, broken: Callable[[dict[str, Any]], Any]) -> dict[str, Any]:
    """Subscription B's list page with kv-b-wide replaced by ``broken(kv-b-wide)``."""
    vaults = lab.estate.vaults_in(SUB_B)
    return {"value": [broken(copy.deepcopy(v)) if v["name"] == "kv-b-wide" else v for v in vaults]}


def _wrong_types(vault: dict[str, Any]) -> dict[str, Any]:
    vault["properties"]["networkAcls"] = {
        "defaultAction": ["Deny"],
        "ipRules": "0.0.0.0/1",
        "virtualNetworkRules": [{"id": 7}],
    }
    vault["properties"]["publicNetworkAccess"] = 1
    return vault


def _no_id(vault: dict[str, Any]) -> dict[str, Any]:
    del vault["id"]
    return vault


@pytest.mark.fault("ARM", "malformed JSON in one vault (wrong types)")
def test_a_vault_with_wrong_types_is_an_error_and_keeps_its_findings_open(
    lab: LabServices, sqlite_store: Store, observe: Callable[[str], None]
) -> None:
    runtime, before = _good_scan(lab, sqlite_store)
    lab.arm.server.inject(SUB_B_VAULTS, Fault(status=200, body=_page_with(lab, _wrong_types), times=0))

    report = run_scan(BOTH, runtime).report

    errors = [e for e in report.errors if e.source == "arm"]
    assert errors and all("kv-b-wide" in e.scope for e in errors)
    assert any("networkAcls" in e.message for e in errors)
    observe(f"report.errors: {len(errors)} problem(s) of kv-b-wide, e.g. {errors[0].message[:60]}")
    assert _vaults(report) == {"kv-se-demo", "kv-pl-demo", "kv-b-open", "kv-b-wide"}
    wide = next(p for p in report.postures if p.name == "kv-b-wide")
    assert wide.key in report.incomplete_vaults
    observe("the other vaults judged as usual; kv-b-wide marked incomplete")
    _assert_nothing_resolved(report, sqlite_store, before, observe)


@pytest.mark.fault("ARM", "malformed JSON in one vault (no id)")
def test_a_vault_that_is_not_a_vault_is_an_error_and_keeps_its_subscription_open(
    lab: LabServices, sqlite_store: Store, observe: Callable[[str], None]
) -> None:
    runtime, before = _good_scan(lab, sqlite_store)
    lab.arm.server.inject(SUB_B_VAULTS, Fault(status=200, body=_page_with(lab, _no_id), times=0))

    report = run_scan(BOTH, runtime).report

    errors = [e for e in report.errors if e.source == "arm"]
    assert [e.scope for e in errors] == [SUB_B]
    assert "vault #1 of the list is unusable" in errors[0].message
    observe(f"report.errors: {_error_line(report, 'arm')}")
    assert _vaults(report) == {"kv-se-demo", "kv-pl-demo", "kv-b-open"}
    observe("kv-b-open still judged; subscription B not complete")
    _assert_nothing_resolved(report, sqlite_store, before, observe)


@pytest.mark.fault("ARM", "list page that is not JSON")
def test_a_page_that_is_not_json_is_an_error(
    lab: LabServices, sqlite_store: Store, observe: Callable[[str], None]
) -> None:
    runtime, before = _good_scan(lab, sqlite_store)
    lab.arm.server.inject(
        SUB_B_PATH,
        Fault(status=200, headers={"Content-Type": "application/json"}, body=b'{"value": [{"id": ', times=0),
    )

    report = run_scan(BOTH, runtime).report

    errors = [e for e in report.errors if e.source == "arm"]
    assert [e.scope for e in errors] == [SUB_B]
    assert "not valid JSON" in errors[0].message
    observe(f"report.errors: {_error_line(report, 'arm')}")
    assert _vaults(report) == {"kv-se-demo", "kv-pl-demo"}
    _assert_nothing_resolved(report, sqlite_store, before, observe)


def _token_endpoint_down(lab: LabServices) -> TokenCredential:
    """azure-identity's own client, asking a token endpoint nobody listens on. Without
    ``disable_instance_discovery`` MSAL would first ask login.microsoftonline.com whether that
    authority is known: traffic off loopback."""
    return ClientSecretCredential(
        "00000000-0000-0000-0000-0000000000aa",
        "00000000-0000-0000-0000-0000000000bb",
        "not-a-secret",
        authority=f"https://127.0.0.1:{free_loopback_port()}",
        disable_instance_discovery=True,
        retry_total=0,
        connection_timeout=FAULT_TIMEOUT_S,
    )


def _arm_fails_everywhere(lab: LabServices) -> None:
    lab.arm.server.inject(r"(?i)^/subscriptions/", Fault(status=500, times=0))


def _arm_stalls_everywhere(lab: LabServices) -> None:
    lab.arm.server.inject(r"(?i)^/subscriptions/", Fault(delay_s=FAULT_TIMEOUT_S * 2, times=0))


@pytest.mark.parametrize(
    "break_it",
    [
        pytest.param(
            _token_endpoint_down, marks=pytest.mark.fault("ARM", "token endpoint down (kvmon scan)")
        ),
        pytest.param(
            _arm_fails_everywhere, marks=pytest.mark.fault("ARM", "500 for every subscription (kvmon scan)")
        ),
        pytest.param(
            _arm_stalls_everywhere,
            marks=pytest.mark.fault("ARM", "stall for every subscription (kvmon scan)"),
        ),
    ],
)
def test_kvmon_scan_exits_3_when_no_vault_of_a_subscription_could_be_read(
    break_it: Callable[[LabServices], TokenCredential | None],
    lab: LabServices,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    observe: Callable[[str], None],
) -> None:
    environ = fault_environ(lab, sqlite_path=tmp_path / "kvmon.db")
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    credential = break_it(lab)
    monkeypatch.setattr(
        "monitor.cli.scan.build_runtime",
        lambda settings, **kwargs: fast_runtime(environ, store=None, credential=credential),
    )

    code = main(["scan", "--format", "json", "--no-notify", "--no-probes", "--no-logs"])

    document = json.loads(capsys.readouterr().out)
    assert code == 3
    assert {error["scope"] for error in document["errors"]} >= {SUB_A, SUB_B}
    observe(f"exit {code}; errors: {document['errors'][0]['message'][:70]}")


@pytest.mark.fault("ARM", "every listing hangs, production settings made small (KVMON_ARM_TIMEOUT/RETRIES)")
def test_a_hanging_arm_listing_ends_within_the_stated_bound(
    lab: LabServices, observe: Callable[[str], None]
) -> None:
    timeout_s, retries = 0.3, 1
    environ = fault_environ(lab, KVMON_ARM_TIMEOUT=str(timeout_s), KVMON_ARM_RETRIES=str(retries))
    settings = Settings.from_environ(environ)
    runtime = build_runtime(
        settings, environ=environ, credential=LabCredential(), store=None, with_store=False
    )
    lab.arm.server.inject(r"(?i)^/subscriptions/", Fault(delay_s=timeout_s * 10, times=0))
    before = lab.arm.server.total_requests

    started = time.monotonic()
    report = run_scan(
        ScanRequest(
            subscriptions=(SUB_A, SUB_B),
            notify=False,
            probe=False,
            logs=False,
            services=frozenset({Service.KEYVAULT}),
        ),
        runtime,
    ).report
    elapsed = time.monotonic() - started

    # The README's bound: (retries + 1) × 2 × timeout per request (no backoff before the first
    # retry), one listing per subscription, one after the other at worst.
    bound = 2 * (retries + 1) * 2 * timeout_s
    assert report.unread_subscriptions == (SUB_A, SUB_B)
    assert lab.arm.server.total_requests - before == 2 * (retries + 1)
    assert elapsed < bound + 1.0  # a second for loopback, threads and the SDK
    observe(f"2 subscriptions × {retries + 1} tries: ended in {elapsed:.1f} s (bound {bound:.1f} s)")


def _b_page_linking_to(lab: LabServices, origin: str) -> dict[str, Any]:
    """Subscription B's whole list page, with a ``nextLink`` to ``origin`` (same path and query)."""
    link = f"{origin}/subscriptions/{SUB_B}/providers/Microsoft.KeyVault/vaults?api-version=2026-05-15&$skiptoken=b2"
    return {"value": lab.estate.vaults_in(SUB_B), "nextLink": link}


@pytest.mark.parametrize(
    ("elsewhere_link", "code", "words"),
    [
        pytest.param(
            True,
            "LinkElsewhere",
            "refused to follow a link from an answer (nextLink) to https://127.0.0.1:",
            marks=pytest.mark.fault("ARM", "nextLink to another host"),
        ),
        pytest.param(
            False,
            "PageLoop",
            "nextLink repeated: page 2 gave the nextLink page 1 gave",
            marks=pytest.mark.fault("ARM", "nextLink that loops back to its page"),
        ),
    ],
)
def test_a_next_link_elsewhere_or_in_a_loop_is_an_error_and_sends_nothing_elsewhere(
    elsewhere_link: bool,
    code: str,
    words: str,
    lab: LabServices,
    sqlite_store: Store,
    observe: Callable[[str], None],
) -> None:
    runtime, before = _good_scan(lab, sqlite_store)
    hostile_vault = copy.deepcopy(lab.estate.vaults_in(SUB_B)[0])
    hostile_vault["id"] = hostile_vault["id"].replace("kv-b-open", "kv-b-elsewhere")
    hostile_vault["name"] = "kv-b-elsewhere"
    with RecordingServer(answer=Response(200, {"value": [hostile_vault]})) as elsewhere:
        page = _b_page_linking_to(lab, elsewhere.url if elsewhere_link else lab.arm.url)
        lab.arm.server.inject(SUB_B_VAULTS, Fault(status=200, body=page, times=0))
        requests_before = lab.arm.server.request_counts[LIST_ROUTE]

        report = run_scan(BOTH, runtime).report

    assert elsewhere.requests == [] and elsewhere.authorization_headers == []
    listed = lab.arm.server.request_counts[LIST_ROUTE] - requests_before
    observe(f"0 requests to the other host; {listed} list requests to ARM")
    errors = [e for e in report.errors if e.source == "arm"]
    assert [(e.scope, e.code) for e in errors] == [(SUB_B, code)]
    assert f"listing of subscription {SUB_B} stopped" in errors[0].message and words in errors[0].message
    observe(f"report.errors: {_error_line(report, 'arm')}")
    assert listed == (2 if elsewhere_link else 3)  # A once; B once, and once more for the loop
    # B's page came from ARM and is judged; nothing of it resolves, the other host's vault is nowhere.
    assert _vaults(report) == {"kv-se-demo", "kv-pl-demo", "kv-b-open", "kv-b-wide"}
    _assert_nothing_resolved(report, sqlite_store, before, observe)
