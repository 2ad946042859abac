"""Revoking a dock key (a stolen dock PC, a retired one): cameras refuse it from their next
docking at another dock on (docs/keys.md).

``bodycam-evidence --key office.key revoke-dock --dock-key DOCK.pub.pem --reason TEXT --by NAME``
puts ``revoked/docks/<fingerprint>.cbor`` into the store, signed by the office key
(``{type: "dock-revocation", v: 1, dock_key, dock_id, utc_us, reason, by}``, write-once), and
a ``revoke-dock`` record into the audit trail. Only the office may revoke a dock: a dock key
that could revoke others would let one stolen dock lock every other dock out.

Every dock reads the list before it serves a camera (one listing, and a read for each
revocation it has not seen yet; they are few and permanent) and pushes the fingerprints to
the camera as a dock-signed ``revoke_docks`` command (docs/FORMAT.md §9.4). A dock that
finds its own key on the list serves no camera. The office's ``verify`` names footage a
revoked dock stored after its revocation.
"""

from __future__ import annotations

import hashlib
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from common import keys, signed
from common.link_auth import FINGERPRINT
from evidence.store import EvidenceStore

PREFIX = "revoked/docks/"
MAX_DOCKS = 256   # the most a camera keeps (device/link_service.py): far beyond a city's docks


def publish(store: EvidenceStore, key: Ed25519PrivateKey, dock_key: str, reason: str, by: str,
            utc_us: int) -> dict[str, Any]:
    """Publish the office's revocation of the dock key with fingerprint ``dock_key``."""
    if not FINGERPRINT.fullmatch(dock_key):
        raise ValueError("a dock key is named by its fingerprint: 64 lower-case hex digits")
    if dock_key == keys.fingerprint(key.public_key()):
        raise ValueError("that is the office's own key, not a dock's")
    known = store.public_key(dock_key)
    if known is not None and known[0] != "dock":
        raise ValueError(f"key {dock_key[:16]}… is registered as a {known[0]} key ({known[1]}), not a dock's")
    body = {"type": "dock-revocation", "v": 1, "dock_key": dock_key, "dock_id": known[1] if known else None,
            "utc_us": utc_us, "reason": reason, "by": by}
    data = signed.sign(body, key, bytes.fromhex(keys.fingerprint(key.public_key())))
    where = store.backend.put_once(f"{PREFIX}{dock_key}.cbor", data, hashlib.sha256(data).digest())
    return {**body, "where": where}


def listed(store: EvidenceStore) -> list[str]:
    """The fingerprints with a revocation object (one listing; not yet verified)."""
    return [k[len(PREFIX):-len(".cbor")] for k in store.backend.keys_after(PREFIX, "")[:MAX_DOCKS]
            if FINGERPRINT.fullmatch(k[len(PREFIX):-len(".cbor")])]


def read(store: EvidenceStore, dock_key: str) -> dict[str, Any] | None:
    """The revocation of ``dock_key`` if it is signed by a registered office key, else None."""
    try:
        data = store.backend.read(f"{PREFIX}{dock_key}.cbor")
    except FileNotFoundError:
        return None
    body = store.open_signed(data, ("office",))   # a dock or a stranger wrote it: nobody may rely on it
    if body is None or body.get("type") != "dock-revocation" or body.get("dock_key") != dock_key:
        return None
    return body


def revoked(store: EvidenceStore, known: dict[str, dict] | None = None) -> dict[str, dict]:
    """Every valid dock revocation in the store, by fingerprint: ``known`` (what a dock read
    before) plus the ones it has not read yet."""
    out = dict(known or {})
    for fp in listed(store):
        if fp not in out:
            body = read(store, fp)
            if body is not None:
                out[fp] = {k: body.get(k) for k in ("dock_id", "utc_us", "reason", "by")}
    return out
