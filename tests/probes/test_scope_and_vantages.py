"""What probes may contact (scope), and vantage points as data (files, the app setting, the lab)."""

from __future__ import annotations

from pathlib import Path

import pytest

from lab.services import walkthrough_vantages
from monitor.config.settings import Settings, SettingsError
from monitor.config.vantages import (
    VantageConfigError,
    load_vantages,
    parse_resolver,
    parse_vantages,
)
from monitor.naming.keyvault import private_link_zone
from probes.scope import OutOfScope, ProbeScope


@pytest.mark.parametrize(
    ("given", "host"),
    [
        ("kv-demo", "kv-demo.vault.azure.net"),
        ("KV-Demo", "kv-demo.vault.azure.net"),
        ("kv-demo.vault.azure.net", "kv-demo.vault.azure.net"),
        ("kv-demo.vault.azure.net.", "kv-demo.vault.azure.net"),
        ("kv-demo.VAULT.azure.cn", "kv-demo.vault.azure.cn"),
        ("kv-demo.vault.usgovcloudapi.net", "kv-demo.vault.usgovcloudapi.net"),
        ("https://kv-demo.vault.azure.net/", "kv-demo.vault.azure.net"),
        ("abc", "abc.vault.azure.net"),
        ("a" + "b2-" * 7 + "z1", "a" + "b2-" * 7 + "z1.vault.azure.net"),
    ],
)
def test_names_in_scope(given: str, host: str) -> None:
    assert ProbeScope().hostname_for(given) == host


@pytest.mark.parametrize(
    ("given", "why"),
    [
        ("ab", "not a Key Vault name"),
        ("a" * 25, "not a Key Vault name"),
        ("9lives", "not a Key Vault name"),
        ("kv-", "not a Key Vault name"),
        ("kv--a", "not a Key Vault name"),
        ("kv_a", "not a Key Vault name"),
        ("kv\na", "not a Key Vault name"),
        ("kv-demo.vault.lab.test", "not under a Key Vault DNS suffix"),
        ("kv-demo.azure.net", "not under a Key Vault DNS suffix"),
        ("x.kv-demo.vault.azure.net", "not a Key Vault name"),
        ("https://kv-demo.vault.azure.net:444/", "without port or credentials"),
        ("https://kv-demo.vault.azure.net/?a=b", "no path, query or fragment"),
        ("ftp://kv-demo.vault.azure.net/", "without port or credentials"),
    ],
)
def test_names_out_of_scope(given: str, why: str) -> None:
    with pytest.raises(OutOfScope, match=why):
        ProbeScope().hostname_for(given)


def test_an_emulator_suffix_is_explicit_and_becomes_the_default() -> None:
    scope = ProbeScope.with_emulator("vault.lab.test")
    assert scope.hostname_for("kv-se-demo") == "kv-se-demo.vault.lab.test"
    assert scope.hostname_for("kv-se-demo.vault.azure.net") == "kv-se-demo.vault.azure.net"
    assert scope.vault_name_of("https://kv-se-demo.vault.lab.test/") == "kv-se-demo"
    with pytest.raises(ValueError, match="not a Key Vault DNS suffix"):
        ProbeScope.with_emulator("lab.test")
    with pytest.raises(ValueError, match="not one of the scope's suffixes"):
        ProbeScope(suffixes=("vault.azure.net",), default_suffix="vault.azure.cn")


@pytest.mark.parametrize(
    ("suffix", "zone"),
    [
        ("vault.azure.net", "privatelink.vaultcore.azure.net"),
        ("vault.azure.cn", "privatelink.vaultcore.azure.cn"),
        ("vault.usgovcloudapi.net", "privatelink.vaultcore.usgovcloudapi.net"),
        ("vault.lab.test", "privatelink.vaultcore.lab.test"),
    ],
)
def test_private_link_zones(suffix: str, zone: str) -> None:
    assert private_link_zone(suffix) == zone


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("10.0.0.4", ("10.0.0.4", 53)),
        ("127.0.0.1:5353", ("127.0.0.1", 5353)),
        ("[::1]:53", ("::1", 53)),
        ("::1", ("::1", 53)),
    ],
)
def test_resolver_addresses(text: str, parsed: tuple[str, int]) -> None:
    assert parse_resolver(text) == parsed


@pytest.mark.parametrize("text", ["dns.example.com", "10.0.0.4:0", "10.0.0.4:dns", "10.0.0:53", "", "[::1]x"])
def test_resolvers_must_be_addresses(text: str) -> None:
    with pytest.raises(ValueError):
        parse_resolver(text)


VANTAGES_YAML = """\
vantages:
  - name: internet
    inside: false
  - name: se-subnet
    inside: true
    subnet_id: /subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/virtualNetworks/v/subnets/se
    source_address: 10.1.1.4
    resolver: 168.63.129.16
  - name: outside-app
    inside: false
    endpoint: https://kvmon-outside.azurewebsites.net/api/probe
    key_setting: KVMON_PROBE_KEY_OUTSIDE
"""


def test_vantages_load_from_yaml(tmp_path: Path) -> None:
    path = tmp_path / "vantages.yaml"
    path.write_text(VANTAGES_YAML)
    internet, se, outside = load_vantages(path)
    assert (internet.name, internet.inside, internet.endpoint) == ("internet", False, None)
    assert se.inside and se.source_address == "10.1.1.4" and se.resolver == "168.63.129.16"
    assert se.subnet_id is not None and se.subnet_id.endswith("/subnets/se")
    assert outside.endpoint == "https://kvmon-outside.azurewebsites.net/api/probe"
    assert outside.key_setting == "KVMON_PROBE_KEY_OUTSIDE"


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ("{}", 'expected a list of vantage points (or {"vantages": [...]})'),
        ("{vantages: [], colour: red}", "colour: unknown field"),
        ("[{inside: true}]", "vantages[0].name: required"),
        (
            "[{name: 'a b', inside: true}]",
            "vantages[0].name: expected 1-64 letters, digits, dots, hyphens or underscores, got 'a b'",
        ),
        ("[{name: a}]", "vantages[0].inside: required"),
        ("[{name: a, inside: yes please}]", "vantages[0].inside: expected true or false, got 'yes please'"),
        ("[{name: a, inside: true}, {name: A, inside: false}]", "vantages[1].name: 'A' is defined twice"),
        (
            "[{name: a, inside: true, source_address: 10.0.0}]",
            "vantages[0].source_address: '10.0.0' is not an IP address",
        ),
        (
            "[{name: a, inside: true, resolver: dns.google}]",
            "vantages[0].resolver: 'dns.google' is not a resolver address (use IP or IP:PORT, e.g. 10.0.0.4:53)",
        ),
        ("[{name: a, inside: true, resolver: '  '}]", "vantages[0].resolver: must not be empty"),
        ("[{name: a, inside: true, resolver: 5}]", "vantages[0].resolver: expected a text, got 5"),
        (
            "[{name: a, inside: true, subnet_id: subnet-1}]",
            "vantages[0].subnet_id: 'subnet-1' is not a subnet resource id",
        ),
        (
            "[{name: a, inside: false, endpoint: 'http://x/api/probe', key_setting: K}]",
            "vantages[0].endpoint: 'http://x/api/probe' must be an https:// URL without credentials or query "
            "(the function key comes from key_setting)",
        ),
        (
            "[{name: a, inside: false, endpoint: 'https://x/api/probe'}]",
            "vantages[0].key_setting: required with endpoint (the app setting holding its key)",
        ),
        (
            "[{name: a, inside: false, endpoint: 'https://x/api/probe?code=s3cret', key_setting: K}]",
            "vantages[0].endpoint: 'https://x/api/probe?code=s3cret' must be an https:// URL without "
            "credentials or query (the function key comes from key_setting)",
        ),
        (
            "[{name: a, inside: true, key_setting: 'x y'}]",
            "vantages[0].key_setting: expected the name of an app setting (letters, digits and _), got 'x y'",
        ),
        ("[{name: a, inside: false, colour: red}]", "vantages[0].colour: unknown field"),
        ("[a, b]", "vantages[0]: expected a mapping, got 'a' (and 1 more problem)"),
    ],
)
def test_vantage_errors_name_the_file_the_field_and_the_problem(
    tmp_path: Path, entries: str, message: str
) -> None:
    path = tmp_path / "v.yaml"
    path.write_text(entries)
    with pytest.raises(VantageConfigError) as caught:
        load_vantages(path)
    assert str(caught.value) == f"{path}: {message}"


def test_vantage_text_is_trimmed_and_addresses_normalised() -> None:
    (vantage,) = parse_vantages(
        [{"name": "a", "inside": True, "source_address": " ::0001 ", "resolver": " 10.0.0.1:53 "}],
        source="KVMON_VANTAGES",
    )
    assert (vantage.source_address, vantage.resolver) == ("::1", "10.0.0.1:53")


def test_a_yaml_syntax_error_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "v.yaml"
    path.write_text("- name: a\n  inside: true\n - name: b\n")
    with pytest.raises(VantageConfigError, match=r"v.yaml: .* at line 3"):
        load_vantages(path)
    with pytest.raises(VantageConfigError, match="no such file"):
        load_vantages(tmp_path / "missing.yaml")


def test_vantages_from_the_app_setting() -> None:
    settings = Settings.from_environ({"KVMON_VANTAGES": '[{"name": "internet", "inside": false}]'})
    assert [v.name for v in settings.vantages] == ["internet"]
    with pytest.raises(SettingsError) as caught:
        Settings.from_environ({"KVMON_VANTAGES": '[{"name": "internet", "inside": "no"}]'})
    assert str(caught.value) == "KVMON_VANTAGES: vantages[0].inside: expected true or false, got 'no'"
    with pytest.raises(SettingsError) as caught:
        Settings.from_environ(
            {"KVMON_VANTAGES": '[{"name": "a", "inside": true}, {"name": "A", "inside": true}]'}
        )
    assert str(caught.value) == "KVMON_VANTAGES: vantages[1].name: 'A' is defined twice"
    assert parse_vantages({"vantages": []}, source="KVMON_VANTAGES") == []


def test_the_walkthrough_vantages() -> None:
    vantages = {v.name: v for v in walkthrough_vantages(resolver="127.0.0.1:5353")}
    assert list(vantages) == ["internet", "se-subnet", "pl-subnet", "default-subnet", "spoke"]
    assert vantages["internet"].source_address == "127.30.0.5" and not vantages["internet"].inside
    assert [vantages[n].source_address for n in ("se-subnet", "pl-subnet", "default-subnet", "spoke")] == [
        "127.10.1.4",
        "127.10.2.5",
        "127.10.3.4",
        "127.11.1.4",
    ]
    assert all(v.resolver == "127.0.0.1:5353" for v in vantages.values())
    assert (vantages["se-subnet"].subnet_id or "").endswith("/subnets/serviceEndpoint")
