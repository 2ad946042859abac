"""Regenerate the age test vectors: ``python tests/vectors/make_vectors.py``.

Every random input (identity, file key, payload nonce, ephemeral key) is fixed, so
our writer must reproduce these files byte for byte; Debian's ``age`` must decrypt
them (tests/test_age_format.py). ``*.truncated.age`` lacks its final chunk.
``0000000N.manifest`` are two chained segment manifests signed by a fixed Ed25519 key
(``device.pub.pem``); Ed25519 signatures are deterministic, so they reproduce too.
"""

import hashlib
import io
import json
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from common import keys
from common.age_format import AgeStreamWriter

HERE = Path(__file__).parent
IDENTITY = bytes(range(1, 33))
FILE_KEY = bytes(range(100, 116))
NONCE = bytes(range(200, 216))
EPHEMERAL = bytes(range(50, 82))


def plaintext(size: int) -> bytes:
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(counter.to_bytes(8, "big")).digest()
        counter += 1
    return bytes(out[:size])


DEVICE_SEED = bytes(range(150, 182))  # Ed25519 private key seed of the vector device


def manifest_vectors() -> list[bytes]:
    """Two chained segment manifests signed by the vector device (Ed25519 is deterministic)."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from common import signed
    from common.manifest import SegmentManifest

    key = Ed25519PrivateKey.from_private_bytes(DEVICE_SEED)
    records: list[bytes] = []
    prev = None
    for seq in (1, 2):
        m = SegmentManifest(
            device_id="vector-cam", device_key=keys.fingerprint(key.public_key()), officer_id="KOD-1",
            recording_id="vector-cam-20260101T000000Z-00000001", seq=seq, index=seq - 1,
            file=f"{seq:08d}.ts.age", size=1000 * seq, sha256=hashlib.sha256(bytes([seq])).digest(),
            complete=True, final=seq == 2, start_utc_us=1_767_225_600_000_000 + (seq - 1) * 10_000_000,
            end_utc_us=1_767_225_600_000_000 + seq * 10_000_000, start_mono_us=(seq - 1) * 10_000_000,
            end_mono_us=seq * 10_000_000, first_pts_us=(seq - 1) * 10_000_000,
            last_pts_us=seq * 10_000_000 - 33_333, frames=300, audio_packets=0,
            video={"codec": "h264", "width": 1280, "height": 720, "fps": 30, "bitrate": 4_000_000,
                   "gop_frames": 30},
            audio=None, announced=True, pre_record_s=30, press_pts_us=5_000_000,
            recipients=[keys.recipient_of(IDENTITY)], prev=prev)
        records.append(m.sign(key))
        prev = signed.digest(records[-1])
    return records


CASES = {"empty": 0, "short": 100, "one-chunk": 65536, "two-chunks-plus-one": 2 * 65536 + 1}


def encrypt(size: int) -> bytes:
    out = io.BytesIO()
    recipient = X25519PrivateKey.from_private_bytes(IDENTITY).public_key().public_bytes_raw()
    w = AgeStreamWriter(out, [recipient], fsync=False, file_key=FILE_KEY, nonce=NONCE,
                        ephemeral_keys=[X25519PrivateKey.from_private_bytes(EPHEMERAL)])
    w.write(plaintext(size))
    w.close()
    return out.getvalue()


def main() -> None:
    meta = {"identity": keys.format_identity(IDENTITY), "recipient": keys.recipient_of(IDENTITY),
            "plaintext": "SHA-256 of 8-byte big-endian counters 0,1,2… concatenated, cut to size",
            "cases": {}}
    for name, size in CASES.items():
        data = encrypt(size)
        (HERE / f"{name}.age").write_bytes(data)
        meta["cases"][name] = {"size": size, "sha256": hashlib.sha256(plaintext(size)).hexdigest()}
    full = encrypt(2 * 65536 + 1)
    # Header + nonce + two full chunks, no final chunk: what a power cut leaves.
    (HERE / "two-chunks-plus-one.truncated.age").write_bytes(full[: len(full) - (1 + 16)])
    (HERE / "identity.txt").write_text(meta["identity"] + "\n")
    for i, record in enumerate(manifest_vectors(), 1):
        (HERE / f"{i:08d}.manifest").write_bytes(record)
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    pub = Ed25519PrivateKey.from_private_bytes(DEVICE_SEED).public_key()
    (HERE / "device.pub.pem").write_text(keys.public_key_pem(pub))
    (HERE / "vectors.json").write_text(json.dumps(meta, indent=2) + "\n")


if __name__ == "__main__":
    main()
