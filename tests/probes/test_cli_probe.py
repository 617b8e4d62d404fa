"""``kvmon probe`` against the lab: every step printed, JSON that decodes, clear usage errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lab.credential import LabCredential
from lab.world import LabWorld
from monitor.cli import build_parser, main
from monitor.cli.probe import execute
from monitor.model import Verdict
from probes.wire import result_from_json


def _environ(world: LabWorld) -> dict[str, str]:
    return {
        "KVMON_VAULT_DNS_SUFFIX": "vault.lab.test",
        "KVMON_PRIVATE_RANGES": "127.10.0.0/16,127.11.0.0/16",
        "KVMON_CA_BUNDLE": world.ca_path,
        "KVMON_PROBE_PORT": str(world.port),
        "KVMON_PROBE_TIMEOUT": "2",
    }


def _run(world: LabWorld, *argv: str) -> int:
    args = build_parser("probe").parse_args(["probe", *argv])
    return execute(args, credential=LabCredential(), environ=_environ(world))


def test_a_probe_prints_every_step(world: LabWorld, capsys: pytest.CaptureFixture[str]) -> None:
    code = _run(world, "kv-se-demo", "--resolver", world.resolver, "--source-address", "127.30.0.5")
    out = capsys.readouterr().out
    assert code == 0
    for text in (
        "DNS",
        "127.40.0.10 (public)",
        "TCP/TLS",
        "certificate valid",
        "health",
        "vault saw 127.30.0.5",
        "admitted",
    ):
        assert text in out


def test_a_named_vantage_from_a_file_and_json_output(
    world: LabWorld, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "vantages.yaml"
    path.write_text(
        f"- name: pl-subnet\n  inside: true\n  source_address: 127.10.2.5\n  resolver: '{world.resolver}'\n"
    )
    code = _run(world, "kv-pl-demo", "--vantages", str(path), "--vantage", "pl-subnet", "--format", "json")
    result = result_from_json(json.loads(capsys.readouterr().out))
    assert code == 0
    assert result.vantage == "pl-subnet"
    assert result.dns is not None and result.dns.addresses == ("127.10.2.10",)
    assert result.verdict is Verdict.ADMITTED


def test_no_verdict_exits_3(world: LabWorld, capsys: pytest.CaptureFixture[str]) -> None:
    code = _run(world, "kv-nobody", "--resolver", world.resolver, "--source-address", "127.30.0.5")
    assert code == 3
    assert "NXDOMAIN" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["evil.example.com"], "VAULT: 'evil.example.com' is not under a Key Vault DNS suffix"),
        (["kv--bad"], "VAULT: 'kv--bad' is not a Key Vault name"),
        (["kv-se-demo", "--vantage", "nowhere"], "--vantage: no vantage point named 'nowhere'"),
        (["kv-se-demo", "--resolver", "dns.google"], "--resolver: 'dns.google' is not a resolver address"),
        (["kv-se-demo", "--source-address", "10.0.0"], "--source-address: '10.0.0' is not an IP address"),
        (["kv-se-demo", "--port", "0"], "--port: 0 is not a TCP port"),
        (["kv-se-demo", "--suffix", "lab.test"], "--suffix: not a Key Vault DNS suffix"),
        (
            ["kv-se-demo", "--ca-bundle", "/nonexistent/ca.pem"],
            "--ca-bundle: /nonexistent/ca.pem: no such file",
        ),
        (
            ["kv-se-demo", "--vantages", "/nonexistent/v.yaml"],
            "--vantages: /nonexistent/v.yaml: no such file",
        ),
    ],
)
def test_usage_errors_are_one_line_and_exit_2(
    argv: list[str], message: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("KVMON_VANTAGES", "KVMON_VAULT_DNS_SUFFIX", "KVMON_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)
    assert main(["probe", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"kvmon: error: {message}")
    assert err.count("\n") == 1
