"""Step 5 of the demo: a vault locked with publicNetworkAccess Disabled, then re-opened by a
Network Security Perimeter in Learning mode whose profile admits 0.0.0.0/0."""

from __future__ import annotations

from dataclasses import replace

from lab.demo import NSP_VAULT, PERIMETER, PERIMETER_RULE, PERIMETER_WORKSPACE
from monitor.judge.perimeter import effective_exposure
from monitor.model import PerimeterLookup, PerimeterReading, Verdict
from tests.demo.conftest import DemoRun


def rules_of(demo: DemoRun, index: int) -> set[str]:
    return {f.rule_id for f in demo.scan(5, index).findings(NSP_VAULT)}


def test_the_locked_vault_is_closed_before_the_association(demo: DemoRun) -> None:
    before = demo.scan(5, 0)
    assert before.outcome.report.errors == []
    [posture] = [p for p in before.outcome.report.postures if p.name == NSP_VAULT]
    assert posture.public_network_access == "Disabled"
    assert posture.perimeter.lookup is PerimeterLookup.NONE
    assert rules_of(demo, 0) == {"KV302"}  # appeared; nothing open about its exposure
    # The perimeter's workspace was read and holds no row for a vault no perimeter governs yet: no KV207.
    [nsp_logs] = [e for e in before.outcome.report.perimeter_evidence if e.vault_id == posture.key]
    assert (nsp_logs.workspace_id, nsp_logs.access, nsp_logs.complete) == (PERIMETER_WORKSPACE, (), True)
    for vantage in ("internet", "pl-subnet", "spoke"):
        probe = before.probe(NSP_VAULT, vantage)
        assert probe is not None and probe.verdict is Verdict.REFUSED_PUBLIC_DISABLED


def test_after_the_association_configuration_and_probe_both_say_open(demo: DemoRun) -> None:
    after = demo.scan(5, 1)
    assert after.outcome.report.errors == []
    [posture] = [p for p in after.outcome.report.postures if p.name == NSP_VAULT]
    # The vault's own document did not move: judged without the association, it is closed.
    assert posture.public_network_access == "Disabled"
    policy = after.outcome.policies[posture.key]
    assert (
        effective_exposure(posture=replace(posture, perimeter=PerimeterReading()), policy=policy).public
        is False
    )
    association = posture.perimeter.association
    assert association is not None and association.perimeter_name == PERIMETER
    assert association.access_mode_text == "Learning"

    assert {"KV001", "KV014", "KV015", "KV101", "KV205", "KV301"} <= rules_of(demo, 1)
    [kv001] = [f for f in after.findings(NSP_VAULT) if f.rule_id == "KV001"]
    assert kv001.evidence["perimeter"]["effective_inbound"] == "rules"
    assert any(PERIMETER_RULE in entry for entry in kv001.evidence["perimeter"]["open_entries"])
    internet = after.probe(NSP_VAULT, "internet")
    assert internet is not None and internet.verdict is Verdict.ADMITTED
    assert internet.seen_address == "127.30.0.5"
    # The perimeter's access log, written by the lab's data plane for those very probes: the rule let
    # the internet in, and the subnets' NAT addresses too (the vault has no private endpoint).
    kv205 = {f.subject: f for f in after.findings(NSP_VAULT) if f.rule_id == "KV205"}
    assert set(kv205) == {"127.30.0.5", "127.20.0.2", "127.20.0.3", "127.20.0.4"}
    assert all(PERIMETER_RULE in f.summary for f in kv205.values())
    assert "KV207" not in rules_of(demo, 1)
    [kv301] = [f for f in after.findings(NSP_VAULT) if f.rule_id == "KV301"]
    assert kv301.evidence["direction"] == "loosening"
    # The Service Endpoint path is refused under the perimeter, even by its 0.0.0.0/0 rule.
    se_subnet = after.probe(NSP_VAULT, "se-subnet")
    assert se_subnet is not None and se_subnet.verdict.refused


def test_the_sinks_hear_of_the_reopening(demo: DemoRun) -> None:
    after = demo.scan(5, 1)
    for service in ("teams", "slack"):
        [message] = after.messages[service]
        told = message.body.decode("utf-8")
        assert "KV001" in told and "KV015" in told and NSP_VAULT in told


def test_the_step_is_told(demo: DemoRun) -> None:
    assert "Step 5 · kv-nsp-demo" in demo.output
    assert "a configuration scanner reading it calls the vault closed" in demo.output
    assert "internet probe: admitted (the vault saw 127.30.0.5)" in demo.output
    assert (
        "perimeter access log: public source(s) 127.20.0.2, 127.20.0.3, 127.20.0.4, 127.30.0.5 admitted by "
        "a perimeter rule (KV205)" in demo.output
    )
