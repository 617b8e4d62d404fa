"""``kvmon scan`` end to end against the lab: the real SDK clients, probes, logs and store."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from lab.estate import WALKTHROUGH_SUBSCRIPTION, WALKTHROUGH_WORKSPACE, walkthrough_estate
from lab.resourcegraph import QUERY_ROUTE
from lab.services import LabServices
from monitor.cli import main


def scan_json(capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, dict]:
    code = main(["scan", "--format", "json", *extra])
    out = capsys.readouterr().out
    return code, json.loads(out)


def rules_of(document: dict, vault: str) -> set[str]:
    return {f["rule"] for f in document["findings"] if f["vault"] == vault}


def test_first_scan_finds_the_walkthrough_mistakes_and_opens_them(lab_environ, capsys) -> None:
    code, document = scan_json(capsys)

    assert code == 1  # high and critical findings, default --fail-on high
    assert document["errors"] == []
    assert {"KV001", "KV002", "KV101", "KV201"} <= rules_of(document, "kv-se-demo")
    assert {"KV001", "KV008", "KV101", "KV103"} <= rules_of(document, "kv-pl-demo")
    opened = {(c["rule"], c["vault"]) for c in document["changes"] if c["change"] == "opened"}
    assert ("KV101", "kv-se-demo") in opened and ("KV103", "kv-pl-demo") in opened


def test_second_scan_of_the_same_estate_changes_nothing(lab_environ, capsys) -> None:
    scan_json(capsys, "--no-notify")
    code, document = scan_json(capsys, "--no-notify")

    # Configuration and probes say the same; the logs still hold the first scan's admissions.
    assert document["changes"] == []
    assert code == 1


def test_fixing_the_firewall_resolves_exposure_and_reports_drift(
    lab: LabServices, lab_environ, capsys
) -> None:
    scan_json(capsys, "--no-notify", "--no-logs")
    vault = lab.estate.vault_by_name("kv-se-demo")
    assert vault is not None
    acls = dict(vault["properties"]["networkAcls"], defaultAction="Deny")
    lab.estate.update_vault(vault["id"], properties={"networkAcls": acls}, modified_by="bob@contoso.example")

    _, document = scan_json(capsys, "--no-notify", "--no-logs")

    changes = {(c["change"], c["rule"]) for c in document["changes"] if c["vault"] == "kv-se-demo"}
    assert ("resolved", "KV001") in changes and ("resolved", "KV002") in changes
    assert ("resolved", "KV101") in changes
    drift = [f for f in document["findings"] if f["rule"] == "KV301" and f["vault"] == "kv-se-demo"]
    assert len(drift) == 1 and drift[0]["severity"] == "info"  # Allow -> Deny tightens
    assert "bob@contoso.example" in json.dumps(drift[0]["evidence"])


def test_a_subscription_that_refuses_is_an_error_and_the_rest_is_scanned(
    lab: LabServices, lab_environ, capsys
) -> None:
    lab.estate.add_subscription("00000000-0000-0000-0000-0000000000ff", forbidden=True)

    _, document = scan_json(
        capsys,
        "--no-notify",
        "--subscription",
        WALKTHROUGH_SUBSCRIPTION,
        "--subscription",
        "00000000-0000-0000-0000-0000000000ff",
    )

    # One error per service's listing, each naming the subscription.
    assert [e["scope"] for e in document["errors"]] == ["00000000-0000-0000-0000-0000000000ff"] * 2
    assert "storage accounts" in document["errors"][1]["message"]
    assert rules_of(document, "kv-se-demo")


def test_no_subscription_is_a_usage_error(lab_environ, monkeypatch, capsys) -> None:
    monkeypatch.delenv("KVMON_SUBSCRIPTIONS")
    assert main(["scan"]) == 2
    assert "no subscription to scan" in capsys.readouterr().err


def test_a_bad_setting_names_the_setting(lab_environ, monkeypatch, capsys) -> None:
    monkeypatch.setenv("KVMON_PROBE_TIMEOUT", "soon")
    assert main(["scan"]) == 2
    assert "KVMON_PROBE_TIMEOUT" in capsys.readouterr().err


def test_kvmon_report_renders_the_latest_stored_scan(lab_environ, capsys, tmp_path) -> None:
    scan_json(capsys, "--no-notify")
    output = tmp_path / "report.html"

    assert main(["report", "--output", str(output)]) == 0

    html = output.read_text()
    assert "kv-se-demo" in html and "kv-pl-demo" in html and "KV101" in html


def kv302(document: dict) -> set[tuple[str, str]]:
    return {(f["vault"], f["subject"]) for f in document["findings"] if f["rule"] == "KV302"}


def test_a_vault_is_new_only_to_a_subscription_scanned_before(lab: LabServices, lab_environ, capsys) -> None:
    # A one-vault check first: it does not make the subscription look scanned.
    scan_json(capsys, "--no-notify", "--no-logs", "--no-probes", "--vault", "kv-se-demo")
    _, first = scan_json(capsys, "--no-notify", "--no-logs", "--no-probes")
    assert kv302(first) == set()

    lab.estate.add_vault(
        subscription_id=WALKTHROUGH_SUBSCRIPTION,
        resource_group="rg-new",
        name="kv-new-one",
        public_network_access="Disabled",
    )
    _, second = scan_json(capsys, "--no-notify", "--no-logs", "--no-probes")
    assert kv302(second) == {("kv-new-one", "appeared")}

    lab.estate.remove_vault(lab.estate.vault_by_name("kv-new-one")["id"])
    _, third = scan_json(capsys, "--no-notify", "--no-logs", "--no-probes")
    assert kv302(third) == {("kv-new-one", "disappeared")}
    assert ("resolved", "KV302") in {(c["change"], c["rule"]) for c in third["changes"]}


def test_the_lab_serves_resource_graph_on_the_arm_endpoint(
    lab: LabServices, lab_environ, monkeypatch, capsys
) -> None:
    _, by_arm = scan_json(capsys, "--no-notify", "--no-logs")
    lab.resource_graph.truncate_after(1)
    lab.use(walkthrough_estate())  # a fresh estate, quota and truncation for Resource Graph too
    assert lab.resource_graph.estate is lab.estate
    monkeypatch.setenv("KVMON_INVENTORY_SOURCE", "resource-graph")
    before = lab.arm.server.request_counts[QUERY_ROUTE]

    _, by_graph = scan_json(capsys, "--no-notify", "--no-logs")

    assert lab.arm.server.request_counts[QUERY_ROUTE] > before
    assert by_graph["errors"] == []
    assert {f["vault"] for f in by_graph["findings"]} == {f["vault"] for f in by_arm["findings"]}


def logs_window_start(lab: LabServices) -> dt.datetime:
    timespan = lab.logs.queries[-1].timespan
    assert timespan is not None
    return dt.datetime.fromisoformat(timespan.split("/")[0].replace("Z", "+00:00"))


def test_the_logs_window_starts_where_the_last_scan_of_the_subscription_stopped(
    lab: LabServices, lab_environ, capsys
) -> None:
    from monitor.store import store_from_environment

    scan_json(capsys, "--no-notify", "--no-probes")
    (first,) = store_from_environment(lab_environ).scan_runs(limit=1)
    assert first.logs_until is not None

    # A one-vault check reads logs too, but does not move the subscription's window.
    scan_json(capsys, "--no-notify", "--no-probes", "--vault", "kv-se-demo")
    scan_json(capsys, "--no-notify", "--no-probes")
    assert logs_window_start(lab) == first.logs_until - dt.timedelta(minutes=5)

    # A read that fell short does not move it either: the next scan reads that window again.
    lab.logs.set_partial(WALKTHROUGH_WORKSPACE, "some shards did not answer")
    (last_whole,) = store_from_environment(lab_environ).scan_runs(limit=1)
    scan_json(capsys, "--no-notify", "--no-probes")
    lab.logs.set_partial(WALKTHROUGH_WORKSPACE, None)
    (short,) = store_from_environment(lab_environ).scan_runs(limit=1)
    assert short.logs_until is None
    scan_json(capsys, "--no-notify", "--no-probes")
    assert last_whole.logs_until is not None
    assert logs_window_start(lab) == last_whole.logs_until - dt.timedelta(minutes=5)


def test_with_an_event_feed_a_change_only_the_scheduled_scan_found_is_kv303(
    lab: LabServices, lab_environ, capsys, monkeypatch
) -> None:
    monkeypatch.setenv("KVMON_EVENT_FEED", "true")
    scan_json(capsys, "--no-notify", "--no-logs", "--no-probes")
    vault = lab.estate.vault_by_name("kv-se-demo")
    assert vault is not None
    # Changed ten minutes ago, and no event scan stored it since: its event never came.
    real_clock = lab.estate.clock
    lab.estate.clock = lambda: real_clock() - dt.timedelta(minutes=10)
    acls = dict(vault["properties"]["networkAcls"], defaultAction="Deny")
    lab.estate.update_vault(vault["id"], properties={"networkAcls": acls}, modified_by="bob@contoso.example")
    lab.estate.clock = real_clock

    _, document = scan_json(capsys, "--no-notify", "--no-logs", "--no-probes")

    (unannounced,) = [f for f in document["findings"] if f["rule"] == "KV303"]
    assert unannounced["vault"] == "kv-se-demo"
    assert unannounced["evidence"]["fields"] == ["networkAcls.defaultAction"]
