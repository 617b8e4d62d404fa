"""``kvmon findings`` and ``kvmon history`` over a store filled by two scans."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json

import pytest
from azure.data.tables import TableServiceClient

from monitor.cli import main
from monitor.model import Severity, Suppression
from monitor.store import open_store
from monitor.store.base import PostureSnapshot
from monitor.store.reconcile import apply_reconciliation
from tests.store.helpers import SUB_B, T0, finding, ip_rule, posture

LATER = T0 + dt.timedelta(minutes=15)


@pytest.fixture(params=["sqlite", "tables"])
def store_flags(request: pytest.FixtureRequest, tmp_path, monkeypatch) -> list[str]:
    """A store holding two scans of three vaults, and the flags (or environment) that select it."""
    if request.param == "sqlite":
        flags = ["--sqlite", str(tmp_path / "cli.db")]
        store = open_store(sqlite_path=tmp_path / "cli.db")
    else:
        connection_string = request.getfixturevalue("azurite").connection_string
        # The CLI opens the default table names on the shared Azurite: start them empty.
        with TableServiceClient.from_connection_string(connection_string) as service:
            for table in service.query_tables("TableName ge 'kvmon' and TableName lt 'kvmoo'"):
                service.delete_table(table.name)
        store = open_store(connection_string=connection_string)
        monkeypatch.setenv("KVMON_STORAGE", connection_string)
        flags = []
    app, data, other = posture("kv-app"), posture("kv-data"), posture("kv-app", subscription=SUB_B)
    waived = Suppression(
        rule="KV002", vault_pattern="kv-data", reason="migration", owner="sec", expires=dt.date(2026, 9, 1)
    )
    first = [
        finding("kv-app", "KV001"),
        finding("kv-app", "KV004", subject="0.0.0.0/0", severity=Severity.CRITICAL),
        finding("kv-data", "KV002", suppression=waived),
    ]
    second = [f for f in first if f.rule_id != "KV001"]
    keys = {app.key, data.key, other.key}
    for at, current, vault_postures in (
        (T0, first, (app, data, other)),
        (
            LATER,
            second,
            (dataclasses.replace(app, default_action="Allow", ip_rules=(ip_rule("0.0.0.0/0"),)), data, other),
        ),
    ):
        apply_reconciliation(store, current=current, assessed_vaults=keys, complete_vaults=keys, now=at)
        store.save_postures(PostureSnapshot(p, scan_id=f"scan-{at:%H%M}", seen_at=at) for p in vault_postures)
    store.close()
    return flags


def run_json(capsys, *argv: str):
    assert main([*argv, "--format", "json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_findings_by_status_and_vault(store_flags, capsys) -> None:
    open_now = run_json(capsys, "findings", *store_flags)
    assert [(f["rule_id"], f["severity"], f["status"]) for f in open_now] == [("KV004", "critical", "open")]
    assert (
        open_now[0]["first_seen"] == "2026-03-02T08:00:00Z"
        and open_now[0]["last_seen"] == "2026-03-02T08:15:00Z"
    )

    everything = run_json(capsys, "findings", "--status", "all", *store_flags)
    assert sorted((f["rule_id"], f["status"]) for f in everything) == [
        ("KV001", "resolved"),
        ("KV002", "suppressed"),
        ("KV004", "open"),
    ]
    suppressed = run_json(capsys, "findings", "--status", "suppressed", *store_flags)
    assert suppressed[0]["suppression"]["reason"] == "migration"
    assert (
        run_json(capsys, "findings", "--status", "all", "--vault", "KV-DA*", *store_flags)[0]["rule_id"]
        == "KV002"
    )


def test_findings_table(store_flags, capsys, monkeypatch) -> None:
    monkeypatch.setenv("COLUMNS", "250")  # rich wraps cells to the width it believes it has
    assert main(["findings", "--status", "all", *store_flags]) == 0
    out = capsys.readouterr().out
    assert "KV004" in out and "suppressed (migration; until 2026-09-01)" in out


def test_history_shows_snapshots_and_the_diff(store_flags, capsys, monkeypatch) -> None:
    monkeypatch.setenv("COLUMNS", "250")
    history = run_json(capsys, "history", "kv-data", *store_flags)
    assert [s["scan_id"] for s in history["snapshots"]] == ["scan-0800"]
    assert history["last_seen"] == "2026-03-02T08:15:00Z"

    app_id = posture("kv-app").id
    history = run_json(capsys, "history", app_id.upper(), *store_flags)
    assert history["vault_id"] == app_id
    assert [s["scan_id"] for s in history["snapshots"]] == ["scan-0800", "scan-0815"]
    assert history["snapshots"][1]["direction"] == "loosening"
    assert history["snapshots"][1]["changes_since_previous"] == [
        {
            "field": "networkAcls.defaultAction",
            "change": "changed",
            "before": "Deny",
            "after": "Allow",
            "direction": "loosening",
        },
        {
            "field": "networkAcls.ipRules",
            "change": "added",
            "before": None,
            "after": "0.0.0.0/0",
            "direction": "loosening",
        },
        {
            "field": "networkAcls.ipRules",
            "change": "removed",
            "before": "203.0.113.10/32",
            "after": None,
            "direction": "neutral",
            "note": "still covered by a rule",
        },
    ]

    assert main(["history", app_id, *store_flags]) == 0
    assert "~ networkAcls.defaultAction Deny → Allow (loosening)" in capsys.readouterr().out


def test_history_user_errors_are_one_line(store_flags, capsys) -> None:
    assert main(["history", "kv-app", *store_flags]) == 2  # two subscriptions hold a kv-app
    assert "2 vaults are named 'kv-app'; pass one resource id" in capsys.readouterr().err
    assert main(["history", "kv-nope", *store_flags]) == 2
    assert "no vault named 'kv-nope'" in capsys.readouterr().err


def test_a_bad_connection_string_is_a_usage_error_that_does_not_echo_it(capsys, monkeypatch) -> None:
    monkeypatch.setenv("KVMON_STORAGE", "AccountKey=s3cr3t;nonsense")
    assert main(["findings"]) == 2
    err = capsys.readouterr().err
    assert "connection string is not valid" in err and "s3cr3t" not in err


def test_an_unreachable_store_is_one_line_without_the_key(capsys, monkeypatch) -> None:
    from lab.azurite import DEV_ACCOUNT_KEY

    dead = (
        f"DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={DEV_ACCOUNT_KEY};"
        "TableEndpoint=http://127.0.0.1:9/devstoreaccount1;"
    )
    monkeypatch.setenv("KVMON_STORAGE", dead)
    assert main(["findings"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("kvmon: error: the store is unavailable") and DEV_ACCOUNT_KEY not in err
    assert len(err.strip().splitlines()) == 1
