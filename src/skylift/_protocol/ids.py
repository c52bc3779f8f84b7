"""Prefixed object ids (`ap-…`, `fu-…`, `fc-…`), like Modal's."""

from __future__ import annotations

import secrets

PREFIXES = {
    "app": "ap", "function": "fu", "call": "fc", "input": "in", "task": "ta", "image": "im",
    "worker": "wo", "environment": "en", "secret": "st", "volume": "vo", "dict": "di", "queue": "qu",
}


def new_id(kind: str) -> str:
    """A fresh random id for an object of `kind` (a key of PREFIXES)."""
    return f"{PREFIXES[kind]}-{secrets.token_hex(11)}"


def kind_of(object_id: str) -> str | None:
    prefix = object_id.split("-", 1)[0]
    for kind, p in PREFIXES.items():
        if p == prefix:
            return kind
    return None
