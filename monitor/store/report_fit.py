"""A scan's report document as the properties of one entity (pure, no I/O).

A 10,000-vault report is about 28 MB of JSON and does not fit one entity even compressed, so
what is stored keeps the vaults that need attention first, as many as fit, and says what was left
out. Each vault entry is serialised once, and how many fit is found by compressing the pieces as a
stream: the document is never converted, serialised or compressed whole again for each attempt.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence
from typing import Any

from monitor.store import codec

# Whether k vaults fit is checked on a copy of the running compressor (finishing it costs a
# block); checks every _STRIDE pieces, then piece by piece past the last one that fitted.
_STRIDE = 32


def report_properties(document: Mapping[str, Any], *, name: str = "document") -> codec.Properties:
    """``document`` stored as ``codec.put_json`` stores it when it fits one entity; otherwise the
    vaults with findings, changes or reachability mismatches first, then the others, as many as
    fit, with an error entry saying how many were left out.

    The document is plain JSON with string keys (as ``monitor.outputs.report`` builds it); values that
    are not are converted as ``monitor.jsonable.to_jsonable`` does.

    Raises ``codec.RecordTooLarge`` when not even the document without vaults fits.
    """
    vaults = document.get("vaults")
    if not isinstance(vaults, list) or not vaults:
        properties: codec.Properties = {}
        codec.put_text(properties, name, codec.json_text(document))
        return properties
    pieces = [codec.json_text(vault).encode("utf-8") for vault in vaults]
    head, tail = _around_vaults(document, errors=document.get("errors"))
    properties = {}
    whole = len(head) + len(tail) + sum(len(piece) for piece in pieces) + len(pieces) + 1
    if whole <= 3 * codec.TEXT_LIMIT:  # small: whether it is compressed depends on its UTF-16 units
        codec.put_text(
            properties, name, b"".join((head, b"[", b",".join(pieces), b"]", tail)).decode("utf-8")
        )
        return properties
    # Over TEXT_LIMIT UTF-16 units whatever its characters: compressed, whole when it fits.
    packed = _packed_within(head, pieces, tail)
    if packed is not None:
        codec.put_packed(properties, name, packed)
        return properties
    codec.put_packed(properties, name, _trimmed(document, vaults, pieces))
    return properties


def _trimmed(document: Mapping[str, Any], vaults: list[Any], pieces: list[bytes]) -> bytes:
    order = _attention_first(vaults)
    ordered = [pieces[index] for index in order]
    # The trim entry comes before the vaults ("errors" sorts first) and names how many were left
    # out, which the search cannot know yet: it measures with the widest count, and the real
    # document is compressed once at the end (and shortened should it still not fit).
    head, tail = _around_vaults(document, errors=_with_trim_entry(document, left_out=len(vaults)))
    kept = _largest_fitting_prefix(head, ordered, tail)
    while True:
        head, tail = _around_vaults(document, errors=_with_trim_entry(document, left_out=len(vaults) - kept))
        packed = _packed_within(head, ordered[:kept], tail)
        if packed is not None:
            return packed
        if kept == 0:
            raise codec.RecordTooLarge("document: the report does not fit one entity even without its vaults")
        kept -= max(1, kept // 100)


def _attention_first(vaults: Sequence[Any]) -> list[int]:
    """Positions of the vaults with findings, changes or mismatches, then of the others."""
    attention: list[int] = []
    others: list[int] = []
    for index, vault in enumerate(vaults):
        (attention if _needs_attention(vault) else others).append(index)
    return attention + others


def _needs_attention(vault: Any) -> bool:
    if not isinstance(vault, Mapping):
        return False
    return bool(
        vault.get("findings")
        or vault.get("changes")
        or any(cell.get("state") == "mismatch" for cell in (vault.get("reachability") or {}).values())
    )


def _with_trim_entry(document: Mapping[str, Any], *, left_out: int) -> list[Any]:
    return [
        *(document.get("errors") or []),
        {
            "source": "store",
            "scope": "report",
            "message": f"report trimmed to fit storage: {left_out} vault(s) left out, "
            "those without findings, changes or mismatches first",
            "code": None,
        },
    ]


def _around_vaults(document: Mapping[str, Any], *, errors: Any) -> tuple[bytes, bytes]:
    """The document's JSON text before and after its vaults' array, with ``errors`` as its
    errors: the same text ``json_text`` writes (keys sorted, no spaces), built key by key."""
    parts = {**document, "errors": errors} if "errors" in document or errors is not None else dict(document)
    before: list[str] = []
    after: list[str] = []
    side = before
    for key in sorted(parts):
        if key == "vaults":
            side = after
            continue
        side.append(f"{codec.json_text(key)}:{codec.json_text(parts[key])}")
    head = "{" + ",".join(before) + ("," if before else "") + '"vaults":'
    tail = ("," if after else "") + ",".join(after) + "}"
    return head.encode("utf-8"), tail.encode("utf-8")


def _packed_within(head: bytes, pieces: Sequence[bytes], tail: bytes) -> bytes | None:
    """``head[pieces]tail`` compressed as ``codec.put_text`` compresses it, or None as soon as
    it is certain not to fit (the output so far already exceeds the limit)."""
    compressor = zlib.compressobj(codec.COMPRESSION_LEVEL)
    out = [compressor.compress(head + b"[")]
    size = len(out[0])
    for index, piece in enumerate(pieces):
        chunk = compressor.compress(b"," + piece if index else piece)
        size += len(chunk)
        if size > codec.MAX_PACKED_BYTES:
            return None
        out.append(chunk)
    out.append(compressor.compress(b"]" + tail))
    out.append(compressor.flush())
    packed = b"".join(out)
    return packed if len(packed) <= codec.MAX_PACKED_BYTES else None


def _largest_fitting_prefix(head: bytes, pieces: Sequence[bytes], tail: bytes) -> int:
    """The most leading ``pieces`` whose ``head[pieces]tail`` compresses within the limit."""
    limit = codec.MAX_PACKED_BYTES
    compressor = zlib.compressobj(codec.COMPRESSION_LEVEL)
    emitted = len(compressor.compress(head + b"["))
    if _size_if_ended(compressor, emitted, tail) > limit:
        return 0
    fitted, fitted_state, fitted_emitted = 0, compressor.copy(), emitted
    for count, piece in enumerate(pieces, start=1):
        emitted += len(compressor.compress(b"," + piece if count > 1 else piece))
        if emitted > limit:  # what is already out only grows: no more can fit
            break
        if count % _STRIDE == 0 or count == len(pieces):
            if _size_if_ended(compressor, emitted, tail) > limit:
                break
            fitted, fitted_state, fitted_emitted = count, compressor.copy(), emitted
    else:
        return fitted
    # Past the last checkpoint that fitted, one piece at a time from its compressor's state.
    compressor, emitted = fitted_state, fitted_emitted
    for count in range(fitted + 1, min(fitted + _STRIDE, len(pieces)) + 1):
        emitted += len(compressor.compress(b"," + pieces[count - 1] if count > 1 else pieces[count - 1]))
        if emitted > limit or _size_if_ended(compressor, emitted, tail) > limit:
            return count - 1
    return min(fitted + _STRIDE, len(pieces))


def _size_if_ended(compressor: Any, emitted: int, tail: bytes) -> int:
    """The compressed size were the vaults' array to end here (measured on a copy)."""
    ending = compressor.copy()
    return emitted + len(ending.compress(b"]" + tail)) + len(ending.flush())
