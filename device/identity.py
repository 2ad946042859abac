"""Who signs: the device id, its Ed25519 key, the officer it is assigned to, and the recipients."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from common import keys


@dataclass(frozen=True)
class DeviceIdentity:
    device_id: str
    signing_key: Ed25519PrivateKey
    recipients: tuple[str, ...]      # age1… strings; the device never holds an identity
    officer_id: str | None = None

    @property
    def key_fingerprint(self) -> str:
        return keys.fingerprint(self.signing_key.public_key())

    @property
    def recipient_keys(self) -> list[bytes]:
        return [keys.parse_recipient(r) for r in self.recipients]

    @classmethod
    def load(cls, device_id: str, key_path: Path, recipients: list[str],
             officer_id: str | None = None) -> "DeviceIdentity":
        for r in recipients:
            keys.parse_recipient(r)  # fail at start-up, not at the first recording
        return cls(device_id, keys.load_signing_key(key_path), tuple(recipients), officer_id)
