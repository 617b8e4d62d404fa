"""The lab's one injectable clock, which the demo moves on: ARM's systemData, the vault's access
log and Log Analytics' relative timespans all read it."""

from __future__ import annotations

import datetime as dt

from lab.estate import walkthrough_estate
from lab.loganalytics import parse_timespan

LATER = dt.datetime(2031, 5, 6, 7, 8, 9, tzinfo=dt.UTC)


def test_estate_stamps_arm_changes_with_its_clock() -> None:
    estate = walkthrough_estate()
    estate.clock = lambda: LATER
    vault = estate.vault_by_name("kv-se-demo")
    assert vault is not None
    updated = estate.update_vault(vault["id"], properties={"publicNetworkAccess": "Disabled"})
    assert updated["systemData"]["lastModifiedAt"] == "2031-05-06T07:08:09Z"
    created = estate.add_vault(subscription_id="sub", resource_group="rg", name="kv-new")
    assert created["systemData"]["createdAt"] == "2031-05-06T07:08:09Z"
    assert estate.now() == LATER


def test_relative_timespan_counts_back_from_the_lab_clock() -> None:
    assert parse_timespan("PT1H", now=LATER) == (LATER - dt.timedelta(hours=1), LATER)
