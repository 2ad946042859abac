"""Verify a set of segments as the dock and the evidence office must: every manifest
signed by the device, chained without a gap, every file matching its manifest.

Decryption (with the authority identity) recovers interrupted segments up to the
last authenticated chunk and reports them as truncated — never silently.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from common import age_format, signed
from common.manifest import SegmentManifest, verify_manifest_chain


@dataclass
class SegmentReport:
    seq: int
    file: str
    ok: bool
    complete: bool
    problems: list[str] = field(default_factory=list)
    plaintext_bytes: int | None = None
    truncated: bool = False


@dataclass
class VerifyReport:
    ok: bool
    segments: list[SegmentReport]
    chain_error: str | None = None

    def to_json(self) -> dict:
        return {"ok": self.ok, "chain_error": self.chain_error,
                "segments": [s.__dict__ for s in self.segments]}


def verify_store(seg_dir: Path, key: Ed25519PublicKey, *, identity: bytes | None = None,
                 decrypt_to: Path | None = None, prev: bytes | None = None,
                 first_seq: int | None = None) -> VerifyReport:
    """Check every ``*.manifest`` in ``seg_dir`` and the file it names."""
    manifest_paths = sorted(seg_dir.glob("*.manifest"))
    records = [p.read_bytes() for p in manifest_paths]
    chain_error = None
    try:
        manifests = verify_manifest_chain(records, key, prev=prev, first_seq=first_seq)
    except (signed.ChainError, signed.SignatureError) as exc:
        chain_error = str(exc)
        manifests = []
        for r in records:  # still report per segment what can be said
            try:
                manifests.append(SegmentManifest.from_body(signed.open_signed(r, key)))
            except signed.SignatureError:
                pass
    reports = [check_segment(seg_dir, m, identity, decrypt_to) for m in manifests]
    ok = chain_error is None and all(r.ok for r in reports) and len(manifests) == len(records)
    return VerifyReport(ok, reports, chain_error)


def check_segment(seg_dir: Path, m: SegmentManifest, identity: bytes | None,
                  decrypt_to: Path | None) -> SegmentReport:
    report = SegmentReport(m.seq, m.file, ok=True, complete=m.complete)
    path = seg_dir / m.file
    if not path.exists():
        report.ok = False
        report.problems.append(f"{m.file} is missing")
        return report
    data = path.read_bytes()
    if len(data) != m.size or hashlib.sha256(data).digest() != m.sha256:
        report.ok = False
        report.problems.append(f"{m.file} does not match the SHA-256/size in its manifest (altered)")
    if not m.complete:
        report.problems.append("sealed after an interruption: footage ends early")
    if identity is not None:
        try:
            rec = age_format.recover(data, identity)
        except age_format.AgeError as exc:
            report.ok = False
            report.problems.append(f"cannot decrypt: {exc}")
            return report
        report.plaintext_bytes = len(rec.plaintext)
        report.truncated = not rec.complete
        if not rec.complete:
            report.problems.append(f"{rec.reason}: {rec.chunks} chunks ({len(rec.plaintext)} bytes) recovered")
            if m.complete:
                report.ok = False
        if decrypt_to is not None:
            decrypt_to.mkdir(parents=True, exist_ok=True)
            suffix = ".ts" if rec.complete else ".truncated.ts"
            (decrypt_to / (m.file.removesuffix(".ts.age") + suffix)).write_bytes(rec.plaintext)
    return report
