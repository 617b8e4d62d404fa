// Sends one vault's audit log to a Log Analytics workspace, in the resource-specific table
// AZKVAuditLogs (destination type Dedicated) that kvmon's log evidence queries first.
// Deployed into the vault's resource group; the deploying user needs
// Microsoft.Insights/diagnosticSettings/write on the vault (Monitoring Contributor, for example).

@description('Name of the vault (in this module\'s resource group).')
param vaultName string

@description('Resource id of the Log Analytics workspace.')
param workspaceResourceId string

@description('Name of the diagnostic setting.')
param settingName string = 'kvmon-audit'

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' existing = {
  name: vaultName
}

resource auditToWorkspace 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: settingName
  scope: vault
  properties: {
    workspaceId: workspaceResourceId
    logAnalyticsDestinationType: 'Dedicated'
    logs: [
      {
        // The audit group is the AuditEvent category: every data-plane request with its caller address.
        categoryGroup: 'audit'
        enabled: true
      }
    ]
    metrics: [
      {
        category: 'AllMetrics'
        enabled: true
      }
    ]
  }
}
