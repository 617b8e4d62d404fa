"""Benchmark (not a test): decoding probe results from the wire format (``probes.wire``).

A remote vantage point answers ``/api/probe`` with one JSON result per vault; the monitor decodes
each as untrusted input. This times, in one run over the same results:

- ``result_from_json``: pydantic validating against ``ProbeResult`` (built once at import);
- the hand-written recursive decoder it replaced (kept below, for this comparison only);
- ``result_to_json``, and the round trip a remote answer makes (encode, ``json.dumps``,
  ``json.loads``, decode).

    .venv/bin/python -m bench.wire [--results 2000] [--repeats 5]
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import platform
import statistics
import time
import types
import typing
from collections.abc import Callable
from enum import Enum
from typing import Any

from monitor.model import DataPlaneStep, DnsStep, HealthStep, ProbeResult, TlsStep, Verdict
from probes.wire import result_from_json, result_to_json


def results(count: int) -> list[ProbeResult]:
    """Results with every step filled in, as a probe from inside the VNet gives them."""
    verdicts = list(Verdict)
    started = dt.datetime(2026, 3, 1, 9, 30, tzinfo=dt.UTC)
    made = []
    for index in range(count):
        name = f"kv-bench-{index:05d}"
        host = f"{name}.vault.azure.net"
        address = f"10.{index // 65536 % 256}.{index // 256 % 256}.{index % 256}"
        made.append(
            ProbeResult(
                vault_name=name,
                vantage="inside",
                hostname=host,
                started_at=started + dt.timedelta(milliseconds=index),
                dns=DnsStep(
                    host,
                    (host, f"{name}.privatelink.vaultcore.azure.net"),
                    (address,),
                    (address,),
                    True,
                    "168.63.129.16:53",
                    1.25,
                ),
                tls=TlsStep(address, 443, True, True, True, None, 2.5),
                health=HealthStep(200, "10.1.1.4", True),
                data_plane=DataPlaneStep(
                    verdicts[index % len(verdicts)],
                    403,
                    "Forbidden",
                    "ForbiddenByFirewall",
                    "10.1.1.4",
                    True,
                    "m",
                ),
                duration_ms=12.5,
            )
        )
    return made


def per_result_us(work: Callable[[], object], count: int, repeats: int) -> float:
    """The median over ``repeats`` runs of ``work`` (which handles ``count`` results), per result."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return statistics.median(times) / count * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--results", type=int, default=2000, help="results decoded per run")
    parser.add_argument("--repeats", type=int, default=5, help="runs; the median is reported")
    args = parser.parse_args()

    made = results(args.results)
    wire = [json.loads(json.dumps(result_to_json(result))) for result in made]
    decoded = [result_from_json(item) for item in wire]
    handwritten = [_handwritten_decode(item, ProbeResult, "result") for item in wire]
    if not decoded == made == handwritten:
        raise SystemExit("the decoders disagree with what was encoded: the comparison would mean nothing")

    def round_trip() -> None:
        for result in made:
            result_from_json(json.loads(json.dumps(result_to_json(result))))

    figures = {
        "result_from_json (pydantic)": per_result_us(
            lambda: [result_from_json(item) for item in wire], args.results, args.repeats
        ),
        "hand-written decoder (before)": per_result_us(
            lambda: [_handwritten_decode(item, ProbeResult, "result") for item in wire],
            args.results,
            args.repeats,
        ),
        "result_to_json": per_result_us(
            lambda: [result_to_json(result) for result in made], args.results, args.repeats
        ),
        "round trip (encode, dumps, loads, decode)": per_result_us(round_trip, args.results, args.repeats),
    }
    print(f"{args.results} results, median of {args.repeats} runs, Python {platform.python_version()}")
    for name, figure in figures.items():
        print(f"  {name:<44} {figure:9.1f} µs per result")
    before, after = figures["hand-written decoder (before)"], figures["result_from_json (pydantic)"]
    print(f"  decoding is {before / after:.0f} times faster")


# -- the decoder result_from_json replaced, for the comparison only -------------------------------


class _HandwrittenError(ValueError):
    pass


def _handwritten_decode(data: Any, kind: Any, path: str) -> Any:
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(kind)
        if data is None and type(None) in options:
            return None
        (inner,) = [o for o in options if o is not type(None)]
        return _handwritten_decode(data, inner, path)
    if origin is tuple:
        if not isinstance(data, list):
            raise _HandwrittenError(f"{path}: expected a list")
        (item,) = [a for a in typing.get_args(kind) if a is not Ellipsis]
        return tuple(_handwritten_decode(v, item, f"{path}[{i}]") for i, v in enumerate(data))
    if dataclasses.is_dataclass(kind) and isinstance(kind, type):
        return _handwritten_record(data, kind, path)
    if isinstance(kind, type) and issubclass(kind, Enum):
        try:
            return kind(data)
        except ValueError:
            accepted = ", ".join(str(m.value) for m in kind)
            raise _HandwrittenError(f"{path}: {data!r} is not one of {accepted}") from None
    if kind is dt.datetime:
        if not isinstance(data, str):
            raise _HandwrittenError(f"{path}: expected an ISO 8601 date-time string")
        try:
            moment = dt.datetime.fromisoformat(data)
        except ValueError:
            raise _HandwrittenError(f"{path}: {data!r} is not an ISO 8601 date-time") from None
        if moment.tzinfo is None:
            raise _HandwrittenError(f"{path}: {data!r} has no UTC offset")
        return moment
    if kind is bool:
        if not isinstance(data, bool):
            raise _HandwrittenError(f"{path}: expected true or false")
        return data
    if kind is int:
        if isinstance(data, bool) or not isinstance(data, int):
            raise _HandwrittenError(f"{path}: expected a whole number")
        return data
    if kind is float:
        if isinstance(data, bool) or not isinstance(data, int | float):
            raise _HandwrittenError(f"{path}: expected a number")
        return float(data)
    if kind is str:
        if not isinstance(data, str):
            raise _HandwrittenError(f"{path}: expected a string")
        return data
    raise TypeError(f"{path}: no wire format for {kind!r}")  # a model change this module must follow


def _handwritten_record(data: Any, kind: type, path: str) -> Any:
    if not isinstance(data, dict):
        raise _HandwrittenError(f"{path}: expected an object")
    hints = typing.get_type_hints(kind)
    fields = {f.name: f for f in dataclasses.fields(kind)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise _HandwrittenError(f"{path}: unknown field(s) {', '.join(unknown)}")
    values: dict[str, Any] = {}
    for name, spec in fields.items():
        if name not in data:
            if spec.default is dataclasses.MISSING and spec.default_factory is dataclasses.MISSING:
                raise _HandwrittenError(f"{path}.{name}: missing")
            continue
        values[name] = _handwritten_decode(data[name], hints[name], f"{path}.{name}")
    return kind(**values)


if __name__ == "__main__":
    main()
