// Reader for kvmon's monitor identity on a management group: every subscription below it, present
// and future, without one role assignment per subscription. Deploy after main.bicep (with
// assignSubscriptionReader=false there) and pass its monitorIdentityPrincipalId output:
//   az deployment mg create --management-group-id <mg> --location <region> \
//     -f infra/reader-management-group.bicep -p principalId=<monitorIdentityPrincipalId>
targetScope = 'managementGroup'

@description('Object (principal) id of the monitor\'s user-assigned managed identity (main.bicep output monitorIdentityPrincipalId).')
param principalId string

// Reader: list vaults and their network properties. Nothing on any vault's data plane.
var readerRoleDefinitionId = 'acdd72a7-3385-48ef-bd42-f606fba81ae7'

resource readerAssignment 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(managementGroup().id, principalId, readerRoleDefinitionId)
  properties: {
    principalId: principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: tenantResourceId('Microsoft.Authorization/roleDefinitions', readerRoleDefinitionId)
    description: 'kvmon: read Key Vault network configuration (ARM) below this management group'
  }
}
