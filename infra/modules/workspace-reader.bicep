// Log Analytics Reader on the workspace holding the vaults' audit logs, for the monitor's
// identity (the access-log evidence queries). Deployed into the workspace's resource group, which
// may be another subscription's when the user brings an existing workspace.

@description('Name of the Log Analytics workspace (in this module\'s resource group).')
param workspaceName string

@description('Object (principal) id of the monitor\'s user-assigned managed identity.')
param principalId string

@description('Role definition GUID to grant (Log Analytics Reader).')
param roleDefinitionId string

resource workspace 'Microsoft.OperationalInsights/workspaces@2023-09-01' existing = {
  name: workspaceName
}

resource readerAssignment 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(workspace.id, principalId, roleDefinitionId)
  scope: workspace
  properties: {
    principalId: principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleDefinitionId)
    description: 'kvmon: query Key Vault audit logs (AZKVAuditLogs / AzureDiagnostics)'
  }
}

@description('Workspace (customer) id: what KVMON_WORKSPACES and the query API take.')
output customerId string = workspace.properties.customerId
