"""A vantage point's place is stated, never assumed from its name.

A laptop with nothing configured once judged itself "inside the VNet": every Private Link vault
got KV103 "resolves to a public address from local inside the VNet". Here kv-pl-demo is probed
through the lab from the internet's address and resolver, as the bare ``local`` vantage point a
scan with no ``KVMON_VANTAGES`` gets; no rule that depends on inside or outside judges it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt

from lab.credential import LabCredential
from lab.world import LabWorld
from monitor.app.deployment import local_vantage
from monitor.config.policy import PLACE_NOT_STATED, Vantage, VaultPolicy
from monitor.config.settings import Settings
from monitor.judge.rules.base import VaultFacts
from monitor.judge.rules.catalog import RULES_BY_ID
from monitor.sources.keyvault.normalise import normalise_vault
from probes.options import ProbeOptions
from probes.pool import probe_vaults

PLACE_RULES = ("KV101", "KV102", "KV103", "KV104", "KV105")


def test_a_vantage_point_with_nothing_configured_has_no_place() -> None:
    vantage = local_vantage(Settings.from_environ({}))
    assert (vantage.name, vantage.inside) == ("local", None)
    assert "KVMON_VANTAGES" in PLACE_NOT_STATED and '"inside": true|false' in PLACE_NOT_STATED


def test_no_rule_that_depends_on_the_place_fires_where_it_is_not_stated(
    world: LabWorld, vantages: dict[str, Vantage], options: ProbeOptions, credential: LabCredential
) -> None:
    local = dataclasses.replace(vantages["internet"], name="local", inside=None)
    (result,) = probe_vaults(["kv-pl-demo"], vantage=local, options=options, credential=credential)
    posture = normalise_vault(world.estate.vault_by_name("kv-pl-demo") or {})
    assert result.dns is not None and result.dns.private_link_in_chain  # a public answer, as outside

    def hits(vantage: Vantage) -> list[str]:
        facts = VaultFacts(
            posture=posture,
            policy=VaultPolicy(mode="private-link"),
            probes=(dataclasses.replace(result, vantage=vantage.name),),
            vantages=(vantage,),
            scan_started_at=dt.datetime.now(dt.UTC),
        )
        return [rule_id for rule_id in PLACE_RULES if list(RULES_BY_ID[rule_id].check(facts))]

    assert hits(local) == []
    # The same evidence from a place stated inside is judged: the old default.
    assert "KV103" in hits(dataclasses.replace(local, inside=True))
