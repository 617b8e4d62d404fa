// The subscription's system topic for ARM writes (Microsoft.Resources.Subscriptions), in this
// module's resource group, and kvmon's event subscription on it. Azure allows one such topic per
// subscription: when one exists, name it (existingTopicName) and this module only adds the event
// subscription to it; it must then have a system-assigned identity.

@description('Name of the subscription\'s existing system topic in this resource group. Empty: create newTopicName.')
param existingTopicName string = ''

@description('Name of the system topic to create when none exists.')
param newTopicName string

@description('Name of kvmon\'s event subscription on the topic (one per kvmon deployment, so several can share a topic).')
param eventSubscriptionName string

@description('`function`: Event Grid pushes each event to functionResourceId. `queue`: it writes each event to eventQueueName in the monitor\'s storage, for a monitor without public inbound.')
@allowed([
  'function'
  'queue'
])
param eventDelivery string

@description('Resource id of the monitor\'s vault_changed function (<function app id>/functions/vault_changed).')
param functionResourceId string

@description('Storage queue in the monitor\'s storage the vault_changed_queue function reads (KVMON_EVENT_QUEUE).')
param eventQueueName string

@description('Resource id of the monitor\'s storage account (dead letters).')
param storageAccountId string

@description('Blob container in that account for dead-lettered events.')
param deadLetterContainerName string

@description('Role definition GUID for dead-lettering (Storage Blob Data Contributor).')
param deadLetterRoleDefinitionId string

@description('Role definition GUID for queue delivery (Storage Queue Data Message Sender).')
param queueSenderRoleDefinitionId string

param tags object = {}

var createTopic = empty(existingTopicName)
var topicName = createTopic ? newTopicName : existingTopicName
var deliverToQueue = eventDelivery == 'queue'

resource createdTopic 'Microsoft.EventGrid/systemTopics@2022-06-15' = if (createTopic) {
  name: newTopicName
  // A subscription's topic is not regional: ARM writes anywhere in the subscription feed it.
  location: 'global'
  tags: tags
  // The identity Event Grid dead-letters (and queue-delivers) with: no storage key is handed out.
  identity: {
    type: 'SystemAssigned'
  }
  properties: {
    source: subscription().id
    topicType: 'Microsoft.Resources.Subscriptions'
  }
}

// The topic the event subscription hangs on: the one just created, or the existing one.
resource topic 'Microsoft.EventGrid/systemTopics@2022-06-15' existing = {
  name: topicName
}

var topicPrincipalId = createTopic ? createdTopic.identity.principalId : topic.identity.principalId

module deliveryAccess 'event-delivery-access.bicep' = {
  name: 'kvmon-event-access-${uniqueString(subscription().id, topicName)}'
  scope: resourceGroup(split(storageAccountId, '/')[2], split(storageAccountId, '/')[4])
  params: {
    storageAccountName: last(split(storageAccountId, '/'))
    principalId: topicPrincipalId
    deadLetterContainerName: deadLetterContainerName
    deadLetterRoleDefinitionId: deadLetterRoleDefinitionId
    eventQueueName: eventQueueName
    deliverToQueue: deliverToQueue
    queueSenderRoleDefinitionId: queueSenderRoleDefinitionId
  }
}

resource vaultChanges 'Microsoft.EventGrid/systemTopics/eventSubscriptions@2022-06-15' = {
  parent: topic
  name: eventSubscriptionName
  properties: {
    // The system topic's own schema: no conversion on the way, the published Microsoft.Resources
    // examples match it field for field, and the Functions trigger reads it natively.
    eventDeliverySchema: 'EventGridSchema'
    filter: {
      // Succeeded PUT/PATCH and DELETE only: a failed or cancelled write changed nothing.
      includedEventTypes: [
        'Microsoft.Resources.ResourceWriteSuccess'
        'Microsoft.Resources.ResourceDeleteSuccess'
      ]
      // Key Vault's own writes, vaults and their sub-resources (privateEndpointConnections/write
      // included): StringBeginsWith is case-insensitive. Claims cannot be filtered on (dotted keys).
      // A storage account: its own write and delete, its private endpoint connections and their
      // proxies, not its services, containers or shares (frequent, and no network setting).
      advancedFilters: [
        {
          operatorType: 'StringBeginsWith'
          key: 'data.operationName'
          values: [
            'Microsoft.KeyVault/vaults'
            'Microsoft.Storage/storageAccounts/write'
            'Microsoft.Storage/storageAccounts/delete'
            'Microsoft.Storage/storageAccounts/privateEndpointConnection'
          ]
        }
      ]
    }
    // Retries come after 10 s, 30 s, 1 min, 5 min, 10 min, 30 min, 1 h, 3 h...: the 8th attempt at
    // about 1 h 47 min, so both limits end at about two hours, enough to ride out a restart or a
    // publish. By then the timer has scanned the vault; retrying a failing endpoint for a day only
    // keeps it on probation, delaying every other event. The dead letter keeps the event and who.
    retryPolicy: {
      maxDeliveryAttempts: 8
      eventTimeToLiveInMinutes: 120
    }
    deadLetterWithResourceIdentity: {
      identity: {
        type: 'SystemAssigned'
      }
      deadLetterDestination: {
        endpointType: 'StorageBlob'
        properties: {
          resourceId: storageAccountId
          blobContainerName: deadLetterContainerName
        }
      }
    }
    // Event Grid cannot push to a private endpoint: without public inbound, the monitor reads a
    // queue in its own storage instead, which the topic writes to with its identity.
    deliveryWithResourceIdentity: deliverToQueue ? {
      identity: {
        type: 'SystemAssigned'
      }
      destination: {
        endpointType: 'StorageQueue'
        properties: {
          resourceId: storageAccountId
          queueName: eventQueueName
        }
      }
    } : null
    destination: deliverToQueue ? null : {
      endpointType: 'AzureFunction'
      properties: {
        resourceId: functionResourceId
        // The Python Event Grid trigger takes one event per invocation.
        maxEventsPerBatch: 1
      }
    }
  }
  dependsOn: [
    createdTopic
    // Dead-lettering (and queue delivery) must be allowed before the first event arrives.
    deliveryAccess
  ]
}
