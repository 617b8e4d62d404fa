"""Hostile values for kvmon's inputs: JSON of any shape, CIDRs quoted and broken, IPv6, resource
ids in any case, huge and exotic strings."""

from __future__ import annotations

import ipaddress
from typing import Any

from hypothesis import strategies as st

SUBSCRIPTION = "00000000-0000-0000-0000-00000000a001"

# Real mistakes and edge cases: Azure's own example quotes an IP rule; people paste ranges with
# spaces, commas, zones, masks and host bits.
_CIDR_SAMPLES = [
    "10.0.0.0/8",
    "'10.0.0.0/8'",
    '"203.0.113.7"',
    " 203.0.113.0/24 ",
    "203.0.113.5/24",
    "0.0.0.0/0",
    "0.0.0.0/1",
    "255.255.255.255/32",
    "10.0.0.0/33",
    "10.0.0.0/-1",
    "10.0.0.0/",
    "/8",
    "10.0.0",
    "10.0.0.256",
    "010.000.000.001",
    "10.0.0.0/255.0.0.0",
    "10.0.0.0/8,192.168.0.0/16",
    "::/0",
    "::1",
    "2001:db8::/32",
    "2001:DB8::1/128",
    "::ffff:10.0.0.1",
    "fe80::1%eth0",
    "2001:db8::/129",
    "1.2.3.4\x00",
    "١٠.٠.٠.٠/٨",  # Arabic-Indic digits
    "",
]


def _network_text(network: ipaddress.IPv4Network | ipaddress.IPv6Network, quote: str) -> str:
    return f"{quote}{network}{quote}"


cidr_text = st.one_of(
    st.sampled_from(_CIDR_SAMPLES),
    st.builds(
        _network_text,
        st.one_of(
            st.ip_addresses(v=4).map(lambda a: ipaddress.ip_network(a)),
            st.ip_addresses(v=6).map(ipaddress.ip_network),
        ),
        st.sampled_from(["", "'", '"', " "]),
    ),
    st.tuples(st.ip_addresses(), st.integers(min_value=-3, max_value=140)).map(lambda p: f"{p[0]}/{p[1]}"),
)


def mixed_case(text: str) -> st.SearchStrategy[str]:
    """``text`` with each letter upper or lower at random."""
    return st.lists(st.booleans(), min_size=len(text), max_size=len(text)).map(
        lambda flips: "".join(c.upper() if up else c.lower() for c, up in zip(text, flips, strict=True))
    )


vault_names = st.one_of(
    st.sampled_from(["kv-se-demo", "KV-PL-DEMO", "kv-legacy-1", "a" * 24, "kv", "kv--x", "1kv", "kv_x"]),
    st.from_regex(r"[a-zA-Z][a-zA-Z0-9-]{1,30}", fullmatch=True),
    st.text(max_size=30),
)


def _vault_id(parts: tuple[str, str, str, str, str]) -> str:
    subscriptions, groups, provider, vaults, name = parts
    return f"/{subscriptions}/{SUBSCRIPTION}/{groups}/rg-fuzz/providers/{provider}/{vaults}/{name}"


vault_ids = st.one_of(
    st.tuples(
        mixed_case("subscriptions"),
        mixed_case("resourceGroups"),
        mixed_case("Microsoft.KeyVault"),
        mixed_case("vaults"),
        vault_names,
    ).map(_vault_id),
    st.sampled_from(["/", "///", "/subscriptions//resourceGroups//providers", "vaults/x", " "]),
    st.text(max_size=60),
)

huge_text = st.integers(min_value=10_000, max_value=300_000).map(lambda n: "é" * n)
exotic_text = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=40
) | st.sampled_from(["\u202e", "\ufeff", "\x00", "🔑" * 10, "../../etc/passwd", "${jndi:ldap://x}", "%s%n"])

json_leaves = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | exotic_text
    | cidr_text
    | st.sampled_from(["Enabled", "DISABLED", "Deny", "allow", "None", "AzureServices", "Approved"])
)
any_json: st.SearchStrategy[Any] = st.recursive(
    json_leaves,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(exotic_text, children, max_size=5),
    max_leaves=20,
)


DELETE = object()


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every place in a JSON document, parents before children."""
    found = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, child in value.items():
            found += _paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            found += _paths(child, (*prefix, index))
    return found


def mutate(document: dict[str, Any], mutations: list[tuple[int, Any]]) -> dict[str, Any]:
    """Replace (or delete) a few places of ``document`` with anything at all."""
    for pick, replacement in mutations:
        paths = _paths(document)
        if not paths:
            break
        path = paths[pick % len(paths)]
        parent: Any = document
        for step in path[:-1]:
            parent = parent[step]
        if replacement is DELETE:
            del parent[path[-1]]
        else:
            parent[path[-1]] = replacement
    return document


_ip_rule = st.fixed_dictionaries({"value": cidr_text})
_vnet_rule = st.fixed_dictionaries(
    {
        "id": mixed_case(
            f"/subscriptions/{SUBSCRIPTION}/resourceGroups/rg/providers/Microsoft.Network/virtualNetworks/v/subnets/s"
        )
    },
    optional={"ignoreMissingVnetServiceEndpoint": st.booleans()},
)
_connection = st.fixed_dictionaries(
    {
        "id": mixed_case(
            f"/subscriptions/{SUBSCRIPTION}/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/kv/privateEndpointConnections/pe"
        ),
        "properties": st.fixed_dictionaries(
            {
                "privateEndpoint": st.fixed_dictionaries({"id": exotic_text}),
                "privateLinkServiceConnectionState": st.fixed_dictionaries(
                    {
                        "status": mixed_case("Approved")
                        | st.sampled_from(["Pending", "Rejected", "Disconnected"])
                    }
                ),
            },
            optional={"provisioningState": st.sampled_from(["Succeeded", "Failed", "Creating"])},
        ),
    }
)
_network_acls = st.fixed_dictionaries(
    {},
    optional={
        "defaultAction": mixed_case("Deny") | mixed_case("Allow"),
        "bypass": mixed_case("AzureServices") | mixed_case("None"),
        "ipRules": st.lists(_ip_rule, max_size=4),
        "virtualNetworkRules": st.lists(_vnet_rule, max_size=3),
    },
)
_vault = st.fixed_dictionaries(
    {
        "id": vault_ids,
        "properties": st.fixed_dictionaries(
            {"tenantId": st.uuids().map(str)},
            optional={
                "publicNetworkAccess": mixed_case("Enabled")
                | mixed_case("Disabled")
                | st.just("SecuredByPerimeter"),
                "networkAcls": st.none() | _network_acls,
                "privateEndpointConnections": st.lists(_connection, max_size=2),
                "vaultUri": exotic_text,
            },
        ),
    },
    optional={
        "name": vault_names | huge_text,
        "type": mixed_case("Microsoft.KeyVault/vaults"),
        "location": exotic_text,
        "tags": st.dictionaries(exotic_text, exotic_text, max_size=3),
        "systemData": st.fixed_dictionaries(
            {},
            optional={
                "lastModifiedAt": st.sampled_from(
                    ["2026-03-01T09:30:00Z", "2026-02-30T00:00:00Z", "9999-12-31T23:59:59-23:59", "yesterday"]
                )
                | st.datetimes().map(lambda d: d.isoformat()),
                "lastModifiedBy": exotic_text,
                "lastModifiedByType": st.sampled_from(["User", "Application", "ManagedIdentity", "Key"]),
            },
        ),
    },
)
# Up to three places of a document replaced by anything at all, or removed.
mutations = st.lists(st.tuples(st.integers(min_value=0), any_json | st.just(DELETE)), max_size=3)
# A vault as ARM shows it, mutated.
vault_json: st.SearchStrategy[Any] = st.builds(mutate, _vault, mutations)


# -- baselines ---------------------------------------------------------------------------------------

_SUBNET = f"/subscriptions/{SUBSCRIPTION}/resourceGroups/rg-network/providers/Microsoft.Network/virtualNetworks/vnet-lab/subnets/serviceEndpoint"
_suppression = st.fixed_dictionaries(
    {
        "rule": st.sampled_from(["KV001", "kv101", "*", "KV999", "KV1"]),
        "vault": st.sampled_from(["kv-*", "*", "[", "kv-[a-z]*", "**"]) | vault_names,
        "reason": exotic_text,
        "owner": exotic_text,
        "expires": st.sampled_from(["2027-06-30", "2026-02-30", "2020-01-01", "tomorrow", ""])
        | st.dates().map(str),
    }
)
_policy = {
    "mode": st.sampled_from(
        ["private-link", "service-endpoint", "ip-firewall", "public", "Private-Link", "open"]
    ),
    "justification": exotic_text,
    "allowed_subnets": st.lists(mixed_case(_SUBNET) | exotic_text, max_size=3),
    "allowed_ip_ranges": st.lists(cidr_text, max_size=4),
    "min_prefix_length": st.integers(min_value=-2, max_value=130) | st.sampled_from(["24", 24.0, True]),
    "bypass": st.sampled_from(["AzureServices", "None", "none", "all"]),
    "expect": st.fixed_dictionaries(
        {},
        optional={
            "default_action": st.sampled_from(["Allow", "Deny", "deny", "Block"]),
            "public_network_access": st.sampled_from(["Enabled", "Disabled", "SecuredByPerimeter", "off"]),
        },
    ),
    "drift_severity": st.sampled_from(["info", "low", "medium", "high", "critical", "HIGH", "severe"]),
    "vantages": st.dictionaries(
        st.sampled_from(["internet", "se-subnet", "pl-subnet", "spoke"]) | exotic_text,
        st.fixed_dictionaries(
            {},
            optional={
                "reach": st.sampled_from(["admitted", "refused", "maybe"]),
                "dns": st.sampled_from(["private", "public", "split"]),
            },
        ),
        max_size=3,
    ),
    "private_path_identities": st.lists(st.uuids().map(str) | exotic_text, max_size=2),
    "suppressions": st.lists(_suppression, max_size=2),
}
_match = st.one_of(
    st.fixed_dictionaries({"name": st.sampled_from(["kv-se-*", "kv-[", "KV-*", "*"]) | vault_names}),
    st.fixed_dictionaries({"id": vault_ids}),
    st.fixed_dictionaries(
        {"tag": st.sampled_from(["tier=restricted", "env", "=x", "a=b=c", ""]) | exotic_text}
    ),
    st.fixed_dictionaries({"name": st.just("kv-*"), "tag": st.just("env")}),
)
_entry = st.fixed_dictionaries({"name": vault_names, "match": _match}, optional=_policy)
_baseline = st.fixed_dictionaries(
    {"version": st.sampled_from([1, 1, 1, "1", 2, None])},
    optional={
        "defaults": st.fixed_dictionaries({}, optional=_policy),
        "entries": st.lists(_entry, max_size=3),
        "suppressions": st.lists(_suppression, max_size=2),
        "logs": st.fixed_dictionaries(
            {"refused_threshold": st.integers(min_value=-1, max_value=100) | exotic_text}
        ),
    },
)
# A baseline as a user writes it, with up to three places replaced by anything at all or removed.
baseline_document: st.SearchStrategy[Any] = st.builds(mutate, _baseline, mutations)
