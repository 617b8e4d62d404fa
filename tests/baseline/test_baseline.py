"""The baseline: YAML to VaultPolicy, matching, and one clear message per mistake."""

from __future__ import annotations

import datetime as dt
import ipaddress
import textwrap
from dataclasses import replace
from pathlib import Path

import pytest

from lab.estate import walkthrough_network
from lab.services import walkthrough_vantages
from monitor.config.baseline import Baseline, BaselineError, load_baseline, parse_baseline
from monitor.config.policy import DnsAnswer, Mode, Reach, VantageExpectation
from monitor.judge.evaluate import evaluate
from monitor.judge.rules.base import VaultFacts
from monitor.judge.rules.catalog import RULES_BY_ID
from monitor.model import Severity, VaultPosture
from monitor.sources.keyvault.normalise import load_vault_file

REPO = Path(__file__).resolve().parents[2]
WALKTHROUGH = REPO / "examples" / "baseline-walkthrough.yaml"
SUB = "00000000-0000-0000-0000-00000000a001"


def vault(name: str, *, tags: dict[str, str] | None = None, rg: str = "rg-walkthrough") -> VaultPosture:
    return VaultPosture(
        id=f"/subscriptions/{SUB}/resourceGroups/{rg}/providers/Microsoft.KeyVault/vaults/{name}",
        name=name,
        subscription_id=SUB,
        resource_group=rg,
        location="westeurope",
        vault_uri=f"https://{name}.vault.azure.net/",
        public_network_access="Enabled",
        network_acls_present=True,
        default_action="Deny",
        bypass="AzureServices",
        tags=tags or {},
    )


def parse(text: str) -> Baseline:
    return parse_baseline(textwrap.dedent(text), source="b.yaml", known_rules=RULES_BY_ID.keys())


# -- the walkthrough example ---------------------------------------------------------------------------


def test_walkthrough_example_loads_and_matches_the_lab() -> None:
    baseline = load_baseline(WALKTHROUGH, known_rules=RULES_BY_ID.keys())
    assert baseline.given and baseline.path == str(WALKTHROUGH)
    se = baseline.policy_for(vault("kv-se-demo"))
    assert (se.entry, se.mode, se.baseline_given) == ("walkthrough-se", "service-endpoint", True)
    lab_subnet = next(
        s.id for vnet in walkthrough_network() for s in vnet.subnets if s.name == "serviceEndpoint"
    )
    assert se.allowed_subnets == (lab_subnet.lower(),)
    assert (se.default_action, se.public_network_access, se.bypass) == ("Deny", "Enabled", "AzureServices")
    pl = baseline.policy_for(vault("kv-pl-demo"))
    assert (pl.entry, pl.mode, pl.public_network_access, pl.drift_severity) == (
        "walkthrough-pl",
        "private-link",
        "Disabled",
        Severity.HIGH,
    )
    locked = baseline.policy_for(vault("kv-locked-demo", tags={"env": "lab", "tier": "restricted"}))
    assert (locked.entry, locked.bypass) == ("walkthrough-locked", "None")
    other = baseline.policy_for(vault("kv-unknown"))
    assert other.entry is None and other.baseline_given
    [suppression] = other.suppressions  # the global one reaches every vault
    assert (suppression.rule, suppression.owner, suppression.expires) == (
        "KV001",
        "platform-team@contoso.example",
        dt.date(2027, 6, 30),
    )
    assert baseline.logs_refused_threshold == 10


def test_walkthrough_vantage_expectations_name_the_lab_vantages_and_agree_with_mode_defaults() -> None:
    baseline = load_baseline(WALKTHROUGH, known_rules=RULES_BY_ID.keys())
    vantages = walkthrough_vantages()
    names = {v.name for v in vantages}
    for name in ("kv-se-demo", "kv-pl-demo"):
        policy = baseline.policy_for(vault(name))
        assert set(policy.vantages) == names
        for vantage in vantages:
            stated = policy.vantages[vantage.name]
            assert stated.reach and stated.dns
            # What the example spells out is what the mode implies: no surprises for a reader.
            assert replace(policy, vantages={}).expectation_for(vantage) == stated, (name, vantage.name)
    se = baseline.policy_for(vault("kv-se-demo"))
    assert se.vantages["se-subnet"] == VantageExpectation(reach=Reach.ADMITTED, dns=DnsAnswer.PUBLIC)
    assert se.vantages["internet"] == VantageExpectation(reach=Reach.REFUSED, dns=DnsAnswer.PUBLIC)


def test_walkthrough_example_judges_the_example_vaults() -> None:
    baseline = load_baseline(WALKTHROUGH, known_rules=RULES_BY_ID.keys())
    postures = [
        p for f in sorted((REPO / "examples" / "vaults").glob("*.json")) for p in load_vault_file(f)[0]
    ]
    facts = [VaultFacts(posture=p, policy=baseline.policy_for(p)) for p in postures]
    found = {
        (f.vault_name, f.rule_id, f.subject) for f in evaluate(facts, today=dt.date(2026, 6, 1)).findings
    }
    assert ("kv-se-demo", "KV011", "default_action") in found
    assert ("kv-pl-demo", "KV011", "public_network_access") in found
    assert ("kv-pl-demo", "KV008", "") in found
    assert not any(rule == "KV013" for _, rule, _ in found)  # every example vault has an entry
    assert not any(name == "kv-locked-demo" for name, _, _ in found)


# -- matching -------------------------------------------------------------------------------------------


def test_first_matching_entry_wins_then_defaults() -> None:
    baseline = parse(
        """
        version: 1
        defaults: {mode: ip-firewall, min_prefix_length: 28}
        entries:
          - {name: by-tag, match: {tag: env=prod}, mode: private-link}
          - {name: by-name, match: {name: "KV-PROD-*"}, mode: service-endpoint}
        """
    )
    assert baseline.policy_for(vault("kv-prod-1", tags={"env": "prod"})).entry == "by-tag"
    assert baseline.policy_for(vault("kv-prod-1", tags={"env": "dev"})).entry == "by-name"
    fallback = baseline.policy_for(vault("kv-dev-1"))
    assert (fallback.entry, fallback.mode, fallback.min_prefix_length) == ("defaults", "ip-firewall", 28)


def test_match_by_id_tag_key_and_case_rules() -> None:
    target = vault("kv-a", rg="RG-App")
    baseline = parse(
        f"""
        version: 1
        entries:
          - name: by-id
            match: {{id: "{target.id.lower()}"}}
          - name: tag-key
            match: {{tag: Owner}}
          - name: tag-value
            match: {{tag: "env=Prod"}}
        """
    )
    assert baseline.policy_for(target).entry == "by-id"  # resource ids compare case-insensitively
    assert baseline.policy_for(vault("kv-b", tags={"owner": "x"})).entry == "tag-key"  # tag names too
    assert baseline.policy_for(vault("kv-c", tags={"env": "Prod"})).entry == "tag-value"
    assert baseline.policy_for(vault("kv-d", tags={"env": "prod"})).entry is None  # values do not


def test_no_baseline_policy_states_nothing() -> None:
    policy = Baseline.none().policy_for(vault("kv-a"))
    assert policy.entry is None and not policy.baseline_given and not Baseline.none().given


def test_values_are_normalised() -> None:
    baseline = parse(
        """
        version: 1
        entries:
          - name: e
            match: {name: kv-*}
            mode: Private-Link
            allowed_ip_ranges: ["203.0.113.0/24", "2001:db8::/32"]
            bypass: azureservices
            expect: {default_action: deny, public_network_access: securedbyperimeter}
            drift_severity: HIGH
            vantages: {internet: {reach: Refused, dns: PUBLIC}}
            suppressions:
              - {rule: kv003, vault: "kv-*", reason: r, owner: o, expires: 2027-01-31}
        """
    )
    policy = baseline.policy_for(vault("kv-a"))
    assert policy.mode is Mode.PRIVATE_LINK
    assert policy.allowed_ip_ranges == (
        ipaddress.ip_network("203.0.113.0/24"),
        ipaddress.ip_network("2001:db8::/32"),
    )
    assert (policy.bypass, policy.default_action, policy.public_network_access) == (
        "AzureServices",
        "Deny",
        "SecuredByPerimeter",
    )
    assert policy.drift_severity is Severity.HIGH
    (internet,) = policy.vantages.values()
    assert internet.reach is Reach.REFUSED and internet.dns is DnsAnswer.PUBLIC
    assert policy.suppressions[0].rule == "KV003"


def test_expired_suppression_from_the_baseline_is_reported_and_stops_suppressing() -> None:
    baseline = parse(
        """
        version: 1
        suppressions:
          - {rule: KV001, vault: "kv-a", reason: r, owner: o, expires: 2026-01-31}
        """
    )
    posture = replace(vault("kv-a"), default_action="Allow")
    facts = [VaultFacts(posture=posture, policy=baseline.policy_for(posture))]
    before = evaluate(facts, today=dt.date(2026, 1, 31))
    assert [f.suppressed for f in before.findings if f.rule_id == "KV001"] == [True]
    after = evaluate(facts, today=dt.date(2026, 2, 1))
    assert [f.suppressed for f in after.findings if f.rule_id == "KV001"] == [False]
    assert [x.rule_id for x in after.expired_suppressions] == ["KV001"]


# -- mistakes: one clear line each ----------------------------------------------------------------------

BAD = {
    "yaml syntax": ("version: 1\nentries: [\n  - name\n", 3, "YAML syntax error"),
    "empty": ("", 1, "the baseline is empty"),
    "not a mapping": ("- version: 1\n", 1, "must be a mapping"),
    "version missing": ("entries: []\n", 1, "(top level): missing required key 'version'"),
    "version wrong": ("version: 2\n", 1, "version: Input should be 1"),
    "unknown top key": (
        "version: 1\nentrys: []\n",
        2,
        "entrys: unknown key 'entrys' (did you mean 'entries'?)",
    ),
    "unknown entry key": (
        "version: 1\nentries:\n  - name: a\n    match: {name: kv-a}\n    mdoe: public\n",
        5,
        "entries[0].mdoe: unknown key 'mdoe' (did you mean 'mode'?)",
    ),
    "duplicate key": ("version: 1\nlogs: {}\nlogs: {}\n", 3, "logs: duplicate key 'logs'"),
    "bad mode": (
        "version: 1\nentries:\n  - name: a\n    match: {name: kv-a}\n    mode: privatelink\n",
        5,
        "entries[0].mode: unknown mode 'privatelink': use one of private-link, service-endpoint",
    ),
    "public without justification": (
        "version: 1\nentries:\n  - name: a\n    match: {name: kv-a}\n    mode: public\n",
        3,
        "entries[0]: mode public needs a justification",
    ),
    "bad cidr": (
        "version: 1\ndefaults:\n  allowed_ip_ranges:\n    - 203.0.113.0/24\n    - 203.0.113.300/24\n",
        5,
        "defaults.allowed_ip_ranges[1]: '203.0.113.300/24' is not a CIDR range",
    ),
    "host bits": (
        "version: 1\ndefaults:\n  allowed_ip_ranges: [203.0.113.5/24]\n",
        3,
        "did you mean 203.0.113.0/24?",
    ),
    "bad subnet id": (
        "version: 1\ndefaults:\n  allowed_subnets: [subnet-a]\n",
        3,
        "defaults.allowed_subnets[0]: 'subnet-a' is not a subnet resource id",
    ),
    "bad name glob": (
        "version: 1\nentries:\n  - name: a\n    match: {name: 'kv a*'}\n",
        4,
        "entries[0].match.name: vault name pattern 'kv a*' contains ' '",
    ),
    "unclosed glob": (
        "version: 1\nentries:\n  - name: a\n    match: {name: 'kv-[ab'}\n",
        4,
        "has an unclosed '['",
    ),
    "bad vault id": (
        "version: 1\nentries:\n  - name: a\n    match: {id: /subscriptions/x/vaults/kv-a}\n",
        4,
        "entries[0].match.id: '/subscriptions/x/vaults/kv-a' is not a vault resource id",
    ),
    "two matchers": (
        "version: 1\nentries:\n  - name: a\n    match: {name: kv-a, tag: env}\n",
        4,
        "entries[0].match: give exactly one of name, id or tag (got name, tag)",
    ),
    "bad severity": (
        "version: 1\ndefaults:\n  drift_severity: severe\n",
        3,
        "defaults.drift_severity: unknown severity 'severe': use one of info, low, medium, high, critical",
    ),
    "bad bypass": ("version: 1\ndefaults:\n  bypass: Everything\n", 3, "unknown bypass 'Everything'"),
    "mode not a text": (
        "version: 1\ndefaults:\n  mode: 5\n",
        3,
        "defaults.mode: unknown mode 5: use one of private-link, service-endpoint, ip-firewall, public",
    ),
    "bad reach": (
        "version: 1\ndefaults:\n  vantages:\n    internet: {reach: maybe}\n",
        4,
        "defaults.vantages.internet.reach: unknown reach 'maybe': use one of admitted, refused",
    ),
    "bad prefix": ("version: 1\ndefaults:\n  min_prefix_length: 40\n", 3, "less than or equal to 32"),
    "prefix not a number": ("version: 1\ndefaults:\n  min_prefix_length: yes\n", 3, "a valid integer"),
    "empty vantage name": (
        "version: 1\ndefaults:\n  vantages: {'': {reach: admitted}}\n",
        3,
        "defaults.vantages: bad key '': must not be empty",
    ),
    "bad date": (
        "version: 1\nsuppressions:\n  - rule: KV001\n    reason: r\n    owner: o\n    expires: 2027-02-30\n",
        6,
        "suppressions[0].expires: Input should be a valid date",
    ),
    "not a date": (
        "version: 1\nsuppressions:\n  - {rule: KV001, reason: r, owner: o, expires: next year}\n",
        3,
        "suppressions[0].expires: Input should be a valid date",
    ),
    "unknown rule": (
        "version: 1\nsuppressions:\n  - {rule: KV999, reason: r, owner: o, expires: 2027-01-01}\n",
        3,
        "unknown rule 'KV999'",
    ),
    "suppression without owner": (
        "version: 1\nsuppressions:\n  - rule: KV001\n    reason: r\n    expires: 2027-01-01\n",
        3,
        "suppressions[0]: missing required key 'owner'",
    ),
    "blank reason": (
        "version: 1\nsuppressions:\n  - {rule: KV001, reason: '  ', owner: o, expires: 2027-01-01}\n",
        3,
        "suppressions[0].reason: must not be empty",
    ),
    "duplicate entry names": (
        "version: 1\nentries:\n  - {name: a, match: {name: x}}\n  - {name: A, match: {name: y}}\n",
        4,
        "entries[1].name: entry name 'A' is already used",
    ),
    "threshold": (
        "version: 1\nlogs: {refused_threshold: 0}\n",
        2,
        "logs.refused_threshold: Input should be greater",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_each_mistake_gives_one_line_naming_file_line_and_key(case: str) -> None:
    text, line, expected = BAD[case]
    with pytest.raises(BaselineError) as caught:
        parse_baseline(text, source="team/baseline.yaml", known_rules=RULES_BY_ID.keys())
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"team/baseline.yaml:{line}: "), message
    assert expected in message, message


def test_suppressions_name_the_rule_ids_the_caller_passes_in() -> None:
    text = "version: 1\nsuppressions:\n  - {rule: kv001, reason: r, owner: o, expires: 2027-01-01}\n"
    [suppression] = parse_baseline(text, source="b.yaml", known_rules={"KV001"}).suppressions
    assert suppression.rule == "KV001"
    with pytest.raises(BaselineError) as caught:
        parse_baseline(text, source="b.yaml", known_rules={"KV002"})
    assert str(caught.value) == (
        "b.yaml:3: suppressions[0].rule: unknown rule 'kv001': use a rule id from 'kvmon rules' or '*'"
    )


def test_the_first_problem_in_file_order_is_reported_and_the_rest_counted() -> None:
    text = "version: 1\ndefaults:\n  drift_severity: severe\n  mode: nope\nlogs: {refused_threshold: 0}\n"
    with pytest.raises(
        BaselineError, match=r"^b\.yaml:3: defaults\.drift_severity: .*\(and 2 more problems\)$"
    ):
        parse_baseline(text, source="b.yaml", known_rules=RULES_BY_ID.keys())


def test_a_byte_order_mark_is_fine(tmp_path: Path) -> None:
    path = tmp_path / "bom.yaml"
    path.write_bytes(b"\xef\xbb\xbfversion: 1\n")
    assert load_baseline(path, known_rules=RULES_BY_ID.keys()).given


def test_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(BaselineError, match=r"missing\.yaml: cannot read the baseline: No such file"):
        load_baseline(tmp_path / "missing.yaml", known_rules=RULES_BY_ID.keys())
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"version: 1\n\xff\xfe\n")
    with pytest.raises(BaselineError, match="not UTF-8"):
        load_baseline(binary, known_rules=RULES_BY_ID.keys())
