"""Probes write the vault's access log, the logs reader reads it back.

Real probes (DNS, TLS, data plane through azure-keyvault-secrets) run against the lab's Key Vault
data plane from two source addresses; the data plane records each request in the estate's
access log, and the Log Analytics emulator answers kvmon's query from that log: the Service
Endpoint subnet shows up as a private caller, the internet as a public one, as in the
walkthrough.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest

from lab.credential import LabCredential
from lab.estate import INTERNET_CLIENT, LAB_VAULT_SUFFIX, Estate
from lab.world import LabWorld
from monitor.config.policy import Vantage, VaultPolicy
from monitor.judge.evaluate import evaluate
from monitor.judge.rules.base import VaultFacts
from monitor.judge.rules.catalog import RULES_BY_ID
from monitor.model import Outcome
from monitor.sources.keyvault.normalise import normalise_vault
from monitor.sources.logs import LogsReader
from probes.options import ProbeOptions
from probes.pool import probe_vault
from probes.scope import ProbeScope
from tests.logs.conftest import LAB_SPACE, SE_CLIENT, WORKSPACE


@pytest.mark.parametrize("fixed", [False, True], ids=["default-allow", "default-deny"])
def test_probes_show_up_in_the_logs_with_the_address_the_vault_saw(
    make_reader: Callable[..., LogsReader], estate: Estate, se_vault: dict[str, Any], fixed: bool
) -> None:
    if fixed:  # the walkthrough's fix: deny by default, the subnet's rule admits the inside
        acls = {**se_vault["properties"]["networkAcls"], "defaultAction": "Deny"}
        estate.update_vault(se_vault["id"], properties={"networkAcls": acls})
    subnet = estate.subnet_named("serviceEndpoint")
    inside = Vantage(name="service-endpoint", inside=True, subnet_id=subnet.id, source_address=SE_CLIENT)
    outside = Vantage(name="internet", inside=False, source_address=INTERNET_CLIENT)
    started = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
    with LabWorld(estate) as world:
        options = ProbeOptions.with_timeout(
            5.0,
            port=world.port,
            scope=ProbeScope.with_emulator(LAB_VAULT_SUFFIX),
            address_space=LAB_SPACE,
            ca_bundle=world.ca_path,
            resolver=world.resolver,
        )
        for vantage in (inside, outside):
            result = probe_vault("kv-se-demo", vantage=vantage, options=options, credential=LabCredential())
            expected = "refused-firewall" if fixed and vantage is outside else "admitted"
            assert result.verdict.value == expected, result
    assert estate.access_records(), "the data plane recorded nothing"

    reader = make_reader()
    result = reader.read_workspace(
        WORKSPACE,
        [se_vault["id"]],
        window_start=started,
        window_end=dt.datetime.now(dt.UTC) + dt.timedelta(minutes=1),
    )
    evidence = result.evidence[se_vault["id"].lower()]
    assert result.errors == [] and evidence.complete
    seen = {a.caller_address: a for a in evidence.activity if a.outcome is not Outcome.REFUSED_OTHER}
    assert set(seen) == {SE_CLIENT, INTERNET_CLIENT}
    inside_row, outside_row = seen[SE_CLIENT], seen[INTERNET_CLIENT]
    assert inside_row.outcome is Outcome.ADMITTED
    assert inside_row.address_private is True
    assert inside_row.subnet_id == subnet.id.lower()
    assert inside_row.address_auth_type == "Subnet"
    assert outside_row.address_private is False
    assert outside_row.outcome is (Outcome.REFUSED_FIREWALL if fixed else Outcome.ADMITTED)
    assert outside_row.identity == LabCredential().app_id

    facts = VaultFacts(
        posture=normalise_vault(se_vault), policy=VaultPolicy(mode="service-endpoint"), evidence=evidence
    )
    found = evaluate(
        [facts], today=started.date(), rules=[RULES_BY_ID["KV201"], RULES_BY_ID["KV204"]]
    ).findings
    assert [(f.rule_id, f.subject) for f in found] == ([] if fixed else [("KV201", INTERNET_CLIENT)])
