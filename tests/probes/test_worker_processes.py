"""A big probe run shared out to worker processes (``python -m probes.worker``) gives what one
process gives, in the same order; a worker that fails gives its vaults an error result each; a
credential that cannot travel to a worker is refused with a clear error, never swapped."""

from __future__ import annotations

import dataclasses
import re
import threading

import pytest

from lab.credential import LabCredential
from lab.world import LabWorld
from monitor.config.policy import Vantage
from monitor.model import ProbeResult, Verdict
from probes import pool
from probes.options import ProbeOptions
from probes.pool import probe_vaults

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
    monkeypatch.setattr(pool, "MIN_VAULTS_PER_PROCESS", 2)  # the parent decides the split
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

    monkeypatch.setattr(pool, "MIN_VAULTS_PER_PROCESS", 1)
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


def _explode() -> None:
    raise RuntimeError("this credential does not unpickle")


class CredentialThatBreaksInTheWorker(LabCredential):
    def __reduce__(self) -> tuple[object, tuple[()]]:
        return (_explode, ())


def test_a_worker_that_fails_gives_its_vaults_an_error_each_and_the_rest_is_probed(
    world: LabWorld,
    vantages: dict[str, Vantage],
    options: ProbeOptions,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(pool, "MIN_VAULTS_PER_PROCESS", 2)
    results = probe_vaults(
        VAULTS,
        vantage=vantages["spoke"],
        options=dataclasses.replace(options, processes=2),
        credential=CredentialThatBreaksInTheWorker(),
    )

    assert [r.vault_name for r in results] == VAULTS
    here, worker = results[0::2], results[1::2]
    assert not any(((r.data_plane and r.data_plane.message) or "").startswith("not probed") for r in here)
    for result in worker:
        assert result.verdict is Verdict.ERROR
        assert result.data_plane is not None and result.data_plane.message is not None
        assert result.data_plane.message.startswith("not probed: probe worker process failed (exit code 2)")
        assert "this credential does not unpickle" in result.data_plane.message
