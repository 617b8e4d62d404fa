"""The app settings main.bicep writes are ones kvmon reads, in shapes kvmon's own loaders accept."""

from __future__ import annotations

import ast
import json
from collections.abc import Mapping
from typing import Any

from monitor.config.channels import ChannelKind, load_channels
from monitor.config.settings import SETTINGS, Settings
from monitor.config.vantages import parse_vantages
from tests.infra.bicep import REPO, evaluate, module_params, template

SUBNET_ID = (
    "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg-lab"
    "/providers/Microsoft.Network/virtualNetworks/vnet-kvlab/subnets/serviceEndpoint"
)
PROBE_HOST = "func-kvmon-probe-abc.azurewebsites.net"
TEAMS_URL = "https://prod-00.westeurope.logic.azure.com/workflows/abc/triggers/manual/paths/invoke"
SLACK_URL = "https://hooks.slack.com/services/T000/B000/XXXX"

# What the brief and the README's settings table ask the monitor to be given.
MONITOR_SETTINGS = {
    "AzureWebJobsStorage__accountName",
    "AzureWebJobsStorage__credential",
    "AzureWebJobsStorage__clientId",
    "APPLICATIONINSIGHTS_CONNECTION_STRING",
    "APPLICATIONINSIGHTS_AUTHENTICATION_STRING",
    "AZURE_CLIENT_ID",
    "KVMON_ROLE",
    "KVMON_VANTAGE",
    "KVMON_VANTAGES",
    "KVMON_SUBSCRIPTIONS",
    "KVMON_SCAN_SCHEDULE",
    "KVMON_SCAN_QUEUE",
    "KVMON_EVENT_QUEUE",
    "KVMON_STORAGE_ACCOUNT_URL",
    "KVMON_BLOB_ACCOUNT_URL",
    "KVMON_REPORT_CONTAINER",
    "KVMON_WORKSPACES",
    "KVMON_BASELINE",
    "KVMON_CHANNELS",
    "KVMON_TEAMS_URL",
    "KVMON_SLACK_URL",
}


def _settings(app: str) -> dict[str, Any]:
    """The app's settings object: ``union(<variables>..., {...})`` in main.bicep, keys unquoted."""
    main = template("main.bicep")
    union = module_params(main, app)["appSettings"]["function"]
    assert union["type"] == "union"
    merged: dict[str, Any] = {}
    for argument in union["parameters"].values():
        part = main["variables"][argument]["value"] if isinstance(argument, str) else argument
        merged.update({key.strip("'"): value for key, value in part.items()})
    return merged


def _defaults() -> dict[str, Any]:
    return {name: p["default"] for name, p in template("main.bicep")["parameters"].items()}


def _symbols() -> dict[str, Any]:
    """Deploy-time values for the symbols the settings name: parameter defaults and samples."""
    return {
        **_defaults(),
        "monitorSubnetId": SUBNET_ID,
        "probeKeySetting": "KVMON_PROBE_KEY_INTERNET",
        "probeApp.outputs.hostName": PROBE_HOST,
        "teamsWebhookUrl": TEAMS_URL,
        "slackWebhookUrl": SLACK_URL,
    }


def _variable(name: str, symbols: Mapping[str, Any]) -> Any:
    return evaluate(template("main.bicep")["variables"][name]["value"], symbols)


def test_the_monitor_gets_every_setting_it_needs() -> None:
    settings = _settings("monitorApp")
    assert set(settings) >= MONITOR_SETTINGS
    assert settings["KVMON_ROLE"] == "monitor"
    assert settings["KVMON_VANTAGE"] == "insideVantageName"
    assert settings["AzureWebJobsStorage__credential"] == "managedidentity"


def test_the_outside_vantage_is_a_probe_named_internet() -> None:
    settings = _settings("probeApp")
    assert settings["KVMON_ROLE"] == "probe"
    assert settings["KVMON_VANTAGE"] == "outsideVantageName"
    assert _defaults()["outsideVantageName"] == "internet"
    # It scans nothing and notifies nobody: no subscriptions, no webhooks, no vantage list.
    assert not {"KVMON_SUBSCRIPTIONS", "KVMON_TEAMS_URL", "KVMON_SLACK_URL", "KVMON_VANTAGES"} & set(settings)


def test_the_outside_vantage_runs_only_the_probe_and_health_functions() -> None:
    # The package's functions: in the Python v2 model, each def decorated with a trigger of `app`,
    # at the top level or where the monitor role's are registered (read from the source, so this
    # does not depend on the handlers importing cleanly).
    source = ast.parse((REPO / "function_app.py").read_text(encoding="utf-8"))
    functions = {
        node.name
        for node in ast.walk(source)
        if isinstance(node, ast.FunctionDef)
        and any(
            isinstance(d, ast.Call)
            and isinstance(d.func, ast.Attribute)
            and ast.unparse(d.func.value) == "app"
            for d in node.decorator_list
        )
    }
    assert {"probe", "health"} <= functions
    settings = _settings("probeApp")
    disabled = {
        name.removeprefix("AzureWebJobs.").removesuffix(".Disabled")
        for name, value in settings.items()
        if name.startswith("AzureWebJobs.") and value == "true"
    }
    assert disabled == functions - {"probe", "health"}
    # Disabled triggers are still indexed: the settings their bindings name must resolve.
    assert {"KVMON_SCAN_SCHEDULE", "KVMON_SCAN_QUEUE", "KVMON_EVENT_QUEUE"} <= set(settings)


def test_no_app_gets_a_key_based_storage_connection_or_a_setting_flex_refuses() -> None:
    for app in ("monitorApp", "probeApp"):
        settings = set(_settings(app))
        # Identity-based host storage: AzureWebJobsStorage__* only, never the connection string.
        assert not {"AzureWebJobsStorage", "KVMON_STORAGE"} & settings, app
        # Flex Consumption takes the runtime from functionAppConfig and rejects these settings.
        assert (
            not {"FUNCTIONS_WORKER_RUNTIME", "FUNCTIONS_EXTENSION_VERSION", "WEBSITE_RUN_FROM_PACKAGE"}
            & settings
        )


def test_kvmon_accepts_the_vantage_list_the_monitor_is_given() -> None:
    symbols = _symbols()
    vantages = parse_vantages(json.loads(json.dumps(_variable("vantages", symbols))), source="KVMON_VANTAGES")
    inside, outside = vantages
    assert (inside.name, inside.inside, inside.subnet_id, inside.endpoint) == (
        "inside",
        True,
        SUBNET_ID,
        None,
    )
    assert (outside.name, outside.inside) == ("internet", False)
    assert outside.endpoint == f"https://{PROBE_HOST}/api/probe"
    # The key the monitor sends to the outside vantage sits in the setting the vantage names.
    settings = _settings("monitorApp")
    assert outside.key_setting == "KVMON_PROBE_KEY_INTERNET"
    (key_entry,) = [key for key in settings if "probeKeySetting" in key]
    assert key_entry == "${probeKeySetting}"
    assert settings[key_entry]["operator"]["operands"]["operand_1"]["function"]["parameters"] == {
        "func_name": "listKeys",
        "resource_identifier": "${probeApp.outputs.id}/host/default",
        "api_version": "2024-04-01",
    }
    assert template("main.bicep")["variables"]["probeKeySetting"]["value"].startswith("KVMON_PROBE_KEY_")


def test_kvmon_accepts_the_channel_list_the_monitor_is_given() -> None:
    symbols = _symbols()
    channels_json = json.dumps(_variable("teamsChannel", symbols) + _variable("slackChannel", symbols))
    environ = {"KVMON_CHANNELS": channels_json, "KVMON_TEAMS_URL": TEAMS_URL, "KVMON_SLACK_URL": SLACK_URL}
    channels = load_channels(environ)
    assert [(c.name, c.kind, c.url_setting) for c in channels] == [
        ("teams", ChannelKind.TEAMS, "KVMON_TEAMS_URL"),
        ("slack", ChannelKind.SLACK, "KVMON_SLACK_URL"),
    ]
    # Without webhook URLs (the parameters' defaults) there are no channels at all.
    empty = {**symbols, "teamsWebhookUrl": "", "slackWebhookUrl": ""}
    assert _variable("teamsChannel", empty) + _variable("slackChannel", empty) == []


def test_every_kvmon_setting_written_is_documented_or_named_by_another() -> None:
    documented = {setting.name for setting in SETTINGS}
    named_by_channels = {"KVMON_TEAMS_URL", "KVMON_SLACK_URL"}  # url_setting of the channel entries
    for app in ("monitorApp", "probeApp"):
        for name in _settings(app):
            if name.startswith("KVMON_"):
                assert name in documented | named_by_channels, f"{app}: {name} is not a kvmon setting"


def test_the_event_feed_is_on_exactly_when_events_are_delivered() -> None:
    feed = _settings("monitorApp")["KVMON_EVENT_FEED"]
    for delivery, expected in (("function", "true"), ("queue", "true"), ("none", "false")):
        assert evaluate(feed, {**_symbols(), "eventDelivery": delivery}) == expected
    assert Settings.from_environ({"KVMON_EVENT_FEED": "true"}).event_feed is True


def test_the_monitor_reads_perimeter_logs_exactly_when_the_deployment_sends_them() -> None:
    setting = _settings("monitorApp")["KVMON_NSP_WORKSPACES"]
    workspace = "11111111-2222-3333-4444-555555555555"
    symbols = {**_symbols(), "workspaceAccess.outputs.customerId": workspace}
    assert evaluate(setting, symbols) == ""
    assert Settings.from_environ({"KVMON_NSP_WORKSPACES": ""}).perimeter_workspaces == ()
    perimeter = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/networkSecurityPerimeters/nsp"
    assert evaluate(setting, {**symbols, "diagnosticPerimeterIds": [perimeter]}) == workspace
    assert Settings.from_environ({"KVMON_NSP_WORKSPACES": workspace}).perimeter_workspaces == (workspace,)
