"""age v1 (https://age-encryption.org/v1) for X25519 recipients: writer and reader.

Why hand-written: the camera must push every complete 64 KiB payload chunk to disk
as soon as it exists and fsync it on a schedule it controls, so that a power cut
loses at most about a second of footage. pyrage's ``encrypt_io`` is pull-based and
buffers internally; the Go CLI is a separate process behind a pipe. Neither lets
the writer decide when ciphertext is durable. The format is small and fully
specified (C2SP age.md), so we implement exactly what we need:

* :class:`AgeStreamWriter` — encrypts to one or more X25519 recipients, writes each
  chunk as soon as it is known not to be the last one, exposes :meth:`sync`.
* :func:`decrypt` / :func:`recover` — the reader; ``recover`` returns every
  authenticated complete chunk of a file that lacks its final chunk and says so.

Interop is proven in tests against Debian's ``age`` CLI and against pyrage, and
fixed test vectors live in ``tests/vectors/``.

Only what the device never needs is left out: scrypt and plugin recipients,
armor. Identities in this module are raw 32-byte X25519 scalars; the text forms
(``age1…`` / ``AGE-SECRET-KEY-1…``) are handled by :mod:`common.keys`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
from dataclasses import dataclass
from typing import BinaryIO, Callable, Iterable, Sequence

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.exceptions import InvalidTag

VERSION_LINE = b"age-encryption.org/v1"
X25519_LABEL = b"age-encryption.org/v1/X25519"
CHUNK_SIZE = 64 * 1024
TAG_SIZE = 16
ENCRYPTED_CHUNK_SIZE = CHUNK_SIZE + TAG_SIZE
NONCE_SIZE = 16
FILE_KEY_SIZE = 16
_ZERO_NONCE = bytes(12)


class AgeError(Exception):
    """The file is not a valid age v1 file for the given identity."""


class TruncatedError(AgeError):
    """The payload ends without a final chunk (e.g. power cut while writing)."""


def _b64(data: bytes) -> bytes:
    return base64.b64encode(data).rstrip(b"=")


def _hkdf(ikm: bytes, salt: bytes, info: bytes, length: int = 32) -> bytes:
    return HKDF(algorithm=SHA256(), length=length, salt=salt, info=info).derive(ikm)


def _chunk_nonce(counter: int, last: bool) -> bytes:
    if counter >= 1 << 88:
        raise AgeError("payload too long: chunk counter overflow")
    return counter.to_bytes(11, "big") + (b"\x01" if last else b"\x00")


def _wrap_body(body: bytes) -> bytes:
    """Stanza body: base64 without padding in 64-column lines, last line short."""
    encoded = _b64(body)
    lines = [encoded[i : i + 64] for i in range(0, len(encoded), 64)]
    if not lines or len(lines[-1]) == 64:
        lines.append(b"")
    return b"\n".join(lines) + b"\n"


def _x25519_stanza(file_key: bytes, recipient: bytes, ephemeral: X25519PrivateKey) -> bytes:
    share = ephemeral.public_key().public_bytes_raw()
    shared = ephemeral.exchange(X25519PublicKey.from_public_bytes(recipient))
    wrap_key = _hkdf(shared, share + recipient, X25519_LABEL)
    body = ChaCha20Poly1305(wrap_key).encrypt(_ZERO_NONCE, file_key, None)
    return b"-> X25519 " + _b64(share) + b"\n" + _wrap_body(body)


def encode_header(file_key: bytes, recipients: Iterable[bytes],
                  ephemeral_keys: Iterable[X25519PrivateKey] | None = None) -> bytes:
    """Header up to and including the MAC line. ``ephemeral_keys`` only for test vectors."""
    recipients = list(recipients)
    if not recipients:
        raise ValueError("at least one recipient is required")
    eph = list(ephemeral_keys) if ephemeral_keys is not None else [
        X25519PrivateKey.generate() for _ in recipients]
    header = VERSION_LINE + b"\n"
    for recipient, key in zip(recipients, eph, strict=True):
        header += _x25519_stanza(file_key, recipient, key)
    header += b"---"
    mac = hmac.new(_hkdf(file_key, b"", b"header"), header, hashlib.sha256).digest()
    return header + b" " + _b64(mac) + b"\n"


class AgeStreamWriter:
    """Encrypt a stream into age v1, chunk by chunk, onto an open binary file.

    A 64 KiB chunk is encrypted and written the moment the byte after it arrives
    (only then is it known not to be the last chunk). :meth:`sync` fsyncs what was
    written; the caller decides when (the segment writer does it at least once per
    second of footage). ``on_ciphertext`` sees every ciphertext byte in order, so a
    SHA-256 of the file needs no second read.

    >>> import io
    >>> from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
    >>> identity = X25519PrivateKey.generate()
    >>> out = io.BytesIO()
    >>> w = AgeStreamWriter(out, [identity.public_key().public_bytes_raw()], fsync=False)
    >>> w.write(b"hello"); w.close()
    5
    >>> decrypt(out.getvalue(), identity.private_bytes_raw())
    b'hello'
    """

    def __init__(self, fileobj: BinaryIO, recipients: Iterable[bytes], *,
                 fsync: bool = True,
                 on_ciphertext: Callable[[bytes], None] | None = None,
                 file_key: bytes | None = None, nonce: bytes | None = None,
                 ephemeral_keys: Iterable[X25519PrivateKey] | None = None) -> None:
        self._file = fileobj
        self._fsync = fsync
        self._on_ciphertext = on_ciphertext
        file_key = file_key if file_key is not None else os.urandom(FILE_KEY_SIZE)
        nonce = nonce if nonce is not None else os.urandom(NONCE_SIZE)
        self._aead = ChaCha20Poly1305(_hkdf(file_key, nonce, b"payload"))
        self._buf = bytearray()
        self._counter = 0
        self._closed = False
        self.plaintext_bytes = 0
        self.ciphertext_bytes = 0
        self._emit(encode_header(file_key, recipients, ephemeral_keys) + nonce)

    @property
    def buffered(self) -> int:
        """Plaintext bytes not yet written as ciphertext (at most one chunk)."""
        return len(self._buf)

    @property
    def chunks_written(self) -> int:
        return self._counter

    def _emit(self, data: bytes) -> None:
        self._file.write(data)
        self.ciphertext_bytes += len(data)
        if self._on_ciphertext is not None:
            self._on_ciphertext(data)

    def _seal(self, plaintext: bytes | bytearray | memoryview, last: bool) -> None:
        self._emit(self._aead.encrypt(_chunk_nonce(self._counter, last), plaintext, None))
        self._counter += 1

    def write(self, data: bytes | bytearray | memoryview) -> int:
        if self._closed:
            raise ValueError("write to a closed AgeStreamWriter")
        self._buf += data
        self.plaintext_bytes += len(data)
        if len(self._buf) > CHUNK_SIZE:
            # Strictly more than one chunk buffered: all full chunks but the
            # newest partial-or-full one are certainly not last.
            n_full = (len(self._buf) - 1) // CHUNK_SIZE
            view = memoryview(self._buf)
            for i in range(n_full):
                self._seal(view[i * CHUNK_SIZE:(i + 1) * CHUNK_SIZE], last=False)
            view.release()
            del self._buf[: n_full * CHUNK_SIZE]
            self._file.flush()
        return len(data)

    def sync(self) -> None:
        """Make every chunk written so far durable (flush + fsync)."""
        self._file.flush()
        if self._fsync:
            os.fsync(self._file.fileno())

    def close(self) -> None:
        """Write the final chunk and fsync. The underlying file stays open."""
        if self._closed:
            return
        self._seal(self._buf, last=True)
        self._buf.clear()
        self._closed = True
        self.sync()


# ----------------------------------------------------------------------------- reading
#
# The reader follows C2SP age.md to the letter (tests/test_age_conformance.py has one
# case per rule): the ABNF of the header, canonical unpadded base64, the X25519 stanza
# rules (exactly two arguments, a 32-byte share, a 32-byte body, no all-zero shared
# secret; other stanza types, scrypt included, are ignored as the reference does),
# and the payload's last-chunk rules.
# Every failure is an AgeError; nothing from base64, cryptography or Python leaks out.
# Parsing is one linear pass and the header is bounded (MAX_HEADER_BYTES).

MAX_HEADER_BYTES = 1 << 20   # far above any real header; bounds work on hostile input
_B64_CHARS = re.compile(rb"[A-Za-z0-9+/]*")
_ARGUMENT = re.compile(rb"[\x21-\x7e]+")     # 1*VCHAR
_MAC_LINE = re.compile(rb"--- ([A-Za-z0-9+/]{43})")


@dataclass(frozen=True)
class Recovered:
    """What could be authenticated from an age file."""
    plaintext: bytes
    chunks: int
    complete: bool          # True iff a valid final chunk ends the file
    reason: str = ""        # why not complete


@dataclass(frozen=True)
class Stanza:
    args: list[bytes]
    body: bytes


@dataclass(frozen=True)
class Header:
    stanzas: list[Stanza]
    mac_input: bytes        # the header up to and including "---"
    mac: bytes
    payload_offset: int


def _unb64(text: bytes, what: str) -> bytes:
    """Canonical unpadded base64 (RFC 4648 §3.5), as age requires; AgeError otherwise."""
    if not _B64_CHARS.fullmatch(text) or len(text) % 4 == 1:
        raise AgeError(f"{what}: not unpadded base64")
    try:
        data = base64.b64decode(text + b"=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise AgeError(f"{what}: not base64 ({exc})") from None
    if _b64(data) != text:
        raise AgeError(f"{what}: non-canonical base64")
    return data


def parse_header(data: bytes) -> Header:
    """Parse the header by the ABNF of age.md; :class:`AgeError` on any deviation."""
    limit = min(len(data), MAX_HEADER_BYTES)
    pos = 0

    def line() -> bytes:
        nonlocal pos
        end = data.find(b"\n", pos, limit)
        if end < 0:
            if limit == MAX_HEADER_BYTES:
                raise AgeError(f"header longer than {MAX_HEADER_BYTES} bytes")
            raise AgeError("header is incomplete (file too short or not an age file)")
        out = data[pos:end]
        pos = end + 1
        return out

    version = line()
    if version != VERSION_LINE:
        if version.startswith(b"age-encryption.org/"):
            raise AgeError(f"unsupported age version {version[19:60]!r}")
        raise AgeError("not an age v1 file (bad version line)")
    stanzas: list[Stanza] = []
    while True:
        start = pos
        first = line()
        if first.startswith(b"---"):
            m = _MAC_LINE.fullmatch(first)
            if m is None:
                raise AgeError("malformed header MAC line (expected '--- ' and 43 base64 characters)")
            if not stanzas:
                raise AgeError("header has no recipient stanza")
            return Header(stanzas, data[:start + 3], _unb64(m.group(1), "header MAC"), pos)
        if not first.startswith(b"-> "):
            raise AgeError("malformed header line (expected '-> ' or '---')")
        args = first[3:].split(b" ")
        for arg in args:
            if not _ARGUMENT.fullmatch(arg):
                raise AgeError("malformed stanza arguments (empty, doubled or trailing space, "
                               "or a character outside VCHAR)")
        lines = []
        while True:
            body_line = line()
            if len(body_line) > 64 or not _B64_CHARS.fullmatch(body_line):
                raise AgeError("malformed stanza body line (missing body, or not base64 wrapped at 64)")
            lines.append(body_line)
            if len(body_line) < 64:
                break
        stanzas.append(Stanza(args, _unb64(b"".join(lines), "stanza body")))


def _unwrap_file_key(stanzas: list[Stanza], identity: bytes) -> bytes:
    try:
        secret = X25519PrivateKey.from_private_bytes(identity)
    except ValueError as exc:
        raise AgeError(f"identity is not a 32-byte X25519 key: {exc}") from None
    own = secret.public_key().public_bytes_raw()
    for stanza in stanzas:
        if stanza.args[0] != b"X25519":
            continue  # unrecognised stanzas are ignored (age.md)
        if len(stanza.args) != 2:
            raise AgeError("malformed X25519 stanza: it must have exactly two arguments")
        share = _unb64(stanza.args[1], "X25519 share")
        if len(share) != 32:
            raise AgeError("malformed X25519 stanza: the share is not 32 bytes")
        if len(stanza.body) != FILE_KEY_SIZE + TAG_SIZE:
            raise AgeError("malformed X25519 stanza: the body is not 32 bytes")
        try:
            shared = secret.exchange(X25519PublicKey.from_public_bytes(share))
        except ValueError:
            raise AgeError("X25519 stanza with a low-order share (all-zero shared secret)") from None
        wrap_key = _hkdf(shared, share + own, X25519_LABEL)
        try:
            return ChaCha20Poly1305(wrap_key).decrypt(_ZERO_NONCE, stanza.body, None)
        except InvalidTag:
            continue  # addressed to another recipient
    if any(s.args[0] == b"scrypt" for s in stanzas):
        raise AgeError("a passphrase (scrypt) file: not supported here, encrypt to the authority's age1… key")
    raise AgeError("no identity matched any of the recipients (wrong key?)")


def recover(data: bytes, identity: bytes | Sequence[bytes]) -> Recovered:
    """Authenticate and decrypt as much of ``data`` as possible. ``identity``: one X25519
    identity, or several (the office's current one and those of earlier rotations; as
    ``age -d -i A -i B``, the first that a stanza is addressed to opens the file).

    Header or MAC errors raise :class:`AgeError` (nothing can be trusted). In the
    payload, every chunk is authenticated on its own; decryption stops at the
    first chunk that fails, and ``complete`` is False with the reason. The
    plaintext returned is always an authenticated prefix of what was encrypted.
    """
    header = parse_header(data)
    identities = [identity] if isinstance(identity, (bytes, bytearray)) else list(identity)
    file_key = None
    for one in identities:
        try:
            file_key = _unwrap_file_key(header.stanzas, one)
            break
        except AgeError:
            if one is identities[-1]:
                raise
    if file_key is None:
        raise AgeError("no identity given")
    expected = hmac.new(_hkdf(file_key, b"", b"header"), header.mac_input, hashlib.sha256).digest()
    if not hmac.compare_digest(expected, header.mac):
        raise AgeError("header MAC mismatch: the header was altered")
    offset = header.payload_offset
    nonce = data[offset:offset + NONCE_SIZE]
    if len(nonce) < NONCE_SIZE:
        return Recovered(b"", 0, False, "truncated: payload nonce missing")
    aead = ChaCha20Poly1305(_hkdf(file_key, nonce, b"payload"))
    payload = memoryview(data)[offset + NONCE_SIZE:]
    out = bytearray()
    counter = 0
    pos = 0

    def open_chunk(chunk: memoryview, last: bool) -> bytes | None:
        if len(chunk) < TAG_SIZE:
            return None
        try:
            return aead.decrypt(_chunk_nonce(counter, last), bytes(chunk), None)
        except InvalidTag:
            return None

    while True:
        chunk = payload[pos:pos + ENCRYPTED_CHUNK_SIZE]
        if pos + len(chunk) >= len(payload):  # the tail: must be a valid final chunk
            plain = open_chunk(chunk, last=True)
            if plain is not None:
                if not plain and counter > 0:
                    return Recovered(bytes(out), counter, False, "invalid: empty final chunk")
                out += plain
                return Recovered(bytes(out), counter + 1, True)
            if len(chunk) == ENCRYPTED_CHUNK_SIZE:
                plain = open_chunk(chunk, last=False)
                if plain is not None:
                    out += plain
                    return Recovered(bytes(out), counter + 1, False, "truncated: no final chunk")
            if not chunk:
                return Recovered(bytes(out), counter, False, "truncated: no final chunk")
            what = "truncated" if len(chunk) < ENCRYPTED_CHUNK_SIZE else "corrupt"
            return Recovered(bytes(out), counter, False,
                             f"{what}: chunk {counter} ({len(chunk)} bytes) does not authenticate")
        plain = open_chunk(chunk, last=False)
        if plain is None:
            final = open_chunk(chunk, last=True)
            if final is not None:
                out += final
                return Recovered(bytes(out), counter + 1, False,
                                 "invalid: data after the final chunk")
            return Recovered(bytes(out), counter, False,
                             f"corrupt: chunk {counter} does not authenticate")
        out += plain
        counter += 1
        pos += ENCRYPTED_CHUNK_SIZE


def decrypt(data: bytes, identity: bytes) -> bytes:
    """Decrypt a complete age file; raise :class:`TruncatedError`/:class:`AgeError` otherwise."""
    result = recover(data, identity)
    if not result.complete:
        cls = TruncatedError if result.reason.startswith("truncated") else AgeError
        raise cls(f"{result.reason}; {len(result.plaintext)} bytes authenticated before it")
    return result.plaintext
