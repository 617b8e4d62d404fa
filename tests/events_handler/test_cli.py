"""``kvmon event FILE|-`` against the lab: the same handler as ``vault_changed``, printed."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest

from lab.arm import GET_ROUTE
from lab.credential import LabCredential
from lab.http import Fault
from lab.services import LabServices
from monitor.cli import main
from tests.events_handler.conftest import open_vault, vault_id
from tests.events_handler.payloads import DELETE, cloud_event, event_grid_event


@pytest.fixture
def cli_environ(lab: LabServices, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    environ = lab.environ(sqlite_path=tmp_path / "kvmon.db")
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr("monitor.app.runtime.default_credential", lambda settings: LabCredential())
    return environ


def _file(tmp_path: Path, body: Any) -> str:
    path = tmp_path / "event.json"
    path.write_text(json.dumps(body) if not isinstance(body, str) else body)
    return str(path)


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, Any, str]:
    code = main(["event", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_a_delivered_array_is_handled_and_printed_as_json(
    lab: LabServices, cli_environ: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    vault = vault_id(lab, "kv-se-demo")
    open_vault(lab, "kv-se-demo")
    write = event_grid_event(vault)
    failed = event_grid_event(vault, event_type="Microsoft.Resources.ResourceWriteFailure", status="Failed")

    code, out, _ = _run(capsys, _file(tmp_path, [write, write, failed]), "--format", "json", "--no-probes")

    document = json.loads(out)
    assert code == 1  # KV001 is high: --fail-on high
    assert document["duplicates"] == 1
    statuses = [(e["event_id"], e["status"]) for e in document["events"]]
    assert statuses == [(write["id"], "processed"), (failed["id"], "ignored")]
    processed = document["events"][0]
    assert processed["actor"]["upn"] == "mallory@contoso.example"
    assert {"KV001"} <= {f["rule"] for f in processed["findings"]}
    assert lab.arm.server.request_counts[GET_ROUTE] == 1

    # Replaying the same file (a dead letter handled twice) folds it.
    code, out, _ = _run(capsys, _file(tmp_path, [write]), "--format", "json", "--no-probes")
    assert [e["status"] for e in json.loads(out)["events"]] == ["duplicate"]


def test_a_cloud_event_delete_from_stdin_prints_a_table(
    lab: LabServices,
    cli_environ: dict[str, str],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    vault = vault_id(lab, "kv-pl-demo")
    lab.estate.remove_vault(vault)
    body = json.dumps(cloud_event(vault, event_type=DELETE)).encode()
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(body)))

    code, out, _ = _run(capsys, "-", "--no-probes", "--fail-on", "critical")

    assert code == 0
    assert "gone" in out and "kv-pl-demo" in out and "mallory@contoso.example" in out


def test_an_unreadable_payload_exits_2_naming_the_file_and_field(
    cli_environ: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _file(tmp_path, "{not json")
    code, _, err = _run(capsys, path)
    assert code == 2 and path in err

    code, _, err = _run(capsys, str(tmp_path / "missing.json"))
    assert code == 2 and "missing.json" in err


def test_a_vault_arm_will_not_serve_exits_3(
    lab: LabServices, cli_environ: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lab.arm.server.inject(
        r"(?i).*/vaults/kv-se-demo$",
        Fault(
            status=429,
            body={"error": {"code": "TooManyRequests", "message": "slow"}},
            headers={"Retry-After": "0"},
            times=0,
        ),
    )

    code, out, err = _run(
        capsys, _file(tmp_path, event_grid_event(vault_id(lab, "kv-se-demo"))), "--no-probes"
    )

    assert code == 3 and "error" in out
    assert "kv-se-demo" in err


def test_a_dead_lettered_record_is_replayed(
    lab: LabServices, cli_environ: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    open_vault(lab, "kv-se-demo")
    dead = event_grid_event(vault_id(lab, "kv-se-demo")) | {
        "deadLetterReason": "MaxDeliveryAttemptsExceeded",
        "deliveryAttempts": 30,
        "lastDeliveryOutcome": "TimedOut",
        "lastHttpStatusCode": 0,
        "publishTime": "2026-12-02T10:00:00.0000000Z",
        "lastDeliveryAttemptTime": "2026-12-03T10:00:00.0000000Z",
    }

    code, out, _ = _run(capsys, _file(tmp_path, [dead]), "--format", "json", "--no-probes", "--no-notify")

    (event,) = json.loads(out)["events"]
    assert code == 1 and event["status"] == "processed"
    assert "KV001" in {f["rule"] for f in event["findings"]}
