"""Prefixed object ids (`ap-…`, `fu-…`, `fc-…`), like Modal's."""

from __future__ import annotations

import secrets

PREFIXES = {
    "app": "ap", "function": "fu", "call": "fc", "input": "in", "task": "ta", "image": "im",
    "worker": "wo", "environment": "en", "secret": "st", "volume": "vo", "dict": "di", "queue": "qu",
    "sandbox": "sb", "process": "sp",
}


_ID_BYTES = 11


def new_id(kind: str) -> str:
    """A fresh random id for an object of `kind` (a key of PREFIXES)."""
    return f"{PREFIXES[kind]}-{secrets.token_hex(_ID_BYTES)}"


def new_ids(kind: str, n: int) -> list[str]:
    """`n` fresh ids, as random as `new_id`'s, from one read of the system's randomness (a map's
    inputs: one syscall per batch instead of one per input)."""
    prefix = PREFIXES[kind]
    raw = secrets.token_bytes(_ID_BYTES * n).hex()
    step = 2 * _ID_BYTES
    return [f"{prefix}-{raw[i:i + step]}" for i in range(0, len(raw), step)]


def kind_of(object_id: str) -> str | None:
    prefix = object_id.split("-", 1)[0]
    for kind, p in PREFIXES.items():
        if p == prefix:
            return kind
    return None
