"""Ctrl-C or SIGTERM while Azurite starts (the demo's first seconds) must not leave it running."""

from __future__ import annotations

import subprocess

import pytest

import lab.azurite
from lab.azurite import Azurite, azurite_missing_reason


def test_interrupted_start_up_leaves_no_azurite_running(monkeypatch: pytest.MonkeyPatch) -> None:
    reason = azurite_missing_reason()
    if reason is not None:
        pytest.skip(f"Azurite cannot run here: {reason}")
    launched: list[subprocess.Popen[bytes]] = []
    popen = subprocess.Popen

    def recording_popen(*args: object, **kwargs: object) -> subprocess.Popen[bytes]:
        process = popen(*args, **kwargs)  # type: ignore[call-overload]
        launched.append(process)
        return process

    def interrupted(port: int) -> bool:
        raise KeyboardInterrupt

    monkeypatch.setattr(lab.azurite.subprocess, "Popen", recording_popen)
    monkeypatch.setattr(lab.azurite, "_accepts", interrupted)
    try:
        with pytest.raises(KeyboardInterrupt):
            Azurite.start()
        assert len(launched) == 1
        assert launched[0].poll() is not None  # stopped and reaped, not left behind
    finally:
        for process in launched:
            if process.poll() is None:
                process.kill()
                process.wait()
