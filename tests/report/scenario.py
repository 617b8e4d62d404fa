"""The walkthrough as a finished scan: the records a scan of the lab would have produced.

Step 1: kv-se-demo has a Service Endpoint rule for the serviceEndpoint subnet but defaultAction
Allow, so everyone gets in; kv-pl-demo has a Private Endpoint but public access enabled, and the
spoke VNet's DNS zone is not linked. Step 2 (``fixed=True``): kv-se-demo denies by default.
Addresses and subnet ids are the lab's (``lab.estate``).
"""

from __future__ import annotations

import datetime as dt

from lab.estate import INTERNET_CLIENT, PUBLIC_INGRESS, WALKTHROUGH_SUBSCRIPTION, WALKTHROUGH_WORKSPACE
from lab.estate import walkthrough_network as lab_network
from monitor.config.policy import Vantage, VaultPolicy
from monitor.model import (
    CallerActivity,
    ChangeKind,
    DataPlaneStep,
    DnsStep,
    Finding,
    FindingChange,
    HealthStep,
    LogEvidence,
    Outcome,
    PrivateEndpointConnection,
    ProbeResult,
    ScanError,
    Severity,
    Suppression,
    TlsStep,
    VaultPosture,
    Verdict,
    VirtualNetworkRule,
)
from monitor.scan_report import ScanReport

STARTED = dt.datetime(2025, 3, 14, 9, 30, 0, tzinfo=dt.UTC)
FINISHED = STARTED + dt.timedelta(seconds=4.2)
GENERATED = FINISHED + dt.timedelta(seconds=1)
HOSTILE = "<script>alert('kvmon')</script>"

_SUBNETS = {subnet.name: subnet for vnet in lab_network() for subnet in vnet.subnets}
SE_SUBNET = _SUBNETS["serviceEndpoint"]
PL_SUBNET = _SUBNETS["privateLink"]
DEFAULT_SUBNET = _SUBNETS["default"]
SPOKE_SUBNET = _SUBNETS["workload"]

VANTAGES = (
    Vantage(name="internet", inside=False, source_address=INTERNET_CLIENT),
    Vantage(name="se-subnet", inside=True, subnet_id=SE_SUBNET.id, source_address=SE_SUBNET.client_address),
    Vantage(name="pl-subnet", inside=True, subnet_id=PL_SUBNET.id, source_address=PL_SUBNET.client_address),
    Vantage(
        name="default-subnet",
        inside=True,
        subnet_id=DEFAULT_SUBNET.id,
        source_address=DEFAULT_SUBNET.client_address,
    ),
    Vantage(name="spoke", inside=True, subnet_id=SPOKE_SUBNET.id, source_address=SPOKE_SUBNET.client_address),
)
# Where each vantage point leaves for the public front end (its NAT address), and its own address.
_NAT = {
    "internet": INTERNET_CLIENT,
    "se-subnet": SE_SUBNET.nat_public_address,
    "pl-subnet": PL_SUBNET.nat_public_address,
    "default-subnet": DEFAULT_SUBNET.nat_public_address,
    "spoke": SPOKE_SUBNET.nat_public_address,
}
PE_ADDRESS = "127.10.2.10"

_RG = f"/subscriptions/{WALKTHROUGH_SUBSCRIPTION}/resourceGroups/rg-walkthrough"
SE_VAULT_ID = f"{_RG}/providers/Microsoft.KeyVault/vaults/kv-se-demo"
PL_VAULT_ID = f"{_RG}/providers/Microsoft.KeyVault/vaults/kv-pl-demo"


def se_posture(*, fixed: bool) -> VaultPosture:
    return VaultPosture(
        id=SE_VAULT_ID,
        name="kv-se-demo",
        subscription_id=WALKTHROUGH_SUBSCRIPTION,
        resource_group="rg-walkthrough",
        location="westeurope",
        vault_uri="https://kv-se-demo.vault.lab.test/",
        public_network_access="Enabled",
        network_acls_present=True,
        default_action="Deny" if fixed else "Allow",
        bypass="AzureServices",
        virtual_network_rules=(VirtualNetworkRule(SE_SUBNET.id.lower()),),
        tags={"env": "lab", "owner": HOSTILE},
        last_modified_by="alice@contoso.example",
        last_modified_at=STARTED - dt.timedelta(minutes=3),
    )


def pl_posture() -> VaultPosture:
    return VaultPosture(
        id=PL_VAULT_ID,
        name="kv-pl-demo",
        subscription_id=WALKTHROUGH_SUBSCRIPTION,
        resource_group="rg-walkthrough",
        location="westeurope",
        vault_uri="https://kv-pl-demo.vault.lab.test/",
        public_network_access="Enabled",
        network_acls_present=True,
        default_action="Allow",
        bypass="AzureServices",
        private_endpoint_connections=(
            PrivateEndpointConnection(
                id=f"{PL_VAULT_ID}/privateEndpointConnections/pe-kv-pl-demo-conn",
                private_endpoint_id=(
                    f"/subscriptions/{WALKTHROUGH_SUBSCRIPTION}/resourceGroups/rg-network"
                    "/providers/Microsoft.Network/privateEndpoints/pe-kv-pl-demo"
                ),
                status="Approved",
                provisioning_state="Succeeded",
            ),
        ),
        tags={"env": "lab"},
    )


POLICIES = {
    SE_VAULT_ID.lower(): VaultPolicy(
        entry="service-endpoint vaults", mode="service-endpoint", allowed_subnets=(SE_SUBNET.id.lower(),)
    ),
    PL_VAULT_ID.lower(): VaultPolicy(entry="private-link vaults", mode="private-link"),
}


def _probe(
    vault: str,
    vantage: str,
    *,
    private_dns: bool,
    admitted: bool,
    seen: str,
    seen_private: bool,
) -> ProbeResult:
    hostname = f"{vault}.vault.lab.test"
    address = PE_ADDRESS if private_dns else PUBLIC_INGRESS
    dns = DnsStep(
        query=hostname,
        chain=(hostname, f"{vault}.privatelink.vaultcore.lab.test") if vault == "kv-pl-demo" else (hostname,),
        addresses=(address,),
        private_addresses=(address,) if private_dns else (),
        private_link_in_chain=vault == "kv-pl-demo",
    )
    tls = TlsStep(address=address, port=443, connected=True, handshake_ok=True, certificate_valid=True)
    if admitted:
        health = HealthStep(status_code=200, seen_address=seen, seen_address_private=seen_private)
        plane = DataPlaneStep(verdict=Verdict.ADMITTED, status_code=401)
    else:
        health = HealthStep(status_code=403)
        plane = DataPlaneStep(
            verdict=Verdict.REFUSED_FIREWALL,
            status_code=403,
            error_code="Forbidden",
            inner_code="ForbiddenByFirewall",
            client_address=seen,
            client_address_private=seen_private,
            message=f"Client address is not authorized and caller is not a trusted service.\r\nClient address: {seen}",
        )
    return ProbeResult(
        vault_name=vault,
        vantage=vantage,
        hostname=hostname,
        started_at=STARTED + dt.timedelta(seconds=1),
        dns=dns,
        tls=tls,
        health=health,
        data_plane=plane,
        duration_ms=40.0,
    )


def se_probes(*, fixed: bool) -> list[ProbeResult]:
    probes = [
        # Through its Service Endpoint the subnet reaches the vault with its private address.
        _probe(
            "kv-se-demo",
            "se-subnet",
            private_dns=False,
            admitted=True,
            seen=SE_SUBNET.client_address,
            seen_private=True,
        )
    ]
    for vantage in ("internet", "pl-subnet", "default-subnet"):
        probes.append(
            _probe(
                "kv-se-demo",
                vantage,
                private_dns=False,
                admitted=not fixed,
                seen=_NAT[vantage],
                seen_private=False,
            )
        )
    probes.append(
        ProbeResult(
            vault_name="kv-se-demo",
            vantage="spoke",
            hostname="kv-se-demo.vault.lab.test",
            started_at=STARTED + dt.timedelta(seconds=1),
            vantage_error="remote probe endpoint did not answer within 5 s",
        )
    )
    return probes


def pl_probes() -> list[ProbeResult]:
    probes = [
        # Public access is still enabled (default Allow): the internet gets in through the front end.
        _probe(
            "kv-pl-demo",
            "internet",
            private_dns=False,
            admitted=True,
            seen=INTERNET_CLIENT,
            seen_private=False,
        )
    ]
    for vantage, subnet in (
        ("se-subnet", SE_SUBNET),
        ("pl-subnet", PL_SUBNET),
        ("default-subnet", DEFAULT_SUBNET),
    ):
        probes.append(
            _probe(
                "kv-pl-demo",
                vantage,
                private_dns=True,
                admitted=True,
                seen=subnet.client_address,
                seen_private=True,
            )
        )
    # The spoke's zone is not linked: it resolves the public front end and leaves through its NAT.
    probes.append(
        _probe(
            "kv-pl-demo", "spoke", private_dns=False, admitted=True, seen=_NAT["spoke"], seen_private=False
        )
    )
    return probes


def _finding(
    vault_id: str, vault: str, rule: str, severity: Severity, title: str, summary: str, **kw
) -> Finding:
    return Finding(
        rule_id=rule,
        severity=severity,
        title=title,
        vault_id=vault_id,
        vault_name=vault,
        summary=summary,
        remediation=f"az keyvault update --name {vault} --resource-group rg-walkthrough --default-action Deny",
        **kw,
    )


def step1_findings() -> list[Finding]:
    return [
        _finding(
            SE_VAULT_ID,
            "kv-se-demo",
            "KV001",
            Severity.HIGH,
            "Vault reachable from any public address",
            "publicNetworkAccess Enabled and defaultAction Allow",
        ),
        _finding(
            SE_VAULT_ID,
            "kv-se-demo",
            "KV002",
            Severity.MEDIUM,
            "Virtual network rules without defaultAction Deny",
            "1 subnet rule has no effect while defaultAction is Allow",
        ),
        _finding(
            SE_VAULT_ID,
            "kv-se-demo",
            "KV101",
            Severity.HIGH,
            "Internet vantage point admitted",
            f"probe from internet admitted, seen as {INTERNET_CLIENT} " + HOSTILE,
            subject="internet",
        ),
        _finding(
            SE_VAULT_ID,
            "kv-se-demo",
            "KV201",
            Severity.HIGH,
            "Public caller admitted (logs)",
            f"{INTERNET_CLIENT} admitted 3 times",
            subject=INTERNET_CLIENT,
        ),
        _finding(
            PL_VAULT_ID,
            "kv-pl-demo",
            "KV008",
            Severity.HIGH,
            "Private Endpoint with public network access enabled",
            "approved private endpoint pe-kv-pl-demo, publicNetworkAccess Enabled",
        ),
        _finding(
            PL_VAULT_ID,
            "kv-pl-demo",
            "KV103",
            Severity.MEDIUM,
            "Inside vantage point resolves the public address",
            f"spoke resolved {PUBLIC_INGRESS} (public)",
            subject="spoke",
        ),
        _finding(
            PL_VAULT_ID,
            "kv-pl-demo",
            "KV004",
            Severity.LOW,
            "Bypass lets trusted Azure services in",
            "bypass AzureServices",
            suppression=Suppression(
                rule="KV004",
                vault_pattern="kv-pl-*",
                reason="backup service needs it",
                owner="platform-team",
                expires=dt.date(2025, 12, 31),
            ),
        ),
    ]


def se_evidence(*, fixed: bool) -> LogEvidence:
    window_start = STARTED - dt.timedelta(minutes=15)
    internet_outcome = Outcome.REFUSED_FIREWALL if fixed else Outcome.ADMITTED
    return LogEvidence(
        vault_id=SE_VAULT_ID.lower(),
        workspace_id=WALKTHROUGH_WORKSPACE,
        window_start=window_start,
        window_end=STARTED,
        activity=(
            CallerActivity(
                vault_id=SE_VAULT_ID.lower(),
                caller_address=INTERNET_CLIENT,
                address_private=False,
                address_auth_type=None if fixed else "",
                subnet_id=None,
                outcome=internet_outcome,
                identity="app-internet",
                count=3,
                first_seen=window_start,
                last_seen=STARTED - dt.timedelta(minutes=1),
            ),
            CallerActivity(
                vault_id=SE_VAULT_ID.lower(),
                caller_address=SE_SUBNET.client_address,
                address_private=True,
                address_auth_type="Subnet",
                subnet_id=SE_SUBNET.id.lower(),
                outcome=Outcome.ADMITTED,
                identity="app-workload",
                count=5,
                first_seen=window_start,
                last_seen=STARTED - dt.timedelta(minutes=2),
            ),
        ),
    )


def pl_evidence() -> LogEvidence:
    return LogEvidence(
        vault_id=PL_VAULT_ID.lower(),
        workspace_id=WALKTHROUGH_WORKSPACE,
        window_start=STARTED - dt.timedelta(minutes=15),
        window_end=STARTED,
        complete=False,
        notes=("query timed out after 30 s",),
    )


def walkthrough_report(*, fixed: bool = False) -> ScanReport:
    """Step 1 (or step 2 with ``fixed``) plus the Private Link vault, whose logs could not be read."""
    findings = step1_findings()
    se_rules_fixed = {"KV001", "KV002", "KV101", "KV201"}
    if fixed:
        current = [f for f in findings if f.rule_id not in se_rules_fixed]
        drift = _finding(
            SE_VAULT_ID,
            "kv-se-demo",
            "KV301",
            Severity.MEDIUM,
            "Network configuration changed",
            "defaultAction Allow -> Deny by alice@contoso.example",
        )
        current.append(drift)
        changes = [FindingChange(ChangeKind.OPENED, drift)] + [
            FindingChange(ChangeKind.RESOLVED, f) for f in findings if f.rule_id in se_rules_fixed
        ]
    else:
        current = findings
        changes = [FindingChange(ChangeKind.OPENED, f) for f in findings if not f.suppressed]
    return ScanReport(
        scan_id="scan-20250314T093000Z-1a2b",
        started_at=STARTED,
        finished_at=FINISHED,
        scope=(WALKTHROUGH_SUBSCRIPTION,),
        postures=[se_posture(fixed=fixed), pl_posture()],
        probes=se_probes(fixed=fixed) + pl_probes(),
        evidence=[se_evidence(fixed=fixed), pl_evidence()],
        findings=current,
        changes=changes,
        errors=[
            ScanError(
                source="logs",
                scope=WALKTHROUGH_WORKSPACE,
                message="Log Analytics query for kv-pl-demo timed out after 30 s " + HOSTILE,
                code="GatewayTimeout",
            )
        ],
        incomplete={PL_VAULT_ID.lower(): {"logs"}},
    )
