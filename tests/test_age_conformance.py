"""age v1 conformance, one case per rule of the specification (C2SP age.md).

Every file here is built by hand from the spec's ABNF, with a correct header MAC, so
that each case tests exactly one rule. Each rejected case is also handed to Debian's
reference ``age`` CLI, which must reject it too (the cases are right, not only ours),
and each accepted case must decrypt there to the same bytes.
A hypothesis property test then mutates valid files: the reader only ever raises
``AgeError``, and ``recover`` only ever returns an authenticated prefix.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import subprocess

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from common import age_format, keys
from common.age_format import CHUNK_SIZE, AgeError, TruncatedError, recover
from tests.conftest import need

IDENTITY = bytes(range(1, 33))
RECIPIENT = X25519PrivateKey.from_private_bytes(IDENTITY).public_key().public_bytes_raw()
FILE_KEY = bytes(range(100, 116))
NONCE = bytes(range(200, 216))
EPHEMERAL = X25519PrivateKey.from_private_bytes(bytes(range(50, 82)))


def b64(data: bytes) -> bytes:
    return base64.b64encode(data).rstrip(b"=")


def x25519_parts(file_key: bytes = FILE_KEY) -> tuple[bytes, bytes]:
    """(share, body) of a correct X25519 stanza for our identity."""
    share = EPHEMERAL.public_key().public_bytes_raw()
    wrap = age_format._hkdf(EPHEMERAL.exchange(X25519PrivateKey.from_private_bytes(IDENTITY).public_key()),
                            share + RECIPIENT, age_format.X25519_LABEL)
    return share, ChaCha20Poly1305(wrap).encrypt(bytes(12), file_key, None)


def stanza(args: bytes, body: bytes) -> bytes:
    enc = b64(body)
    lines = [enc[i:i + 64] for i in range(0, len(enc), 64)]
    if not lines or len(lines[-1]) == 64:
        lines.append(b"")
    return b"-> " + args + b"\n" + b"\n".join(lines) + b"\n"


def good_stanza() -> bytes:
    share, body = x25519_parts()
    return stanza(b"X25519 " + b64(share), body)


def header(stanzas: bytes, *, mac_line: bytes | None = None, version: bytes = b"age-encryption.org/v1") -> bytes:
    text = version + b"\n" + stanzas + b"---"
    if mac_line is None:
        mac = hmac.new(age_format._hkdf(FILE_KEY, b"", b"header"), text, hashlib.sha256).digest()
        mac_line = b" " + b64(mac)
    return text + mac_line + b"\n"


def payload(chunks: list[tuple[bytes, bool]]) -> bytes:
    """The nonce, then each (plaintext, last flag) sealed with its position as counter."""
    aead = ChaCha20Poly1305(age_format._hkdf(FILE_KEY, NONCE, b"payload"))
    out = NONCE
    for i, (plain, last) in enumerate(chunks):
        out += aead.encrypt(i.to_bytes(11, "big") + (b"\x01" if last else b"\x00"), plain, None)
    return out


def normal(data: bytes) -> list[tuple[bytes, bool]]:
    pieces = [data[i:i + CHUNK_SIZE] for i in range(0, len(data), CHUNK_SIZE)] or [b""]
    return [(p, i == len(pieces) - 1) for i, p in enumerate(pieces)]


def file_with(stanzas: bytes | None = None, data: bytes = b"hello", **kw) -> bytes:
    return header(good_stanza() if stanzas is None else stanzas, **kw) + payload(normal(data))


SHARE, BODY = x25519_parts()
A = CHUNK_SIZE * b"a"

# name → (file bytes, expected plaintext or None for "must be rejected")
CASES: dict[str, tuple[bytes, bytes | None]] = {
    # --- accepted
    "valid": (file_with(), b"hello"),
    "unknown stanza before ours is ignored": (file_with(stanza(b"example.com/x a b", b"xyz") + good_stanza()), b"hello"),
    "empty payload: one empty final chunk": (file_with(data=b""), b""),
    "full final chunk": (header(good_stanza()) + payload([(A, True)]), A),
    "two chunks, short final": (header(good_stanza()) + payload([(A, False), (b"b", True)]), A + b"b"),
    "stanza body exactly 64 columns then an empty line": (
        file_with(stanza(b"example.com/x", bytes(48)) + good_stanza()), b"hello"),
    # --- header: version line and structure
    "version v2": (file_with(version=b"age-encryption.org/v2"), None),
    "version line with trailing space": (file_with(version=b"age-encryption.org/v1 "), None),
    "no stanza": (header(b""), None),
    "CRLF line endings": (file_with().replace(b"\n", b"\r\n", 2), None),
    "header truncated": (file_with()[:40], None),
    "line that is neither stanza nor MAC": (file_with(b"-- X25519\n" + good_stanza()), None),
    # --- stanza arguments (arg-line = "-> " argument *(SP argument) LF, argument = 1*VCHAR)
    "arrow without arguments": (file_with(b"->\n\n" + good_stanza()), None),
    "arrow with one space and nothing": (file_with(b"-> \n\n" + good_stanza()), None),
    "double space after arrow": (file_with(stanza(b" example.com/x a", b"") + good_stanza()), None),
    "doubled space between arguments": (file_with(stanza(b"example.com/x  a", b"") + good_stanza()), None),
    "trailing space after arguments": (file_with(stanza(b"example.com/x a ", b"") + good_stanza()), None),
    "argument with a DEL byte": (file_with(stanza(b"example.com/x a\x7f", b"") + good_stanza()), None),
    "argument with a non-ASCII byte": (file_with(stanza(b"example.com/\xc3\xa9", b"") + good_stanza()), None),
    "argument with a tab": (file_with(stanza(b"example.com/x\ta", b"") + good_stanza()), None),
    # --- X25519 stanza rules
    "X25519 with an extra argument": (file_with(stanza(b"X25519 " + b64(SHARE) + b" extra", BODY)), None),
    "X25519 extra argument before the matching stanza": (
        file_with(stanza(b"X25519 " + b64(SHARE) + b" extra", BODY) + good_stanza()), None),
    "X25519 without its share": (file_with(stanza(b"X25519", BODY) + good_stanza()), None),
    "X25519 share non-canonical (unused bits set)": (
        file_with(stanza(b"X25519 " + b64(SHARE)[:-1] + bytes([b64(SHARE)[-1] + 1]), BODY)), None),
    "X25519 share padded": (file_with(stanza(b"X25519 " + b64(SHARE) + b"=", BODY)), None),
    "X25519 share of 31 bytes": (file_with(stanza(b"X25519 " + b64(SHARE[:31]), BODY)), None),
    "X25519 body of 33 bytes": (file_with(stanza(b"X25519 " + b64(SHARE), BODY + b"x")), None),
    "X25519 body of 31 bytes": (file_with(stanza(b"X25519 " + b64(SHARE), BODY[:31])), None),
    "X25519 low-order share (all-zero shared secret)": (file_with(stanza(b"X25519 " + b64(bytes(32)), BODY)), None),
    "only a stanza for another recipient": (
        file_with(stanza(b"X25519 " + b64(X25519PrivateKey.generate().public_key().public_bytes_raw()), BODY)),
        None),
    # the "scrypt alone" rule binds scrypt identities; an X25519 identity ignores the stanza
    "scrypt stanza beside X25519": (file_with(stanza(b"scrypt " + b64(bytes(16)) + b" 10", BODY)
                                              + good_stanza()), b"hello"),
    "scrypt stanza alone": (file_with(stanza(b"scrypt " + b64(bytes(16)) + b" 10", BODY)), None),
    # --- stanza body (canonical base64 wrapped at exactly 64 columns)
    "body with padding": (file_with(b"-> example.com/x\nAAA=\n" + good_stanza()), None),
    "body with a stray space": (file_with(b"-> example.com/x\nAA AA\n" + good_stanza()), None),
    "body of bad length (4n+1 characters)": (file_with(b"-> example.com/x\nAAAAA\n" + good_stanza()), None),
    "body non-canonical": (file_with(b"-> example.com/x\nAB\n" + good_stanza()), None),
    "missing stanza body line": (file_with(b"-> example.com/x\n" + good_stanza()), None),
    "missing body line of the last stanza": (header(b"-> X25519 " + b64(SHARE) + b"\n"), None),
    "missing final short body line": (
        file_with(b"-> example.com/x\n" + b"A" * 64 + b"\n" + good_stanza()), None),
    "body line of 65 columns": (file_with(b"-> example.com/x\n" + b"A" * 65 + b"\n\n" + good_stanza()), None),
    # --- header MAC line (end = "--- " 43base64char LF)
    "MAC wrong": (file_with(mac_line=b" " + b64(bytes(32))), None),
    "MAC line with two spaces": (file_with(mac_line=b"  " + b64(bytes(32))), None),
    "MAC line with trailing space": (file_with(mac_line=b" " + b64(bytes(32)) + b" "), None),
    "MAC line without space": (file_with(mac_line=b64(bytes(32))), None),
    "MAC of 42 characters": (file_with(mac_line=b" " + b64(bytes(32))[:42]), None),
    "MAC with a flipped character (non-canonical last char)": (
        file_with(mac_line=b" " + b64(bytes(32))[:42] + b"B"), None),
    # --- payload: last-chunk rules
    "empty final chunk after a full chunk": (header(good_stanza()) + payload([(A, False), (b"", True)]), None),
    "no final chunk": (header(good_stanza()) + payload([(A, False)]), None),
    "trailing data after the final chunk": (header(good_stanza()) + payload(normal(b"hi")) + b"x", None),
    "a second chunk after a full final chunk": (header(good_stanza()) + payload([(A, True), (b"b", True)]), None),
    "final flag missing on a short last chunk": (header(good_stanza()) + payload([(b"hi", False)]), None),
    "final flag on a non-last chunk": (header(good_stanza()) + payload([(A, True), (A, False), (b"c", True)]),
                                       None),
    "payload nonce cut short": (header(good_stanza()) + NONCE[:10], None),
    "no payload at all": (header(good_stanza()), None),
    "final chunk shorter than its tag": (header(good_stanza()) + payload(normal(b"hi"))[:16 + 10], None),
    "chunks swapped": (header(good_stanza()) + (lambda p: p[:16] + p[16 + 65552:16 + 2 * 65552]
                                                + p[16:16 + 65552] + p[16 + 2 * 65552:])(
        payload([(A, False), (A, False), (b"c", True)])), None),
}


@pytest.fixture(scope="module")
def age_cli_identity(tmp_path_factory):
    path = tmp_path_factory.mktemp("conformance") / "identity.txt"
    path.write_text(keys.format_identity(IDENTITY) + "\n")
    return path


@pytest.mark.parametrize("name", list(CASES))
def test_rule(name, age_cli_identity, tmp_path):
    data, expected = CASES[name]
    f = tmp_path / "case.age"
    f.write_bytes(data)
    cli = subprocess.run([need("age"), "-d", "-i", str(age_cli_identity), str(f)], capture_output=True)
    if expected is None:
        with pytest.raises(AgeError):
            age_format.decrypt(data, IDENTITY)
        assert cli.returncode != 0, f"reference age accepted {name!r}: the case is wrong"
    else:
        assert age_format.decrypt(data, IDENTITY) == expected
        assert cli.returncode == 0 and cli.stdout == expected, cli.stderr


def test_missing_final_chunk_is_a_truncation_with_its_prefix():
    data = header(good_stanza()) + payload([(A, False), (A, False)])
    with pytest.raises(TruncatedError):
        age_format.decrypt(data, IDENTITY)
    rec = recover(data, IDENTITY)
    assert (rec.plaintext, rec.complete, rec.chunks) == (A + A, False, 2)


def test_header_is_bounded():
    """A 5 MB stanza body is refused at once (the header limit), not parsed for seconds."""
    big = b"-> example.com/x\n" + (b"A" * 64 + b"\n") * 80_000 + b"\n"
    with pytest.raises(AgeError, match="header longer than"):
        age_format.parse_header(b"age-encryption.org/v1\n" + big + good_stanza() + b"--- x\n")


def test_long_header_under_the_bound_parses():
    body = (b"A" * 64 + b"\n") * 10_000 + b"\n"
    data = file_with(b"-> example.com/x\n" + body + good_stanza())
    assert age_format.decrypt(data, IDENTITY) == b"hello"


def test_stock_age_writes_the_authenticated_prefix_of_a_truncated_file(age_cli_identity, tmp_path):
    """What FORMAT.md says of the stock CLI: every authenticated chunk reaches stdout, then exit 1."""
    f = tmp_path / "cut.age"
    f.write_bytes(header(good_stanza()) + payload([(A, False), (b"b" * CHUNK_SIZE, False)]))
    cli = subprocess.run([need("age"), "-d", "-i", str(age_cli_identity), str(f)], capture_output=True)
    assert cli.returncode == 1 and b"unexpected EOF" in cli.stderr
    assert cli.stdout == A + b"b" * CHUNK_SIZE


# ----------------------------------------------------------------------------- property

PLAINTEXT = os.urandom(2 * CHUNK_SIZE + 777)
VALID = header(good_stanza()) + payload(normal(PLAINTEXT))


@st.composite
def mutations(draw):
    data = bytearray(VALID)
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "truncate", "insert", "delete", "header_flip"]))
        if not data:
            break
        if kind == "header_flip":
            i = draw(st.integers(0, min(len(data), 200) - 1))
            data[i] ^= 1 << draw(st.integers(0, 7))
        elif kind == "flip":
            i = draw(st.integers(0, len(data) - 1))
            data[i] ^= 1 << draw(st.integers(0, 7))
        elif kind == "truncate":
            del data[draw(st.integers(0, len(data) - 1)):]
        elif kind == "insert":
            i = draw(st.integers(0, len(data)))
            data[i:i] = draw(st.binary(min_size=1, max_size=20))
        else:
            i = draw(st.integers(0, len(data) - 1))
            del data[i:i + draw(st.integers(1, 20))]
    return bytes(data)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutations())
def test_mutated_files_only_raise_age_error_and_recover_a_prefix(data):
    try:
        rec = recover(data, IDENTITY)
    except AgeError:
        return
    assert PLAINTEXT.startswith(rec.plaintext)
    if rec.complete:
        assert rec.plaintext == PLAINTEXT and data == VALID
