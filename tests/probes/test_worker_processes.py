"""A big probe run shared out to worker processes gives what one process gives, in the same order;
a credential that cannot travel to a worker is refused with a clear error, never swapped."""

from __future__ import annotations

import dataclasses
import re
import threading

import pytest

from lab.credential import LabCredential
from lab.world import LabWorld
from monitor.model import ProbeResult
from monitor.policy import Vantage
from probes import agent
from probes.agent import ProbeOptions, probe_vaults

PROBE_SECRET = re.compile(r"kvmon-probe-[0-9a-f]{32}")
VAULTS = ["kv-se-demo", "kv-pl-demo", "kv-nobody-home", "kv-se-demo", "kv-pl-demo"]


def _comparable(result: ProbeResult) -> tuple[object, ...]:
    """What a probe observed, without its timings, start time and random secret name."""
    steps = []
    for step in (result.dns, result.tls, result.health, result.data_plane):
        fields = dataclasses.asdict(step) if step is not None else {}
        steps.append({k: v for k, v in fields.items() if not k.endswith("_ms")})
    observed = (PROBE_SECRET.sub("kvmon-probe-*", repr(step)) for step in steps)
    return (result.vault_name, result.hostname, result.verdict, *observed)


def test_worker_processes_observe_what_one_process_observes_in_order(
    world: LabWorld,
    vantages: dict[str, Vantage],
    options: ProbeOptions,
    credential: LabCredential,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    one = probe_vaults(VAULTS, vantage=vantages["spoke"], options=options, credential=credential)
    monkeypatch.setattr(agent, "MIN_VAULTS_PER_PROCESS", 2)  # the parent decides the split
    shared = probe_vaults(
        VAULTS,
        vantage=vantages["spoke"],
        options=dataclasses.replace(options, processes=2),
        credential=credential,
    )

    assert [_comparable(r) for r in shared] == [_comparable(r) for r in one]
    assert [r.vault_name for r in shared] == VAULTS


def test_below_the_threshold_the_run_stays_in_this_process(
    world: LabWorld,
    vantages: dict[str, Vantage],
    options: ProbeOptions,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A credential with a lock cannot be pickled: reaching the workers would raise.
    class LockedCredential(LabCredential):
        def __init__(self) -> None:
            super().__init__()
            self.lock = threading.Lock()

    results = probe_vaults(
        ["kv-se-demo", "kv-pl-demo"],
        vantage=vantages["internet"],
        options=dataclasses.replace(options, processes=4),
        credential=LockedCredential(),
    )
    assert [r.vault_name for r in results] == ["kv-se-demo", "kv-pl-demo"]

    monkeypatch.setattr(agent, "MIN_VAULTS_PER_PROCESS", 1)
    with pytest.raises(
        ValueError, match=r"cannot be sent to probe worker processes.*KVMON_PROBE_PROCESSES=1"
    ):
        probe_vaults(
            ["kv-se-demo", "kv-pl-demo"],
            vantage=vantages["internet"],
            options=dataclasses.replace(options, processes=4),
            credential=LockedCredential(),
        )


def test_processes_must_be_positive() -> None:
    with pytest.raises(ValueError, match="processes: must be at least 1"):
        ProbeOptions(processes=0)
