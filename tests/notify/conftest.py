"""Fixtures for the notification tests: webhook sinks, a session trusting the lab CA, and
Microsoft's Adaptive Cards parser under node."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import requests

from lab.sinks import WebhookSink
from lab.tls import LabPki
from monitor.outputs.notify.deliver import default_session

REPO = Path(__file__).resolve().parents[2]
VALIDATOR = Path(__file__).with_name("validate_cards.js")
ADAPTIVECARDS = REPO / "node_modules" / "adaptivecards" / "dist" / "adaptivecards.js"


@pytest.fixture
def sink() -> Iterator[WebhookSink]:
    with WebhookSink() as started:
        yield started


@pytest.fixture
def session(pki: LabPki) -> Iterator[requests.Session]:
    with default_session(verify=pki.ca_path) as made:
        yield made


@pytest.fixture(scope="session")
def card_problems() -> Callable[[Sequence[dict[str, Any]]], list[list[str]]]:
    """Runs Microsoft's Adaptive Cards parser over cards; one list of problems per card."""
    node = shutil.which("node")
    if node is None or not ADAPTIVECARDS.is_file():
        pytest.skip("node and the npm package adaptivecards are needed (npm install)")

    def check(cards: Sequence[dict[str, Any]]) -> list[list[str]]:
        done = subprocess.run(
            [node, str(VALIDATOR)],
            input=json.dumps(list(cards)),
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        problems: list[list[str]] = json.loads(done.stdout)
        assert len(problems) == len(cards)
        return problems

    return check
