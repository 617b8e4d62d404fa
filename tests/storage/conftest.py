"""Storage tests: Azure's published examples for storage accounts (copied in, see fixtures/arm/README.md)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.output.conftest import sarif_multitool

__all__ = ["example", "sarif_multitool"]

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "arm"


def example(name: str) -> Any:
    """The 200 response body of a published example."""
    return json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8"))["responses"]["200"]["body"]
