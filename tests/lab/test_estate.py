"""lab/estate.py's lookups: the cheap ones answer what the full copies say."""

from __future__ import annotations

import copy

from lab.estate import Estate, walkthrough_estate
from lab.estate_factory import IndexedEstate, synthetic_estate, synthetic_vaults


def _mutable_parts(value: object) -> list[int]:
    if isinstance(value, dict):
        return [id(value), *(i for item in value.values() for i in _mutable_parts(item))]
    if isinstance(value, list):
        return [id(value), *(i for item in value for i in _mutable_parts(item))]
    return []


def test_a_vault_is_handed_out_as_a_deep_copy() -> None:
    estate = synthetic_estate(vaults=60, subscriptions=2)
    for key, stored in estate.vaults.items():
        for copied in (estate.vault(key), estate.vault_by_name(stored["name"])):
            assert copied == copy.deepcopy(stored)
            assert not set(_mutable_parts(copied)) & set(_mutable_parts(stored))
    subscription = next(iter(estate.subscriptions))
    listed = estate.vaults_in(subscription)
    listed[0]["properties"]["networkAcls"] = "changed"
    listed[0]["tags"]["env"] = "changed"
    assert estate.vaults_in(subscription)[0] == estate.vault(listed[0]["id"])
    assert estate.vault(listed[0]["id"])["tags"]["env"] != "changed"


def test_the_summary_and_key_of_a_vault_by_name() -> None:
    for estate in (walkthrough_estate(), synthetic_estate(vaults=40, subscriptions=2)):
        for vault in estate.vaults.values():
            name = vault["name"].upper()
            summary = {field: vault[field] for field in ("id", "name", "type", "location")}
            assert estate.vault_summary(name) == Estate.vault_summary(estate, name) == summary
            assert estate.vault_key(name) == Estate.vault_key(estate, name) == vault["id"].lower()
        assert estate.vault_summary("kv-nowhere") is None and estate.vault_key("kv-nowhere") is None


def test_a_removed_vault_has_no_summary() -> None:
    estate = synthetic_estate(vaults=20, subscriptions=1)
    assert isinstance(estate, IndexedEstate)
    gone = synthetic_vaults(estate)[3]
    estate.remove_vault(gone.id)
    assert estate.vault_summary(gone.name) is None and estate.vault_key(gone.name) is None


def test_the_firewall_decides_alike_on_every_call() -> None:
    """Addresses and rules are parsed once and remembered: the same question gets the same
    answer, and a quoted range (Azure would refuse to store it) admits nobody, every time."""
    estate = walkthrough_estate()
    for name, rule in (("kv-ip-plain", "127.30.0.0/16"), ("kv-ip-quoted", "'127.30.0.0/16'")):
        estate.add_vault(
            subscription_id="00000000-0000-0000-0000-00000000a001",
            resource_group="rg-ip",
            name=name,
            network_acls={"defaultAction": "Deny", "ipRules": [{"value": rule}], "virtualNetworkRules": []},
        )
    sources = ("127.30.0.5", "127.31.0.5", "127.10.1.4", "127.10.2.5", "127.11.1.4")
    decisions = [
        {
            (key, source): estate.decide(key, client_address=source, local_address="127.40.0.10")
            for key in estate.vaults
            for source in sources
        }
        for _ in range(2)
    ]
    assert decisions[0] == decisions[1]
    plain, quoted = (estate.vault_key(name) for name in ("kv-ip-plain", "kv-ip-quoted"))
    assert decisions[0][(plain, "127.30.0.5")].admitted
    assert decisions[0][(plain, "127.30.0.5")].address_auth_type == "PublicIp"
    assert not decisions[0][(plain, "127.31.0.5")].admitted
    assert not any(decisions[0][(quoted, source)].admitted for source in sources)
