// The walkthrough lab in Azure: one VNet with three subnets and two vaults that show the classic
// mistakes kvmon exists to catch. Deploy it, point kvmon at it (infra/README.md), watch the
// findings, redeploy with serviceEndpointVaultState=fixed, watch them resolve.
//   az deployment group create -g <rg> -f infra/lab.bicep -p @infra/lab.parameters.example.json
//
// The vaults deliberately fail some of Checkov's Key Vault checks: that is the lab's point, and
// each such check is skipped inside the vault with the reason.
targetScope = 'resourceGroup'

param location string = resourceGroup().location

@description('Short lower-case prefix for resource names.')
@minLength(2)
@maxLength(10)
param namePrefix string = 'kvlab'

@description('The service-endpoint vault\'s network state. unsafe: a VNet rule but defaultAction Allow, so the internet still gets in (the walkthrough\'s first state). fixed: defaultAction Deny.')
@allowed([
  'unsafe'
  'fixed'
])
param serviceEndpointVaultState string = 'unsafe'

@description('publicNetworkAccess of the private-link vault. Enabled reproduces "Private Endpoint exists but the public door is open".')
@allowed([
  'Enabled'
  'Disabled'
])
param privateLinkVaultPublicNetworkAccess string = 'Disabled'

@description('Link the private DNS zone to the VNet. false reproduces "clients inside resolve the public address".')
param linkPrivateDnsZone bool = true

@description('Delegate subnet serviceEndpoint to Microsoft.App/environments so kvmon\'s monitor (Flex Consumption) can integrate there as the inside vantage point. false leaves it free for VMs.')
param delegateServiceEndpointSubnet bool = true

@description('Address space of the lab VNet; the subnets are its .1, .2 and .3 /24s.')
param addressPrefix string = '10.10.0.0/16'

@description('Resource id of an existing Log Analytics workspace for the vaults\' audit logs. Empty: create one (then give it to main.bicep as existingWorkspaceResourceId).')
param existingWorkspaceResourceId string = ''

@description('Private DNS zone of Key Vault private endpoints in this cloud.')
param privateDnsZoneName string = 'privatelink.vaultcore.azure.net'

param tags object = {
  workload: 'kvmon-lab'
}

var token = uniqueString(resourceGroup().id, namePrefix)
var vnetName = 'vnet-${namePrefix}'
var octets = split(addressPrefix, '.')
var subnetPrefix = '${octets[0]}.${octets[1]}'
var createWorkspace = empty(existingWorkspaceResourceId)
var workspaceName = 'log-${namePrefix}-${token}'
var workspaceResourceId = createWorkspace ? resourceId('Microsoft.OperationalInsights/workspaces', workspaceName) : existingWorkspaceResourceId
var functionsDelegation = [
  {
    name: 'flex-consumption'
    properties: {
      serviceName: 'Microsoft.App/environments'
    }
  }
]

resource vnet 'Microsoft.Network/virtualNetworks@2023-11-01' = {
  name: vnetName
  location: location
  tags: tags
  properties: {
    addressSpace: {
      addressPrefixes: [
        addressPrefix
      ]
    }
    subnets: [
      {
        // Traffic from here to Key Vault uses the service endpoint: the vault sees this subnet's
        // private address, which its virtual network rule admits.
        name: 'serviceEndpoint'
        properties: {
          addressPrefix: '${subnetPrefix}.1.0/24'
          serviceEndpoints: [
            {
              service: 'Microsoft.KeyVault'
            }
          ]
          delegations: delegateServiceEndpointSubnet ? functionsDelegation : []
        }
      }
      {
        name: 'privateLink'
        properties: {
          addressPrefix: '${subnetPrefix}.2.0/24'
          privateEndpointNetworkPolicies: 'Disabled'
        }
      }
      {
        // No endpoint of any kind: traffic to Key Vault leaves by the public path.
        name: 'default'
        properties: {
          addressPrefix: '${subnetPrefix}.3.0/24'
        }
      }
    ]
  }
}

resource workspace 'Microsoft.OperationalInsights/workspaces@2023-09-01' = if (createWorkspace) {
  name: workspaceName
  location: location
  tags: tags
  properties: {
    sku: {
      name: 'PerGB2018'
    }
    retentionInDays: 30
  }
}

// Vault 1: service-endpoint mode. The classic mistake: the VNet rule is there, defaultAction is
// still Allow, so the rule changes nothing for the internet.
resource serviceEndpointVault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  // checkov:skip=CKV_AZURE_109: Lab vault: its first (unsafe) state has defaultAction Allow on purpose, the mistake kvmon must catch; serviceEndpointVaultState=fixed sets Deny.
  // checkov:skip=CKV_AZURE_189: Service endpoint mode needs the public endpoint: service-endpoint traffic arrives at the vault's public address, filtered by the virtual network rule.
  // checkov:skip=CKV_AZURE_110: Throw-away lab vault: purge protection would keep its name reserved for the retention period after teardown and block a rebuild.
  // checkov:skip=CKV_AZURE_42: Same as CKV_AZURE_110: soft delete stays on (7 days), purge protection stays off so the lab can be rebuilt.
  name: 'kvse-${token}'
  location: location
  tags: union(tags, {
    'kvmon-lab-role': 'service-endpoint'
  })
  properties: {
    tenantId: subscription().tenantId
    sku: {
      family: 'A'
      name: 'standard'
    }
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: 7
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      bypass: 'AzureServices'
      defaultAction: (serviceEndpointVaultState == 'fixed') ? 'Deny' : 'Allow'
      ipRules: []
      virtualNetworkRules: [
        {
          id: '${vnet.id}/subnets/serviceEndpoint'
          ignoreMissingVnetServiceEndpoint: false
        }
      ]
    }
  }
}

// Vault 2: private-link mode, reached through a Private Endpoint in subnet privateLink.
resource privateLinkVault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  // checkov:skip=CKV_AZURE_110: Throw-away lab vault: purge protection would keep its name reserved for the retention period after teardown and block a rebuild.
  // checkov:skip=CKV_AZURE_42: Same as CKV_AZURE_110: soft delete stays on (7 days), purge protection stays off so the lab can be rebuilt.
  name: 'kvpl-${token}'
  location: location
  tags: union(tags, {
    'kvmon-lab-role': 'private-link'
  })
  properties: {
    tenantId: subscription().tenantId
    sku: {
      family: 'A'
      name: 'standard'
    }
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: 7
    publicNetworkAccess: privateLinkVaultPublicNetworkAccess
    networkAcls: {
      bypass: 'None'
      defaultAction: 'Deny'
      ipRules: []
      virtualNetworkRules: []
    }
  }
}

resource privateEndpoint 'Microsoft.Network/privateEndpoints@2023-11-01' = {
  name: 'pe-${privateLinkVault.name}'
  location: location
  tags: tags
  properties: {
    subnet: {
      id: '${vnet.id}/subnets/privateLink'
    }
    privateLinkServiceConnections: [
      {
        name: 'vault'
        properties: {
          privateLinkServiceId: privateLinkVault.id
          groupIds: [
            'vault'
          ]
        }
      }
    ]
  }
}

resource privateDnsZone 'Microsoft.Network/privateDnsZones@2020-06-01' = {
  name: privateDnsZoneName
  location: 'global'
  tags: tags
}

// Without this link, machines in the VNet resolve the vault's public address and never use the
// Private Endpoint.
resource privateDnsZoneLink 'Microsoft.Network/privateDnsZones/virtualNetworkLinks@2020-06-01' = if (linkPrivateDnsZone) {
  parent: privateDnsZone
  name: 'link-${vnetName}'
  location: 'global'
  tags: tags
  properties: {
    registrationEnabled: false
    virtualNetwork: {
      id: vnet.id
    }
  }
}

// Writes the endpoint's A record (<vault> -> its private address) into the zone.
resource privateDnsZoneGroup 'Microsoft.Network/privateEndpoints/privateDnsZoneGroups@2023-11-01' = {
  parent: privateEndpoint
  name: 'default'
  properties: {
    privateDnsZoneConfigs: [
      {
        name: 'vaultcore'
        properties: {
          privateDnsZoneId: privateDnsZone.id
        }
      }
    ]
  }
}

module serviceEndpointVaultDiagnostics 'modules/vault-diagnostics.bicep' = {
  name: 'lab-diag-${serviceEndpointVault.name}'
  params: {
    vaultName: serviceEndpointVault.name
    workspaceResourceId: workspaceResourceId
  }
  dependsOn: [
    workspace
  ]
}

module privateLinkVaultDiagnostics 'modules/vault-diagnostics.bicep' = {
  name: 'lab-diag-${privateLinkVault.name}'
  params: {
    vaultName: privateLinkVault.name
    workspaceResourceId: workspaceResourceId
  }
  dependsOn: [
    workspace
  ]
}

output vnetId string = vnet.id
output serviceEndpointSubnetId string = '${vnet.id}/subnets/serviceEndpoint'
output privateLinkSubnetId string = '${vnet.id}/subnets/privateLink'
output defaultSubnetId string = '${vnet.id}/subnets/default'
@description('Give this to main.bicep as monitorSubnetId (only when delegateServiceEndpointSubnet is true).')
output monitorSubnetId string = delegateServiceEndpointSubnet ? '${vnet.id}/subnets/serviceEndpoint' : ''
output serviceEndpointVaultName string = serviceEndpointVault.name
output serviceEndpointVaultId string = serviceEndpointVault.id
output privateLinkVaultName string = privateLinkVault.name
output privateLinkVaultId string = privateLinkVault.id
output workspaceResourceId string = workspaceResourceId
