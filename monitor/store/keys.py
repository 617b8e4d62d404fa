"""Keys for Table storage: resource ids made into valid, reversible PartitionKey/RowKey values.

Table storage refuses ``/ \\ # ?`` and control characters in keys and caps them at 1 KiB, and
resource ids are full of ``/``. ``encode_key`` keeps letters, digits and ``- _ . :`` and writes
every other character as ``!`` plus its UTF-8 bytes in hex (``/`` -> ``!2F``), so a key stays
readable in Storage Explorer and decodes back exactly (case included). Keys that would pass
1 KiB (512 UTF-16 characters) end in a hash instead; every entity also keeps the original id as a property, so nothing
depends on decoding.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re

MAX_KEY_CHARS = 512  # "1 KiB" of UTF-16: Table storage (and Azurite) refuse a 513-character key
_UNSAFE_RUN = re.compile(r"[^A-Za-z0-9\-_.:]+")
# After "/" is escaped, a resource id usually has nothing else to escape; "!" is the escape itself.
_UNSAFE_OR_MARK = re.compile(r"[^A-Za-z0-9\-_.:!]")
_ESCAPED = re.compile(r"(?:![0-9A-F]{2})+")
_HASHED_MARK = "~h~"
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_MAX_TICKS = 10**19 - 1  # 20 digits cover microseconds well past the year 9999


def encode_key(text: str, *, max_chars: int = MAX_KEY_CHARS) -> str:
    """``text`` as a key of at most ``max_chars`` (a part of a key made of several may get less)."""
    encoded = _escaped(text)
    if len(encoded) <= max_chars:
        return encoded
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    return encoded[: max_chars - len(_HASHED_MARK) - len(digest)] + _HASHED_MARK + digest


def _escaped(text: str) -> str:
    # Called for every record a scan reads or writes: the common case (a resource id whose only
    # unsafe character is "/") is one replace and one scan, not a regex call per character.
    if "!" not in text:
        slashed = text.replace("/", "!2F")
        if not _UNSAFE_OR_MARK.search(slashed):
            return slashed
    return _UNSAFE_RUN.sub(_escape_run, text)


def _escape_run(match: re.Match[str]) -> str:
    return "".join(f"!{byte:02X}" for byte in match.group(0).encode("utf-8"))


def decode_key(key: str) -> str:
    """The text ``encode_key`` was given; ValueError for a hashed (over-long) key."""
    if _HASHED_MARK in key:
        raise ValueError("the key was shortened with a hash; read the original from the entity")
    return _ESCAPED.sub(lambda match: bytes.fromhex(match.group(0).replace("!", "")).decode("utf-8"), key)


def subscription_of(vault_key: str) -> str:
    """The subscription id in a resource id ('' when it has none): the partition of its records."""
    parts = vault_key.strip("/").split("/")
    if len(parts) >= 2 and parts[0].lower() == "subscriptions":
        return parts[1].lower()
    return ""


def partition_for_vault(vault_key: str) -> str:
    """Vault records are partitioned by subscription: one query or one batch per subscription."""
    return encode_key(subscription_of(vault_key) or "-")


def newest_first(moment: dt.datetime) -> str:
    """A fixed-width key that sorts later moments first (Table storage sorts keys ascending)."""
    ticks = (moment.astimezone(dt.UTC) - _EPOCH) // dt.timedelta(microseconds=1)
    return f"{_MAX_TICKS - ticks:020d}"
