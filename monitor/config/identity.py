"""The identity kvmon acts as: ``DefaultAzureCredential`` with kvmon's token budget.

Beside the settings it is built from, because the monitor (``monitor.app.deployment``) and the
probe worker processes (``probes.worker``) both build it, and the probes import nothing of the app.
"""

from __future__ import annotations

from typing import Any

from monitor.config.budget import RequestBudget
from monitor.config.settings import Settings

# Retries of a token request: a managed identity endpoint or Entra ID that drops one request
# answers the next; one silent for three tries is down, and every request that needs a token waits
# for it, so more tries would only make a dead identity cost more.
TOKEN_RETRIES = 2


def token_budget(settings: Settings) -> RequestBudget:
    """Each token request's timeouts (``KVMON_TOKEN_TIMEOUT``) and retries (``TOKEN_RETRIES``)."""
    return RequestBudget(timeout_s=settings.token_timeout_s, retries=TOKEN_RETRIES)


def default_credential(settings: Settings) -> Any:
    """``DefaultAzureCredential`` with kvmon's token budget. azure-identity hands these keywords to
    every credential of its chain that asks for a token over HTTP (the environment's service
    principal, workload identity, the managed identity of App Service, IMDS or Arc): to the
    azure-core transport and retry policy of each. Without them a silent token endpoint held a scan
    for minutes (azure-core waits 300 s for a read). The developer tools (Azure CLI, PowerShell,
    azd) run as processes, within azure-identity's own limit of 10 s each."""
    from azure.identity import DefaultAzureCredential

    return DefaultAzureCredential(**token_budget(settings).azure_core_options())
