"""sha256 in the two spellings we meet: hex (ours) and RECORD's urlsafe base64."""

from __future__ import annotations

import base64
import hashlib


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_of(data: object) -> str | None:
    """The sha256 of what a read found: None for no file (None) or an odd object (a note)."""
    return sha256_hex(data) if isinstance(data, bytes) else None


def record_hash_to_hex(mode: str, digest: str) -> str | None:
    """A RECORD hash (mode, urlsafe base64 without padding) -> hex, if sha256."""
    if mode != "sha256" or not digest:
        return None
    return base64.urlsafe_b64decode(digest + "=" * (-len(digest) % 4)).hex()
