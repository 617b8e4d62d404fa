"""This deployment: the role it registers functions for, its identity and its own vantage point.

Light on purpose, like ``monitor.app.answers``: both roles import it, the probe role nothing more
of the monitor than its settings.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

from monitor.config.identity import default_credential
from monitor.config.policy import Vantage
from monitor.config.settings import Role, Settings, SettingsError

log = logging.getLogger("kvmon.functions")

# The connection every queue trigger listens on, and so the one kvmon enqueues on: the host's own
# storage. kvmon's store may live elsewhere (KVMON_STORAGE); its queues never do, or a scan job would
# land on a queue no worker reads.
QUEUE_CONNECTION = "AzureWebJobsStorage"


def startup_role(environ: Mapping[str, str]) -> Role:
    """The role whose functions the app registers, read once when the host indexes it.

    Settings kvmon cannot use are logged, naming the setting, and the monitor's full set is
    registered: every function then answers (or fails) with that error per call, rather than a
    deployment losing its functions to a typo, silently."""
    try:
        return Settings.from_environ(environ).role
    except SettingsError as exc:
        log.error("kvmon's app settings are invalid; every function answers with this error: %s", exc)
        return Role.MONITOR


_CREDENTIAL: Any = None


def credential() -> Any:
    """One credential per worker process: it caches tokens. Built with the app settings' token
    budget (``Settings.from_environ`` raises ``SettingsError`` for a setting it cannot use)."""
    global _CREDENTIAL
    if _CREDENTIAL is None:
        _CREDENTIAL = default_credential(Settings.from_environ(os.environ))
    return _CREDENTIAL


def local_vantage(settings: Settings) -> Vantage:
    """This deployment's own vantage point: the configured one of that name (``KVMON_VANTAGES``,
    which the Bicep deployment sets), else one whose place is unknown: a name says nothing about
    where a process runs (a laptop with nothing configured is not inside the VNet)."""
    for vantage in settings.vantages:
        if vantage.name == settings.vantage and vantage.endpoint is None:
            return vantage
    return Vantage(name=settings.vantage, inside=None)
