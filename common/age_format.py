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
import hashlib
import hmac
import os
from dataclasses import dataclass
from typing import BinaryIO, Callable, Iterable

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


def _unb64(text: bytes) -> bytes:
    if b"=" in text or b"\r" in text:
        raise AgeError("non-canonical base64 in header")
    data = base64.b64decode(text + b"=" * (-len(text) % 4), validate=True)
    if _b64(data) != text:
        raise AgeError("non-canonical base64 in header")
    return data


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

@dataclass(frozen=True)
class Recovered:
    """What could be authenticated from an age file."""
    plaintext: bytes
    chunks: int
    complete: bool          # True iff a valid final chunk was found
    reason: str = ""        # why not complete


def _parse_header(data: bytes) -> tuple[list[tuple[list[bytes], bytes]], bytes, bytes, int]:
    """Return (stanzas, mac_input, mac, payload_offset)."""
    pos = 0

    def line() -> bytes:
        nonlocal pos
        end = data.find(b"\n", pos)
        if end < 0:
            raise AgeError("header is incomplete (file too short or not an age file)")
        out = data[pos:end]
        pos = end + 1
        return out

    if line() != VERSION_LINE:
        raise AgeError("not an age v1 file (bad version line)")
    stanzas: list[tuple[list[bytes], bytes]] = []
    while True:
        start = pos
        first = line()
        if first.startswith(b"--- "):
            mac_input = data[:start] + b"---"
            return stanzas, mac_input, _unb64(first[4:]), pos
        if not first.startswith(b"-> "):
            raise AgeError("malformed header line")
        args = first[3:].split(b" ")
        body = b""
        while True:
            body_line = line()
            if len(body_line) > 64:
                raise AgeError("stanza body line longer than 64 columns")
            body += body_line
            if len(body_line) < 64:
                break
        stanzas.append((args, _unb64(body)))


def _unwrap_file_key(stanzas: list[tuple[list[bytes], bytes]], identity: bytes) -> bytes:
    secret = X25519PrivateKey.from_private_bytes(identity)
    own = secret.public_key().public_bytes_raw()
    for args, body in stanzas:
        if len(args) != 2 or args[0] != b"X25519":
            continue
        share = _unb64(args[1])
        if len(share) != 32 or len(body) != FILE_KEY_SIZE + TAG_SIZE:
            raise AgeError("malformed X25519 stanza")
        shared = secret.exchange(X25519PublicKey.from_public_bytes(share))
        wrap_key = _hkdf(shared, share + own, X25519_LABEL)
        try:
            return ChaCha20Poly1305(wrap_key).decrypt(_ZERO_NONCE, body, None)
        except InvalidTag:
            continue
    raise AgeError("no identity matched any of the recipients (wrong key?)")


def recover(data: bytes, identity: bytes) -> Recovered:
    """Authenticate and decrypt as much of ``data`` as possible.

    Header or MAC errors raise :class:`AgeError` (nothing can be trusted). In the
    payload, every chunk is authenticated on its own; decryption stops at the
    first chunk that fails, and ``complete`` is False with the reason.
    """
    stanzas, mac_input, mac, offset = _parse_header(data)
    file_key = _unwrap_file_key(stanzas, identity)
    expected = hmac.new(_hkdf(file_key, b"", b"header"), mac_input, hashlib.sha256).digest()
    if not hmac.compare_digest(expected, mac):
        raise AgeError("header MAC mismatch: the header was altered")
    nonce = data[offset:offset + NONCE_SIZE]
    if len(nonce) < NONCE_SIZE:
        return Recovered(b"", 0, False, "truncated: payload nonce missing")
    aead = ChaCha20Poly1305(_hkdf(file_key, nonce, b"payload"))
    payload = memoryview(data)[offset + NONCE_SIZE:]
    out = bytearray()
    counter = 0
    pos = 0
    while True:
        chunk = payload[pos:pos + ENCRYPTED_CHUNK_SIZE]
        is_tail = pos + len(chunk) >= len(payload)
        if is_tail:
            try:
                plain = aead.decrypt(_chunk_nonce(counter, True), bytes(chunk), None)
            except InvalidTag:
                if len(chunk) == ENCRYPTED_CHUNK_SIZE:
                    try:
                        out += aead.decrypt(_chunk_nonce(counter, False), bytes(chunk), None)
                        return Recovered(bytes(out), counter + 1, False,
                                         "truncated: no final chunk")
                    except InvalidTag:
                        pass
                what = "truncated" if len(chunk) < ENCRYPTED_CHUNK_SIZE else "corrupt"
                return Recovered(bytes(out), counter, False,
                                 f"{what}: chunk {counter} ({len(chunk)} bytes) does not authenticate")
            if not plain and counter > 0:
                return Recovered(bytes(out), counter, False, "invalid: empty final chunk")
            out += plain
            return Recovered(bytes(out), counter + 1, True)
        try:
            out += aead.decrypt(_chunk_nonce(counter, False), bytes(chunk), None)
        except InvalidTag:
            return Recovered(bytes(out), counter, False,
                             f"corrupt: chunk {counter} does not authenticate")
        counter += 1
        pos += ENCRYPTED_CHUNK_SIZE


def decrypt(data: bytes, identity: bytes) -> bytes:
    """Decrypt a complete age file; raise :class:`TruncatedError`/:class:`AgeError` otherwise."""
    result = recover(data, identity)
    if not result.complete:
        cls = TruncatedError if result.reason.startswith("truncated") else AgeError
        raise cls(f"{result.reason}; {len(result.plaintext)} bytes authenticated before it")
    return result.plaintext
