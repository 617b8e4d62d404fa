"""Evidence over the property limit: trimmed with a marker, deterministic, as much kept as fits."""

from __future__ import annotations

import json

from monitor.store.codec import EVIDENCE_LIMIT, TRIMMED_MARKER, trim_evidence, utf16_length


def size(value) -> int:
    return utf16_length(json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True))


def test_small_evidence_is_untouched_but_plain_json() -> None:
    assert trim_evidence({"addresses": ("10.0.0.1",), "count": 3}) == {"addresses": ["10.0.0.1"], "count": 3}


def test_one_long_string_is_cut_and_short_values_kept() -> None:
    trimmed = trim_evidence({"blob": "é" * 70_000, "vault": "kv-app", "ids": ["a", "b"]})
    assert size(trimmed) <= EVIDENCE_LIMIT
    assert trimmed["vault"] == "kv-app" and trimmed["ids"] == ["a", "b"]
    assert trimmed[TRIMMED_MARKER]["original_size"] > 70_000
    assert len(trimmed["blob"]) > EVIDENCE_LIMIT // 2  # cut to what fits, not to a token length
    assert trimmed == trim_evidence({"blob": "é" * 70_000, "vault": "kv-app", "ids": ["a", "b"]})


def test_a_long_list_keeps_its_first_items_and_counts_the_rest() -> None:
    callers = [{"address": f"198.51.{i // 256}.{i % 256}", "count": i} for i in range(20_000)]
    trimmed = trim_evidence({"callers": callers})
    assert size(trimmed) <= EVIDENCE_LIMIT
    kept = trimmed["callers"]
    assert kept[0] == callers[0] and kept[-1].startswith("…[trimmed ") and kept[-1].endswith(" more items]")


def test_a_huge_mapping_falls_back_to_an_excerpt() -> None:
    trimmed = trim_evidence({f"key{i}": i for i in range(20_000)})
    assert size(trimmed) <= EVIDENCE_LIMIT
    assert set(trimmed) == {TRIMMED_MARKER, "excerpt"} and trimmed["excerpt"].startswith('{"key0":0')
