// One kvmon Function App on its own Flex Consumption plan (Flex allows one app per plan).
// The same module builds both vantage points: with `subnetId` the app is VNet-integrated and
// every outbound packet (probes, DNS, token requests) leaves through that subnet; without it the
// app is an outside vantage on the public internet.

@description('Function App name (globally unique: it becomes <name>.azurewebsites.net).')
param name string

param location string

param tags object = {}

@description('Resource id of the user-assigned managed identity the app runs as.')
param identityId string

@description('Storage account holding this app\'s deployment package container and host state.')
param storageAccountName string

@description('Blob endpoint of that storage account (https://<account>.blob.core.windows.net/).')
param storageBlobEndpoint string

@description('Blob container the Flex Consumption platform deploys the package from.')
param deploymentContainerName string

@description('Subnet to integrate with (delegated to Microsoft.App/environments). Empty: no VNet integration.')
param subnetId string = ''

@description('App settings as a name -> value object. Secure: they hold webhook URLs and a function key, which must not appear in the deployment history.')
@secure()
param appSettings object

@description('Most instances the app may scale out to.')
@minValue(40)
@maxValue(1000)
param maximumInstanceCount int = 40

@description('Memory of each instance, MB.')
@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int = 2048

var integrated = !empty(subnetId)

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  // checkov:skip=CKV_AZURE_225: Zone redundancy on Flex Consumption needs always-ready instances in every zone, a standing cost out of proportion for a monitor whose missed run is caught by the next scheduled scan.
  name: 'plan-${name}'
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    tier: 'FlexConsumption'
    name: 'FC1'
  }
  properties: {
    reserved: true
  }
}

resource site 'Microsoft.Web/sites@2024-11-01' = {
  // checkov:skip=CKV_AZURE_17: Callers authenticate with function keys (x-functions-key) and the health endpoint is anonymous by design; client certificates would lock out the monitor's own calls to the outside vantage.
  // checkov:skip=CKV_AZURE_212: Flex Consumption scales per execution; there is no fixed instance count to set for failover.
  // checkov:skip=CKV_AZURE_213: Flex Consumption has no App Service health check; kvmon exposes GET /api/health for external monitoring instead.
  // checkov:skip=CKV_AZURE_222: The outside vantage must be reachable by the monitor over the internet, and the monitor's on-demand check API is called by operators; both endpoints require a function key.
  name: name
  location: location
  tags: tags
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    clientCertEnabled: false
    publicNetworkAccess: 'Enabled'
    virtualNetworkSubnetId: integrated ? subnetId : null
    // All traffic, not only RFC 1918 destinations: the probes must reach the vaults' public names
    // from inside the VNet, so that DNS and the source address are the VNet's, as a workload's are.
    outboundVnetRouting: integrated ? {
      allTraffic: true
      applicationTraffic: true
    } : null
    siteConfig: {
      // Legacy name of applicationTraffic, still what older tooling and Azure Policy read.
      vnetRouteAllEnabled: integrated
      minTlsVersion: '1.2'
      scmMinTlsVersion: '1.2'
      ftpsState: 'Disabled'
      http20Enabled: true
      remoteDebuggingEnabled: false
      cors: {
        allowedOrigins: []
      }
      appSettings: [
        for setting in items(appSettings): {
          name: setting.key
          value: setting.value
        }
      ]
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${storageBlobEndpoint}${deploymentContainerName}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identityId
          }
        }
      }
      scaleAndConcurrency: {
        maximumInstanceCount: maximumInstanceCount
        instanceMemoryMB: instanceMemoryMB
      }
      runtime: {
        name: 'python'
        version: '3.11'
      }
    }
  }
}

// Publishing goes through Entra ID (az / func with a token), never FTP or basic-auth credentials.
resource ftpBasicAuth 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: site
  name: 'ftp'
  properties: {
    allow: false
  }
}

resource scmBasicAuth 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: site
  name: 'scm'
  properties: {
    allow: false
  }
}

output id string = site.id
output name string = site.name
output hostName string = site.properties.defaultHostName
output storageAccountName string = storageAccountName
