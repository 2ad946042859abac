"""Tamper matrix: every way of altering a camera store we know of, and what catches it.

One store is recorded by the simulated camera (two recordings, 1 s segments, event
log), copied per case, tampered with, and verified; each case must fail and name
the file it is about. docs/FORMAT.md §2.4 is the prose version of this table.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Callable

import cbor2
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from common import keys, signed
from common.chain_head import format_anchor, read_head
from common.manifest import read_manifest
from device import config as device_config
from device.identity import DeviceIdentity
from dock.verify import NothingToVerify, verify_store
from dock.verify_cli import main as verify_main
from simulator.device_sim import SimDevice


@pytest.fixture(scope="module")
def shift_store(tmp_path_factory, identity) -> tuple[Path, bytes]:
    """A store with two recordings of 1 s segments and its event log; also the head after
    the first recording (an older, genuine head: what a rollback would bring back)."""
    root = tmp_path_factory.mktemp("shift")
    cfg = device_config.from_dict({
        "camera": {"width": 160, "height": 120, "fps": 15, "bitrate": 150_000, "audio": False},
        "recording": {"pre_record_seconds": 1, "segment_seconds": 1},
        "storage": {"warn_free_mb": 100, "full_free_mb": 20}, "device": {"store": "store"}}, base_dir=root)
    sim = SimDevice.create(cfg, identity)
    sim.runtime.boot()
    for step in ({"at": 2, "action": "double"}, {"at": 5, "action": "hold", "seconds": 3.2}):
        sim.schedule(step)
    sim.run_until(10)
    older_head = (root / "store" / "chain-head.cbor").read_bytes()
    for step in ({"at": 11, "action": "double"}, {"at": 14, "action": "hold", "seconds": 3.2}):
        sim.schedule(step)
    sim.run_until(19)
    sim.runtime.close()
    return root / "store", older_head


@pytest.fixture
def store(shift_store, tmp_path) -> Path:
    shutil.copytree(shift_store[0], tmp_path / "store")
    return tmp_path / "store"


def segs(store: Path, suffix: str = ".manifest") -> list[Path]:
    return sorted((store / "segments").glob(f"*{suffix}"))


def delete_seq(store: Path, *which: int) -> None:
    manifests = segs(store)
    for i in which:
        m = manifests[i]
        m.unlink()
        m.with_name(m.name.replace(".manifest", ".ts.age")).unlink()


def flip(path: Path, at: float = 0.5, bit: int = 0) -> None:
    data = bytearray(path.read_bytes())
    data[int(len(data) * at)] ^= 1 << bit
    path.write_bytes(bytes(data))


def rewrite_unprotected(path: Path, new: dict) -> None:
    obj = cbor2.loads(path.read_bytes())
    protected, _, payload, sig = obj.value
    path.write_bytes(cbor2.dumps(cbor2.CBORTag(18, [protected, new, payload, sig]), canonical=True))


def other_key_manifest(store: Path) -> None:
    """Re-sign the second manifest with a key that is not the device's."""
    m = segs(store)[1]
    other = Ed25519PrivateKey.generate()
    body = read_manifest(m.read_bytes(), None)
    m.write_bytes(body.__class__(**{**body.to_body(), "device_key": keys.fingerprint(other.public_key())})
                  .sign(other))


def swap_manifests(store: Path) -> None:
    a, b = segs(store)[1], segs(store)[2]
    a_bytes = a.read_bytes()
    a.write_bytes(b.read_bytes())
    b.write_bytes(a_bytes)


def stray_segment(store: Path) -> None:
    src = segs(store, ".ts.age")[0]
    shutil.copy(src, src.with_name("00009999.ts.age"))


def truncate_segment(store: Path) -> None:
    seg = segs(store, ".ts.age")[1]
    seg.write_bytes(seg.read_bytes()[:-1000])


# case → (tampering, a file name the report must name)
CASES: dict[str, tuple[Callable[[Path], None], str]] = {
    "last segment and manifest deleted": (lambda s: delete_seq(s, -1), "chain-head.cbor"),
    "last two segments and manifests deleted": (lambda s: delete_seq(s, -1, -2), "chain-head.cbor"),
    "first segment and manifest deleted": (lambda s: delete_seq(s, 0), "00000002.manifest"),
    "a middle segment and manifest deleted": (lambda s: delete_seq(s, 3), "00000004.manifest"),
    "a segment file deleted": (lambda s: segs(s, ".ts.age")[2].unlink(), "00000003.ts.age"),
    "a manifest deleted": (lambda s: segs(s)[2].unlink(), "00000003"),
    "bytes appended to a manifest": (lambda s: segs(s)[1].write_bytes(segs(s)[1].read_bytes() + b"\x00"),
                                     "00000002.manifest"),
    "unprotected header rewritten (other kid)": (lambda s: rewrite_unprotected(segs(s)[1], {4: bytes(32)}),
                                                 "00000002.manifest"),
    "unprotected header with an extra entry": (
        lambda s: rewrite_unprotected(segs(s)[1], {4: cbor2.loads(segs(s)[1].read_bytes()).value[1][4], 5: 1}),
        "00000002.manifest"),
    "manifest signed by another key": (other_key_manifest, "00000002.manifest"),
    "manifest bit flipped": (lambda s: flip(segs(s)[2], 0.7, 3), "00000003.manifest"),
    "segment bit flipped": (lambda s: flip(segs(s, ".ts.age")[1], 0.5, 5), "00000002.ts.age"),
    "segment truncated": (truncate_segment, "00000002.ts.age"),
    "manifests swapped": (swap_manifests, "00000002.manifest"),
    "stray segment with no manifest": (stray_segment, "00009999.ts.age"),
    "unknown file among the segments": (lambda s: (s / "segments" / "notes.txt").write_text("x"), "notes.txt"),
    "chain head deleted": (lambda s: (s / "chain-head.cbor").unlink(), "chain-head.cbor"),
    "chain head bit flipped": (lambda s: flip(s / "chain-head.cbor", 0.9, 1), "chain-head.cbor"),
    "event log bit flipped": (lambda s: flip(s / "events.cbors", 0.5, 2), "events.cbors"),
}


def test_untouched_store_verifies(store, device_public, authority):
    report = verify_store(store, device_public, identity=authority[1])
    assert report.ok, report.to_json()
    assert len(report.segments) >= 6 and report.events > 10 and report.head["seq"] == len(report.segments)


@pytest.mark.parametrize("case", list(CASES))
def test_tampering_is_detected_and_named(case, store, device_public, authority):
    tamper, names = CASES[case]
    tamper(store)
    report = verify_store(store, device_public, identity=authority[1])
    assert not report.ok, case
    said = [f"{p.file}: {p.problem}" for p in report.problems] + [
        f"{s.file}: {q}" for s in report.segments if not s.ok for q in s.problems]
    assert any(names in line for line in said), said


def test_bad_signature_stays_in_the_listing_named(store, device_public):
    flip(segs(store)[1], 0.95, 0)  # inside the signature
    report = verify_store(store, device_public)
    bad = [s for s in report.segments if s.seq == 2]
    assert bad and not bad[0].ok and "00000002.manifest" in bad[0].problems[0]


def test_deleted_tail_is_also_caught_by_the_event_log(store, device_public):
    delete_seq(store, -1)
    report = verify_store(store, device_public)
    assert any(p.file == "events.cbors" and "missing" in p.problem for p in report.problems)


def test_rollback_to_an_older_genuine_state_needs_the_anchor(shift_store, store, device_public):
    """A consistent rollback (older signed head back, the newer segments and their log
    entries gone) verifies on its own: only an anchor newer than it can tell. FORMAT.md
    says so; this test keeps that statement true."""
    head_now = read_head((store / "chain-head.cbor").read_bytes(), device_public)
    older = read_head(shift_store[1], device_public)
    (store / "chain-head.cbor").write_bytes(shift_store[1])
    for m in segs(store):
        if int(m.name[:8]) > older.seq:
            m.unlink()
            m.with_name(m.name.replace(".manifest", ".ts.age")).unlink()
    records, _ = signed.split_sequence((store / "events.cbors").read_bytes())
    keep = [r for r in records if not _mentions_after(r, older.seq)]
    cut = next(i for i, r in enumerate(records) if _mentions_after(r, older.seq))
    (store / "events.cbors").write_bytes(b"".join(records[:cut]))
    assert len(keep) >= cut
    assert verify_store(store, device_public).ok
    report = verify_store(store, device_public, anchor=head_now)
    assert not report.ok and any("rolled back" in p.problem or "deleted" in p.problem for p in report.problems)


def _mentions_after(record: bytes, seq: int) -> bool:
    body = signed.open_signed(record, None)
    data = body["data"]
    return body["kind"] == "state" and data.get("recording_id", "").endswith(f"{seq + 1:08d}")


def test_offloaded_prefix_verifies_with_the_anchor(store, device_public):
    manifests = segs(store)
    anchor_record = manifests[2].read_bytes()
    delete_seq(store, 0, 1, 2)  # what the dock freed
    assert not verify_store(store, device_public).ok  # without an anchor: 1…3 unaccounted for
    anchor = f"3:{signed.digest(anchor_record).hex()}"
    from common.chain_head import parse_anchor
    assert verify_store(store, device_public, anchor=parse_anchor(anchor)).ok
    wrong = parse_anchor(f"3:{'00' * 32}")
    assert not verify_store(store, device_public, anchor=wrong).ok


def test_cli_anchor_accepts_a_saved_head_file(store, device_public, key_dir, tmp_path, capsys):
    saved = tmp_path / "head.cbor"
    shutil.copy(store / "chain-head.cbor", saved)
    assert verify_main([str(store), "--device-key", str(key_dir / "device.pub.pem"), "--anchor", str(saved)]) == 0
    out = capsys.readouterr().out
    assert "all verified" in out and format_anchor(read_head(saved.read_bytes(), device_public)) in out


@pytest.mark.parametrize("layout", ["empty", "no manifests", "not a store"])
def test_nothing_to_verify_fails(layout, tmp_path, device_public):
    d = tmp_path / "d"
    d.mkdir()
    if layout == "no manifests":
        (d / "segments").mkdir()
        (d / "segments" / "README").write_text("x")
    elif layout == "not a store":
        (d / "photo.jpg").write_bytes(b"\xff\xd8")
    with pytest.raises(NothingToVerify):
        verify_store(d, device_public)


def test_store_root_and_segments_dir_both_accepted(store, device_public):
    assert verify_store(store, device_public).ok and verify_store(store / "segments", device_public).ok


def test_store_refuses_another_device_key(store, authority):
    from device.segment_store import SegmentStore, StoreKeyError
    other = DeviceIdentity("test-cam", Ed25519PrivateKey.generate(), (authority[2],))
    with pytest.raises(StoreKeyError, match="another key"):
        SegmentStore(store, other)


def test_every_single_bit_flip_of_a_manifest_is_a_clean_error(shift_store, device_public):
    record = segs(shift_store[0])[1].read_bytes()
    outcomes = set()
    for i in range(len(record) * 8):
        data = bytearray(record)
        data[i // 8] ^= 1 << (i % 8)
        with pytest.raises(signed.SignatureError) as raised:
            read_manifest(bytes(data), device_public)
        outcomes.add(str(raised.value).split(":")[0][:30])
    assert len(outcomes) > 3  # many different rules fire, all as SignatureError


def test_every_single_bit_flip_of_an_age_header_is_a_clean_error(shift_store, authority):
    from common import age_format
    data = segs(shift_store[0], ".ts.age")[0].read_bytes()
    header_len = age_format.parse_header(data).payload_offset
    for i in range(header_len * 8):
        mutated = bytearray(data)
        mutated[i // 8] ^= 1 << (i % 8)
        try:
            rec = age_format.recover(bytes(mutated), authority[1])
        except age_format.AgeError:
            continue
        raise AssertionError(f"bit {i} of the header flipped and still decrypted ({rec.reason})")
