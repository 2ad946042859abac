"""Key files: the evidence office's age identity/recipient and a device's Ed25519 key.

* Authority identity: exactly what ``age-keygen`` writes (comment lines, then one
  ``AGE-SECRET-KEY-1…`` line), mode 0600. It never goes onto a camera.
* Authority recipient: one ``age1…`` line — a valid ``age -R`` recipients file.
* Device signing key: PKCS#8 PEM (``openssl pkey`` reads it), mode 0600.
* Device public key: SubjectPublicKeyInfo PEM.

Bech32 (BIP 173) comes from the reference implementation (``bech32`` on PyPI);
age uses plain Bech32 with HRP ``age`` and ``age-secret-key-`` (upper-cased).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import bech32
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

RECIPIENT_HRP = "age"
IDENTITY_HRP = "age-secret-key-"


class KeyFileError(ValueError):
    """A key file or key string is malformed; the message says which and how to fix it."""


def _bech32_encode(hrp: str, raw: bytes) -> str:
    words = bech32.convertbits(raw, 8, 5, True)
    return bech32.bech32_encode(hrp, words)


def _bech32_decode(text: str, hrp: str, what: str) -> bytes:
    got_hrp, words = bech32.bech32_decode(text)
    if got_hrp is None or words is None:
        raise KeyFileError(f"{what} {text[:12]}… is not valid Bech32 (typo or truncated?)")
    if got_hrp != hrp:
        raise KeyFileError(f"{what} has prefix {got_hrp!r}, expected {hrp!r}")
    raw = bech32.convertbits(words, 5, 8, False)
    if raw is None or len(raw) != 32:
        raise KeyFileError(f"{what} does not hold a 32-byte key")
    return bytes(raw)


def format_recipient(public: bytes) -> str:
    return _bech32_encode(RECIPIENT_HRP, public)


def parse_recipient(text: str) -> bytes:
    """``age1…`` → raw X25519 public key."""
    text = text.strip()
    if not text.startswith("age1"):
        raise KeyFileError(f"recipient must start with 'age1' (got {text[:8]!r}); "
                        "use the authority's .pub file, never the secret key")
    return _bech32_decode(text, RECIPIENT_HRP, "recipient")


def format_identity(secret: bytes) -> str:
    return _bech32_encode(IDENTITY_HRP, secret).upper()


def parse_identity(text: str) -> bytes:
    """``AGE-SECRET-KEY-1…`` → raw X25519 scalar."""
    return _bech32_decode(text.strip(), IDENTITY_HRP, "identity")


def recipient_of(identity: bytes) -> str:
    return format_recipient(X25519PrivateKey.from_private_bytes(identity).public_key().public_bytes_raw())


def _write_new(path: Path, data: bytes, mode: int, force: bool) -> None:
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if force else os.O_EXCL)
    try:
        fd = os.open(path, flags, mode)
    except FileExistsError:
        raise KeyFileError(f"{path} exists; refusing to overwrite a key (pass --force to replace it)")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(path, mode)  # O_CREAT's mode is masked by umask; keys must be exactly this
    except OSError:
        path.unlink(missing_ok=True)  # never leave a half-written key behind
        raise


@dataclass(frozen=True)
class AuthorityFiles:
    identity: Path
    recipient_file: Path
    recipient: str


def create_authority(directory: Path, *, name: str = "authority", force: bool = False,
                     now: _dt.datetime | None = None) -> AuthorityFiles:
    """Create ``NAME.key`` (age identity, 0600) and ``NAME.pub`` (recipient) in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    secret = X25519PrivateKey.generate().private_bytes_raw()
    recipient = recipient_of(secret)
    created = (now or _dt.datetime.now(_dt.timezone.utc)).strftime("%Y-%m-%dT%H:%M:%SZ")
    text = f"# created: {created}\n# public key: {recipient}\n{format_identity(secret)}\n"
    identity_path = directory / f"{name}.key"
    recipient_path = directory / f"{name}.pub"
    _write_new(identity_path, text.encode(), 0o600, force)
    _write_new(recipient_path, (recipient + "\n").encode(), 0o644, True)
    return AuthorityFiles(identity_path, recipient_path, recipient)


def _read_text(path: Path, what: str) -> str:
    try:
        return Path(path).read_text()
    except UnicodeDecodeError:
        raise KeyFileError(f"{path} is not a text {what} file (binary data)") from None


def load_identity(path: Path, passphrase: Callable[[], str] | None = None) -> bytes:
    """Read an age identity file (age-keygen format; the first key line wins), or one
    protected with a passphrase (:mod:`common.custody`), asked for through ``passphrase``."""
    from common import custody
    try:
        head = Path(path).read_bytes()[:len(custody.AGE_MAGIC)]
    except IsADirectoryError:
        raise KeyFileError(f"{path} is a directory, not an age identity file") from None
    if custody.is_protected(head):
        if passphrase is None:
            raise KeyFileError(f"{path} is protected by a passphrase; this command cannot ask for one")
        try:
            return custody.unprotect(Path(path).read_bytes(), passphrase())
        except custody.CustodyError as exc:
            raise KeyFileError(f"{path}: {exc}") from None
    for line in _read_text(path, "age identity").splitlines():
        line = line.strip()
        if line.startswith("-----BEGIN"):
            raise KeyFileError(f"{path} is a PEM key (a device key?), not an age identity "
                               "(a file with an AGE-SECRET-KEY-1… line, from bodycam-keys authority)")
        if line and not line.startswith("#"):
            return parse_identity(line)
    raise KeyFileError(f"{path} holds no AGE-SECRET-KEY-1… line")


def load_recipient(value: str | Path) -> bytes:
    """Accept an ``age1…`` string or the path of a recipients file."""
    text = str(value).strip()
    if text.startswith("age1"):
        return parse_recipient(text)
    for line in _read_text(Path(text), "age recipient").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            return parse_recipient(line)
    raise KeyFileError(f"{text} holds no age1… recipient line")


@dataclass(frozen=True)
class DeviceKeyFiles:
    private: Path
    public: Path
    fingerprint: str


def public_key_pem(key: Ed25519PublicKey) -> str:
    return key.public_bytes(serialization.Encoding.PEM,
                            serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def fingerprint(key: Ed25519PublicKey) -> str:
    """SHA-256 of the raw 32-byte public key, hex: how manifests name the signer."""
    return hashlib.sha256(key.public_bytes_raw()).hexdigest()


def create_device_key(directory: Path, *, name: str = "device", force: bool = False) -> DeviceKeyFiles:
    """Create ``NAME.key`` (PKCS#8 PEM, 0600) and ``NAME.pub.pem`` (SPKI PEM)."""
    directory.mkdir(parents=True, exist_ok=True)
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    priv_path, pub_path = directory / f"{name}.key", directory / f"{name}.pub.pem"
    _write_new(priv_path, private, 0o600, force)
    _write_new(pub_path, public_key_pem(key.public_key()).encode(), 0o644, True)
    return DeviceKeyFiles(priv_path, pub_path, fingerprint(key.public_key()))


def load_signing_key(path: Path) -> Ed25519PrivateKey:
    data = Path(path).read_bytes()
    if b"AGE-SECRET-KEY-" in data:
        raise KeyFileError(f"{path} holds an age identity (the evidence office's key), not a device "
                           "signing key; a camera needs device.key from: bodycam-keys device --out DIR")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise KeyFileError(f"{path} is not a readable PEM private key ({exc}); recreate it with "
                           "bodycam-keys device --out DIR --force") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFileError(f"{path} is not an Ed25519 private key")
    return key


def load_verify_key(value: str | Path | bytes) -> Ed25519PublicKey:
    """From PEM text/bytes or a path to a PEM file."""
    data = value if isinstance(value, bytes) else (
        str(value).encode() if str(value).lstrip().startswith("-----BEGIN") else Path(value).read_bytes())
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError) as exc:
        raise KeyFileError(f"{value if not isinstance(value, bytes) else 'key'} is not a PEM public key "
                           f"({exc}); pass the camera's device.pub.pem") from None
    if not isinstance(key, Ed25519PublicKey):
        raise KeyFileError("not an Ed25519 public key")
    return key
