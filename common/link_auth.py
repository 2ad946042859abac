"""Mutual authentication on the link, and what only an authenticated dock may say.

Handshake (docs/FORMAT.md §9.3): the dock sends a fresh 32-byte nonce, the camera
answers with its own nonce and a signature over the *transcript* (both ids, both key
fingerprints, both nonces), the dock answers with its signature over the same
transcript. Each side signs the other's fresh nonce, so a recorded handshake cannot be
replayed to either side; the session id is the transcript's SHA-256.

Everything that changes the camera — the time, the officer assignment, freeing a file
— is a COSE_Sign1 record signed by the dock's enrolled key and bound to the session id
(:func:`sign_command`), so it cannot be injected by anyone else on the cable nor
replayed in another session. A custody receipt is such a record: it names the device,
the segment (seq and SHA-256), where the dock stored it and when.

>>> from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
>>> dock, cam = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
>>> t = Transcript("dock-1", fingerprint_of(dock), bytes(32), "cam-1", fingerprint_of(cam), bytes(range(32)))
>>> check_proof(cam.public_key(), DEVICE_PROOF, t, prove(cam, DEVICE_PROOF, t))
True
>>> check_proof(cam.public_key(), DOCK_PROOF, t, prove(cam, DEVICE_PROOF, t))
False
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from common import keys, signed
from common.manifest import check_type

DEVICE_PROOF = b"bodycam-link-v1 device proof"
DOCK_PROOF = b"bodycam-link-v1 dock proof"
NONCE_SIZE = 32
FINGERPRINT = re.compile(r"[0-9a-f]{64}")   # how a key is named on the link (hex SHA-256 of the raw key)
COMMANDS = {"set_time": {"utc_us": int},
            "assign": {"officer_id": str | None},
            "recipients": {"recipients": list[str]},
            "revoke_docks": {"docks": list[str]},
            "receipt": {"device_id": str, "kind": str, "seq": int, "file": str, "sha256": bytes,
                        "size": int, "location": str, "stored_utc_us": int}}


def fingerprint_of(key: Ed25519PrivateKey | Ed25519PublicKey) -> str:
    pub = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return keys.fingerprint(pub)


@dataclass(frozen=True)
class Transcript:
    dock_id: str
    dock_key: str            # fingerprints (hex SHA-256 of the raw public keys)
    dock_nonce: bytes
    device_id: str
    device_key: str
    device_nonce: bytes

    def encode(self) -> bytes:
        return signed.canonical(["bodycam-link-v1", self.dock_id, self.dock_key, self.dock_nonce,
                                 self.device_id, self.device_key, self.device_nonce])

    @property
    def session(self) -> bytes:
        return hashlib.sha256(self.encode()).digest()


def prove(key: Ed25519PrivateKey, context: bytes, transcript: Transcript) -> bytes:
    return key.sign(context + transcript.encode())


def check_proof(key: Ed25519PublicKey, context: bytes, transcript: Transcript, signature: Any) -> bool:
    if not isinstance(signature, bytes) or len(signature) != 64:
        return False
    try:
        key.verify(signature, context + transcript.encode())
    except InvalidSignature:
        return False
    return True


def sign_command(key: Ed25519PrivateKey, dock_id: str, session: bytes, command: str, **fields: Any) -> bytes:
    """A dock command as a signed record bound to ``session``."""
    fp = fingerprint_of(key)
    body = {"v": 1, "type": "dock-command", "command": command, "dock_id": dock_id, "dock_key": fp,
            "session": session, **fields}
    return signed.sign(body, key, bytes.fromhex(fp))


class CommandError(ValueError):
    """A dock command that must be refused; the message says why (it is logged)."""


def open_command(record: Any, dock_keys: dict[str, Ed25519PublicKey], session: bytes,
                 command: str) -> dict[str, Any]:
    """Verify a command record: signed by an enrolled dock key, for this session, well formed."""
    if not isinstance(record, bytes):
        raise CommandError("command is not a signed record")
    kid = signed.kid_of(record)
    key = dock_keys.get(kid.hex()) if kid else None
    if key is None:
        raise CommandError("signed by a key that is not an enrolled dock")
    try:
        body = signed.open_signed(record, key)
    except signed.SignatureError as exc:
        raise CommandError(f"signature: {exc}") from None
    if body.get("type") != "dock-command" or body.get("command") != command or body.get("v") != 1:
        raise CommandError(f"not a {command} command")
    if body.get("session") != session:
        raise CommandError("bound to another session (replayed)")
    spec = COMMANDS[command]
    expected = {"v", "type", "command", "dock_id", "dock_key", "session", *spec}
    if set(body) != expected:
        raise CommandError(f"{command}: fields {sorted(set(body) ^ expected)} unexpected or missing")
    try:
        for name, hint in spec.items():
            check_type(f"{command} field {name!r}", hint, body[name])
        check_type("dock_id", str, body["dock_id"])
    except signed.SignatureError as exc:
        raise CommandError(str(exc)) from None
    return body
