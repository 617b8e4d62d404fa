"""Ask a remote vantage point (another deployment of this app) to probe vaults from where it runs.

A remote that does not answer, answers badly or answers late is a blind spot: every vault gets a
ProbeResult with ``vantage_error`` set (KV106), never an exception. The function key goes in the
``x-functions-key`` header and nowhere else (not in errors, not in logs).

The endpoint takes at most ``MAX_VAULTS_PER_REQUEST`` names in at most ``MAX_REQUEST_BYTES``
(``probes.wire``), so a bigger run goes in batches within both, ``CONCURRENT_BATCHES`` at a time.
Each batch stands alone: one that fails blinds its own vaults, and the others keep their results.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import requests

from monitor.config.policy import Vantage
from monitor.model import ProbeResult
from probes.options import ProbeOptions
from probes.wire import MAX_REQUEST_BYTES, MAX_VAULTS_PER_REQUEST, WireError, result_from_json

log = logging.getLogger(__name__)

# Batches on the wire at once, per vantage point. The remote probes each batch with its own pool
# (KVMON_PROBE_CONCURRENCY there, 32 by default), so four batches keep up to 4,000 vaults and 128
# probes in flight at the remote, and the platform scales its instances out on concurrent
# requests: a 10,000-vault estate takes three rounds of the remote's answer time, not ten. It
# stays small because each batch in flight is a request the remote's instances must take on at
# once and a connection held here for up to ProbeOptions.remote_timeout_s, and a scan already asks
# every vantage point at once (monitor.app.scan). Decoding an answer costs this side about 20 µs a
# result (bench/wire.py): this side is not what limits it.
CONCURRENT_BATCHES = 4
_BODY_OPENING = b'{"vaults":['
_BODY_CLOSING = b"]}"


def probe_remote(
    hostnames: Sequence[str],
    *,
    vantage: Vantage,
    function_key: str | None,
    options: ProbeOptions,
) -> list[ProbeResult]:
    """One ProbeResult per hostname, in order, each named after ``vantage``."""
    if not hostnames:
        return []
    if not vantage.endpoint or not vantage.endpoint.lower().startswith("https://"):
        return _blind(hostnames, vantage, "the vantage point's endpoint is not an https:// URL")
    if not function_key:
        setting = vantage.key_setting or "(no key_setting configured)"
        return _blind(hostnames, vantage, f"no function key for the endpoint: app setting {setting} is empty")
    batches = list(request_batches(hostnames))

    def ask(numbered: tuple[int, list[str]]) -> list[ProbeResult]:
        number, batch = numbered
        return _ask_batch(
            batch, vantage=vantage, function_key=function_key, options=options, of=(number, len(batches))
        )

    if len(batches) == 1:
        return ask((1, batches[0]))
    workers = min(CONCURRENT_BATCHES, len(batches))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"remote-{vantage.name}") as pool:
        answered = pool.map(ask, enumerate(batches, start=1))  # in the order asked
        return [result for batch in answered for result in batch]


def request_batches(hostnames: Sequence[str]) -> Iterator[list[str]]:
    """``hostnames`` in order, cut into the fewest runs that each fit one request: at most
    ``MAX_VAULTS_PER_REQUEST`` names and a body (as ``_post`` writes it) of ``MAX_REQUEST_BYTES``."""
    empty = len(_BODY_OPENING) + len(_BODY_CLOSING)
    batch: list[str] = []
    size = empty
    for hostname in hostnames:
        cost = len(_name_json(hostname))
        separator = 1 if batch else 0  # the comma before every name but the first
        if batch and (len(batch) == MAX_VAULTS_PER_REQUEST or size + separator + cost > MAX_REQUEST_BYTES):
            yield batch
            batch, size, separator = [], empty, 0
        batch.append(hostname)
        size += separator + cost
    if batch:
        yield batch


def _name_json(hostname: str) -> bytes:
    return json.dumps(hostname).encode("utf-8")


class _RemoteFailure(Exception):
    pass


def _ask_batch(
    hostnames: Sequence[str],
    *,
    vantage: Vantage,
    function_key: str,
    options: ProbeOptions,
    of: tuple[int, int],
) -> list[ProbeResult]:
    number, count = of
    try:
        return _results(
            hostnames, vantage, _post(hostnames, vantage=vantage, function_key=function_key, options=options)
        )
    except _RemoteFailure as exc:
        # Which request failed, when there were several: the others' vaults have their results.
        reason = str(exc) if count == 1 else f"{exc} (request {number} of {count}, {len(hostnames)} vaults)"
        log.warning("vantage point %s did not answer: %s", vantage.name, reason)
        return _blind(hostnames, vantage, reason)


def _post(
    hostnames: Sequence[str],
    *,
    vantage: Vantage,
    function_key: str,
    options: ProbeOptions,
) -> Any:
    assert vantage.endpoint is not None
    body = _BODY_OPENING + b",".join(_name_json(hostname) for hostname in hostnames) + _BODY_CLOSING
    # A session of its own per request: batches run on threads, and requests does not promise
    # that a Session is safe to share between them.
    http = requests.Session()
    try:
        response = http.post(
            vantage.endpoint,
            data=body,
            headers={"x-functions-key": function_key, "Content-Type": "application/json"},
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
        http.close()
    if response.status_code != 200:
        hint = " (function key rejected?)" if response.status_code in (401, 403) else ""
        raise _RemoteFailure(f"the probe endpoint answered HTTP {response.status_code}{hint}")
    try:
        return response.json()
    except ValueError:
        raise _RemoteFailure("the probe endpoint answered something that is not JSON") from None


def _results(hostnames: Sequence[str], vantage: Vantage, data: Any) -> list[ProbeResult]:
    """One result per hostname from the endpoint's answer; ``_RemoteFailure`` when the answer as a
    whole cannot be read (then nothing in it is trusted)."""
    if not isinstance(data, dict) or not isinstance(data.get("results"), list):
        raise _RemoteFailure('the probe endpoint\'s answer has no "results" list')
    by_host: dict[str, ProbeResult] = {}
    for index, item in enumerate(data["results"]):
        try:
            result = result_from_json(item, path=f"results[{index}]")
        except WireError as exc:
            raise _RemoteFailure(f"the probe endpoint's answer is malformed: {exc}") from None
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
