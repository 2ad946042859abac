"""Verify a camera store as the dock and the evidence office must.

What is checked (docs/FORMAT.md §2.4 says which deletions each check catches):

* every file in ``segments/`` is accounted for: a manifest, its segment, or the
  journal of a segment interrupted by a power cut; anything else is reported;
* every manifest decodes strictly and its signature verifies with the device key;
* the manifests form one chain (seq +1, ``prev`` = SHA-256 of the one before),
  starting at seq 1 or at the ``anchor`` (the head the dock saw last);
* the signed chain head (``chain-head.cbor``) names the newest manifest, so the newest
  segments cannot be deleted together with their manifests unnoticed;
* the device event log verifies, and every segment a ``recording_stop`` lists exists;
* every segment file matches the size and SHA-256 in its manifest; with the authority
  identity each is decrypted, and interrupted segments are recovered up to their last
  authenticated chunk and reported as truncated — never silently.

Every problem names the file it is about.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from common import age_format, signed
from common.chain_head import ChainHead, format_anchor, read_head
from common.manifest import SegmentManifest, read_manifest

HEAD_FILE = "chain-head.cbor"
EVENT_LOG = "events.cbors"
_NAME = re.compile(r"(\d{8,})\.(ts\.age|manifest|open)")
_STORE_FILES = {HEAD_FILE, EVENT_LOG, "reserve"}


class NothingToVerify(ValueError):
    """The path holds no camera store: the message says what was expected."""


@dataclass
class SegmentReport:
    seq: int
    file: str
    ok: bool
    complete: bool
    recording_id: str | None = None
    problems: list[str] = field(default_factory=list)
    plaintext_bytes: int | None = None
    truncated: bool = False
    sealed: bool = True          # False: journal only, interrupted and never sealed


@dataclass
class Finding:
    file: str
    problem: str


@dataclass
class VerifyReport:
    ok: bool
    store: str
    segments: list[SegmentReport]
    problems: list[Finding]          # store-level: chain, head, stray files, event log
    notes: list[Finding]             # worth knowing, not a failure
    head: dict[str, Any] | None = None
    events: int = 0

    @property
    def chain_error(self) -> str | None:
        return "; ".join(f"{p.file}: {p.problem}" for p in self.problems) or None

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "store": self.store, "head": self.head, "events": self.events,
                "problems": [asdict(p) for p in self.problems], "notes": [asdict(n) for n in self.notes],
                "segments": [asdict(s) for s in self.segments]}


def find_store(path: Path) -> tuple[Path, Path | None]:
    """``(segments dir, store root or None)`` for a store root or its ``segments/`` dir."""
    if (path / "segments").is_dir():
        return path / "segments", path
    if path.name == "segments" and ((path.parent / HEAD_FILE).exists() or (path.parent / EVENT_LOG).exists()):
        return path, path.parent
    return path, None


def verify_store(path: Path, key: Ed25519PublicKey, *, identity: bytes | None = None,
                 decrypt_to: Path | None = None, anchor: ChainHead | None = None) -> VerifyReport:
    """Verify the store at ``path`` (its root, or its ``segments/`` directory)."""
    seg_dir, root = find_store(Path(path))
    if decrypt_to is not None:
        decrypt_to.mkdir(parents=True, exist_ok=True)
    problems: list[Finding] = []
    notes: list[Finding] = []
    manifests: dict[int, tuple[str, bytes]] = {}
    segment_files: dict[int, str] = {}
    journals: dict[int, str] = {}
    for p in sorted(seg_dir.iterdir()):
        m = _NAME.fullmatch(p.name)
        if m is None or not p.is_file():
            if not p.name.endswith(".tmp"):
                problems.append(Finding(p.name, "unexpected file in the segment directory"))
            else:
                notes.append(Finding(p.name, "left-over temporary file of an atomic write (power cut)"))
            continue
        seq, kind = int(m.group(1)), m.group(2)
        if kind == "manifest":
            manifests[seq] = (p.name, p.read_bytes())
        elif kind == "ts.age":
            segment_files[seq] = p.name
        else:
            journals[seq] = p.name
    if not manifests and not journals:
        raise NothingToVerify(
            f"{path} holds no segment manifests: pass a camera store (the directory with segments/ "
            "and chain-head.cbor) or its segments/ directory")

    reports: dict[int, SegmentReport] = {}
    chain: list[tuple[int, bytes]] = []   # (seq, record) of manifests that verified
    for seq, (name, record) in sorted(manifests.items()):
        try:
            manifest = read_manifest(record, key)
        except signed.SignatureError as exc:
            reports[seq] = SegmentReport(seq, name, ok=False, complete=False, problems=[f"{name}: {exc}"])
            continue
        if manifest.seq != seq:
            reports[seq] = SegmentReport(seq, name, ok=False, complete=manifest.complete,
                                         problems=[f"{name}: holds the manifest of seq {manifest.seq} "
                                                   "(renamed)"])
            continue
        reports[seq] = check_segment(seg_dir, manifest, identity, decrypt_to)
        chain.append((seq, record))
    _check_chain(chain, manifests, anchor, problems)

    for seq, name in sorted(segment_files.items()):
        if seq not in manifests and seq not in journals:
            problems.append(Finding(name, "segment file with neither manifest nor journal (stray or "
                                          "its manifest was deleted)"))
    for seq, name in sorted(journals.items()):
        if seq in manifests:
            notes.append(Finding(name, "journal of a committed segment (power cut before it was removed)"))
            continue
        reports[seq] = _unsealed(seg_dir, seq, name, segment_files.get(seq), identity, decrypt_to)

    head = _check_head(root, key, chain, anchor, problems, notes)
    events = _check_events(root, key, manifests, chain, problems, notes)
    segments = [reports[s] for s in sorted(reports)]
    ok = not problems and all(s.ok for s in segments)
    return VerifyReport(ok, str(root or seg_dir), segments, problems, notes, head, events)


def _check_chain(chain: list[tuple[int, bytes]], manifests: dict[int, tuple[str, bytes]],
                 anchor: ChainHead | None, problems: list[Finding]) -> None:
    if not manifests:
        return
    first = min(manifests)
    if anchor is None and first != 1:
        problems.append(Finding(manifests[first][0], f"segments 1…{first - 1} are not here; without --anchor "
                                "(the head the dock saw last) their removal cannot be told from an offload"))
    elif anchor is not None:
        if anchor.seq >= first:
            at = manifests.get(anchor.seq)
            if at is None or signed.digest(at[1]) != anchor.prev:
                problems.append(Finding(at[0] if at else f"{anchor.seq:08d}.manifest",
                                        f"does not match the anchor {format_anchor(anchor)} (replaced or "
                                        "a different chain)"))
        elif anchor.seq + 1 < first:
            problems.append(Finding(manifests[first][0], f"segments {anchor.seq + 1}…{first - 1} after the "
                                    "anchor are missing (deleted)"))
    for seq in range(first, max(manifests) + 1):
        if seq not in manifests:
            problems.append(Finding(f"{seq:08d}.manifest", "missing: the chain has a gap here (deleted)"))
    by_seq = dict(chain)
    for seq, record in chain:
        if seq - 1 in by_seq:
            expected: bytes | None = signed.digest(by_seq[seq - 1])
        elif anchor is not None and anchor.seq == seq - 1:
            expected = anchor.prev
        elif seq == 1:
            expected = None
        else:
            continue  # its predecessor is missing or failed: reported above
        if signed.open_signed(record, None)["prev"] != expected:
            problems.append(Finding(manifests[seq][0], "prev does not match the manifest before it "
                                    "(removed, inserted, reordered or replaced)"))


def _check_head(root: Path | None, key: Ed25519PublicKey, chain: list[tuple[int, bytes]],
                anchor: ChainHead | None, problems: list[Finding], notes: list[Finding]) -> dict[str, Any] | None:
    if root is None or not (root / HEAD_FILE).exists():
        problems.append(Finding(HEAD_FILE, "missing: without the signed head, deleting the newest segments "
                                "with their manifests cannot be detected (pass the store directory)"))
        return None
    data = (root / HEAD_FILE).read_bytes()
    try:
        head = read_head(data, key)
    except signed.SignatureError as exc:
        problems.append(Finding(HEAD_FILE, str(exc)))
        return None
    out = {"seq": head.seq, "prev": head.prev.hex() if head.prev else None, "anchor": format_anchor(head)}
    by_seq = dict(chain)
    last = max(by_seq) if by_seq else 0
    if head.seq > last:
        problems.append(Finding(HEAD_FILE, f"names seq {head.seq}, but the newest manifest here is {last}: "
                                f"segments {last + 1}…{head.seq} were deleted"))
    elif head.seq in by_seq and signed.digest(by_seq[head.seq]) != head.prev:
        problems.append(Finding(HEAD_FILE, f"does not match {head.seq:08d}.manifest (replaced)"))
    elif head.seq < last:
        notes.append(Finding(HEAD_FILE, f"lags the newest manifest ({head.seq} < {last}): a power cut before "
                             "the head was updated; the camera rolls it forward at boot"))
    if anchor is not None and head.seq < anchor.seq:
        problems.append(Finding(HEAD_FILE, f"is older than the anchor (seq {head.seq} < {anchor.seq}): the "
                                "store was rolled back"))
    return out


def _check_events(root: Path | None, key: Ed25519PublicKey, manifests: dict[int, tuple[str, bytes]],
                  chain: list[tuple[int, bytes]], problems: list[Finding], notes: list[Finding]) -> int:
    path = root / EVENT_LOG if root is not None else None
    if path is None or not path.exists():
        notes.append(Finding(EVENT_LOG, "no device event log here: segments not cross-checked with it"))
        return 0
    records, torn = signed.split_sequence(path.read_bytes())
    if torn:
        notes.append(Finding(EVENT_LOG, f"{torn} bytes at the end are a record cut by a power cut"))
    try:
        bodies = signed.verify_chain(records, key)
    except (signed.SignatureError, signed.ChainError) as exc:
        problems.append(Finding(EVENT_LOG, str(exc)))
        return len(records)
    if bodies and bodies[0]["seq"] != 1:
        notes.append(Finding(EVENT_LOG, f"starts at event {bodies[0]['seq']} (earlier events were offloaded)"))
    first = min(manifests) if manifests else 1
    for body in bodies:
        data = body.get("data") if isinstance(body.get("data"), dict) else {}
        listed = data.get("segments", []) if body.get("kind") == "recording_stop" else (
            [data.get("seq")] if body.get("kind") == "segment_sealed_after_interruption" else [])
        for seq in listed:
            if isinstance(seq, int) and seq >= first and seq not in manifests:
                problems.append(Finding(EVENT_LOG, f"event {body['seq']} ({body['kind']}) lists segment {seq}, "
                                        "which is missing (deleted)"))
    return len(bodies)


def _unsealed(seg_dir: Path, seq: int, name: str, segment: str | None, identity: bytes | None,
              decrypt_to: Path | None) -> SegmentReport:
    report = SegmentReport(seq, segment or f"{seq:08d}.ts.age", ok=False, complete=False, sealed=False,
                           problems=[f"{name}: interrupted by a power cut and not sealed yet (boot the camera "
                                     "to seal it); its footage is not signed"])
    if segment is None:
        report.problems.append("no segment file: nothing was written")
        return report
    _decrypt(seg_dir / segment, report, identity, decrypt_to, ".unsealed.ts")
    return report


def check_segment(seg_dir: Path, m: SegmentManifest, identity: bytes | None,
                  decrypt_to: Path | None) -> SegmentReport:
    report = SegmentReport(m.seq, m.file, ok=True, complete=m.complete, recording_id=m.recording_id)
    path = seg_dir / m.file
    if not path.exists():
        report.ok = False
        report.problems.append(f"{m.file} is missing")
        return report
    data = path.read_bytes()
    if len(data) != m.size or hashlib.sha256(data).digest() != m.sha256:
        report.ok = False
        report.problems.append(f"{m.file} does not match the SHA-256/size in its manifest (altered)")
        return report
    if not m.complete:
        if holds_no_footage(data):
            report.problems.append(f"{m.file}: interrupted before any footage was written (no footage)")
            report.plaintext_bytes = 0
            return report
        report.problems.append(f"{m.file}: sealed after an interruption: footage ends early")
    if identity is not None:
        _decrypt(path, report, identity, decrypt_to, ".truncated.ts", data=data, must_complete=m.complete)
    return report


def holds_no_footage(data: bytes) -> bool:
    """An interrupted segment cut before its first payload chunk: no header, or header only."""
    try:
        header = age_format.parse_header(data)
    except age_format.AgeError:
        return len(data) < 4096 and age_format.VERSION_LINE.startswith(data[:len(age_format.VERSION_LINE)])
    return len(data) - header.payload_offset <= age_format.NONCE_SIZE


def _decrypt(path: Path, report: SegmentReport, identity: bytes | None, decrypt_to: Path | None,
             partial_suffix: str, data: bytes | None = None, must_complete: bool = False) -> None:
    if identity is None:
        return
    data = path.read_bytes() if data is None else data
    try:
        rec = age_format.recover(data, identity)
    except age_format.AgeError as exc:
        report.ok = False
        report.problems.append(f"{path.name}: cannot decrypt: {exc}")
        return
    report.plaintext_bytes = len(rec.plaintext)
    report.truncated = not rec.complete
    if not rec.complete:
        report.problems.append(f"{path.name}: {rec.reason}: {rec.chunks} chunks "
                               f"({len(rec.plaintext)} bytes) recovered")
        if must_complete:
            report.ok = False
    if decrypt_to is not None:
        suffix = ".ts" if rec.complete else partial_suffix
        (decrypt_to / (path.name.removesuffix(".ts.age") + suffix)).write_bytes(rec.plaintext)
