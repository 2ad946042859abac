"""Segment manifest: what the camera asserts about one encrypted segment file.

One manifest per segment, a COSE_Sign1 record (see :mod:`common.signed`), named
``<seq>.manifest`` beside ``<seq>.ts.age``. Field by field in docs/FORMAT.md.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from common import signed

MANIFEST_VERSION = 1


@dataclass(frozen=True)
class SegmentManifest:
    device_id: str
    device_key: str                  # hex SHA-256 of the signer's raw Ed25519 public key
    officer_id: str | None
    recording_id: str
    seq: int                         # device-wide, +1 per segment, never reused
    index: int                       # position within the recording, from 0
    file: str                        # file name of the encrypted segment
    size: int                        # bytes of the encrypted file
    sha256: bytes                    # SHA-256 of the encrypted file
    complete: bool                   # False: sealed after an interruption (power cut)
    final: bool                      # last segment of its recording
    start_utc_us: int
    end_utc_us: int | None
    start_mono_us: int
    end_mono_us: int | None
    first_pts_us: int
    last_pts_us: int | None
    frames: int | None
    audio_packets: int | None
    video: dict[str, Any]
    audio: dict[str, Any] | None
    announced: bool
    pre_record_s: float              # configured pre-record window
    press_pts_us: int | None         # pts of the record press (pre-record ends here)
    recipients: list[str]
    prev: bytes | None               # SHA-256 of the previous manifest file, None only for seq 1
    container: str = "mpegts"
    encryption: str = "age-v1-x25519"
    type: str = "segment"
    v: int = MANIFEST_VERSION

    def to_body(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_body(cls, body: dict[str, Any]) -> "SegmentManifest":
        if body.get("type") != "segment" or body.get("v") != MANIFEST_VERSION:
            raise signed.SignatureError(
                f"not a v{MANIFEST_VERSION} segment manifest (type={body.get('type')!r}, v={body.get('v')!r})")
        names = {f.name for f in fields(cls)}
        missing = names - body.keys()
        if missing:
            raise signed.SignatureError(f"manifest lacks fields: {sorted(missing)}")
        values = {k: body[k] for k in names}
        values["recipients"] = list(values["recipients"])  # cbor2 may decode arrays as tuples
        return cls(**values)

    def sign(self, key: Ed25519PrivateKey) -> bytes:
        return signed.sign(self.to_body(), key, bytes.fromhex(self.device_key))

    def to_json(self) -> dict[str, Any]:
        return {k: (v.hex() if isinstance(v, bytes) else v) for k, v in self.to_body().items()}


def read_manifest(data: bytes, key: Ed25519PublicKey | None) -> SegmentManifest:
    return SegmentManifest.from_body(signed.open_signed(data, key))


def verify_manifest_chain(records: list[bytes], key: Ed25519PublicKey, **anchor: Any) -> list[SegmentManifest]:
    return [SegmentManifest.from_body(b) for b in signed.verify_chain(records, key, **anchor)]
