"""Fixtures every test area shares. Area-specific fixtures live in tests/<area>/conftest.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

from lab.azurite import Azurite, azurite_missing_reason
from lab.tls import LabPki, lab_pki

# Property tests judge outcomes, not speed (benchmarks measure speed): no per-example deadline by
# default, and the same examples on every run. tests/fuzz sets generous deadlines of its own to
# catch hangs.
settings.register_profile("kvmon", deadline=None, derandomize=True)
settings.load_profile("kvmon")

REPO = Path(__file__).resolve().parent.parent
SHARED_FIXTURES = REPO.parent / "shared" / "fixtures" / "arm"


@pytest.fixture(scope="session")
def pki() -> LabPki:
    return lab_pki()


@pytest.fixture(scope="session")
def arm_examples() -> Path:
    """Azure's published REST examples for vaults; they live outside the repo (../shared)."""
    if not SHARED_FIXTURES.is_dir():
        pytest.skip(
            f"Azure's published ARM examples are not present at {SHARED_FIXTURES} (only in the team's workspace)"
        )
    return SHARED_FIXTURES


@pytest.fixture(scope="session")
def azurite() -> Iterator[Azurite]:
    """Azurite (tables, queues, blobs) on free loopback ports for the whole session."""
    reason = azurite_missing_reason()
    if reason is not None:
        pytest.skip(f"Azurite cannot run here: {reason}")
    emulator = Azurite.start()
    try:
        yield emulator
    finally:
        emulator.stop()
