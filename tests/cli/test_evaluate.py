"""``kvmon evaluate`` end to end through ``monitor.cli.main``: formats, exit codes, user errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from monitor.cli import main
from tests.output.conftest import Validate

REPO = Path(__file__).resolve().parents[2]
VAULTS = REPO / "examples" / "vaults"
SE, PL, LOCKED = (str(VAULTS / f"kv-{n}-demo.json") for n in ("se", "pl", "locked"))
WALKTHROUGH = str(REPO / "examples" / "baseline-walkthrough.yaml")


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["evaluate", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict[str, Any]]:
    code, out, err = run(capsys, *argv, "--format", "json")
    assert err == ""
    return code, json.loads(out)


def assert_one_clear_error(code: int, out: str, err: str, expected: str) -> None:
    assert code == 2
    assert out == ""
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("kvmon: error: ") and expected in lines[0], lines[0]


# -- judging files ----------------------------------------------------------------------------------


def test_table_in_a_pipe_and_exit_1_on_high_findings(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, SE, PL, LOCKED)
    assert code == 1 and err == ""
    assert out.splitlines()[0].split() == ["SEVERITY", "RULE", "VAULT", "FINDING"]
    assert "\x1b[" not in out  # capsys is not a terminal: plain text
    rows = [line.split()[:3] for line in out.splitlines()[1:] if line.startswith(("high", "medium"))]
    assert ["high", "KV002", "kv-se-demo"] in rows and ["high", "KV008", "kv-pl-demo"] in rows


def test_json_output(capsys: pytest.CaptureFixture[str]) -> None:
    code, document = run_json(capsys, SE, PL, LOCKED)
    assert code == 1
    found = {(f["vault"], f["rule"]) for f in document["findings"]}
    assert found == {
        ("kv-se-demo", "KV001"),
        ("kv-se-demo", "KV002"),
        ("kv-pl-demo", "KV001"),
        ("kv-pl-demo", "KV008"),
    }
    kv002 = next(f for f in document["findings"] if f["rule"] == "KV002")
    assert kv002["remediation"] == (
        "az keyvault update --name kv-se-demo --resource-group rg-walkthrough --default-action Deny"
    )
    assert kv002["vault_id"].endswith("/vaults/kv-se-demo") and kv002["suppressed"] is False
    assert document["errors"] == [] and document["expired_suppressions"] == []
    assert document["summary"]["high"] == 4


def test_with_the_walkthrough_baseline(capsys: pytest.CaptureFixture[str]) -> None:
    code, document = run_json(capsys, SE, PL, LOCKED, "--baseline", WALKTHROUGH)
    assert code == 1
    kv011 = {(f["vault"], f["subject"]): f for f in document["findings"] if f["rule"] == "KV011"}
    assert set(kv011) == {("kv-se-demo", "default_action"), ("kv-pl-demo", "public_network_access")}
    assert kv011[("kv-pl-demo", "public_network_access")]["severity"] == "high"  # the entry's drift_severity
    assert kv011[("kv-se-demo", "default_action")]["evidence"] == {
        "field": "default_action",
        "expected": "Deny",
        "actual": "Allow",
    }


def test_fail_on_threshold(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, SE, "--fail-on", "critical")[0] == 0
    assert run(capsys, SE, "--fail-on", "HIGH")[0] == 1
    assert run(capsys, LOCKED, "--fail-on", "info")[0] == 0
    code, out, _ = run(capsys, LOCKED)
    assert code == 0 and out.startswith("No findings.")


def test_suppressed_findings_never_count_and_expired_ones_do(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    baseline = tmp_path / "baseline.yaml"
    baseline.write_text(
        "version: 1\n"
        "suppressions:\n"
        "  - {rule: KV001, vault: kv-se-*, reason: migrating, owner: a@contoso.example, expires: 2999-01-01}\n"
        "  - {rule: KV002, vault: kv-se-*, reason: migrating, owner: a@contoso.example, expires: 2999-01-01}\n"
        "  - {rule: KV013, vault: '*', reason: lab, owner: a@contoso.example, expires: 2999-01-01}\n"
    )
    code, document = run_json(capsys, SE, "--baseline", str(baseline))
    assert code == 0
    assert {f["rule"]: f["suppressed"] for f in document["findings"]} == {
        "KV001": True,
        "KV002": True,
        "KV013": True,
    }
    baseline.write_text(baseline.read_text().replace("2999-01-01", "2001-01-01", 1))
    code, document = run_json(capsys, SE, "--baseline", str(baseline))
    assert code == 1
    assert [(x["rule"], x["owner"]) for x in document["expired_suppressions"]] == [
        ("KV001", "a@contoso.example")
    ]
    assert {f["rule"]: f["suppressed"] for f in document["findings"]}["KV001"] is False


def test_markdown_and_output_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "report.md"
    code, out, err = run(capsys, SE, "--format", "markdown", "--output", str(target))
    assert (code, out, err) == (1, "", "")
    text = target.read_text()
    assert text.startswith("# kvmon findings") and "| high | KV002 | kv-se-demo |" in text


def test_sarif_points_at_the_input_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    copy = tmp_path / "in" / "vaults.json"
    copy.parent.mkdir()
    shutil.copy(SE, copy)
    monkeypatch.chdir(tmp_path)
    code, out, _ = run(capsys, "in/vaults.json", "--format", "sarif")
    assert code == 1
    run_ = json.loads(out)["runs"][0]
    assert run_["originalUriBaseIds"]["SRCROOT"]["uri"] == tmp_path.resolve().as_uri() + "/"
    physical = run_["results"][0]["locations"][0]["physicalLocation"]
    assert physical["artifactLocation"] == {"uri": "in/vaults.json", "uriBaseId": "SRCROOT"}
    id_line = next(
        n
        for n, line in enumerate(copy.read_text().splitlines(), 1)
        if '"id": "/subscriptions/' in line and '/vaults/kv-se-demo"' in line
    )
    assert physical["region"] == {"startLine": id_line, "endLine": id_line}


@pytest.mark.node
def test_sarif_file_passes_the_multitool(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], sarif_multitool: Validate
) -> None:
    target = tmp_path / "kvmon.sarif"
    code, _, _ = run(
        capsys, SE, PL, LOCKED, "--baseline", WALKTHROUGH, "--format", "sarif", "--output", str(target)
    )
    assert code == 1
    assert sarif_multitool(target) == []


def test_published_example_with_a_quoted_ip_rule(
    arm_examples: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    body = json.loads((arm_examples / "createVaultWithNetworkAcls.json").read_text())["body"]
    vault = tmp_path / "published.json"
    vault.write_text(json.dumps(body))
    code, document = run_json(capsys, str(vault))
    assert code == 0  # KV004 is medium: below the default --fail-on high
    assert [(f["rule"], f["subject"]) for f in document["findings"]] == [("KV004", "'10.91.4.0/24'")]


def test_a_bad_entry_is_reported_and_the_others_judged(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    page = json.loads(Path(SE).read_text())
    page["value"].insert(0, {"name": "no-id"})
    vaults = tmp_path / "page.json"
    vaults.write_text(json.dumps(page))
    code, document = run_json(capsys, str(vaults))
    assert code == 1
    assert {f["rule"] for f in document["findings"]} == {"KV001", "KV002"}
    [error] = document["errors"]
    assert error["source"] == "input" and "value[0]" in error["message"]


def test_the_same_vault_twice_is_judged_once(capsys: pytest.CaptureFixture[str]) -> None:
    code, document = run_json(capsys, SE, SE)
    assert code == 1
    assert sorted(f["rule"] for f in document["findings"]) == ["KV001", "KV002"]
    [error] = document["errors"]
    assert "already read from" in error["message"]


# -- user errors: one line, exit 2 --------------------------------------------------------------------


def test_missing_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert_one_clear_error(*run(capsys, str(tmp_path / "nope.json")), "nope.json: cannot read the file")


def test_bad_json(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text('{\n  "value": [\n    {"id": }\n  ]\n}\n')
    assert_one_clear_error(*run(capsys, str(broken)), "broken.json:3:")


def test_no_files(capsys: pytest.CaptureFixture[str]) -> None:
    assert_one_clear_error(*run(capsys), "the following arguments are required: FILE")


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--fail-on", "severe"], "argument --fail-on: unknown severity 'severe'"),
        (["--format", "xml"], "argument --format: invalid choice: 'xml'"),
    ],
)
def test_bad_options(capsys: pytest.CaptureFixture[str], argv: list[str], expected: str) -> None:
    assert_one_clear_error(*run(capsys, SE, *argv), expected)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("version: 1\nentries: [\n", "bad.yaml:3: YAML syntax error"),
        ("version: 1\nentrys: []\n", "bad.yaml:2: entrys: unknown key 'entrys'"),
        (
            "version: 1\ndefaults:\n  allowed_ip_ranges: [300.0.0.0/8]\n",
            "bad.yaml:3: defaults.allowed_ip_ranges[0]",
        ),
        ("version: 1\nentries:\n  - {name: a, match: {name: 'a b'}}\n", "bad.yaml:3: entries[0].match.name"),
        (
            "version: 1\ndefaults: {drift_severity: huge}\n",
            "bad.yaml:2: defaults.drift_severity: unknown severity",
        ),
        ("version: 1\ndefaults: {mode: open}\n", "bad.yaml:2: defaults.mode: unknown mode 'open'"),
        ("version: 1\ndefaults: {mode: public}\n", "bad.yaml:2: defaults: mode public needs a justification"),
        (
            "version: 1\nsuppressions:\n  - {rule: KV001, reason: r, owner: o, expires: 2027-13-01}\n",
            "bad.yaml:3: suppressions[0].expires",
        ),
    ],
)
def test_bad_baseline(capsys: pytest.CaptureFixture[str], tmp_path: Path, text: str, expected: str) -> None:
    baseline = tmp_path / "bad.yaml"
    baseline.write_text(text)
    code, out, err = run(capsys, SE, "--baseline", str(baseline))
    assert_one_clear_error(code, out, err, expected)
    assert str(baseline) in err


def test_missing_baseline(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert_one_clear_error(
        *run(capsys, SE, "--baseline", str(tmp_path / "none.yaml")), "none.yaml: cannot read the baseline"
    )


def test_unwritable_output(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert_one_clear_error(
        *run(capsys, SE, "--output", str(tmp_path / "missing-dir" / "out.json")), "cannot write the report"
    )
