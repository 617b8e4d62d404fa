"""The security-relevant facts of the templates, read from the parsed Bicep (Checkov's parser).

Checkov's generic checks do not know what kvmon needs: that the monitor's probes leave from
inside the VNet, that its identity can never read a secret, that secrets stay out of deployment
history. These tests pin those facts.
"""

from __future__ import annotations

import re
from typing import Any

from monitor.model import PerimeterLogCategory
from tests.infra.bicep import INFRA, bicep_files, dotted, module_params, resources, template, walk

# Every built-in role that acts on Key Vault data (or can grant such access): the monitor's identity
# must hold none. From Azure's built-in roles list ("Security" section).
KEY_VAULT_DATA_ROLES = {
    "00482a5a-887f-4fb3-b363-3b7fe8e74483": "Key Vault Administrator",
    "a4417e6f-fecd-4de8-b567-7b0420556985": "Key Vault Certificates Officer",
    "db79e9a7-68ee-4b58-9aeb-b90e7c24fcba": "Key Vault Certificate User",
    "14b46e9e-c2b7-41b4-b07b-48a6ebf60603": "Key Vault Crypto Officer",
    "e147488a-f6f5-4113-8e2d-b22465e65bf6": "Key Vault Crypto Service Encryption User",
    "08bbd89e-9f13-488c-ac41-acfcb10c90ab": "Key Vault Crypto Service Release User",
    "12338af0-0e69-4776-bea7-57ae8d297424": "Key Vault Crypto User",
    "21090545-7ca7-4776-b22c-e363652d74d2": "Key Vault Reader",
    "b86a8fe4-44ce-4948-aee5-eccb2c155cd7": "Key Vault Secrets Officer",
    "4633458b-17de-408a-b874-0445c86b69e6": "Key Vault Secrets User",
    "8b54135c-b56d-4d72-a534-26097cfdc8d8": "Key Vault Data Access Administrator",
    # Management plane, but it can write access policies and so hand itself data access.
    "f25e0fa2-a7c8-4377-a976-54943a77a395": "Key Vault Contributor",
    # Broad roles that include the above.
    "8e3af657-a8ff-443c-a75c-2fe8c4bcb635": "Owner",
    "b24988ac-6180-42a0-ab88-20f7382dd24c": "Contributor",
    "18d7d88d-d35e-4fb5-a5c3-7773c20a72d9": "User Access Administrator",
}

# The only roles the templates may grant, each for a stated reason (infra/README.md).
GRANTED_ROLES = {
    "reader": "acdd72a7-3385-48ef-bd42-f606fba81ae7",
    "logAnalyticsReader": "73c42c96-874c-492b-b04d-ab87d138a893",
    "storageTableDataContributor": "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3",
    "storageQueueDataContributor": "974c5e8b-45b9-4653-ba55-5f855dd0fb88",
    "storageBlobDataOwner": "b7e6dc6d-f1e8-4753-8033-0f276bb0955b",
    "storageBlobDataContributor": "ba92f5b4-2d11-453d-a403-e96b0029c9fe",
    "storageQueueDataMessageSender": "c6a89b2d-59bc-44d0-9896-0f6e12d7b80a",
    "monitoringMetricsPublisher": "3913510d-42f4-4e42-8a64-420c390055eb",
}

_GUID = re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b", re.IGNORECASE)


def _conditional(node: Any) -> dict[str, Any]:
    assert node["operator"]["type"] == "conditional", node
    return node["operator"]["operands"]


# -- VNet integration --------------------------------------------------------------------------


def test_the_function_app_module_routes_all_outbound_traffic_through_its_subnet() -> None:
    module = template("modules/function-app.bicep")
    assert module["variables"]["integrated"]["value"] == {
        "operator": {
            "type": "not",
            "operands": {
                "bool_value": {"function": {"type": "empty", "parameters": {"item_to_test": "subnetId"}}}
            },
        }
    }
    site = resources(module, "Microsoft.Web/sites")["site"]["properties"]
    subnet = _conditional(site["virtualNetworkSubnetId"])
    assert (subnet["condition"], subnet["true_value"], subnet["false_value"]) == (
        "integrated",
        "subnetId",
        None,
    )
    routing = _conditional(site["outboundVnetRouting"])
    assert routing["condition"] == "integrated"
    assert routing["true_value"]["allTraffic"] is True
    # The legacy flag follows, for tools and policies that still read it.
    assert site["siteConfig"]["vnetRouteAllEnabled"] == "integrated"


def test_the_monitor_is_the_inside_vantage_and_the_probe_app_the_outside_one() -> None:
    main = template("main.bicep")
    subnet_parameter = main["parameters"]["monitorSubnetId"]
    assert subnet_parameter["default"] is None, "the monitor's subnet must be a required parameter"
    assert {"type": "min_length", "argument": 1} in subnet_parameter["decorators"]
    assert module_params(main, "monitorApp")["subnetId"] == "monitorSubnetId"
    assert "subnetId" not in module_params(main, "probeApp")
    apps = [
        symbol
        for symbol, declaration in main["modules"].items()
        if declaration["detail"]["path"] == "modules/function-app.bicep"
    ]
    assert sorted(apps) == ["monitorApp", "probeApp"]


def test_the_flex_plan_and_python_runtime() -> None:
    module = template("modules/function-app.bicep")
    plan = resources(module, "Microsoft.Web/serverfarms")["plan"]
    assert plan["sku"] == {"tier": "FlexConsumption", "name": "FC1"}
    runtime = resources(module, "Microsoft.Web/sites")["site"]["properties"]["functionAppConfig"]["runtime"]
    assert runtime == {"name": "python", "version": "3.11"}


# -- identity and roles -----------------------------------------------------------------------


def test_no_template_names_a_key_vault_data_role_or_a_broad_role() -> None:
    for path in bicep_files():
        for guid in _GUID.findall(path.read_text(encoding="utf-8")):
            assert guid.lower() not in KEY_VAULT_DATA_ROLES, (
                f"{path.relative_to(INFRA)} grants {KEY_VAULT_DATA_ROLES[guid.lower()]} ({guid})"
            )
            assert guid.lower() in GRANTED_ROLES.values(), (
                f"{path.relative_to(INFRA)}: unexplained GUID {guid}"
            )


def test_main_grants_exactly_the_documented_roles() -> None:
    assert template("main.bicep")["variables"]["roles"]["value"] == GRANTED_ROLES


def test_every_role_assignment_takes_its_role_from_a_parameter_or_the_roles_table() -> None:
    # A literal role id in an assignment would bypass the table the test above pins.
    for path in bicep_files():
        relative = str(path.relative_to(INFRA))
        for symbol, assignment in resources(
            template(relative), "Microsoft.Authorization/roleAssignments"
        ).items():
            role = assignment["properties"]["roleDefinitionId"]["function"]
            (argument,) = [
                value
                for key, value in role["parameters"].items()
                if key.startswith("resource_name") and value
            ]
            literal = argument if isinstance(argument, str) else dotted(argument)
            allowed = {
                "roleDefinitionId",
                "readerRoleDefinitionId",
                "assignment.roleDefinitionId",
                "deadLetterRoleDefinitionId",
                "queueSenderRoleDefinitionId",
            } | {f"roles.{name}" for name in GRANTED_ROLES}
            assert literal in allowed, f"{relative} {symbol}: role from {literal!r}"


def test_the_monitor_identity_holds_storage_roles_only_on_its_own_account() -> None:
    main = template("main.bicep")
    monitor_roles = module_params(main, "monitorStorage")["roleAssignments"]
    probe_roles = module_params(main, "probeStorage")["roleAssignments"]
    assert {dotted(r["principalId"]) for r in monitor_roles} == {"monitorIdentity.properties.principalId"}
    assert {dotted(r["principalId"]) for r in probe_roles} == {"probeIdentity.properties.principalId"}
    assert {dotted(r["roleDefinitionId"]) for r in monitor_roles} == {
        "roles.storageBlobDataOwner",
        "roles.storageQueueDataContributor",
        "roles.storageTableDataContributor",
    }
    # The outside vantage only hosts an HTTP function: blob for the host and its package.
    assert {dotted(r["roleDefinitionId"]) for r in probe_roles} == {"roles.storageBlobDataOwner"}
    readers = main["modules"]["subscriptionReaders"]["config"]
    assert readers["loop_type"]["detail"]["array_name"] == "monitoredSubscriptionIds"
    assert readers["config"]["scope"]["function"] == {
        "type": "subscription",
        "parameters": {"subscription_id": "subscriptionId"},
    }
    assert dotted(readers["config"]["params"]["roleDefinitionId"]) == "roles.reader"
    assert template("modules/subscription-reader.bicep")["globals"]["scope"]["value"] == "subscription"
    workspace = module_params(main, "workspaceAccess")
    assert dotted(workspace["roleDefinitionId"]) == "roles.logAnalyticsReader"
    assert dotted(workspace["principalId"]) == "monitorIdentity.properties.principalId"


def test_no_vault_grants_data_access_by_access_policy() -> None:
    for path in bicep_files():
        relative = str(path.relative_to(INFRA))
        parsed = template(relative)
        assert not resources(parsed, "Microsoft.KeyVault/vaults/accessPolicies"), relative
        for symbol, vault in resources(parsed, "Microsoft.KeyVault/vaults").items():
            if "properties" in vault:  # declared here, not `existing`
                assert vault["properties"]["enableRbacAuthorization"] is True, f"{relative} {symbol}"
                assert "accessPolicies" not in vault["properties"], f"{relative} {symbol}"


# -- transport and storage ---------------------------------------------------------------------


def test_web_apps_take_https_only_with_tls_1_2_and_no_basic_auth_publishing() -> None:
    module = template("modules/function-app.bicep")
    site = resources(module, "Microsoft.Web/sites")["site"]["properties"]
    assert site["httpsOnly"] is True
    assert site["siteConfig"]["minTlsVersion"] == "1.2"
    assert site["siteConfig"]["scmMinTlsVersion"] == "1.2"
    assert site["siteConfig"]["ftpsState"] == "Disabled"
    policies = resources(module, "Microsoft.Web/sites/basicPublishingCredentialsPolicies")
    assert {(p["name"], p["properties"]["allow"]) for p in policies.values()} == {
        ("ftp", False),
        ("scm", False),
    }


def test_storage_takes_identities_only_over_tls_1_2() -> None:
    module = template("modules/storage.bicep")
    (account,) = resources(module, "Microsoft.Storage/storageAccounts").values()
    properties = account["properties"]
    assert properties["allowSharedKeyAccess"] is False
    assert properties["allowBlobPublicAccess"] is False
    assert properties["minimumTlsVersion"] == "TLS1_2"
    assert properties["supportsHttpsTrafficOnly"] is True
    assert properties["defaultToOAuthAuthentication"] is True
    for container in resources(module, "Microsoft.Storage/storageAccounts/blobServices/containers").values():
        assert container["properties"]["publicAccess"] == "None"


def test_telemetry_needs_an_entra_token() -> None:
    (insights,) = resources(template("main.bicep"), "Microsoft.Insights/components").values()
    assert insights["properties"]["DisableLocalAuth"] is True


# -- secrets -----------------------------------------------------------------------------------


def test_webhook_urls_and_app_settings_are_secure_parameters() -> None:
    main = template("main.bicep")
    for name in ("teamsWebhookUrl", "slackWebhookUrl"):
        assert {"type": "secure"} in main["parameters"][name]["decorators"], name
    # Module parameters show in the nested deployment's history unless they are secure.
    settings = template("modules/function-app.bicep")["parameters"]["appSettings"]
    assert {"type": "secure"} in settings["decorators"]


def test_no_output_carries_a_secret() -> None:
    secrets = {"teamsWebhookUrl", "slackWebhookUrl", "appSettings"}
    for path in bicep_files():
        relative = str(path.relative_to(INFRA))
        for name, output in template(relative).get("outputs", {}).items():
            text = repr(output)
            assert "list_keys" not in text and "listKeys" not in text, f"{relative} output {name}"
            assert not any(secret in text for secret in secrets), f"{relative} output {name}"


# -- logs ----------------------------------------------------------------------------------------


def test_vault_audit_logs_go_to_the_resource_specific_table() -> None:
    (setting,) = resources(
        template("modules/vault-diagnostics.bicep"), "Microsoft.Insights/diagnosticSettings"
    ).values()
    properties = setting["properties"]
    assert setting["scope"] == "vault"
    assert properties["logAnalyticsDestinationType"] == "Dedicated"  # AZKVAuditLogs, not AzureDiagnostics
    assert {"categoryGroup": "audit", "enabled": True} in properties["logs"]
    assert properties["workspaceId"] == "workspaceResourceId"


def test_main_can_send_monitored_vaults_logs_to_the_workspace() -> None:
    diagnostics = template("main.bicep")["modules"]["vaultDiagnostics"]
    assert diagnostics["detail"]["path"] == "modules/vault-diagnostics.bicep"
    assert diagnostics["config"]["loop_type"]["detail"]["array_name"] == "diagnosticVaultIds"
    assert any(node == "workspaceResourceId" for node in walk(diagnostics["config"]["config"]["params"]))


def test_perimeter_access_logs_go_to_the_workspace_with_every_inbound_category() -> None:
    """The diagnostic setting sits on the perimeter (the perimeter, not the vault, logs who its
    rules admit) and names exactly the categories kvmon's perimeter query reads."""
    parsed = template("modules/perimeter-diagnostics.bicep")
    (setting,) = resources(parsed, "Microsoft.Insights/diagnosticSettings").values()
    assert setting["scope"] == "perimeter"
    (perimeter,) = resources(parsed, "Microsoft.Network/networkSecurityPerimeters").values()
    assert perimeter["name"] == "perimeterName"
    properties = setting["properties"]
    assert properties["workspaceId"] == "workspaceResourceId"
    assert properties["logs"]["loop_type"]["detail"]["array_name"] == "inboundCategories"
    categories = parsed["variables"]["inboundCategories"]["value"]
    assert sorted(categories) == sorted(category.value for category in PerimeterLogCategory)


def test_main_can_send_perimeters_access_logs_to_the_workspace() -> None:
    diagnostics = template("main.bicep")["modules"]["perimeterDiagnostics"]
    assert diagnostics["detail"]["path"] == "modules/perimeter-diagnostics.bicep"
    assert diagnostics["config"]["loop_type"]["detail"]["array_name"] == "diagnosticPerimeterIds"
    assert any(node == "workspaceResourceId" for node in walk(diagnostics["config"]["config"]["params"]))


def test_storage_access_logs_go_to_the_workspace_from_every_service() -> None:
    """A storage account logs per service (blob, file, queue, table), not as an account: one
    setting on each service's ``default``, every category, each service switchable off."""
    parsed = template("modules/storage-diagnostics.bicep")
    settings = resources(parsed, "Microsoft.Insights/diagnosticSettings")
    assert {setting["scope"] for setting in settings.values()} == {
        "blobService",
        "fileService",
        "queueService",
        "tableService",
    }
    for kind in ("blob", "file", "queue", "table"):
        (service,) = resources(parsed, f"Microsoft.Storage/storageAccounts/{kind}Services").values()
        assert (service["name"], service["parent"]) == ("default", "account")
        condition = parsed["resources"][f"{kind}Logs"]["config"]["condition"]
        assert condition["function"]["type"] == "contains"
        assert list(condition["function"]["parameters"].values()) == ["services", kind]
    for setting in settings.values():
        properties = setting["properties"]
        assert properties["workspaceId"] == "workspaceResourceId"
        assert properties["logs"]["loop_type"]["detail"]["array_name"] == "categories"
    assert parsed["variables"]["categories"]["value"] == ["StorageRead", "StorageWrite", "StorageDelete"]
    (account,) = resources(parsed, "Microsoft.Storage/storageAccounts").values()
    assert account["name"] == "storageAccountName"


def test_main_can_send_monitored_storage_accounts_logs_to_the_workspace() -> None:
    diagnostics = template("main.bicep")["modules"]["storageDiagnostics"]
    assert diagnostics["detail"]["path"] == "modules/storage-diagnostics.bicep"
    assert diagnostics["config"]["loop_type"]["detail"]["array_name"] == "diagnosticStorageAccountIds"
    assert any(node == "workspaceResourceId" for node in walk(diagnostics["config"]["config"]["params"]))


def test_the_monitor_gets_no_storage_data_role_on_a_monitored_account() -> None:
    """A probe of a storage endpoint needs a token for https://storage.azure.com, not a permission
    (the firewall answers before authorisation does, AZURE-NOTES.md). The storage data roles go only
    to the modules that make kvmon's own accounts (``test_the_monitor_identity_holds_storage_roles_only_on_its_own_account``)
    and to the event path, whose system topics get them on kvmon's own dead-letter container and
    queue (storageAccountId: the monitor's account); the storage diagnostics grant nothing."""
    diagnostics = template("modules/storage-diagnostics.bicep")
    assert not resources(diagnostics, "Microsoft.Authorization/roleAssignments")
    assert not diagnostics.get("modules")
    storage_roles = {f"roles.{name}" for name in GRANTED_ROLES if name.startswith("storage")}
    main = template("main.bicep")
    for symbol, module in main["modules"].items():
        named = {
            f"roles.{node['operator']['operands']['operand_2']}"
            for node in walk(module)
            if isinstance(node, dict)
            and node.get("operator", {}).get("type") == "property_accessor"
            and node["operator"]["operands"]["operand_1"] == "roles"
        }
        if named & storage_roles:
            assert symbol in {"monitorStorage", "probeStorage", "vaultEvents"}, symbol
    assert dotted(module_params(main, "vaultEvents")["storageAccountId"]) == "monitorStorage.outputs.id"
