"""The log rules KV2xx: read the access-log evidence."""

from __future__ import annotations

from monitor.rules import Rule

RULES: tuple[Rule, ...] = ()
