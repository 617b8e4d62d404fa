"""What a scan observed, in every format: subscriptions listed in part or not at all, vaults whose
sources fell short (configuration, perimeter, probes, logs), a vantage point that gave a vault no
result, and vantage points whose place nobody stated (configured so, or named only by a result)."""

from __future__ import annotations

import datetime as dt
import io
import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from monitor.config.policy import PLACE_NOT_STATED, Vantage
from monitor.judge.coverage import SourceState
from monitor.model import (
    ChangeKind,
    DataPlaneStep,
    DnsStep,
    ErrorSource,
    EvidenceSource,
    LogEvidence,
    PerimeterLookup,
    PerimeterReading,
    ProbeResult,
    Severity,
    Verdict,
)
from monitor.outputs.formats import FORMATS, Observed, to_json, to_markdown, to_sarif, write_report
from monitor.scan_report import ScanReport
from tests.conftest import REPO
from tests.store.helpers import SUB_A, SUB_B, T0, posture

from .conftest import Validate

SUB_C = "11111111-2222-4333-8444-555555555555"
WHOLE = posture("kv-whole")
GARBLED = posture("kv-garbled", problems=("properties.networkAcls: not an object",))
NO_PERIMETER = replace(
    posture("kv-perimeter", subscription=SUB_B),
    perimeter=PerimeterReading(lookup=PerimeterLookup.UNREADABLE, error="AuthorizationFailed"),
)
INSIDE = Vantage(name="hub", inside=True, subnet_id="/subscriptions/x/subnets/hub")
LAPTOP = Vantage(name="laptop", inside=None)


def admitted(name: str, vantage: str) -> ProbeResult:
    return ProbeResult(
        vault_name=name,
        vantage=vantage,
        hostname=f"{name}.vault.azure.net",
        started_at=T0,
        dns=DnsStep(
            query=f"{name}.vault.azure.net", chain=(f"{name}.vault.azure.net",), addresses=("20.1.2.3",)
        ),
        data_plane=DataPlaneStep(verdict=Verdict.ADMITTED, status_code=404, error_code="SecretNotFound"),
    )


def logs(vault_key: str, *, complete: bool) -> LogEvidence:
    return LogEvidence(
        vault_id=vault_key,
        workspace_id="ws-1",
        window_start=T0 - dt.timedelta(hours=1),
        window_end=T0,
        complete=complete,
        notes=() if complete else ("evidence incomplete: some shards did not answer",),
    )


def observed() -> Observed:
    report = ScanReport(
        scan_id="20260302T080000Z-abcd1234",
        started_at=T0,
        scope=(SUB_A, SUB_B, SUB_C),
        postures=[WHOLE, GARBLED, NO_PERIMETER],
        probes=[
            admitted("kv-whole", "hub"),
            admitted("kv-whole", "laptop"),
            admitted("kv-whole", "remote-nobody-configured"),
            admitted("kv-garbled", "hub"),
            admitted("kv-garbled", "laptop"),
            # kv-perimeter: no result from laptop at all
            admitted("kv-perimeter", "hub"),
        ],
        evidence=[
            logs(WHOLE.key, complete=True),
            logs(GARBLED.key, complete=False),
            logs(NO_PERIMETER.key, complete=True),
        ],
        listed_subscriptions=(SUB_A,),
        unread_subscriptions=(SUB_C,),
    )
    return Observed(report, vantages=(INSIDE, LAPTOP))


def test_json_says_per_vault_which_sources_fell_short_and_why() -> None:
    document = to_json([], observed=observed())
    schema = json.loads((REPO / "docs" / "scan-output.schema.json").read_text(encoding="utf-8"))
    assert list(jsonschema.Draft202012Validator(schema).iter_errors(document)) == []

    assert document["complete"] is False
    assert document["subscriptions"] == [
        {"id": SUB_A, "listing": "complete"},
        {"id": SUB_B, "listing": "partial"},
        {"id": SUB_C, "listing": "unread"},
    ]
    assert [(v["name"], v["configured"], v.get("place")) for v in document["vantages"]] == [
        ("hub", True, None),
        ("laptop", True, PLACE_NOT_STATED),
        ("remote-nobody-configured", False, PLACE_NOT_STATED),
    ]
    vaults = {vault["name"]: vault for vault in document["vaults"]}
    assert vaults["kv-whole"]["complete"] is True
    assert [p["vantage"] for p in vaults["kv-whole"]["probes"]] == [
        "hub",
        "laptop",
        "remote-nobody-configured",
    ]
    garbled = vaults["kv-garbled"]["sources"]
    assert garbled["configuration"] == {
        "state": "incomplete",
        "notes": ["properties.networkAcls: not an object"],
    }
    assert garbled["logs"]["state"] == "incomplete" and "shards" in garbled["logs"]["notes"][0]
    perimeter = vaults["kv-perimeter"]["sources"]
    assert perimeter["perimeter"] == {
        "state": "incomplete",
        "notes": ["perimeter association unreadable: AuthorizationFailed"],
    }
    assert perimeter["probes"] == {"state": "incomplete", "notes": ["laptop: no result"]}
    assert vaults["kv-whole"]["sources"]["perimeter"]["state"] == "not-read"


def test_a_source_no_stage_read_is_said_and_not_counted() -> None:
    seen = observed()
    seen.report.probes, seen.report.evidence = [], []  # --no-probes --no-logs
    seen.report.skipped_sources = frozenset({EvidenceSource.PROBES, EvidenceSource.LOGS})
    vaults = {vault["name"]: vault for vault in to_json([], observed=seen)["vaults"]}
    whole = vaults["kv-whole"]
    assert whole["complete"] is True
    assert whole["sources"]["probes"] == {"state": "not-read", "notes": ["this scan ran no probes"]}
    assert whole["sources"]["logs"] == {"state": "not-read", "notes": ["this scan read no access logs"]}


def test_markdown_lists_the_gaps_and_the_places_not_stated() -> None:
    markdown = to_markdown([], observed=observed())
    places = markdown.split("## Vantage points", 1)[1].split("##", 1)[0]
    assert "| hub | inside the VNet | /subscriptions/x/subnets/hub |" in places
    assert places.count("**place not stated:") == 2  # laptop and the unconfigured one
    gaps = markdown.split("## Incomplete evidence", 1)[1]
    assert (
        f"- subscription `{SUB_B}`: listing partial" in gaps
        and f"- subscription `{SUB_C}`: listing unread" in gaps
    )
    assert (
        "- **kv-garbled**: configuration: properties.networkAcls: not an object; logs: evidence incomplete"
        in gaps
    )
    assert (
        "- **kv-perimeter**: perimeter: perimeter association unreadable: AuthorizationFailed; probes: laptop: no result"
        in gaps
    )
    assert "kv-whole" not in gaps


def test_every_format_says_the_place_is_not_stated_and_how_to_state_it() -> None:
    for output_format in FORMATS:
        stream = io.StringIO()
        write_report(output_format, [], stream=stream, observed=observed())
        text = (
            stream.getvalue()
            if output_format in ("table", "markdown")
            else json.dumps(json.loads(stream.getvalue()))
        )
        assert "laptop" in text and "place not stated" in text and "KVMON_VANTAGES" in text, output_format


def test_without_an_observation_the_formats_are_as_before() -> None:
    document = to_json([])
    assert set(document) == {"findings", "errors", "expired_suppressions", "summary"}
    assert "properties" not in to_sarif([])["runs"][0]
    assert "## Vantage points" not in to_markdown([])


@pytest.mark.node
def test_sarif_with_an_observation_passes_the_multitool_and_the_schema(
    tmp_path: Path, sarif_multitool: Validate, sarif_schema_errors: Callable[[Any], list[str]]
) -> None:
    document = to_sarif([], observed=observed())
    run = document["runs"][0]
    assert run["properties"]["evidenceComplete"] is False
    assert [vault["name"] for vault in run["properties"]["incompleteVaults"]] == [
        "kv-garbled",
        "kv-perimeter",
    ]
    warnings = [n["message"]["text"] for n in run["invocations"][0]["toolExecutionNotifications"]]
    assert warnings == [
        f"vantage point laptop: {PLACE_NOT_STATED}.",
        f"vantage point remote-nobody-configured: {PLACE_NOT_STATED}.",
    ]
    assert sarif_schema_errors(document) == []
    path = tmp_path / "observed.sarif"
    path.write_text(json.dumps(document, indent=2), encoding="utf-8")
    assert sarif_multitool(path) == []


def test_the_schema_names_every_value_kvmon_writes() -> None:
    """The schema's fixed sets are the enums': a verdict or error source added to kvmon without the
    schema would fail every document that carries it."""
    schema = json.loads((REPO / "docs" / "scan-output.schema.json").read_text(encoding="utf-8"))
    defs = schema["$defs"]
    for name, enum in (
        ("verdict", Verdict),
        ("source_state", SourceState),
        ("error_source", ErrorSource),
        ("change_kind", ChangeKind),
        ("severity", Severity),
    ):
        assert set(defs[name]["enum"]) == {member.value for member in enum}, name
    assert set(defs["listing"]["enum"]) == {observed().subscription_state(s) for s in (SUB_A, SUB_B, SUB_C)}
