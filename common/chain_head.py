"""The signed head of a device's manifest chain: ``chain-head.cbor``.

The head says "my last manifest is seq N, whose bytes hash to H", signed by the
device. It lets a verifier notice that the newest segments *and* their manifests
were deleted (the surviving chain would otherwise verify), and lets the camera
continue its chain after the dock has freed every uploaded segment. A verifier
that also holds an older head (the dock's, from the last docking) can tell a
store rolled back to an earlier, genuine state (see docs/FORMAT.md §2.4).

>>> from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
>>> key = Ed25519PrivateKey.generate()
>>> head = ChainHead(seq=3, prev=bytes(32), device_id="cam", utc_us=1)
>>> read_head(head.sign(key), key.public_key()) == head
True
"""

from __future__ import annotations

from dataclasses import dataclass
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from common import keys, signed
from common.manifest import check_type

HEAD_VERSION = 1


@dataclass(frozen=True)
class ChainHead:
    seq: int                 # seq of the last manifest written (0: none yet)
    prev: bytes | None       # SHA-256 of that manifest's bytes
    device_id: str = ""
    utc_us: int = 0          # when the head was written (device clock)

    def matches(self, other: "ChainHead") -> bool:
        return (self.seq, self.prev) == (other.seq, other.prev)

    def sign(self, key: Ed25519PrivateKey) -> bytes:
        fingerprint = keys.fingerprint(key.public_key())
        body = {"v": HEAD_VERSION, "type": "chain-head", "device_id": self.device_id,
                "device_key": fingerprint, "seq": self.seq, "prev": self.prev, "utc_us": self.utc_us}
        return signed.sign(body, key, bytes.fromhex(fingerprint))


GENESIS = ChainHead(0, None)


def read_head(data: bytes, key: Ed25519PublicKey | None) -> ChainHead:
    """Verify and decode a head record; :class:`common.signed.SignatureError` otherwise."""
    body = signed.open_signed(data, key)
    expected = {"v", "type", "device_id", "device_key", "seq", "prev", "utc_us"}
    if body.get("type") != "chain-head" or body.get("v") != HEAD_VERSION or set(body) != expected:
        raise signed.SignatureError("not a v1 chain-head record")
    for name, hint in (("device_id", str), ("seq", int), ("prev", bytes | None), ("utc_us", int)):
        check_type(f"chain head field {name!r}", hint, body[name])
    if body["seq"] < 0 or (body["prev"] is None) != (body["seq"] == 0) or (
            body["prev"] is not None and len(body["prev"]) != 32):
        raise signed.SignatureError("chain head: seq and prev do not fit together")
    return ChainHead(body["seq"], body["prev"], body["device_id"], body["utc_us"])


def parse_anchor(text: str) -> ChainHead:
    """``SEQ:HEX`` (the head as a dock prints it) → ChainHead; ValueError otherwise."""
    seq_text, _, digest = text.partition(":")
    if not seq_text.isdigit() or len(digest) != 64:
        raise ValueError(f"anchor must be SEQ:SHA256HEX or a chain-head.cbor file, got {text[:80]!r}")
    try:
        prev = bytes.fromhex(digest)
    except ValueError:
        raise ValueError(f"anchor digest is not hex: {digest[:80]!r}") from None
    seq = int(seq_text)
    return ChainHead(seq, None if seq == 0 else prev)


def format_anchor(head: ChainHead) -> str:
    return f"{head.seq}:{head.prev.hex() if head.prev else '0' * 64}"
