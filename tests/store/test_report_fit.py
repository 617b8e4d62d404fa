"""A report document as one entity's properties: stored exactly as put_json stores it when it
fits; otherwise the vaults needing attention first, as many as fit, and a note of the rest."""

from __future__ import annotations

import datetime as dt
import random
from typing import Any

import pytest

from monitor.model import Severity
from monitor.store import codec
from monitor.store.entities import EntityStore
from monitor.store.report_fit import report_properties

TRIM_MESSAGE = (
    "report trimmed to fit storage: {} vault(s) left out, those without findings, changes or mismatches first"
)


def vault(index: int, *, noise: int = 0, attention: str | None = None, seed: int = 0) -> dict[str, Any]:
    """A report vault entry; ``noise`` random hex characters make it compress poorly."""
    state = "mismatch" if attention == "mismatch" else "ok"
    return {
        "name": f"kv-{index:05d}",
        "id": f"/subscriptions/s/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/kv-{index:05d}",
        "reachability": {"internet": {"state": state, "observed": "refused"}},
        "findings": [{"rule_id": "KV001"}] if attention == "finding" else [],
        "changes": [{"kind": "opened"}] if attention == "change" else [],
        "notes": random.Random(seed * 100_000 + index).randbytes(noise // 2).hex(),
    }


def document(vaults: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {
        "schema": "kvmon.report/v1",
        "counts": {"vaults": len(vaults), "errors": 1},
        "errors": [{"source": "probe", "scope": "kv-00001", "message": "timed out", "code": None}],
        "vantages": [{"name": "internet", "inside": False}],
        "vaults": vaults,
        **extra,
    }


def put_json(value: Any) -> codec.Properties:
    properties: codec.Properties = {}
    codec.put_json(properties, "document", value)
    return properties


def stored(properties: codec.Properties) -> Any:
    return codec.get_json(properties, "document")


@pytest.mark.parametrize("count", [0, 3, 400])
def test_a_document_that_fits_is_stored_exactly_as_put_json_stores_it(count: int) -> None:
    doc = document([vault(i, attention="finding" if i % 3 == 0 else None) for i in range(count)])

    properties = report_properties(doc)

    assert properties == put_json(doc)
    assert ("document_zn" in properties) == (count == 400)  # the large one compressed, the others as text


def test_values_that_are_not_json_are_converted_as_put_json_converts_them() -> None:
    moment = dt.datetime(2025, 3, 14, 9, 30, tzinfo=dt.UTC)
    doc = document(
        [{**vault(i), "seen": moment, "severity": Severity.HIGH, "ports": (443,)} for i in range(300)],
        generated_at=moment,
        vaults_seen={"kv-b", "kv-a"},
    )

    properties = report_properties(doc)

    assert properties == put_json(doc)
    assert stored(properties)["vaults"][0]["seen"] == "2025-03-14T09:30:00Z"


def test_a_document_that_does_not_fit_keeps_the_vaults_needing_attention_first() -> None:
    kinds = ["finding", None, "change", None, "mismatch", None, None]
    vaults = [vault(i, noise=800, attention=kinds[i % len(kinds)]) for i in range(1_200)]
    doc = document(vaults)
    with pytest.raises(codec.RecordTooLarge):
        put_json(doc)

    properties = report_properties(doc)
    trimmed = stored(properties)

    kept = trimmed["vaults"]
    attention = [
        v
        for v in vaults
        if v["findings"] or v["changes"] or v["reachability"]["internet"]["state"] == "mismatch"
    ]
    others = [v for v in vaults if v not in attention]
    assert len(attention) < len(kept) < len(vaults)  # room left by the attention ones is filled
    assert kept == (attention + others)[: len(kept)]  # in this order, each group as the scan listed it
    assert trimmed["errors"] == [
        *doc["errors"],
        {
            "source": "store",
            "scope": "report",
            "message": TRIM_MESSAGE.format(len(vaults) - len(kept)),
            "code": None,
        },
    ]
    assert {key: value for key, value in trimmed.items() if key not in ("vaults", "errors")} == {
        key: value for key, value in doc.items() if key not in ("vaults", "errors")
    }
    assert properties == put_json(trimmed)  # the same text and compression a fitting document gets
    # As many as fit: one more does not.
    with pytest.raises(codec.RecordTooLarge):
        put_json({**trimmed, "vaults": (attention + others)[: len(kept) + 1]})


def test_when_the_vaults_needing_attention_alone_do_not_fit_the_first_of_them_are_kept() -> None:
    vaults = [vault(i, noise=900, attention="finding" if i % 4 else None) for i in range(1_200)]
    doc = document(vaults)

    trimmed = stored(report_properties(doc))

    attention = [v for v in vaults if v["findings"]]
    kept = trimmed["vaults"]
    assert 0 < len(kept) < len(attention)
    assert kept == attention[: len(kept)]
    assert trimmed["errors"][-1]["message"] == TRIM_MESSAGE.format(len(vaults) - len(kept))


def test_a_document_too_large_even_without_its_vaults_is_refused() -> None:
    doc = document([vault(1)], vantages=[{"name": random.Random(1).randbytes(400_000).hex()}])

    with pytest.raises(codec.RecordTooLarge):
        report_properties(doc)


def test_a_document_without_vaults_is_stored_as_put_json_stores_it() -> None:
    doc = {"schema": "kvmon.report/v1", "errors": [], "counts": {"vaults": 0}}

    assert report_properties(doc) == put_json(doc)


def test_a_trimmed_report_round_trips_through_the_store(store: EntityStore) -> None:
    vaults = [vault(i, noise=800, attention="change" if i % 2 else None) for i in range(1_000)]
    started = dt.datetime(2025, 3, 14, 9, 30, tzinfo=dt.UTC)

    store.save_report("scan-1", document(vaults), started_at=started)

    loaded = store.load_report("scan-1")
    assert loaded is not None and loaded == store.load_report()
    assert 0 < len(loaded["vaults"]) < len(vaults)
    assert loaded["errors"][-1]["message"] == TRIM_MESSAGE.format(len(vaults) - len(loaded["vaults"]))
