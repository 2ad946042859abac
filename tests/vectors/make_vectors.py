"""Regenerate the age test vectors: ``python tests/vectors/make_vectors.py``.

Every random input (identity, file key, payload nonce, ephemeral key) is fixed, so
our writer must reproduce these files byte for byte; Debian's ``age`` must decrypt
them (tests/test_age_format.py). ``*.truncated.age`` lacks its final chunk.
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
    (HERE / "vectors.json").write_text(json.dumps(meta, indent=2) + "\n")


if __name__ == "__main__":
    main()
