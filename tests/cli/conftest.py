"""Fixtures for command tests: the SARIF Multitool fixture is shared with tests/output."""

from __future__ import annotations

from tests.output.conftest import sarif_multitool

__all__ = ["sarif_multitool"]
