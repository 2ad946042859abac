"""Revoking a lost or stolen camera: every dock refuses it from then on.

``bodycam-dock revoke --device-id ID --reason TEXT --by NAME`` (at any dock):

1. the dock's registry records it (``<state>/revoked.json``), so this dock refuses the
   camera even while the store is out of reach;
2. the evidence store gets ``revoked/devices/<ID>.cbor``, a dock-signed record (COSE_Sign1:
   ``{type: "revocation", v: 1, kind: "device", id, utc_us, reason, by, dock}``) — write-once,
   and the way every other dock learns it: before serving a camera, a bay looks for it
   (one read), and keeps what it found in its own registry;
3. a ``revoke`` record in the audit trail, signed by the dock: the office's index marks
   every recording of that camera that began after the revocation, and ``verify`` names
   them — footage that reached the store through a dock that did not know yet is never
   mixed in silently.

A revoked camera that is docked is refused before anything is read, set or freed: its
footage stays on it, for the evidence office to examine (``bodycam-verify`` reads a
camera's store directly).
"""

from __future__ import annotations

from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from common import signed
from common.keys import fingerprint
from evidence import audit
from evidence.store import EvidenceStore


class RevokedCamera(Exception):
    """The docked camera was revoked: refused, nothing read, set or freed."""


class RevokedDock(Exception):
    """This dock's own key was revoked by the evidence office: it serves no camera."""


def record(key: Ed25519PrivateKey, dock_id: str, device_id: str, reason: str, by: str, utc_us: int) -> bytes:
    return signed.sign({"type": "revocation", "v": 1, "kind": "device", "id": device_id, "utc_us": utc_us,
                        "reason": reason, "by": by, "dock": dock_id}, key, bytes.fromhex(fingerprint(key.public_key())))


def publish(store: EvidenceStore, key: Ed25519PrivateKey, dock_id: str, device_id: str, reason: str, by: str,
            utc_us: int) -> dict[str, Any]:
    """Put the revocation into the store and the audit trail (what other docks and the office read)."""
    store.register_key("dock", dock_id, key.public_key())
    data = record(key, dock_id, device_id, reason, by, utc_us)
    where = store.put_revocation(device_id, data)
    entry = audit.append(store, key, "revoke", by=by, device=device_id, now_us=utc_us,
                         details={"kind": "device", "reason": reason, "dock": dock_id})
    return {"device": device_id, "store": where, "audit_seq": entry.seq}


def read(store: EvidenceStore, device_id: str) -> dict[str, Any] | None:
    """The store's revocation of ``device_id`` if there is one signed by a registered dock."""
    data = store.revocation(device_id)
    if data is None:
        return None
    body = store.open_signed(data, ("dock", "office"))  # anyone else's: not a revocation to rely on
    if body is None or body.get("type") != "revocation" or body.get("id") != device_id:
        return None
    return body
