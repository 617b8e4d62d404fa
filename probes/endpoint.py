"""The body of the Functions app's ``POST /api/probe``: a monitor elsewhere asks this deployment to
probe vaults from where it stands.

Its own module because it is the only part of the package that takes input from the network:
the request's limits and its validation (every name in scope before any packet is sent) sit
together here, in front of the local pool.
"""

from __future__ import annotations

import json
from typing import Any

from azure.core.credentials import TokenCredential

from monitor.config.policy import Vantage
from probes.options import ProbeOptions
from probes.pool import probe_vaults
from probes.scope import OutOfScope
from probes.wire import MAX_REQUEST_BYTES, MAX_VAULTS_PER_REQUEST, result_to_json


def handle_probe_request(
    body: bytes,
    *,
    vantage: Vantage,
    options: ProbeOptions,
    credential: TokenCredential,
) -> tuple[int, dict[str, Any]]:
    """Validate ``{"vaults": [...]}`` completely, then probe: (HTTP status, JSON body).

    Bad JSON, an oversized body or any name outside the scope gives 400 with one clear message,
    and no connection is attempted for any name.
    """
    if len(body) > MAX_REQUEST_BYTES:
        return _bad_request(f"request body is larger than {MAX_REQUEST_BYTES} bytes")
    try:
        data = json.loads(body.decode("utf-8"))
    except UnicodeDecodeError:
        return _bad_request("request body is not UTF-8")
    except json.JSONDecodeError as exc:
        return _bad_request(f"request body is not JSON ({exc.msg} at line {exc.lineno} column {exc.colno})")
    if not isinstance(data, dict) or "vaults" not in data:
        return _bad_request('request body must be a JSON object {"vaults": ["<vault name>", ...]}')
    unknown = sorted(set(data) - {"vaults"})
    if unknown:
        return _bad_request(f"unknown field(s) in request body: {', '.join(unknown)}")
    vaults = data["vaults"]
    if not isinstance(vaults, list) or not vaults:
        return _bad_request("vaults: must be a non-empty list of vault names")
    if len(vaults) > MAX_VAULTS_PER_REQUEST:
        return _bad_request(f"vaults: at most {MAX_VAULTS_PER_REQUEST} names per request, got {len(vaults)}")
    for index, name in enumerate(vaults):
        try:
            options.scope.hostname_for(name)
        except OutOfScope as exc:
            return _bad_request(f"vaults[{index}]: {exc}")
    results = probe_vaults(vaults, vantage=vantage, options=options, credential=credential)
    return 200, {"vantage": vantage.name, "results": [result_to_json(r) for r in results]}


def _bad_request(message: str) -> tuple[int, dict[str, Any]]:
    return 400, {"error": {"code": "BadRequest", "message": message}}
