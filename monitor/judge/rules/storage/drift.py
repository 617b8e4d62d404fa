"""The storage drift rules ST3xx: compare the account's posture with the stored one.

Storage has drift rules of its own rather than KV301/KV302 generalised: a finding's id is keyed by its
rule id, so a storage change under KV301 would read as a Key Vault's in every output, notification and
suppression; the remediation names ``az storage account`` and its ARM operation; and what changes is
another record (``storage_network_diff``), though each kind of change is judged by the same code as a
vault's. Pure.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping

from monitor.judge.drift import disappeared_findings, storage_network_diff
from monitor.judge.rules.base import Hit, Rule, RuleCategory, StorageFacts, rule
from monitor.judge.rules.drift import change_hits
from monitor.judge.rules.storage.config import ACCOUNT_ID, BICEP_ACCOUNTS, NETWORK_SECURITY
from monitor.model import EvidenceSource, Finding, Service, Severity
from monitor.model_storage import StorageAccountPosture

ACTIVITY_LOG = "https://learn.microsoft.com/azure/azure-resource-manager/management/view-activity-logs"
LOCKS = "https://learn.microsoft.com/azure/azure-resource-manager/management/lock-resources"


@rule(
    id="ST301",
    severity=Severity.HIGH,
    title="Network or access configuration changed since the last scan",
    source=EvidenceSource.CONFIGURATION,
    category=RuleCategory.DRIFT,
    service=Service.STORAGE,
    remediation_cli=(
        f"az monitor activity-log list --resource-id {ACCOUNT_ID} --offset 7d "
        "--query \"[?contains(operationName.value, 'storageAccounts/write')]\""
    ),
    remediation_bicep=(
        "Declare the account's networkAcls, publicNetworkAccess and access settings in Bicep and deploy "
        "them from source control, so a change goes through review and a drift is reverted by the next "
        "deployment:\n"
        "resource account 'Microsoft.Storage/storageAccounts@2025-06-01' = {\n"
        "  properties: {\n"
        "    publicNetworkAccess: 'Disabled'\n"
        "    allowBlobPublicAccess: false\n"
        "    allowSharedKeyAccess: false\n"
        "    minimumTlsVersion: 'TLS1_2'\n"
        "    networkAcls: { defaultAction: 'Deny', bypass: 'None', ipRules: [], virtualNetworkRules: [] }\n"
        "  }\n"
        "}"
    ),
    references=(NETWORK_SECURITY, ACTIVITY_LOG, BICEP_ACCOUNTS),
)
def network_changed(facts: StorageFacts) -> Iterator[Hit]:
    """A storage account's firewall, private endpoints and access settings are its perimeter, and they
    change outside any review when someone edits them in the portal or a pipeline deploys another
    template. ST301 diffs them field by field against the previous scan (public network access,
    default action, the bypass set, IPv4 and IPv6 rules, subnets, resource instance rules, private
    endpoint connections, anonymous blob access, shared-key access, TLS, HTTPS only, copy scope, the
    perimeter association) and names who changed the account and when. A change that admits anyone new
    (loosening, or mixed) is high; one that only tightens is information.
    """
    if facts.previous is None:
        return
    yield from change_hits(storage_network_diff(facts.previous, facts.posture), actor=facts.actor)


@rule(
    id="ST302",
    severity=Severity.INFO,
    title="Storage account appeared or disappeared since the last scan",
    source=EvidenceSource.CONFIGURATION,
    category=RuleCategory.DRIFT,
    service=Service.STORAGE,
    remediation_cli="az storage account show --ids " + ACCOUNT_ID,
    remediation_bicep=(
        "Create accounts only from a reviewed Bicep module that sets networkAcls, publicNetworkAccess and "
        "the access settings, and protect them from deletion with a CanNotDelete lock:\n"
        "resource lock 'Microsoft.Authorization/locks@2020-05-01' = {\n"
        "  scope: account\n"
        "  name: 'do-not-delete'\n"
        "  properties: { level: 'CanNotDelete' }\n"
        "}"
    ),
    references=(NETWORK_SECURITY, LOCKS),
)
def account_appeared(facts: StorageFacts) -> Iterator[Hit]:
    """The estate is what is being watched: a new account arrives with whatever network and access
    settings its creator chose, and Azure's own defaults leave its firewall open to all networks and
    shared-key access on; an account that vanishes was deleted (its data with it, unless soft delete
    or a lock protected it) or moved out of the monitored scope. An account appears only where the
    store already knew the scope, so a first scan reports none, and is declared gone only when its
    subscription's accounts were listed completely.
    """
    if facts.previous is not None or facts.first_scan_of_scope:
        return
    posture = facts.posture
    yield Hit(
        summary=f"storage account {posture.name} appeared in subscription {posture.subscription_id} since the last scan",
        subject="appeared",
        evidence={
            "event": "appeared",
            "subscription_id": posture.subscription_id,
            "resource_group": posture.resource_group,
            "created_or_modified_by": posture.last_modified_by,
            "last_modified_at": posture.last_modified_at.isoformat() if posture.last_modified_at else None,
        },
    )


def disappeared_account_findings(
    *,
    previous: Mapping[str, StorageAccountPosture],
    current_keys: Iterable[str],
    complete_subscriptions: Iterable[str],
) -> list[Finding]:
    """ST302 for each stored account (key -> last posture) missing from this scan's account listing,
    in the subscriptions whose accounts were listed completely. Pass the gone accounts' keys to the
    lifecycle as assessed and complete so their other findings resolve."""
    return disappeared_findings(
        account_appeared,
        "storage account",
        previous=previous,
        current_keys=current_keys,
        complete_subscriptions=complete_subscriptions,
    )


RULES: tuple[Rule[StorageFacts], ...] = (network_changed, account_appeared)
