// Reader on one monitored subscription for the monitor's identity: enough to list vaults with
// their network properties (Microsoft.KeyVault/vaults/read), nothing on the data plane.
// Deployed from main.bicep with `scope: subscription(<id>)`, once per monitored subscription;
// the deploying user needs Owner, User Access Administrator or Role Based Access Control
// Administrator on each of them.
targetScope = 'subscription'

@description('Object (principal) id of the monitor\'s user-assigned managed identity.')
param principalId string

@description('Role definition GUID to grant (Reader).')
param roleDefinitionId string

resource readerAssignment 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(subscription().id, principalId, roleDefinitionId)
  properties: {
    principalId: principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleDefinitionId)
    description: 'kvmon: read Key Vault network configuration (ARM) in this subscription'
  }
}
