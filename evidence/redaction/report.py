"""The redaction report: what was masked, from what, by whom — signed with the office key.

``NAME.redacted.report.cbor`` is a COSE_Sign1 record (docs/FORMAT.md §13) over the body
below; ``NAME.redacted.report.json`` is the same body for people. Anyone with read access
to the evidence store checks it with ``bodycam-evidence check-redaction``: the signature
by an office key registered in the store, every source segment's hashes against the
store's manifests, and (given the file) the redacted video's SHA-256.

Body: ``{type: "redaction-report", v: 1, recording, device, officer, source: [{seq, file,
sha256 (the encrypted footage, as in its manifest), manifest_sha256}], detector: {name,
package, file, sha256, runtime}, settings: {every, width, margin, style, shape},
manual: [{start_s, end_s, box, follow, lost_s}], ignored: [...], audio: [{start_s, end_s, mode}],
output: {file, sha256, size, frames, duration_s, masked_frames, detections},
redacted_by, redacted_utc, approved_by, approved_utc}``.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from common import signed
from common.manifest import read_manifest
from evidence.store import EvidenceStore

TYPE = "redaction-report"
MAX_REPORT = 16 << 20       # a report names segments and ranges; far below this


def check(store: EvidenceStore, data: bytes, video: Path | None = None) -> tuple[dict[str, Any] | None, list[str]]:
    """(the report's body, problems): no problems means the report is genuine, its sources
    are in the store exactly as named, and ``video`` (if given) is the file it describes."""
    if len(data) > MAX_REPORT:
        return None, [f"not a redaction report: {len(data)} bytes"]
    kid = signed.kid_of(data)
    if kid is None:
        return None, ["not a signed record (COSE_Sign1): is this the .report.cbor file?"]
    known = store.public_key(kid.hex())
    if known is None or known[0] != "office":
        return None, [f"signed by key {kid.hex()[:16]}…, which is not an office key registered in this store"]
    try:
        body = signed.open_signed(data, known[2])
    except signed.SignatureError as exc:
        return None, [f"the signature does not verify: {exc}"]
    if body.get("type") != TYPE or body.get("v") != 1:
        return None, ["signed by the office, but not a redaction report"]
    problems: list[str] = []
    device = str(body.get("device", ""))
    for src in body.get("source", []):
        seq = src.get("seq")
        try:
            record = store.manifest(device, int(seq))
        except (FileNotFoundError, TypeError, ValueError):
            problems.append(f"source segment {seq}: its manifest is not in the store")
            continue
        if signed.digest(record).hex() != src.get("manifest_sha256"):
            problems.append(f"source segment {seq}: the store's manifest differs from the one the report names")
            continue
        manifest = read_manifest(record, None)
        if manifest.sha256.hex() != src.get("sha256"):
            problems.append(f"source segment {seq}: the footage hash differs from the store's manifest")
    if not body.get("source"):
        problems.append("the report names no source segment")
    if video is not None:
        digest = _sha256_file(video)
        if digest != body.get("output", {}).get("sha256"):
            problems.append(f"{video.name}: SHA-256 {digest[:16]}… is not the redacted file the report describes "
                            f"({str(body.get('output', {}).get('sha256'))[:16]}…)")
    if not body.get("approved_by"):
        problems.append("the redaction was not approved")
    elif body.get("approved_by") == body.get("redacted_by"):
        problems.append(f"approved by its own author ({body.get('approved_by')}): a disclosure needs a second person")
    return body, problems


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()
