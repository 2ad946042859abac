"""COSE_Sign1 records and the manifest hash chain."""

from __future__ import annotations

import cbor2
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from common import signed
from common.manifest import SegmentManifest, read_manifest, verify_manifest_chain


def fp(key) -> str:
    from common import keys
    return keys.fingerprint(key.public_key())


def manifest(seq: int, prev: bytes | None, key_fp: str = "00" * 32) -> SegmentManifest:
    return SegmentManifest(
        device_id="cam", device_key=key_fp, officer_id=None, recording_id="r1", seq=seq, index=seq - 1,
        file=f"{seq:08d}.ts.age", size=10, sha256=bytes(32), complete=True, final=False,
        start_utc_us=1, end_utc_us=2, start_mono_us=1, end_mono_us=2, first_pts_us=1, last_pts_us=2,
        frames=1, audio_packets=0, video={"codec": "h264"}, audio=None, announced=True,
        pre_record_s=30, press_pts_us=1, recipients=["age1x"], prev=prev)


def chain(key, n: int) -> list[bytes]:
    records, prev = [], None
    for seq in range(1, n + 1):
        rec = manifest(seq, prev, fp(key)).sign(key)
        records.append(rec)
        prev = signed.digest(rec)
    return records


@pytest.fixture
def key():
    return Ed25519PrivateKey.generate()


def test_record_is_a_tagged_cose_sign1_with_eddsa(key):
    rec = manifest(1, None).sign(key)
    obj = cbor2.loads(rec)
    assert obj.tag == 18
    protected, unprotected, payload, signature = obj.value
    assert cbor2.loads(protected) == {1: -8}
    assert 4 in unprotected and len(signature) == 64
    # RFC 9052 §4.4 Sig_structure, built independently here:
    key.public_key().verify(signature, cbor2.dumps(["Signature1", protected, b"", payload]))
    assert payload == signed.canonical(cbor2.loads(payload))  # canonical encoding


def test_roundtrip(key):
    m = manifest(1, None, fp(key))
    assert read_manifest(m.sign(key), key.public_key()) == m


def test_chain_verifies(key):
    assert [m.seq for m in verify_manifest_chain(chain(key, 5), key.public_key())] == [1, 2, 3, 4, 5]


def test_flipped_byte_is_detected(key):
    records = chain(key, 3)
    bad = bytearray(records[1])
    bad[len(bad) // 2] ^= 1
    records[1] = bytes(bad)
    with pytest.raises((signed.SignatureError, signed.ChainError)):
        verify_manifest_chain(records, key.public_key())


def test_removed_record_is_detected(key):
    records = chain(key, 4)
    del records[2]
    with pytest.raises(signed.ChainError, match="missing or out of order|removed"):
        verify_manifest_chain(records, key.public_key())


def test_reordered_records_are_detected(key):
    records = chain(key, 4)
    records[1], records[2] = records[2], records[1]
    with pytest.raises(signed.ChainError):
        verify_manifest_chain(records, key.public_key())


def test_removed_first_record_is_detected_against_an_anchor(key):
    records = chain(key, 3)
    with pytest.raises(signed.ChainError):
        verify_manifest_chain(records[1:], key.public_key(), prev=None, first_seq=1)


def test_other_key_is_rejected(key):
    with pytest.raises(signed.SignatureError, match="another key"):
        read_manifest(manifest(1, None, fp(key)).sign(key), Ed25519PrivateKey.generate().public_key())


def test_garbage_is_a_clear_error(key):
    with pytest.raises(signed.SignatureError, match="not a|bytes after its end"):
        read_manifest(b"\x00garbage", key.public_key())


def test_manifest_vectors_reproduce_and_verify():
    from pathlib import Path

    from common import keys
    from tests.vectors import make_vectors

    here = Path(make_vectors.__file__).parent
    stored = [(here / f"{i:08d}.manifest").read_bytes() for i in (1, 2)]
    assert make_vectors.manifest_vectors() == stored
    key = keys.load_verify_key(here / "device.pub.pem")
    ms = verify_manifest_chain(stored, key, prev=None, first_seq=1)
    assert [m.seq for m in ms] == [1, 2] and ms[1].final and ms[0].officer_id == "KOD-1"
