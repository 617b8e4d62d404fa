"""Settings: one table in code, the same table in the README, one clear error per bad value."""

from __future__ import annotations

import datetime as dt

import pytest

from monitor.cli import build_parser, main
from monitor.config.settings import (
    SETTINGS,
    InventoryChoice,
    LogsTable,
    Role,
    Settings,
    SettingsError,
    parse_duration,
)
from tests.conftest import REPO

README = (REPO / "README.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("setting", SETTINGS, ids=lambda s: s.name)
def test_every_setting_is_in_the_readme_table_with_its_default(setting) -> None:
    row = f"| `{setting.name}` | {setting.meaning} | {setting.default} | {setting.required} |"
    assert row in README


def test_every_command_is_in_the_readme() -> None:
    parser = build_parser()
    commands = next(a for a in parser._actions if a.dest == "command").choices
    for name in commands:
        assert f"kvmon {name}" in README, name


def test_the_readme_shows_the_two_commands() -> None:
    assert "make demo" in README and "make test" in README


def test_defaults_without_any_setting() -> None:
    settings = Settings.from_environ({})
    assert settings.vault_suffixes == ("vault.azure.net",)
    assert settings.scan_interval == dt.timedelta(minutes=15)
    assert settings.role == "monitor" and settings.vantage == "local"
    assert settings.connection_verify is True


def test_lists_clouds_and_emulator_suffixes() -> None:
    settings = Settings.from_environ(
        {
            "KVMON_SUBSCRIPTIONS": " a , b,,",
            "KVMON_CLOUD": "azurechinacloud",
            "KVMON_VAULT_DNS_SUFFIX": "vault.lab.test.",
            "KVMON_PRIVATE_RANGES": "127.10.0.0/16",
        }
    )
    assert settings.subscriptions == ("a", "b")
    assert settings.vault_suffixes == ("vault.azure.cn", "vault.lab.test")
    assert settings.address_space.is_private("127.10.1.4") and not settings.address_space.is_private(
        "127.30.0.5"
    )


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("KVMON_CLOUD", "Mars"),
        ("KVMON_PROBE_PORT", "https"),
        ("KVMON_PROBE_PORT", "0"),
        ("KVMON_PROBE_TIMEOUT", "-1"),
        ("KVMON_PRIVATE_RANGES", "10.0.0.0/33"),
        ("KVMON_SCAN_INTERVAL", "15 minutes"),
        ("KVMON_LOGS_TABLE", "SigninLogs"),
        ("KVMON_ROLE", "boss"),
        ("KVMON_VANTAGES", "[{"),
        ("KVMON_VANTAGES", '[{"name": "x"}]'),
    ],
)
def test_a_bad_value_names_its_setting(name, value) -> None:
    with pytest.raises(SettingsError, match=name):
        Settings.from_environ({name: value})


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("KVMON_PROBE_PORT", "70000", "KVMON_PROBE_PORT: must be at most 65535, got '70000'"),
        ("KVMON_PROBE_PORT", "0", "KVMON_PROBE_PORT: must be at least 1, got '0'"),
        ("KVMON_PROBE_PORT", "https", "KVMON_PROBE_PORT: expected a whole number, got 'https'"),
        ("KVMON_PROBE_CONCURRENCY", "100000", "KVMON_PROBE_CONCURRENCY: must be at most 1024"),
        ("KVMON_PROBE_PROCESSES", "0", "KVMON_PROBE_PROCESSES: must be at least 1"),
        ("KVMON_PROBE_TIMEOUT", "600", "KVMON_PROBE_TIMEOUT: must be at most 120"),
        ("KVMON_RESOURCE_GRAPH_THRESHOLD", "-3", "KVMON_RESOURCE_GRAPH_THRESHOLD: must be at least 1"),
        ("KVMON_SCAN_INTERVAL", "0m", "KVMON_SCAN_INTERVAL: must be between 1m and 7d"),
        ("KVMON_LOGS_FIRST_WINDOW", "1000d", "KVMON_LOGS_FIRST_WINDOW: must be between 1m and 730d"),
        ("KVMON_SCAN_SCHEDULE", "*/15 * * * *", "KVMON_SCAN_SCHEDULE: '*/15 * * * *' is not an NCRONTAB"),
        (
            "KVMON_INVENTORY_SOURCE",
            "graph",
            "KVMON_INVENTORY_SOURCE: 'graph' is not one of auto, arm, resource-graph",
        ),
        ("KVMON_ROLE", "boss", "KVMON_ROLE: 'boss' is not one of monitor, probe"),
    ],
)
def test_an_out_of_range_value_is_refused_up_front(name: str, value: str, expected: str) -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_environ({name: value})
    assert str(caught.value).startswith(expected)
    assert "\n" not in str(caught.value)


def test_a_retired_setting_is_refused_naming_where_its_value_belongs() -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_environ({"KVMON_REFUSED_THRESHOLD": "5"})
    assert str(caught.value) == (
        "KVMON_REFUSED_THRESHOLD: is no longer read: KV202's threshold is the baseline's logs.refused_threshold"
    )
    assert Settings.from_environ({"KVMON_REFUSED_THRESHOLD": " "}).role is Role.MONITOR  # blank is unset


def test_choices_are_enums_taken_in_any_case() -> None:
    settings = Settings.from_environ(
        {
            "KVMON_INVENTORY_SOURCE": "Resource-Graph",
            "KVMON_LOGS_TABLE": "azkvauditlogs",
            "KVMON_ROLE": "PROBE",
        }
    )
    assert settings.inventory_source is InventoryChoice.RESOURCE_GRAPH
    assert settings.logs_table is LogsTable.AZKV_AUDIT_LOGS
    assert settings.role is Role.PROBE and settings.role == "probe"
    assert Settings.from_environ({"KVMON_PROBE_PORT": " "}).probe_port == 443  # blank is unset


def test_kvmon_probe_with_a_port_out_of_range_exits_2_with_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("KVMON_PROBE_PORT", "70000")
    assert main(["probe", "kv-demo"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == "kvmon: error: KVMON_PROBE_PORT: must be at most 65535, got '70000'\n"


def test_durations() -> None:
    assert parse_duration("90s") == dt.timedelta(seconds=90)
    assert parse_duration(" 7D ") == dt.timedelta(days=7)
    with pytest.raises(SettingsError, match="--since"):
        parse_duration("soon", name="--since")
