"""The drift rules KV3xx: compare the posture with the stored one."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator, Mapping

from monitor.judge.drift import disappeared_findings, network_diff
from monitor.judge.rules.base import Hit, Rule, RuleCategory, VaultFacts, rule
from monitor.judge.rules.drift import change_hits
from monitor.model import EvidenceSource, Finding, Severity, VaultPosture


@rule(
    id="KV301",
    severity=Severity.HIGH,
    title="Network configuration changed since the last scan",
    source=EvidenceSource.CONFIGURATION,
    category=RuleCategory.DRIFT,
    remediation_cli=(
        "az monitor activity-log list --resource-id $(az keyvault show --name {name} "
        "--resource-group {resource_group} --subscription {subscription} --query id -o tsv) "
        "--offset 7d --query \"[?contains(operationName.value, 'vaults/write')]\""
    ),
    remediation_bicep=(
        "Declare the vault's networkAcls and publicNetworkAccess in Bicep and deploy them from "
        "source control, so a change goes through review and a drift is reverted by the next "
        "deployment:\n"
        "resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {\n"
        "  properties: {\n"
        "    publicNetworkAccess: 'Disabled'\n"
        "    networkAcls: { defaultAction: 'Deny', bypass: 'None', ipRules: [], virtualNetworkRules: [] }\n"
        "  }\n"
        "}"
    ),
    references=(
        "https://learn.microsoft.com/azure/key-vault/general/network-security",
        "https://learn.microsoft.com/azure/azure-resource-manager/management/view-activity-logs",
    ),
)
def network_changed(facts: VaultFacts) -> Iterator[Hit]:
    """A vault's network rules are its perimeter, and they change outside any review when someone edits
    them in the portal or a pipeline deploys a different template. KV301 diffs the configuration field
    by field against the previous scan (public network access, default action, bypass, IP rules,
    subnets, private endpoint connections) and names who changed it and when. A change that admits
    anyone new (loosening, or mixed) is high; one that only tightens is information, kept so the history
    explains later findings.
    """
    if facts.previous is None:
        return
    yield from change_hits(network_diff(facts.previous, facts.posture), actor=facts.actor)


@rule(
    id="KV302",
    severity=Severity.INFO,
    title="Vault appeared or disappeared since the last scan",
    source=EvidenceSource.CONFIGURATION,
    category=RuleCategory.DRIFT,
    remediation_cli=(
        "az keyvault show --name {name} --resource-group {resource_group} --subscription {subscription} "
        "|| az keyvault show-deleted --name {name} --subscription {subscription}"
    ),
    remediation_bicep=(
        "Create vaults only from a reviewed Bicep module that sets networkAcls and "
        "publicNetworkAccess, and protect them from deletion with a CanNotDelete lock:\n"
        "resource lock 'Microsoft.Authorization/locks@2020-05-01' = {\n"
        "  scope: vault\n"
        "  name: 'do-not-delete'\n"
        "  properties: { level: 'CanNotDelete' }\n"
        "}"
    ),
    references=(
        "https://learn.microsoft.com/azure/key-vault/general/soft-delete-overview",
        "https://learn.microsoft.com/azure/azure-resource-manager/management/lock-resources",
    ),
)
def vault_appeared_or_disappeared(facts: VaultFacts) -> Iterator[Hit]:
    """The estate is what is being watched: a new vault arrives with whatever network settings its creator
    chose, and a vault that vanishes may have been deleted (and can be recovered while soft-deleted) or
    moved out of the monitored scope. A vault is only declared gone when its subscription was listed
    completely.
    """
    if facts.previous is not None or facts.first_scan_of_scope:
        return
    posture = facts.posture
    yield Hit(
        summary=f"vault {posture.name} appeared in subscription {posture.subscription_id} since the last scan",
        subject="appeared",
        evidence={
            "event": "appeared",
            "subscription_id": posture.subscription_id,
            "resource_group": posture.resource_group,
            "created_or_modified_by": posture.last_modified_by,
            "last_modified_at": posture.last_modified_at.isoformat() if posture.last_modified_at else None,
        },
    )


def disappeared_vault_findings(
    *,
    previous: Mapping[str, VaultPosture],
    current_keys: Iterable[str],
    complete_subscriptions: Iterable[str],
) -> list[Finding]:
    """KV302 for each stored vault (key -> last posture) missing from this scan's listing.

    Only subscriptions listed completely count: a vault is never declared gone because its
    subscription's listing failed. Pass the gone vaults' keys to the lifecycle as assessed and
    complete so their other findings resolve; KV302 stays open while the vault stays away.
    """
    return disappeared_findings(
        vault_appeared_or_disappeared,
        "vault",
        previous=previous,
        current_keys=current_keys,
        complete_subscriptions=complete_subscriptions,
    )


# How long after an ARM write its event may still be on its way: Event Grid delivers in seconds and
# retries at 10 s, 30 s, 1 min and 5 min before a delivery counts as late. A change younger than this
# that a scheduled scan finds first may yet be announced (KV303 waits for the next scan).
EVENT_GRACE = dt.timedelta(minutes=5)


@rule(
    id="KV303",
    severity=Severity.MEDIUM,
    title="A network change reached kvmon without an event",
    source=EvidenceSource.CONFIGURATION,
    category=RuleCategory.DRIFT,
    remediation_cli=(
        "az eventgrid system-topic list --subscription {subscription} "
        "--query \"[?topicType=='Microsoft.Resources.Subscriptions']\" -o table"
    ),
    remediation_bicep=(
        "Deploy infra/main.bicep's event subscription for this subscription: a system topic of type "
        "Microsoft.Resources.Subscriptions (or the existing one) with an event subscription for "
        "Microsoft.Resources.ResourceWriteSuccess and ResourceDeleteSuccess, filtered on "
        "data.operationName beginning with Microsoft.KeyVault/vaults, delivered to the monitor's "
        "vault_changed function."
    ),
    references=(
        "https://learn.microsoft.com/azure/event-grid/event-schema-subscriptions",
        "https://learn.microsoft.com/azure/event-grid/delivery-and-retry",
    ),
)
def change_without_event(facts: VaultFacts) -> Iterator[Hit]:
    """With an Event Grid subscription in place, every ARM write of a vault is announced within
    seconds and judged at once, and its fresh configuration stored; a scheduled scan then finds
    nothing new. A network change that a scheduled scan finds first therefore reached kvmon without
    its event: the system topic or its event subscription is missing, filtered too narrowly,
    dead-lettering, or the monitor's endpoint is on probation. Until that is fixed every change waits
    for the timer, so a silent event feed is reported, not trusted.
    """
    if not facts.event_feed or facts.previous is None:
        return
    diff = network_diff(facts.previous, facts.posture)
    if not diff.changes:
        return
    changed_at = facts.posture.last_modified_at or (facts.actor.changed_at if facts.actor else None)
    started = facts.scan_started_at
    if changed_at is not None and started is not None and started - changed_at < EVENT_GRACE:
        return
    posture = facts.posture
    when = changed_at.isoformat() if changed_at else "an unknown time"
    yield Hit(
        summary=(
            f"{len(diff.changes)} network change(s) made at {when} reached kvmon only through a scheduled "
            f"scan: no event announced them (check subscription {posture.subscription_id}'s event subscription)"
        ),
        evidence={
            "changed_at": changed_at.isoformat() if changed_at else None,
            "fields": sorted({change.field for change in diff.changes}),
            "subscription_id": posture.subscription_id,
        },
    )


RULES: tuple[Rule, ...] = (network_changed, vault_appeared_or_disappeared, change_without_event)
