"""The normaliser: Azure's published examples, Azure's defaults, the SDK's shapes, offline files."""

from __future__ import annotations

import copy
import datetime as dt
import ipaddress
import json
from pathlib import Path
from typing import Any

import pytest
from azure.mgmt.keyvault.models import Vault

from monitor.model import VaultPosture
from monitor.sources.keyvault.normalise import InvalidVault, VaultFileError, load_vault_file, normalise_vault

REPO = Path(__file__).resolve().parents[2]
VAULT_ID = "/subscriptions/sub-1/resourceGroups/RG-One/providers/Microsoft.KeyVault/vaults/kv-one"


def example(arm_examples: Path, name: str) -> dict[str, Any]:
    body: dict[str, Any] = json.loads((arm_examples / f"{name}.json").read_text())["body"]
    return body


def vault(**properties: Any) -> dict[str, Any]:
    return {"id": VAULT_ID, "name": "kv-one", "location": "westeurope", "properties": properties}


# -- Azure's published examples ------------------------------------------------------------------


def test_get_vault_example_takes_azure_defaults(arm_examples: Path) -> None:
    posture = normalise_vault(example(arm_examples, "getVault"))
    assert posture.name == "sample-vault"
    assert posture.subscription_id == "00000000-0000-0000-0000-000000000000"
    assert posture.resource_group == "sample-resource-group"
    assert posture.location == "westus"
    assert posture.vault_uri == "https://sample-vault.vault.azure.net"
    assert posture.public_network_access == "Enabled"
    assert (posture.network_acls_present, posture.default_action, posture.bypass) == (
        False,
        "Allow",
        "AzureServices",
    )
    assert posture.tenant_id == "00000000-0000-0000-0000-000000000000"
    assert posture.last_modified_by == "keyVaultUser2"
    assert posture.last_modified_by_type == "User"
    assert posture.last_modified_at == dt.datetime(2020, 1, 1, 12, 0, tzinfo=dt.UTC)
    assert posture.publicly_open
    assert posture.problems == ()


def test_create_vault_with_network_acls_example_keeps_the_quoted_rule(arm_examples: Path) -> None:
    posture = normalise_vault(example(arm_examples, "createVaultWithNetworkAcls"))
    assert posture.network_acls_present
    assert posture.default_action == "Deny"
    assert posture.bypass == "AzureServices"
    # publicNetworkAccess is absent in this example: Azure's default applies.
    assert posture.public_network_access == "Enabled"
    assert [(r.raw, r.network) for r in posture.ip_rules] == [
        ("124.56.78.91/32", ipaddress.ip_network("124.56.78.91/32")),
        ("'10.91.4.0/24'", None),
    ]
    assert not posture.ip_rules[1].parsed
    [rule] = posture.virtual_network_rules
    assert rule.subnet_id.endswith("/virtualnetworks/test-vnet/subnets/subnet1")
    assert rule.ignore_missing_service_endpoint is False
    assert not posture.publicly_open
    assert posture.problems == ()


def test_list_vault_by_subscription_example_reads_as_a_page(arm_examples: Path, tmp_path: Path) -> None:
    page = example(arm_examples, "listVaultBySubscription")
    path = tmp_path / "page.json"
    path.write_text(json.dumps(page))
    postures, problems = load_vault_file(path)
    assert problems == []
    [posture] = postures
    assert posture.name == "sample-vault"
    assert posture.resource_group == "sample-group"
    assert posture.vault_uri == "https://sample-vault.vault.azure.net/"
    assert posture.public_network_access == "Enabled"
    assert not posture.network_acls_present


def test_private_endpoint_connections_example_nested_under_properties(arm_examples: Path) -> None:
    connections = example(arm_examples, "listPrivateEndpointConnection")["value"]
    posture = normalise_vault(vault(privateEndpointConnections=connections))
    assert len(posture.private_endpoint_connections) == 2
    for connection in posture.private_endpoint_connections:
        assert connection.id.endswith("/privateEndpointConnections/sample-pec")
        assert connection.private_endpoint_id == (
            "/subscriptions/00000000-0000-0000-1234-000000000000/resourceGroups/sample-group"
            "/providers/Microsoft.Network/privateEndpoints/sample-pe"
        )
        assert connection.status == "Approved"
        assert connection.approved
        assert connection.provisioning_state == "Succeeded"
        assert connection.description == "This was automatically approved by user1234@contoso.com"
    assert posture.problems == ()


# -- Azure's defaults and spellings --------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "expected", "noted"),
    [
        (None, "Enabled", False),
        ("Enabled", "Enabled", False),
        ("enabled", "Enabled", False),
        ("DISABLED", "Disabled", False),
        ("securedByPerimeter", "SecuredByPerimeter", False),
        ("SomethingNew", "SomethingNew", True),
        (5, "Enabled", True),
    ],
)
def test_public_network_access(given: Any, expected: str, noted: bool) -> None:
    posture = normalise_vault(vault(publicNetworkAccess=given))
    assert posture.public_network_access == expected
    assert bool(posture.problems) is noted


def test_public_network_access_absent_means_enabled() -> None:
    posture = normalise_vault(vault())
    assert posture.public_network_access == "Enabled"
    assert posture.problems == ()


@pytest.mark.parametrize("acls", [None, "absent"])
def test_no_network_acls_means_nothing_restricts(acls: Any) -> None:
    raw = vault() if acls == "absent" else vault(networkAcls=None)
    posture = normalise_vault(raw)
    assert posture.network_acls_present is False
    assert posture.default_action == "Allow"
    assert posture.bypass == "AzureServices"
    assert posture.publicly_open
    assert posture.problems == ()


def test_empty_network_acls_default_allow_and_azure_services() -> None:
    posture = normalise_vault(vault(networkAcls={}))
    assert posture.network_acls_present is True
    assert (posture.default_action, posture.bypass) == ("Allow", "AzureServices")
    assert posture.problems == ()


def test_default_action_and_bypass_compare_case_insensitively() -> None:
    posture = normalise_vault(vault(networkAcls={"defaultAction": "deny", "bypass": "none"}))
    assert (posture.default_action, posture.bypass) == ("Deny", "None")


def test_network_acls_of_the_wrong_type_is_a_problem_not_a_crash() -> None:
    posture = normalise_vault(vault(networkAcls=["Deny"]))
    assert posture.network_acls_present is False
    assert posture.default_action == "Allow"
    assert any("properties.networkAcls is a list" in p for p in posture.problems)


def test_ip_rules_parse_addresses_cidrs_and_ipv6_and_keep_bad_ones() -> None:
    rules = [
        {"value": "203.0.113.7"},
        {"value": "198.51.100.9/24"},  # host bits set: ARM accepts them
        {"value": "2001:db8::/32"},
        {"value": "not-an-address"},
        {"value": 42},
        "192.0.2.1/32",
    ]
    posture = normalise_vault(vault(networkAcls={"defaultAction": "Deny", "ipRules": rules}))
    networks = [r.network for r in posture.ip_rules]
    assert networks[:3] == [
        ipaddress.ip_network("203.0.113.7/32"),
        ipaddress.ip_network("198.51.100.0/24"),
        ipaddress.ip_network("2001:db8::/32"),
    ]
    assert (posture.ip_rules[3].raw, posture.ip_rules[3].network) == ("not-an-address", None)
    assert (posture.ip_rules[4].raw, posture.ip_rules[4].network) == ("42", None)
    assert posture.ip_rules[5].network == ipaddress.ip_network("192.0.2.1/32")
    assert any("ipRules[4].value is a number" in p for p in posture.problems)
    assert any("ipRules[5] is a string" in p for p in posture.problems)
    # An unparsable but well-typed value is a finding for the rules (KV004), not a read problem.
    assert not any("ipRules[3]" in p for p in posture.problems)


def test_virtual_network_rules_keep_case_and_read_ignore_missing_endpoint() -> None:
    subnet = "/subscriptions/S/resourceGroups/RG/providers/Microsoft.Network/virtualNetworks/V/subnets/Sn"
    posture = normalise_vault(
        vault(
            networkAcls={
                "virtualNetworkRules": [
                    {"id": subnet, "ignoreMissingVnetServiceEndpoint": True},
                    {"id": subnet.lower()},
                    {"id": subnet + "2", "ignoreMissingVnetServiceEndpoint": "true"},
                    {"ignoreMissingVnetServiceEndpoint": True},
                ]
            }
        )
    )
    rules = posture.virtual_network_rules
    assert [(r.subnet_id, r.ignore_missing_service_endpoint) for r in rules] == [
        (subnet, True),
        (subnet.lower(), False),
        (subnet + "2", True),
    ]
    assert rules[0].key == rules[1].key
    assert any(
        "virtualNetworkRules[2].ignoreMissingVnetServiceEndpoint is the string" in p for p in posture.problems
    )
    assert any("virtualNetworkRules[3] has no subnet 'id'" in p for p in posture.problems)


def test_private_endpoint_connection_states_canonical_and_unhealthy_kept() -> None:
    connections = [
        {
            "id": f"{VAULT_ID}/privateEndpointConnections/c{index}",
            "properties": {
                "privateEndpoint": {
                    "id": f"/subscriptions/s/resourceGroups/r/providers/Microsoft.Network/privateEndpoints/p{index}"
                },
                "privateLinkServiceConnectionState": {"status": status},
                "provisioningState": state,
            },
        }
        for index, (status, state) in enumerate(
            [("pending", "Succeeded"), ("Rejected", "failed"), ("Disconnected", None)]
        )
    ]
    posture = normalise_vault(vault(privateEndpointConnections=connections))
    assert [(c.status, c.provisioning_state) for c in posture.private_endpoint_connections] == [
        ("Pending", "Succeeded"),
        ("Rejected", "Failed"),
        ("Disconnected", None),
    ]
    assert not any(c.approved for c in posture.private_endpoint_connections)


def test_flat_private_endpoint_connections_as_az_prints_them() -> None:
    nested = {
        "id": f"{VAULT_ID}/privateEndpointConnections/c1",
        "etag": "",
        "properties": {
            "privateEndpoint": {
                "id": "/subscriptions/s/resourceGroups/r/providers/Microsoft.Network/privateEndpoints/p1"
            },
            "privateLinkServiceConnectionState": {
                "status": "Approved",
                "description": "ok",
                "actionsRequired": "None",
            },
            "provisioningState": "Succeeded",
        },
    }
    flat = {"id": nested["id"], "etag": "", "resourceGroup": "RG-One", **nested["properties"]}
    assert normalise_vault(vault(privateEndpointConnections=[flat])) == normalise_vault(
        vault(privateEndpointConnections=[nested])
    )


def test_lower_cased_id_segments_still_give_subscription_and_group() -> None:
    raw = vault()
    raw["id"] = "/subscriptions/sub-1/resourcegroups/rg-one/providers/microsoft.keyvault/vaults/kv-one"
    posture = normalise_vault(raw)
    assert (posture.subscription_id, posture.resource_group, posture.name) == ("sub-1", "rg-one", "kv-one")
    assert posture.key == VAULT_ID.lower()
    assert posture.problems == ()


def test_subscription_id_is_lower_cased_resource_group_kept() -> None:
    raw = vault()
    raw["id"] = VAULT_ID.replace("sub-1", "SUB-1")
    posture = normalise_vault(raw)
    assert (posture.subscription_id, posture.resource_group) == ("sub-1", "RG-One")
    assert posture.id == raw["id"]


def test_id_that_is_not_a_vault_is_noted() -> None:
    raw = vault()
    raw["id"] = "/subscriptions/sub-1/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/st1"
    posture = normalise_vault(raw)
    assert any("is not a Key Vault resource id" in p for p in posture.problems)


def test_system_data_times_become_aware_utc() -> None:
    raw = vault()
    raw["systemData"] = {"lastModifiedAt": "2024-06-01T14:30:00.1234567+02:00", "lastModifiedBy": "bob"}
    assert normalise_vault(raw).last_modified_at == dt.datetime(2024, 6, 1, 12, 30, 0, 123456, tzinfo=dt.UTC)
    raw["systemData"] = {"lastModifiedAt": "2024-06-01T14:30:00"}
    assert normalise_vault(raw).last_modified_at == dt.datetime(2024, 6, 1, 14, 30, tzinfo=dt.UTC)
    raw["systemData"] = {"lastModifiedAt": "yesterday"}
    posture = normalise_vault(raw)
    assert posture.last_modified_at is None
    assert any("systemData.lastModifiedAt" in p for p in posture.problems)


def test_wrong_types_take_defaults_with_notes() -> None:
    raw = {
        "id": VAULT_ID,
        "name": 7,
        "location": ["westeurope"],
        "tags": {"env": "prod", "cost": 12},
        "systemData": "yesterday",
        "properties": {"tenantId": 1, "vaultUri": None, "privateEndpointConnections": {"id": "x"}},
    }
    posture = normalise_vault(raw)
    assert posture.name == "kv-one"  # from the id
    assert posture.location == ""
    assert posture.tags == {"env": "prod"}
    assert posture.tenant_id is None
    assert posture.private_endpoint_connections == ()
    assert len(posture.problems) == 6, posture.problems


def test_missing_properties_is_noted_because_defaults_were_assumed() -> None:
    posture = normalise_vault({"id": VAULT_ID, "name": "kv-one"})
    assert posture.public_network_access == "Enabled"
    assert any("properties are missing" in p for p in posture.problems)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("a string", "must be a JSON object, not a string"),
        ([], "not a list"),
        (None, "not null"),
        ({"name": "kv"}, "it is missing"),
        ({"id": None}, "it is null"),
        ({"id": "   "}, "must have an 'id'"),
        ({"id": 5}, "it is a number"),
    ],
)
def test_not_a_vault_raises_invalid_vault(raw: Any, message: str) -> None:
    with pytest.raises(InvalidVault, match=message):
        normalise_vault(raw)
    assert issubclass(InvalidVault, ValueError)


# -- the SDK's shapes ----------------------------------------------------------------------------


def test_sdk_14_model_as_dict_is_the_rest_body(arm_examples: Path) -> None:
    """Pins what monitor.sources.arm relies on: azure-mgmt-keyvault 14's Vault is a mapping over the
    response JSON, and as_dict() gives it back whole (unknown fields too)."""
    body = example(arm_examples, "createVaultWithNetworkAcls")
    body["properties"]["privateEndpointConnections"] = example(arm_examples, "listPrivateEndpointConnection")[
        "value"
    ]
    body["properties"]["aFieldFromTheFuture"] = {"x": 1}
    model = Vault(copy.deepcopy(body))
    assert model.as_dict() == body
    assert normalise_vault(model.as_dict()) == normalise_vault(body)
    assert normalise_vault(model) == normalise_vault(body)  # the model is itself a Mapping


def _snake(key: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in key)


def _msrest_shape(value: Any) -> Any:
    """What the msrest-era SDK's as_dict() gave: snake_case keys, private endpoint connections flat."""
    if isinstance(value, list):
        return [_msrest_shape(v) for v in value]
    if not isinstance(value, dict):
        return value
    result = {_snake(k): _msrest_shape(v) for k, v in value.items()}
    if "private_link_service_connection_state" in result.get("properties", {}):
        result.update(result.pop("properties"))
    return result


def test_snake_case_as_dict_reads_like_the_rest_body(arm_examples: Path) -> None:
    body = example(arm_examples, "createVaultWithNetworkAcls")
    body["properties"]["publicNetworkAccess"] = "Disabled"
    body["properties"]["networkAcls"]["virtualNetworkRules"][0]["ignoreMissingVnetServiceEndpoint"] = True
    body["properties"]["privateEndpointConnections"] = example(arm_examples, "listPrivateEndpointConnection")[
        "value"
    ]
    snake = _msrest_shape(body)
    assert "network_acls" in snake["properties"] and "last_modified_by" in snake["system_data"]
    assert "provisioning_state" in snake["properties"]["private_endpoint_connections"][0]
    from_rest, from_snake = normalise_vault(body), normalise_vault(snake)
    assert from_snake == from_rest
    assert from_rest.public_network_access == "Disabled"
    assert from_rest.virtual_network_rules[0].ignore_missing_service_endpoint is True
    assert len(from_rest.private_endpoint_connections) == 2


# -- offline files -------------------------------------------------------------------------------


def _write(tmp_path: Path, document: Any, name: str = "vaults.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(document))
    return path


def test_file_with_a_single_vault(tmp_path: Path) -> None:
    postures, problems = load_vault_file(_write(tmp_path, vault()))
    assert [p.name for p in postures] == ["kv-one"]
    assert problems == []


def test_file_with_an_array_as_az_keyvault_list_prints(tmp_path: Path) -> None:
    second = vault()
    second["id"] = VAULT_ID.replace("kv-one", "kv-two")
    second["name"] = "kv-two"
    for entry in (first := vault(), second):
        entry["resourceGroup"] = "RG-One"  # az adds it
    postures, problems = load_vault_file(_write(tmp_path, [first, second]))
    assert [p.name for p in postures] == ["kv-one", "kv-two"]
    assert problems == []


def test_malformed_entries_are_reported_and_hide_nothing(tmp_path: Path) -> None:
    page = {
        "value": [vault(), "oops", {"name": "no-id"}, {**vault(), "id": VAULT_ID.replace("one", "three")}]
    }
    path = _write(tmp_path, page)
    postures, problems = load_vault_file(path)
    assert [p.id for p in postures] == [VAULT_ID, VAULT_ID.replace("one", "three")]
    assert problems == [
        f"{path}: value[1]: a vault must be a JSON object, not a string",
        f"{path}: value[2]: a vault must have an 'id' (the ARM resource id); it is missing",
    ]


def test_invalid_json_names_file_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text('{\n  "value": [\n    {"id": "x",}\n  ]\n}\n')
    with pytest.raises(VaultFileError) as caught:
        load_vault_file(path)
    assert str(caught.value).startswith(f"{path}:3:16: invalid JSON: ")


def test_empty_file_is_invalid_json(tmp_path: Path) -> None:
    path = tmp_path / "empty.json"
    path.write_text("")
    with pytest.raises(VaultFileError, match=r"empty\.json:1:1: invalid JSON"):
        load_vault_file(path)


def test_missing_file_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(VaultFileError, match=r"nothing\.json: cannot read the file"):
        load_vault_file(tmp_path / "nothing.json")


@pytest.mark.parametrize(
    ("document", "message"),
    [(42, "the file holds a number"), ({"value": {"id": "x"}}, "'value' is an object")],
)
def test_wrong_top_level_shape_is_an_input_error(tmp_path: Path, document: Any, message: str) -> None:
    with pytest.raises(VaultFileError, match=message):
        load_vault_file(_write(tmp_path, document))


def test_utf16_file_as_powershell_writes_it(tmp_path: Path) -> None:
    path = tmp_path / "ps.json"
    path.write_bytes(json.dumps([vault()]).encode("utf-16"))
    postures, problems = load_vault_file(path)
    assert [p.name for p in postures] == ["kv-one"] and problems == []


def test_non_text_file_is_an_input_error(tmp_path: Path) -> None:
    path = tmp_path / "binary.json"
    path.write_bytes(b"\xff\xfe\xfd\x00garbage")
    with pytest.raises(VaultFileError, match=r"binary\.json"):
        load_vault_file(path)


# -- the walkthrough's example files -------------------------------------------------------------


def _example_vault(name: str) -> VaultPosture:
    postures, problems = load_vault_file(REPO / "examples" / "vaults" / f"{name}.json")
    assert problems == []
    [posture] = postures
    assert posture.problems == ()
    return posture


def test_example_service_endpoint_vault_still_admits_everyone() -> None:
    posture = _example_vault("kv-se-demo")
    assert posture.default_action == "Allow" and len(posture.virtual_network_rules) == 1
    assert posture.publicly_open


def test_example_private_link_vault_keeps_public_access() -> None:
    posture = _example_vault("kv-pl-demo")
    assert posture.public_network_access == "Enabled"
    assert [c.status for c in posture.private_endpoint_connections] == ["Approved"]


def test_example_locked_vault_is_closed() -> None:
    posture = _example_vault("kv-locked-demo")
    assert posture.public_access_disabled and posture.default_action == "Deny" and posture.bypass == "None"
    assert not posture.publicly_open
