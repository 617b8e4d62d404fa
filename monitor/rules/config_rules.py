"""The configuration rules KV0xx: read the ARM posture and the baseline policy."""

from __future__ import annotations

from monitor.rules import Rule

RULES: tuple[Rule, ...] = ()
