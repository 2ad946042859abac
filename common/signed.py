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
from collections.abc import Mapping
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


def loads_exact(data: bytes, what: str = "record") -> Any:
    """Decode exactly one CBOR item that spans all of ``data`` (no trailing bytes)."""
    fp = io.BytesIO(data)
    try:
        obj = cbor2.CBORDecoder(fp).decode()
    except Exception as exc:  # cbor2 raises several types for garbage
        raise SignatureError(f"{what} is not valid CBOR: {exc}") from None
    if fp.tell() != len(data):
        raise SignatureError(f"{what} has {len(data) - fp.tell()} bytes after its end (appended data)")
    return obj


def open_signed(data: bytes, key: Ed25519PublicKey | None) -> dict[str, Any]:
    """Verify (unless ``key`` is None) and decode a COSE_Sign1 record, strictly.

    Strict means: the record is exactly the deterministic encoding this module writes
    (so not one byte of it, signed or not, can change unnoticed), the unprotected
    header holds only the ``kid``, which is the signer's key fingerprint, and the
    body is one CBOR map with text keys.
    """
    obj = loads_exact(data)
    if not (isinstance(obj, cbor2.CBORTag) and obj.tag == COSE_SIGN1_TAG
            and isinstance(obj.value, (list, tuple)) and len(obj.value) == 4):
        raise SignatureError("not a COSE_Sign1 record (tag 18, four fields)")
    protected, unprotected, payload, signature = obj.value
    if protected != _PROTECTED:
        raise SignatureError("unsupported protected header (only EdDSA is accepted)")
    if not (isinstance(unprotected, Mapping) and set(unprotected) == {HDR_KID}
            and isinstance(unprotected[HDR_KID], bytes) and len(unprotected[HDR_KID]) == 32):
        raise SignatureError("unexpected unprotected header (only a 32-byte kid is allowed)")
    if not isinstance(payload, bytes) or not isinstance(signature, bytes) or len(signature) != 64:
        raise SignatureError("malformed COSE_Sign1 payload or signature")
    if cbor2.dumps(obj, canonical=True) != data:
        raise SignatureError("record is not in deterministic CBOR encoding (re-encoded or altered)")
    if key is not None:
        if unprotected[HDR_KID] != hashlib.sha256(key.public_bytes_raw()).digest():
            raise SignatureError("signed by another key (kid does not match the device key)")
        try:
            key.verify(signature, _sig_structure(payload))
        except InvalidSignature:
            raise SignatureError("signature does not verify: record altered or signed by another key") from None
    body = loads_exact(payload, "record body")
    if not isinstance(body, dict) or not all(isinstance(k, str) for k in body):
        raise SignatureError("record body is not a map with text keys")
    return body


def kid_of(data: bytes) -> bytes | None:
    """The ``kid`` of a record (who claims to have signed it), None if unreadable."""
    try:
        obj = loads_exact(data)
        return bytes(obj.value[1][HDR_KID])
    except Exception:
        return None


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
        if isinstance(seq, bool) or not isinstance(seq, int):
            raise ChainError(f"record {i}: {seq_field} is not an integer")
        if expected_seq is not None and seq != expected_seq:
            raise ChainError(f"record {i}: sequence {seq}, expected {expected_seq} "
                             "(a record is missing or out of order)")
        if i > 0 or prev is not None:
            if body.get("prev") != expected_prev:
                raise ChainError(f"record {i} (seq {seq}): prev hash does not match the record before "
                                 "(a record was removed, inserted or reordered)")
        bodies.append(body)
        expected_prev, expected_seq = digest(record), seq + 1
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
