"""Ask a remote vantage point (another deployment of this app) to probe vaults from where it runs.

A remote that does not answer, answers badly or answers late is a blind spot: every vault gets a
ProbeResult with ``vantage_error`` set (KV106), never an exception. The function key goes in the
``x-functions-key`` header and nowhere else (not in errors, not in logs).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from collections.abc import Sequence
from typing import Any

import requests

from monitor.config.policy import Vantage
from monitor.model import ProbeResult
from probes.options import ProbeOptions
from probes.wire import WireError, result_from_json

log = logging.getLogger(__name__)


def probe_remote(
    hostnames: Sequence[str],
    *,
    vantage: Vantage,
    function_key: str | None,
    options: ProbeOptions,
    session: requests.Session | None = None,
) -> list[ProbeResult]:
    """One ProbeResult per hostname, in order, each named after ``vantage``."""
    if not hostnames:
        return []
    if not vantage.endpoint or not vantage.endpoint.lower().startswith("https://"):
        return _blind(hostnames, vantage, "the vantage point's endpoint is not an https:// URL")
    if not function_key:
        setting = vantage.key_setting or "(no key_setting configured)"
        return _blind(hostnames, vantage, f"no function key for the endpoint: app setting {setting} is empty")
    try:
        data = _post(hostnames, vantage=vantage, function_key=function_key, options=options, session=session)
    except _RemoteFailure as exc:
        log.warning("vantage point %s did not answer: %s", vantage.name, exc)
        return _blind(hostnames, vantage, str(exc))
    return _results(hostnames, vantage, data)


class _RemoteFailure(Exception):
    pass


def _post(
    hostnames: Sequence[str],
    *,
    vantage: Vantage,
    function_key: str,
    options: ProbeOptions,
    session: requests.Session | None,
) -> Any:
    assert vantage.endpoint is not None
    owned = session is None
    http = session or requests.Session()
    try:
        response = http.post(
            vantage.endpoint,
            json={"vaults": list(hostnames)},
            headers={"x-functions-key": function_key},
            timeout=(options.connect_timeout_s, options.remote_timeout_s),
            verify=options.ca_bundle or True,
            allow_redirects=False,
        )
    except requests.exceptions.Timeout:
        raise _RemoteFailure(
            f"no answer from the probe endpoint within {options.remote_timeout_s:g}s"
        ) from None
    except requests.exceptions.SSLError:
        raise _RemoteFailure(
            "TLS to the probe endpoint failed (certificate not trusted or not valid)"
        ) from None
    except requests.exceptions.RequestException as exc:
        raise _RemoteFailure(f"could not reach the probe endpoint ({type(exc).__name__})") from None
    finally:
        if owned:
            http.close()
    if response.status_code != 200:
        hint = " (function key rejected?)" if response.status_code in (401, 403) else ""
        raise _RemoteFailure(f"the probe endpoint answered HTTP {response.status_code}{hint}")
    try:
        return response.json()
    except ValueError:
        raise _RemoteFailure("the probe endpoint answered something that is not JSON") from None


def _results(hostnames: Sequence[str], vantage: Vantage, data: Any) -> list[ProbeResult]:
    if not isinstance(data, dict) or not isinstance(data.get("results"), list):
        return _blind(hostnames, vantage, 'the probe endpoint\'s answer has no "results" list')
    by_host: dict[str, ProbeResult] = {}
    for index, item in enumerate(data["results"]):
        try:
            result = result_from_json(item, path=f"results[{index}]")
        except WireError as exc:
            return _blind(hostnames, vantage, f"the probe endpoint's answer is malformed: {exc}")
        # The remote calls itself by its own name; here it is the vantage point we configured.
        by_host[result.hostname.lower()] = dataclasses.replace(result, vantage=vantage.name)
    results = []
    for hostname in hostnames:
        found = by_host.get(hostname.lower())
        results.append(
            found or _blind([hostname], vantage, f"the probe endpoint returned no result for {hostname}")[0]
        )
    return results


def _blind(hostnames: Sequence[str], vantage: Vantage, reason: str) -> list[ProbeResult]:
    now = dt.datetime.now(dt.UTC)
    return [
        ProbeResult(
            vault_name=hostname.split(".", 1)[0],
            vantage=vantage.name,
            hostname=hostname,
            started_at=now,
            vantage_error=reason,
        )
        for hostname in hostnames
    ]
