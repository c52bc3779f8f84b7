"""Secret values at rest: AES-256-GCM with a key kept outside the database.

The key is `secret.key` in the control plane's home (32 random bytes, base64, mode 0600),
created at first start. The database holds only `nonce || ciphertext+tag` per secret, with the
secret's id as associated data, so a row copied onto another secret does not decrypt. Losing the
key file makes every stored secret unreadable (recreate them with `skylift secret create
--force`); copying the database without it reveals no value.

Decryption happens in one place: when the control plane builds a container's TaskSpec.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets as _random
from pathlib import Path

import msgpack
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

KEY_FILE = "secret.key"
NONCE_BYTES = 12


class SecretKeyError(RuntimeError):
    """The key file is unusable, or a value doesn't decrypt with it."""


def load_or_create_key(home: Path) -> bytes:
    path = home / KEY_FILE
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        try:
            key = base64.b64decode(path.read_text().strip(), validate=True)
        except (ValueError, OSError) as exc:
            raise SecretKeyError(f"{path} is unreadable ({exc}); restore it from a backup") from None
        if len(key) != 32:
            raise SecretKeyError(f"{path} holds a {len(key)}-byte key, expected 32; restore it from a backup") from None
        return key
    key = _random.token_bytes(32)
    with os.fdopen(fd, "w") as f:
        f.write(base64.b64encode(key).decode() + "\n")
    return key


class SecretBox:
    def __init__(self, key: bytes) -> None:
        self._aead = AESGCM(key)
        self._mac_key = hmac.new(key, b"skylift secret fingerprint", hashlib.sha256).digest()

    def seal(self, secret_id: str, values: dict[str, str]) -> bytes:
        nonce = _random.token_bytes(NONCE_BYTES)
        plain: bytes = msgpack.packb(values, use_bin_type=True)
        return nonce + self._aead.encrypt(nonce, plain, secret_id.encode())

    def open(self, secret_id: str, sealed: bytes) -> dict[str, str]:
        try:
            plain = self._aead.decrypt(sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], secret_id.encode())
        except InvalidTag:
            raise SecretKeyError(f"secret {secret_id} does not decrypt with this server's {KEY_FILE}; was the key "
                                 "replaced? Recreate the secret with `skylift secret create --force`") from None
        values = msgpack.unpackb(plain, raw=False)
        return {str(k): str(v) for k, v in values.items()}

    def fingerprint(self, environment: str, values: dict[str, str]) -> str:
        """A keyed digest of the values, so identical anonymous secrets (Secret.from_dict in every
        run) are stored once, without storing anything a dictionary attack could use."""
        canonical = json.dumps([environment, sorted(values.items())], separators=(",", ":")).encode()
        return hmac.new(self._mac_key, canonical, hashlib.sha256).hexdigest()
