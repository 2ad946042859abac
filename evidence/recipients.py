"""The office's recipients for new footage, and their rotation (docs/keys.md).

``bodycam-evidence --key office.key recipients --set age1NEW --by NAME`` publishes
``recipients/NNNNNNNN.cbor`` (eight digits, counting up, write-once), signed by the office
key: ``{type: "recipients", v: 1, n, recipients: [age1…], utc_us, by}``, and a
``recipients`` record in the audit trail. Every dock reads the newest one before it
serves a camera (a listing of a few keys, one read) and pushes it to the camera as a
dock-signed ``recipients`` command (docs/FORMAT.md §9.4); the camera encrypts every
segment after that to them and keeps the command, re-verified at every boot, over its
configured recipients. Footage written before stays readable with the earlier identity:
the console and ``export`` take several ``--identity``.
"""

from __future__ import annotations

import hashlib
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from common import keys, signed
from evidence.store import EvidenceStore

PREFIX = "recipients/"
MAX_RECIPIENTS = 8


def _key(n: int) -> str:
    return f"{PREFIX}{n:08d}.cbor"


def current(store: EvidenceStore) -> dict[str, Any] | None:
    """The newest recipients record signed by a registered office key, or None."""
    for key in reversed(store.backend.keys_after(PREFIX, "")[-16:]):  # the newest valid one
        try:
            data = store.backend.read(key)
            known = store.public_key((signed.kid_of(data) or b"").hex())
            if known is None or known[0] != "office":
                continue
            body = signed.open_signed(data, known[2])
            recipients = body.get("recipients")
            if body.get("type") != "recipients" or not isinstance(recipients, list) or \
                    not 1 <= len(recipients) <= MAX_RECIPIENTS:
                continue
            for r in recipients:
                keys.parse_recipient(r)
            return body
        except (FileNotFoundError, signed.SignatureError, ValueError, TypeError):
            continue
    return None


def publish(store: EvidenceStore, key: Ed25519PrivateKey, recipients: list[str], by: str, utc_us: int) -> dict[str, Any]:
    """The next recipients record; every camera gets it at its next docking."""
    if not 1 <= len(recipients) <= MAX_RECIPIENTS:
        raise ValueError(f"1–{MAX_RECIPIENTS} recipients")
    for r in recipients:
        keys.parse_recipient(r)
    existing = store.backend.keys_after(PREFIX, "")
    n = int(existing[-1][len(PREFIX):len(PREFIX) + 8]) + 1 if existing else 1
    body = {"type": "recipients", "v": 1, "n": n, "recipients": list(recipients), "utc_us": utc_us, "by": by}
    data = signed.sign(body, key, bytes.fromhex(keys.fingerprint(key.public_key())))
    store.backend.put_once(_key(n), data, hashlib.sha256(data).digest())
    return {"n": n, "recipients": list(recipients), "where": store.backend.where(_key(n))}
