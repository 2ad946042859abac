"""Signed, hash-chained records: COSE_Sign1 (RFC 9052) with EdDSA over canonical CBOR.

Used for segment manifests and for the device event log. Each record is one
COSE_Sign1 structure; its body carries ``prev``, the SHA-256 of the previous
record's exact bytes, so removing, inserting or reordering records breaks the
chain. Written by hand on top of cbor2 because the structure is four fields and
the dependency (pycose) is unmaintained; tests check it against RFC 9052's layout.
"""

from __future__ import annotations

import hashlib
import io
from typing import Any, Iterable

import cbor2
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

COSE_SIGN1_TAG = 18
ALG_EDDSA = -8
HDR_ALG = 1
HDR_KID = 4
_PROTECTED = cbor2.dumps({HDR_ALG: ALG_EDDSA}, canonical=True)


class SignatureError(ValueError):
    """A record is malformed or its signature does not verify."""


class ChainError(ValueError):
    """Records verify one by one, but do not form an unbroken chain."""


def canonical(obj: Any) -> bytes:
    """Deterministic CBOR (RFC 8949 §4.2): the bytes that get signed and hashed."""
    return cbor2.dumps(obj, canonical=True)


def _sig_structure(payload: bytes) -> bytes:
    return canonical(["Signature1", _PROTECTED, b"", payload])


def sign(body: dict[str, Any], key: Ed25519PrivateKey, kid: bytes) -> bytes:
    """Encode ``body`` canonically and wrap it in a tagged COSE_Sign1."""
    payload = canonical(body)
    signature = key.sign(_sig_structure(payload))
    return cbor2.dumps(cbor2.CBORTag(COSE_SIGN1_TAG, [_PROTECTED, {HDR_KID: kid}, payload, signature]),
                       canonical=True)


def open_signed(data: bytes, key: Ed25519PublicKey | None) -> dict[str, Any]:
    """Verify (unless ``key`` is None) and decode a COSE_Sign1 record."""
    try:
        obj = cbor2.loads(data)
    except Exception as exc:  # cbor2 raises several types for garbage
        raise SignatureError(f"not a CBOR record: {exc}") from exc
    if not (isinstance(obj, cbor2.CBORTag) and obj.tag == COSE_SIGN1_TAG
            and isinstance(obj.value, (list, tuple)) and len(obj.value) == 4):
        raise SignatureError("not a COSE_Sign1 record (tag 18, four fields)")
    protected, _unprotected, payload, signature = obj.value
    if protected != _PROTECTED:
        raise SignatureError("unsupported protected header (only EdDSA is accepted)")
    if key is not None:
        try:
            key.verify(signature, _sig_structure(payload))
        except InvalidSignature:
            raise SignatureError("signature does not verify: record altered or signed by another key")
    body = cbor2.loads(payload)
    if not isinstance(body, dict):
        raise SignatureError("record body is not a map")
    return body


def digest(record: bytes) -> bytes:
    return hashlib.sha256(record).digest()


def verify_chain(records: Iterable[bytes], key: Ed25519PublicKey, *,
                 prev: bytes | None = None, first_seq: int | None = None,
                 seq_field: str = "seq") -> list[dict[str, Any]]:
    """Verify every record and the links between them; return the bodies in order.

    ``prev``/``first_seq`` anchor the start (e.g. the head the dock saw last time);
    without them the first record's own ``prev`` is taken on trust.
    """
    bodies: list[dict[str, Any]] = []
    expected_prev, expected_seq = prev, first_seq
    for i, record in enumerate(records):
        body = open_signed(record, key)
        seq = body.get(seq_field)
        if expected_seq is not None and seq != expected_seq:
            raise ChainError(f"record {i}: sequence {seq}, expected {expected_seq} "
                             "(a record is missing or out of order)")
        if i > 0 or prev is not None:
            if body.get("prev") != expected_prev:
                raise ChainError(f"record {i} (seq {seq}): prev hash does not match the record before "
                                 "(a record was removed, inserted or reordered)")
        bodies.append(body)
        expected_prev, expected_seq = digest(record), (seq + 1 if isinstance(seq, int) else None)
    return bodies


def split_sequence(data: bytes) -> tuple[list[bytes], int]:
    """Split a CBOR sequence (RFC 8742) into each item's exact bytes.

    Returns ``(items, torn)``: ``torn`` is the number of trailing bytes that do not
    form a complete item (a record cut by a power cut), 0 for a clean file.
    """
    fp = io.BytesIO(data)
    decoder = cbor2.CBORDecoder(fp)
    items: list[bytes] = []
    start = 0
    while start < len(data):
        try:
            decoder.decode()
        except Exception:  # cbor2 raises several types for a cut item
            return items, len(data) - start
        end = fp.tell()
        items.append(data[start:end])
        start = end
    return items, 0
