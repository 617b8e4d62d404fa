"""``kvmon evaluate FILE`` on files of any content, with any baseline and flags: exit 0 or 1 with a
readable report, or exit 2 with one line on stderr; never a traceback, never a hang."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from lab.services import WALKTHROUGH_BASELINE
from monitor.cli import main
from monitor.outputs.formats import FORMATS
from tests.fuzz.conftest import COMMAND, tally
from tests.fuzz.strategies import any_json, baseline_document, vault_json

_documents = st.one_of(
    vault_json,
    st.lists(vault_json, max_size=3),
    st.fixed_dictionaries({"value": st.lists(vault_json, max_size=3)}),
    st.fixed_dictionaries({"value": any_json}),
    any_json,
)


def _encode(document: Any, encoding: str) -> bytes:
    text = json.dumps(document, allow_nan=True, ensure_ascii=False)
    return text.encode(encoding)


vault_files = st.one_of(
    st.builds(_encode, _documents, st.sampled_from(["utf-8", "utf-8", "utf-8-sig", "utf-16", "utf-32"])),
    st.binary(max_size=300),
    st.sampled_from(
        [
            b"",
            b"[" * 100_000,
            b'{"id": "/subscriptions/s/resourceGroups/r/providers/Microsoft.KeyVault/vaults/kv", "properties": ',
            b'{"id": NaN}',
            b"\xef\xbb\xbf\xef\xbb\xbf{}",
            b'{"value": [' + b'{"id": "/x"},' * 2000 + b"{}]}",
        ]
    ),
)
baselines = st.one_of(
    st.none(),
    st.none(),
    st.just(WALKTHROUGH_BASELINE.read_text(encoding="utf-8")),
    baseline_document.map(lambda d: yaml.safe_dump(d, allow_unicode=True, sort_keys=False)),
)
fail_on = st.sampled_from(["info", "low", "medium", "HIGH", "critical", "severe"])


def _run(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("evaluate-fuzz")


@COMMAND
@given(content=vault_files, baseline=baselines, output_format=st.sampled_from(FORMATS), threshold=fail_on)
def test_kvmon_evaluate_reports_or_refuses_in_one_line(
    content: bytes, baseline: str | None, output_format: str, threshold: str, workdir: Path
) -> None:
    vaults = workdir / "vaults.json"
    vaults.write_bytes(content)
    argv = ["evaluate", str(vaults), "--format", output_format, "--fail-on", threshold]
    if baseline is not None:
        baseline_file = workdir / "baseline.yaml"
        baseline_file.write_text(baseline, encoding="utf-8")
        argv += ["--baseline", str(baseline_file)]

    code, out, err = _run(argv)

    assert "Traceback" not in err and "Traceback" not in out
    if code == 2:
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("kvmon: error: "), err
        assert out == ""
        tally("kvmon evaluate", "exit 2, one line")
        return
    assert code in (0, 1), code
    if output_format in ("json", "sarif"):
        report = json.loads(out)
        assert report["version"] == "2.1.0" if output_format == "sarif" else "findings" in report
    else:
        assert out.strip()
    tally("kvmon evaluate", f"exit {code}, report")
