"""The HTML report of a 10,000-vault scan is usable: the vaults needing attention first, the worst
first and grouped by subscription, a bounded page for the browser to lay out, every vault still in
the page, and a filter that works in headless Chromium with no network."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import pytest

from monitor.outputs.report import PAGE_SIZE, render_html
from tests.report.dom import ReportDom
from tests.report.estate_report import estate_document
from tests.report.test_chromium import ARTIFACTS, WINDOW, _chromium, _png_size, _run_chromium

VAULTS = 10_000
SEVERITIES = ("critical", "high", "medium", "low", "info", "none")


@functools.cache
def page() -> str:
    return render_html(estate_document(vaults=VAULTS))


def _worst(vault: dict[str, Any]) -> str:
    open_severities = [f["severity"] for f in vault["findings"] if not f["suppressed"]]
    return min(open_severities, key=SEVERITIES.index, default="none")


def _expected_order() -> list[tuple[str, str]]:
    """(worst severity, subscription) of every vault in the order the page must show them."""
    document = estate_document(vaults=VAULTS)
    keys = [
        (
            not (
                _worst(v) != "none"
                or v["changes"]
                or any(c["state"] == "mismatch" for c in v["reachability"].values())
                or not v["evidence"]["complete"]
            ),
            SEVERITIES.index(_worst(v)),
            v["subscription_id"],
        )
        for v in document["vaults"]
    ]
    return [(SEVERITIES[severity], subscription) for _, severity, subscription in sorted(keys)]


def test_the_first_page_is_bounded_and_shows_the_worst_vaults_first() -> None:
    html = page()
    dom = ReportDom.parse(html)
    small = ReportDom.parse(render_html(estate_document(vaults=PAGE_SIZE + 1, subscriptions=10)))

    assert len(dom.vault_rows) == PAGE_SIZE
    assert [(row["sev"], row["sub"]) for row in dom.vault_rows] == _expected_order()[:PAGE_SIZE]
    assert {row["sev"] for row in dom.vault_rows} == {"critical"}  # 1,367 vaults are critical
    # What the browser lays out at first does not grow with the estate: a 101-vault page has as
    # many vaults on it; only its overview (a row per subscription) and its vaults' findings differ.
    assert len(dom.cells) == PAGE_SIZE * 2 == len(small.cells)
    assert dom.live_elements < 2 * small.live_elements
    assert dom.live_elements < 25_000  # of about 1.1 million elements in the page, most of them inert


def test_every_vault_is_in_the_page_for_the_filter() -> None:
    dom = ReportDom.parse(page())
    document = estate_document(vaults=VAULTS)

    assert len(dom.templates) == VAULTS  # the first page's hold their filter data only
    assert {t["name"] for t in dom.templates} == {v["name"].lower() for v in document["vaults"]}
    assert sorted(int(t["unit"]) for t in dom.templates) == list(range(VAULTS))
    assert sum(1 for t in dom.templates if t["sev"] == "critical") == 1_367
    # One script, kvmon's own, inline: nothing is loaded from anywhere.
    assert dom.scripts == [{}]
    assert "Vaults by subscription and worst open severity" in dom.text


def _browser_rows(chromium: str, tmp_path: Path, fragment: str) -> ReportDom:
    target = tmp_path / "estate-report.html"
    if not target.exists():
        target.write_text(page(), encoding="utf-8")
    dumped = _run_chromium(
        chromium, tmp_path / f"profile-{len(fragment)}", "--dump-dom", f"{target.as_uri()}#{fragment}"
    )
    return ReportDom.parse(dumped.stdout)


def test_chromium_filters_and_pages_with_no_network(tmp_path: Path) -> None:
    chromium = _chromium()  # its flags map every host name to nothing: no network to lean on
    document = estate_document(vaults=VAULTS)
    subscription = document["vaults"][7]["subscription_id"]
    medium = [
        v["name"]
        for v in document["vaults"]
        if v["subscription_id"] == subscription and _worst(v) == "medium"
    ]
    assert 0 < len(medium) < PAGE_SIZE

    filtered = _browser_rows(chromium, tmp_path, f"sub={subscription}&sev=medium")
    second_page = _browser_rows(chromium, tmp_path, "state=incomplete&page=2")
    by_name = _browser_rows(chromium, tmp_path, "name=KV01234-")  # any case

    assert {(row["sub"], row["sev"]) for row in filtered.vault_rows} == {(subscription, "medium")}
    assert sorted({vault for vault, _ in filtered.cells}) == sorted(medium)
    assert f"vaults 1–{len(medium)} of {len(medium)} matching" in filtered.text
    incomplete = [v["name"] for v in document["vaults"] if not v["evidence"]["complete"]]  # 200
    assert f"vaults 101–200 of {len(incomplete)} matching" in second_page.text
    assert len(second_page.vault_rows) == PAGE_SIZE
    assert {vault for vault, _ in second_page.cells} <= set(incomplete)
    assert {vault for vault, _ in by_name.cells} == {document["vaults"][1234]["name"]}
    # Each vault shown brings its findings with it, and only those.
    assert len(by_name.finding_rules) == len(document["vaults"][1234]["findings"])


def test_chromium_screenshots_the_10000_vault_report(tmp_path: Path) -> None:
    chromium = _chromium()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    target = ARTIFACTS / "estate-report.html"
    target.write_text(page(), encoding="utf-8")
    screenshot = ARTIFACTS / "estate-report.png"
    screenshot.unlink(missing_ok=True)

    _run_chromium(chromium, tmp_path / "profile-shot", f"--screenshot={screenshot}", target.as_uri())

    assert _png_size(screenshot) == WINDOW
    assert screenshot.stat().st_size > 50_000


@pytest.fixture(autouse=True, scope="module")
def _no_leftover_page() -> Any:
    yield
    page.cache_clear()
