"""The whole lab for scan tests: one set of servers per module, a fresh estate per test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from lab.credential import LabCredential
from lab.estate import walkthrough_estate
from lab.services import LabServices
from tests.output.conftest import sarif_multitool

__all__ = ["sarif_multitool"]


@pytest.fixture(scope="module")
def lab() -> Iterator[LabServices]:
    with LabServices(walkthrough_estate()) as services:
        yield services


@pytest.fixture
def lab_environ(lab: LabServices, tmp_path, monkeypatch) -> dict[str, str]:
    """A fresh walkthrough estate behind the running servers, and kvmon's settings for it in the
    environment. The CLI builds ``DefaultAzureCredential``; against the lab it gets a lab token."""
    lab.use(walkthrough_estate())
    environ = lab.environ(sqlite_path=tmp_path / "kvmon.db")
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr("monitor.app.runtime.default_credential", lambda settings: LabCredential())
    return environ
