"""Sealing of the Authorization value that operations forward upstream.

It is stored Fernet-encrypted so it survives a restart until its batch
finishes, and it is never logged or returned.
"""

from __future__ import annotations

import logging
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

from batchd.config import ConfigError

log = logging.getLogger(__name__)
DEV_KEY_FILE = Path("var/dev-secret.key")


class Sealer:
    def __init__(self, key: str | bytes) -> None:
        try:
            self._fernet = Fernet(key)
        except ValueError:
            raise ConfigError(
                "BATCH_SECRET_KEY is not a Fernet key; make one with "
                "python -c 'from cryptography.fernet import Fernet; "
                "print(Fernet.generate_key().decode())'"
            ) from None

    def seal(self, secret: str) -> bytes:
        return self._fernet.encrypt(secret.encode())

    def unseal(self, sealed: bytes) -> str | None:
        """The secret, or None when it was sealed under another key or is not text.

        A stored value that cannot be read is that batch's problem: it fails as
        `credentials_unavailable` rather than stopping every replica that claims it.
        """
        try:
            return self._fernet.decrypt(sealed).decode()
        except (InvalidToken, UnicodeDecodeError):
            return None


def sealer_from_settings(secret_key: str, dev_mode: bool) -> Sealer:
    if secret_key:
        return Sealer(secret_key)
    if not dev_mode:
        raise ConfigError(
            "BATCH_SECRET_KEY is not set: it encrypts stored credentials "
            "(BATCH_DEV_MODE=1 uses a local dev key instead)"
        )
    return Sealer(_dev_key())


def _dev_key() -> bytes:
    if DEV_KEY_FILE.exists():
        return DEV_KEY_FILE.read_bytes().strip()
    DEV_KEY_FILE.parent.mkdir(parents=True, exist_ok=True)
    key = Fernet.generate_key()
    DEV_KEY_FILE.touch(mode=0o600)
    DEV_KEY_FILE.write_bytes(key)
    log.warning("dev mode: credentials are sealed with the local key in %s", DEV_KEY_FILE)
    return key
