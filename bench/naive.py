"""The naive way to do kvmon's job, for the benchmark's comparison: the same SDK clients and the
same judgement, the I/O pattern a first script would have.

- one subscription at a time; in each, list the vaults (azure-mgmt-keyvault
  ``list_by_subscription``, paged) for their names, then one ARM GET per vault (``vaults.get``);
- probes one vault at a time (``probes.pool.probe_vault``, the same probe kvmon runs);
- one Log Analytics query per vault (``monitor.sources.logs.LogsReader`` with that vault's id only), to the
  workspace its diagnostic setting names. The naive way is given that mapping for free (a real
  script would need one more ARM call per vault to read the diagnostic setting);
- the same rules (``monitor.judge.evaluate``), then one Table storage write per finding
  (azure-data-tables ``upsert_entity``), every scan, whether or not it changed.

What it leaves out, so it does less work than kvmon, not more: no drift, no lifecycle, no
notifications, no concurrency anywhere.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field

from azure.core.credentials import TokenCredential
from azure.data.tables import TableServiceClient, UpdateMode
from azure.mgmt.keyvault import KeyVaultManagementClient

from monitor.app.runtime import scan_vantages
from monitor.config.baseline import Baseline
from monitor.config.settings import Settings
from monitor.judge.evaluate import evaluate
from monitor.judge.rules.base import VaultFacts
from monitor.sources.arm import arm_credential_scope
from monitor.sources.keyvault.normalise import normalise_vault
from monitor.sources.logs import LogsReader
from probes.options import ProbeOptions
from probes.pool import probe_vault

TABLE = "naivefindings"


@dataclass
class NaiveResult:
    vaults: int = 0
    findings: int = 0
    entities_written: int = 0
    table_requests: int = 0
    errors: list[str] = field(default_factory=list)


def naive_scan(
    environ: Mapping[str, str],
    *,
    workspace_of: Mapping[str, str | None],
    credential: TokenCredential,
    now: dt.datetime,
) -> NaiveResult:
    """Scan the subscriptions ``environ`` names, one thing at a time. ``workspace_of`` maps a
    lower-cased vault id to the workspace its logs go to (None: no diagnostic setting)."""
    settings = Settings.from_environ(environ)
    policy_source = Baseline.none()
    vantage = scan_vantages(settings)[0]
    options = ProbeOptions.from_settings(settings, concurrency=1)
    logs = LogsReader(
        credential,
        endpoint=settings.logs_endpoint,
        table=settings.logs_table,
        address_space=settings.address_space,
        connection_verify=settings.connection_verify,
    )
    service = TableServiceClient.from_connection_string(environ["AzureWebJobsStorage"])
    table = service.create_table_if_not_exists(TABLE)
    result = NaiveResult()
    scope = arm_credential_scope(settings.arm_endpoint)
    try:
        for subscription in settings.subscriptions:
            client = KeyVaultManagementClient(
                credential,
                subscription,
                base_url=settings.arm_endpoint,
                credential_scopes=[scope],
                connection_verify=settings.connection_verify,
            )
            with client:
                listed = [
                    (vault.id.split("/")[4], vault.name) for vault in client.vaults.list_by_subscription()
                ]
                for group, name in listed:
                    vault = client.vaults.get(group, name)
                    posture = normalise_vault(vault.as_dict())
                    probe = probe_vault(name, vantage=vantage, options=options, credential=credential)
                    evidence = None
                    workspace = workspace_of.get(posture.key)
                    if workspace is not None:
                        read = logs.read_workspace(
                            workspace,
                            [posture.id],
                            window_start=now - settings.logs_first_window,
                            window_end=dt.datetime.now(dt.UTC),
                        )
                        result.errors.extend(e.message for e in read.errors)
                        evidence = read.evidence.get(posture.key)
                    facts = VaultFacts(
                        posture=posture,
                        policy=policy_source.policy_for(posture),
                        probes=(probe,),
                        vantages=(vantage,),
                        evidence=evidence,
                        scan_started_at=now,
                        address_space=settings.address_space,
                    )
                    for finding in evaluate([facts], today=now.date()).findings:
                        table.upsert_entity(
                            {
                                "PartitionKey": subscription,
                                "RowKey": hashlib.sha256(finding.id.encode()).hexdigest(),
                                "rule_id": finding.rule_id,
                                "vault_id": finding.vault_id,
                                "severity": finding.severity.value,
                                "summary": finding.summary[:4000],
                            },
                            mode=UpdateMode.REPLACE,
                        )
                        result.findings += 1
                        result.entities_written += 1
                        result.table_requests += 1
                    result.vaults += 1
    finally:
        logs.close()
        table.close()
        service.close()
    return result
