"""Custody of the evidence office's age identity: a passphrase at rest, and M-of-N shares.

The identity (``authority.key``) opens every recording the city ever made: lost, the
footage is unreadable for good; stolen, all of it is open. So it is never kept in clear
where a server can be copied, and never held by one person alone (docs/keys.md):

- **At rest** it is encrypted with a passphrase in age's own scrypt format
  (:func:`protect`), so stock ``age -d`` opens it as well as this project does; the
  console asks for the passphrase when it starts (or reads it from a systemd credential).
- **Its backup** is split into M-of-N shares (:func:`split`, e.g. 2 of 3: head of office,
  data-protection officer, IT) with SLIP-39 (``shamir-mnemonic``, the reference
  implementation by SatoshiLabs): each share is a list of words a person can keep on paper;
  fewer than M reveal nothing; each word list has a checksum, so a typo is caught. The
  recovery drill (``bodycam-keys recover … --segment``) proves that the shares reopen real
  footage without writing the key anywhere.

A share file is text: comment lines naming the recipient the identity belongs to, its
number, the threshold and the holder, then one line of words.

>>> secret = bytes(range(32))
>>> words = split(secret, threshold=2, shares=3)
>>> combine([words[0], words[2]]) == secret
True
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from common import keys

AGE_MAGIC = b"age-encryption.org/v1\n"
MAX_SHARE_FILE = 16 << 10


class CustodyError(ValueError):
    """Shares or a protected identity that cannot be used; the message says what to do."""


def is_protected(data: bytes) -> bool:
    """Whether an identity file is passphrase-encrypted (an age file, not a key line)."""
    return data.startswith(AGE_MAGIC)


def protect(identity: bytes, passphrase: str) -> bytes:
    """The identity file, encrypted with ``passphrase`` (age scrypt: ``age -d`` opens it)."""
    import pyrage
    if len(passphrase) < 12:
        raise CustodyError("a passphrase for the office's identity needs at least 12 characters")
    text = (f"# open bodycam: the evidence office's age identity\n# recipient: {keys.recipient_of(identity)}\n"
            f"{keys.format_identity(identity)}\n")
    return pyrage.passphrase.encrypt(text.encode(), passphrase)


def unprotect(data: bytes, passphrase: str) -> bytes:
    """The identity inside a protected file; :class:`CustodyError` for a wrong passphrase."""
    import pyrage
    try:
        text = pyrage.passphrase.decrypt(data, passphrase).decode()
    except Exception:  # pyrage raises DecryptError for a wrong passphrase or a damaged file
        raise CustodyError("the passphrase does not open this identity file (or the file is damaged)") from None
    for line in text.splitlines():
        if line.strip() and not line.startswith("#"):
            return keys.parse_identity(line)
    raise CustodyError("the protected file holds no AGE-SECRET-KEY-1… line")


def split(identity: bytes, threshold: int, shares: int) -> list[str]:
    """``shares`` word lists, any ``threshold`` of which give ``identity`` back."""
    import shamir_mnemonic
    if not 1 <= threshold <= shares <= 16:
        raise CustodyError(f"shares must be 1…16 and the threshold 1…shares (got {threshold} of {shares})")
    if threshold == 1 and shares > 1:
        raise CustodyError("a threshold of 1 gives every holder the whole key; use 2 or more")
    (group,) = shamir_mnemonic.generate_mnemonics(1, [(threshold, shares)], identity)
    return group


def combine(mnemonics: list[str]) -> bytes:
    """The identity from enough word lists; :class:`CustodyError` naming what is wrong."""
    import shamir_mnemonic
    try:
        return shamir_mnemonic.combine_mnemonics(mnemonics)
    except shamir_mnemonic.MnemonicError as exc:
        raise CustodyError(f"the shares do not combine: {exc}") from None


@dataclass(frozen=True)
class ShareFile:
    number: int
    shares: int
    threshold: int
    recipient: str
    holder: str
    words: str

    def text(self) -> str:
        return (f"# open bodycam: a share of the evidence office's age identity\n"
                f"# share: {self.number} of {self.shares}\n"
                f"# recipient: {self.recipient}\n"
                f"# threshold: {self.threshold} (any {self.threshold} of the {self.shares} shares recover it)\n"
                f"# holder: {self.holder}\n"
                f"# keep it on paper, apart from the other shares; recovery: docs/keys.md\n"
                f"{self.words}\n")


def read_share(path: Path) -> ShareFile:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise CustodyError(f"--share {path}: no such file") from None
    if len(data) > MAX_SHARE_FILE:
        raise CustodyError(f"--share {path} is {len(data)} bytes: not a share file")
    head: dict[str, str] = {}
    words = ""
    for line in data.decode("utf-8", "replace").splitlines():
        m = re.fullmatch(r"#\s*(share|recipient|threshold|holder):?\s*(.*)", line.strip())
        if m:
            head[m.group(1)] = m.group(2)
        elif line.strip() and not line.startswith("#"):
            words = " ".join(line.split()).lower()
    numbers = re.match(r"(\d+) of (\d+)", head.get("share", ""))
    threshold = re.match(r"(\d+)", head.get("threshold", ""))
    if not words or not numbers or not threshold or not head.get("recipient", "").startswith("age1"):
        raise CustodyError(f"--share {path} is not a share file of bodycam-keys split (its header or its words "
                           "are missing)")
    return ShareFile(int(numbers.group(1)), int(numbers.group(2)), int(threshold.group(1)), head["recipient"],
                     head.get("holder", ""), words)


def recover(shares: list[ShareFile]) -> bytes:
    """The identity from share files, checked against the recipient they name."""
    recipients = {s.recipient for s in shares}
    if len(recipients) > 1:
        raise CustodyError("these shares belong to different identities: " + ", ".join(sorted(recipients)))
    if len({s.number for s in shares}) < len(shares):
        raise CustodyError("the same share was given twice")
    need = max(s.threshold for s in shares)
    if len(shares) < need:
        raise CustodyError(f"{len(shares)} share(s) given, {need} needed")
    identity = combine([s.words for s in shares])
    if len(identity) != 32 or keys.recipient_of(identity) != shares[0].recipient:
        raise CustodyError("the shares combine to a key that is not the identity of "
                           f"{shares[0].recipient}; a share file was altered")
    return identity
