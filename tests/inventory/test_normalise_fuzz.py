"""Whatever JSON arrives, the normaliser returns a posture or raises InvalidVault, nothing else."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.model import VaultPosture
from monitor.sources.keyvault.normalise import InvalidVault, normalise_vault

json_leaves = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20)
    | st.sampled_from(
        ["Enabled", "disabled", "Deny", "allow", "None", "10.0.0.0/8", "'1.2.3.4'", "::/0", "true"]
    )
)
any_json = st.recursive(
    json_leaves,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=5)
    ),
    max_leaves=25,
)


def field(value: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """A field that is well-formed, absent-ish (null) or anything at all."""
    return st.one_of(value, st.none(), any_json)


ip_rule = field(
    st.fixed_dictionaries({"value": field(st.sampled_from(["1.2.3.4", "1.2.3.0/24", "'x'", "::1"]))})
)
vnet_rule = field(
    st.fixed_dictionaries(
        {
            "id": field(
                st.just(
                    "/subscriptions/s/resourcegroups/r/providers/microsoft.network/virtualnetworks/v/subnets/a"
                )
            )
        },
        optional={"ignoreMissingVnetServiceEndpoint": field(st.booleans())},
    )
)
connection_state = st.fixed_dictionaries(
    {"status": field(st.sampled_from(["Approved", "pending", "Rejected"]))}
)
connection = field(
    st.fixed_dictionaries(
        {"id": field(st.text(max_size=10))},
        optional={
            "properties": field(
                st.fixed_dictionaries(
                    {},
                    optional={
                        "privateEndpoint": field(st.fixed_dictionaries({"id": field(st.text(max_size=10))})),
                        "privateLinkServiceConnectionState": field(connection_state),
                        "provisioningState": field(st.sampled_from(["Succeeded", "failed"])),
                    },
                )
            ),
            "privateLinkServiceConnectionState": field(connection_state),
        },
    )
)
network_acls = st.fixed_dictionaries(
    {},
    optional={
        "defaultAction": field(st.sampled_from(["Allow", "Deny", "deny"])),
        "bypass": field(st.sampled_from(["AzureServices", "None"])),
        "ipRules": field(st.lists(ip_rule, max_size=3)),
        "virtualNetworkRules": field(st.lists(vnet_rule, max_size=3)),
    },
)
vault_shaped = st.fixed_dictionaries(
    {
        "id": field(
            st.sampled_from(
                [
                    "/subscriptions/s/resourceGroups/r/providers/Microsoft.KeyVault/vaults/v",
                    "/subscriptions/s/resourcegroups/r/providers/microsoft.keyvault/vaults/v",
                    "/x",
                    "///",
                ]
            )
        )
    },
    optional={
        "name": field(st.text(max_size=10)),
        "location": field(st.text(max_size=10)),
        "tags": field(st.dictionaries(st.text(max_size=5), field(st.text(max_size=5)), max_size=3)),
        "systemData": field(
            st.fixed_dictionaries(
                {},
                optional={
                    "lastModifiedAt": field(
                        st.sampled_from(
                            [
                                "2020-01-01T12:00:00.0000000Z",
                                "9999-12-31T23:59:59-23:00",
                                "0001-01-01T00:00:00+01:00",
                            ]
                        )
                        | st.datetimes().map(lambda d: d.isoformat())
                    ),
                    "lastModifiedBy": field(st.text(max_size=5)),
                },
            )
        ),
        "properties": field(
            st.fixed_dictionaries(
                {},
                optional={
                    "publicNetworkAccess": field(
                        st.sampled_from(["Enabled", "DISABLED", "SecuredByPerimeter", ""])
                    ),
                    "networkAcls": field(network_acls),
                    "privateEndpointConnections": field(st.lists(connection, max_size=3)),
                    "tenantId": field(st.text(max_size=5)),
                },
            )
        ),
    },
)


def _check(raw: Any) -> None:
    try:
        posture = normalise_vault(raw)
    except InvalidVault as exc:
        assert str(exc)
        return
    assert isinstance(posture, VaultPosture)
    assert posture.id.strip() and posture.name
    assert posture.default_action and posture.bypass and posture.public_network_access is not None
    assert all(isinstance(p, str) and p for p in posture.problems)
    if posture.last_modified_at is not None:
        assert posture.last_modified_at.tzinfo is not None


@settings(max_examples=300, deadline=None, derandomize=True)
@given(any_json)
def test_arbitrary_json_gives_a_posture_or_invalid_vault(raw: Any) -> None:
    _check(raw)


@settings(max_examples=400, deadline=None, derandomize=True)
@given(vault_shaped)
def test_vault_shaped_json_with_any_field_broken_gives_a_posture_or_invalid_vault(raw: Any) -> None:
    _check(raw)
