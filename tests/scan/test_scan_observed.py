"""``kvmon scan`` says what it observed, not only what it found: every probe result (vault ×
vantage point) and, per vault, which sources were complete; a vantage point whose place nobody
stated says so in every format. Run end to end against the lab, through the real SDK clients, the
lab's DNS breaking one vault's name (SERVFAIL) while the other answers.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from lab.estate import INTERNET_CLIENT, PUBLIC_INGRESS, WALKTHROUGH_SUBSCRIPTION, WALKTHROUGH_WORKSPACE
from lab.services import LabServices
from monitor.cli import main
from monitor.config.policy import PLACE_NOT_STATED
from tests.conftest import REPO
from tests.output.conftest import Validate

SCHEMA = json.loads((REPO / "docs" / "scan-output.schema.json").read_text(encoding="utf-8"))
VANTAGES = ["internet", "se-subnet", "pl-subnet", "default-subnet", "spoke"]
BROKEN = "kv-pl-demo"  # its name answers SERVFAIL
WHOLE = "kv-se-demo"


def schema_errors(document: Any) -> list[str]:
    validator = jsonschema.Draft202012Validator(SCHEMA)
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(document)]


def scan(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = main(["scan", "--no-notify", *args])
    return code, capsys.readouterr().out


@pytest.fixture
def servfail_for_one_vault(lab: LabServices, lab_environ: dict[str, str]) -> dict[str, str]:
    lab.world.dns.set_name_mode(f"{BROKEN}.vault.lab.test", "servfail")
    return lab_environ


def test_json_carries_every_probe_result_and_each_vaults_completeness(
    servfail_for_one_vault: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = scan(capsys, "--format", "json")
    document = json.loads(out)

    assert code == 1  # kv-se-demo still admits the internet: KV101
    assert schema_errors(document) == []
    assert document["complete"] is False
    assert document["subscriptions"] == [{"id": WALKTHROUGH_SUBSCRIPTION, "listing": "complete"}]
    assert [v["name"] for v in document["vantages"]] == VANTAGES
    assert all(v["configured"] and v["inside"] is not None and "place" not in v for v in document["vantages"])
    vaults = {vault["name"]: vault for vault in document["vaults"]}
    assert set(vaults) == {BROKEN, WHOLE}
    for vault in vaults.values():  # every vault × vantage point
        assert [probe["vantage"] for probe in vault["probes"]] == VANTAGES

    # The vault whose name failed: every probe says so, and its probes source fell short.
    broken = vaults[BROKEN]
    assert broken["complete"] is False
    for probe in broken["probes"]:
        assert (probe["verdict"], probe["conclusive"]) == ("unreachable", False)
        assert probe["failure"].startswith("DNS: ") and "SERVFAIL" in probe["failure"]
        assert probe["dns"]["error"] and probe["dns_addresses"] == [] and probe["status_code"] is None
    probes_source = broken["sources"]["probes"]
    assert probes_source["state"] == "incomplete"
    assert [note.split(":", 1)[0] for note in probes_source["notes"]] == VANTAGES
    assert "SERVFAIL" in probes_source["notes"][0]
    assert broken["sources"]["configuration"] == {"state": "complete", "notes": []}

    # The vault that answered: complete, with what each probe saw.
    whole = vaults[WHOLE]
    assert whole["complete"] is True
    assert {name: source["state"] for name, source in whole["sources"].items()} == {
        "configuration": "complete",
        "perimeter": "complete",  # read from the lab's ARM: associated with none
        "probes": "complete",
        "logs": "complete",
        "perimeter_logs": "not-read",  # no KVMON_NSP_WORKSPACES here
    }
    logs = whole["sources"]["logs"]
    assert logs["workspace_id"] == WALKTHROUGH_WORKSPACE and logs["window_start"] < logs["window_end"]
    internet = whole["probes"][0]
    assert (
        internet["verdict"] == "admitted" and internet["conclusive"] is True and internet["failure"] is None
    )
    assert (
        internet["dns_addresses"] == [PUBLIC_INGRESS]
        and internet["dns_chain"][0] == f"{WHOLE}.vault.lab.test"
    )
    assert internet["seen_address"] == INTERNET_CLIENT and internet["seen_address_private"] is False
    assert internet["status_code"] == 404 and internet["data_plane"]["verdict"] == "admitted"
    se_subnet = whole["probes"][1]
    assert se_subnet["seen_address_private"] is True  # the Service Endpoint's path

    # The errors name the failed probes too, as they did.
    assert {e["scope"].rsplit("/", 1)[1] for e in document["errors"] if e["source"] == "probe"} == {BROKEN}


@pytest.mark.node
def test_sarif_and_markdown_name_the_vault_with_gaps(
    servfail_for_one_vault: dict[str, str],
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    sarif_multitool: Validate,
) -> None:
    _, sarif_text = scan(capsys, "--format", "sarif", "--no-logs")
    sarif = json.loads(sarif_text)
    properties = sarif["runs"][0]["properties"]
    assert properties["evidenceComplete"] is False
    [gap] = properties["incompleteVaults"]
    assert gap["name"] == BROKEN and gap["gaps"][0].startswith("probes: internet: unreachable, DNS: ")
    assert [v["name"] for v in properties["vantagePoints"]] == VANTAGES
    path = tmp_path / "scan.sarif"
    path.write_text(sarif_text, encoding="utf-8")
    assert sarif_multitool(path) == []

    _, markdown = scan(capsys, "--format", "markdown", "--no-logs")
    incomplete = markdown.split("## Incomplete evidence", 1)[1]
    assert f"**{BROKEN}**: probes: internet: unreachable, DNS: " in incomplete
    assert WHOLE not in incomplete  # only the vaults with gaps
    assert "| spoke | inside the VNet |" in markdown.split("## Vantage points", 1)[1]


def test_a_place_nobody_stated_is_said_in_every_format(
    lab_environ: dict[str, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Nothing says where this process stands: the scan's one vantage point is the bare "local".
    # Probes are off: the system resolver is not the lab's, and no packet leaves loopback.
    monkeypatch.delenv("KVMON_VANTAGES")
    monkeypatch.setenv("KVMON_VANTAGE", "laptop")

    _, out = scan(capsys, "--format", "json", "--no-probes")
    document = json.loads(out)
    assert schema_errors(document) == []
    assert document["vantages"] == [
        {"name": "laptop", "inside": None, "subnet_id": None, "configured": True, "place": PLACE_NOT_STATED}
    ]
    assert all(vault["sources"]["probes"]["state"] == "not-read" for vault in document["vaults"])
    assert all(vault["probes"] == [] for vault in document["vaults"])

    _, sarif_text = scan(capsys, "--format", "sarif", "--no-probes")
    run = json.loads(sarif_text)["runs"][0]
    [warning] = [n for n in run["invocations"][0]["toolExecutionNotifications"] if n["level"] == "warning"]
    assert warning["message"]["text"] == f"vantage point laptop: {PLACE_NOT_STATED}."
    assert run["properties"]["vantagePoints"][0]["place"] == PLACE_NOT_STATED

    _, markdown = scan(capsys, "--format", "markdown", "--no-probes")
    row = next(line for line in markdown.splitlines() if line.startswith("| laptop |"))
    assert "place not stated" in row and "KVMON_VANTAGES" in row and '"inside": true\\|false' in row

    _, table = scan(capsys, "--format", "table", "--no-probes")
    assert f"vantage point laptop: {PLACE_NOT_STATED}" in table.splitlines()


def test_the_schema_refuses_what_kvmon_does_not_write(
    lab_environ: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    """The schema check above can fail: a verdict kvmon has no word for, a vault without its
    sources and an unknown field are each caught."""
    _, out = scan(capsys, "--format", "json", "--no-logs")
    document = json.loads(out)
    assert schema_errors(document) == []
    document["vaults"][0]["probes"][0]["verdict"] = "maybe"
    del document["vaults"][1]["sources"]
    document["vantages"][0]["inside_ish"] = True
    errors = schema_errors(document)
    assert any("'maybe' is not one of" in error for error in errors)
    assert any("'sources' is a required property" in error for error in errors)
    assert any("'inside_ish' was unexpected" in error for error in errors)
