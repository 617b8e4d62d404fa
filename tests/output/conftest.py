"""Microsoft's SARIF Multitool and the SARIF 2.1.0 JSON schema it ships with, as test fixtures."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
MULTITOOL = REPO / "node_modules" / ".bin" / "sarif-multitool"
NATIVE = REPO / "node_modules" / "@microsoft" / "sarif-multitool-linux" / "Sarif.Multitool"
SCHEMA = REPO / "node_modules" / "@microsoft" / "sarif-multitool-linux" / "sarif-2.1.0.json"

# "FILE(LINE,COL): error SARIF1009: ..." and "FILE(LINE): error JSON0001: ..."
_PROBLEM = re.compile(r"^\S.*?\(\d+(?:,\d+)?\): (error|warning) ([A-Z]+\d+): .*$", re.MULTILINE)

Validate = Callable[[Path], list[str]]


@pytest.fixture(scope="session")
def sarif_multitool() -> Validate:
    """``validate(path)`` runs ``sarif-multitool validate`` and returns its errors and warnings.

    npm does not run the package's postinstall ``chmod u+x`` in every set-up, so the native binary
    is made executable here when it is not. The tool exits 0 even when it reports errors: the
    problems are read from its output.
    """
    if not MULTITOOL.exists() or not NATIVE.exists():
        pytest.skip(f"{MULTITOOL} is not installed (make test runs npm install)")
    if not os.access(NATIVE, os.X_OK):
        NATIVE.chmod(NATIVE.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)

    def validate(path: Path) -> list[str]:
        completed = subprocess.run(
            [str(MULTITOOL), "validate", str(path)],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            # The tool is a self-contained .NET app; invariant globalization spares it a libicu
            # lookup on machines without one and changes nothing in validation.
            env={**os.environ, "DOTNET_SYSTEM_GLOBALIZATION_INVARIANT": "1"},
        )
        output = completed.stdout + completed.stderr
        assert "files scanned" in output, f"the multitool did not run: {output}"
        return [match.group(0) for match in _PROBLEM.finditer(output)]

    return validate


@pytest.fixture(scope="session")
def sarif_schema_errors() -> Callable[[Any], list[str]]:
    """Errors of a document against the SARIF 2.1.0 schema shipped in the multitool's package.

    The multitool's own rules skip documents its object model cannot load (an unknown ``level``
    passes silently), so the schema is checked as well.
    """
    if not SCHEMA.exists():
        pytest.skip(f"{SCHEMA} is not installed (make test runs npm install)")
    import jsonschema

    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    validator = jsonschema.validators.validator_for(schema)(schema)

    def errors(document: Any) -> list[str]:
        return [
            f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(document)
        ]

    return errors
