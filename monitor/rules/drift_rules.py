"""The drift rules KV3xx: compare the posture with the stored one."""

from __future__ import annotations

from monitor.rules import Rule

RULES: tuple[Rule, ...] = ()
