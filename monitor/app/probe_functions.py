"""The functions every deployment answers, the probe role's only ones: ``probe`` and ``health``.

Free of the Functions SDK, as ``monitor_functions`` is, and light: this module imports probing and
the settings, nothing of the store, the sources, the judge or the outputs, so that a probe
deployment starts without them. Its errors are answered unredacted: a probe deployment holds no
channel or vantage secrets, and a settings error names the setting, never a value.
"""

from __future__ import annotations

import os

from monitor.app.answers import Answer, answers_errors, json_answer
from monitor.app.deployment import credential, local_vantage
from monitor.config.settings import Settings
from probes.endpoint import handle_probe_request
from probes.options import ProbeOptions


@answers_errors()
def probe(body: bytes) -> Answer:
    """POST /api/probe {"vaults": [...]}: this deployment's vantage point."""
    settings = Settings.from_environ(os.environ)
    status, document = handle_probe_request(
        body,
        vantage=local_vantage(settings),
        options=ProbeOptions.from_settings(settings),
        credential=credential(),
    )
    return json_answer(status, document)


@answers_errors()
def health() -> Answer:
    """GET /api/health (anonymous): alive, and nothing about any vault."""
    return json_answer(200, {"status": "ok", "service": "kvmon"})
