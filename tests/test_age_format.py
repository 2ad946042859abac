"""Our hand-written age v1 writer/reader against Debian's age CLI, pyrage and fixed vectors."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
from pathlib import Path

import pyrage
import pytest

from common import age_format, keys
from common.age_format import CHUNK_SIZE, AgeStreamWriter, recover
from tests.conftest import need
from tests.vectors import make_vectors

VECTORS = Path(__file__).parent / "vectors"
SIZES = [0, 1, 100, CHUNK_SIZE - 1, CHUNK_SIZE, CHUNK_SIZE + 1, 3 * CHUNK_SIZE, 3 * CHUNK_SIZE + 12345]


def encrypt(data: bytes, recipient: str, pieces: int = 7) -> bytes:
    out = io.BytesIO()
    w = AgeStreamWriter(out, [keys.parse_recipient(recipient)], fsync=False)
    step = max(1, len(data) // pieces)
    for i in range(0, len(data), step):
        w.write(data[i:i + step])
    w.close()
    return out.getvalue()


@pytest.mark.parametrize("size", SIZES)
def test_roundtrip_with_pyrage_and_ours(size, authority):
    _, secret, recipient = authority
    data = os.urandom(size)
    blob = encrypt(data, recipient)
    assert age_format.decrypt(blob, secret) == data
    assert pyrage.decrypt(blob, [pyrage.x25519.Identity.from_str(keys.format_identity(secret))]) == data


@pytest.mark.parametrize("size", [0, CHUNK_SIZE, 2 * CHUNK_SIZE + 7])
def test_debian_age_cli_decrypts_ours(size, authority, tmp_path):
    path, _, recipient = authority
    data = os.urandom(size)
    f = tmp_path / "x.age"
    f.write_bytes(encrypt(data, recipient))
    out = subprocess.run([need("age"), "-d", "-i", str(path), str(f)], capture_output=True, check=True)
    assert out.stdout == data


def test_we_decrypt_age_cli_and_pyrage_output(authority, tmp_path):
    path, secret, recipient = authority
    data = os.urandom(2 * CHUNK_SIZE + 99)
    cli = subprocess.run([need("age"), "-r", recipient], input=data, capture_output=True, check=True).stdout
    assert age_format.decrypt(cli, secret) == data
    rage = pyrage.encrypt(data, [pyrage.x25519.Recipient.from_str(recipient)])
    assert age_format.decrypt(rage, secret) == data


@pytest.mark.parametrize("name", list(make_vectors.CASES))
def test_vectors_reproduce_byte_for_byte_and_open_in_age(name):
    expected = (VECTORS / f"{name}.age").read_bytes()
    assert make_vectors.encrypt(make_vectors.CASES[name]) == expected
    out = subprocess.run([need("age"), "-d", "-i", str(VECTORS / "identity.txt"), str(VECTORS / f"{name}.age")],
                         capture_output=True, check=True).stdout
    meta = json.loads((VECTORS / "vectors.json").read_text())
    assert hashlib.sha256(out).hexdigest() == meta["cases"][name]["sha256"]


def test_truncated_vector_recovers_complete_chunks_and_says_so():
    identity = keys.load_identity(VECTORS / "identity.txt")
    blob = (VECTORS / "two-chunks-plus-one.truncated.age").read_bytes()
    result = recover(blob, identity)
    assert not result.complete and result.chunks == 2
    assert result.reason.startswith("truncated")
    assert result.plaintext == make_vectors.plaintext(2 * CHUNK_SIZE)
    with pytest.raises(age_format.TruncatedError, match="131072 bytes authenticated"):
        age_format.decrypt(blob, identity)
    # Stock tools refuse the whole file: this is why recovery exists.
    cli = subprocess.run([need("age"), "-d", "-i", str(VECTORS / "identity.txt")], input=blob, capture_output=True)
    assert cli.returncode != 0


@pytest.mark.parametrize("cut", [1, 16, 17, CHUNK_SIZE + 16, CHUNK_SIZE + 100])
def test_any_cut_recovers_every_complete_chunk(authority, cut):
    _, secret, recipient = authority
    data = os.urandom(3 * CHUNK_SIZE + 500)
    blob = encrypt(data, recipient)
    cut_blob = blob[:-cut]
    result = recover(cut_blob, secret)
    assert not result.complete
    header_len = len(blob) - (3 * (CHUNK_SIZE + 16) + 500 + 16) - 16
    complete_chunks = (len(cut_blob) - header_len - 16) // (CHUNK_SIZE + 16)
    assert result.chunks == min(complete_chunks, 3)
    assert result.plaintext == data[: result.chunks * CHUNK_SIZE]


def test_flipped_payload_byte_is_reported_with_the_good_prefix(authority):
    _, secret, recipient = authority
    data = os.urandom(3 * CHUNK_SIZE)
    blob = bytearray(encrypt(data, recipient))
    blob[-100] ^= 1  # inside the last chunk
    result = recover(bytes(blob), secret)
    assert not result.complete and "does not authenticate" in result.reason
    assert result.plaintext == data[:2 * CHUNK_SIZE]


def test_header_tamper_and_wrong_key_are_errors(authority):
    _, secret, recipient = authority
    blob = bytearray(encrypt(b"evidence", recipient))
    blob[30] ^= 0x01  # inside the X25519 stanza
    with pytest.raises(age_format.AgeError):
        recover(bytes(blob), secret)
    with pytest.raises(age_format.AgeError, match="no identity matched"):
        recover(encrypt(b"evidence", recipient), os.urandom(32))
    with pytest.raises(age_format.AgeError):
        recover(b"not an age file\n", secret)


def test_complete_chunks_reach_the_file_before_close(authority, tmp_path):
    """The writer must not hold finished chunks back: that is the power-cut guarantee."""
    _, secret, recipient = authority
    path = tmp_path / "s.age"
    with open(path, "xb", buffering=0) as f:
        w = AgeStreamWriter(f, [keys.parse_recipient(recipient)])
        header = path.stat().st_size
        w.write(b"a" * CHUNK_SIZE)
        assert path.stat().st_size == header  # could still be the last chunk
        w.write(b"b")
        assert path.stat().st_size == header + CHUNK_SIZE + 16
        on_disk = recover(path.read_bytes(), secret)
        assert on_disk.plaintext == b"a" * CHUNK_SIZE and not on_disk.complete
        w.close()
    assert age_format.decrypt(path.read_bytes(), secret) == b"a" * CHUNK_SIZE + b"b"
