"""The probe rules KV1xx: read what each vantage point saw."""

from __future__ import annotations

from monitor.rules import Rule

RULES: tuple[Rule, ...] = ()
