"""Power cuts at every moment: the disk as a cut leaves it (files cut back to their last
fsync, directory entries as of the last directory fsync), then boot, seal, verify.

The in-process sweep cuts at every packet around segment rotations; the campaign
SIGKILLs a real ``bodycam-sim``-like process at random moments.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import pytest

from common import signed
from common.chain_head import read_head
from device.camera import VideoParams
from device.segment_store import SegmentStore
from device.segment_writer import WriterPolicy
from dock.verify import NothingToVerify, verify_store
from simulator.powercut import FsyncTracker, disk_image

ROOT = Path(__file__).resolve().parent.parent
TINY = VideoParams(width=160, height=120, fps=15, bitrate=200_000, gop_frames=15)


@pytest.fixture
def tracker():
    t = FsyncTracker().install()
    yield t
    t.uninstall()


def last_frame_pts_us(ts: bytes) -> int | None:
    """pts (µs) of the last video frame a stock demuxer/decoder gets out of ``ts``."""
    import io
    last = None
    try:
        with av.open(io.BytesIO(ts), format="mpegts") as c:
            for frame in c.decode(video=0):
                if frame.pts is not None:
                    last = int(frame.pts * frame.time_base * 1_000_000)
    except (av.error.FFmpegError, StopIteration):
        pass
    return last


def boot_and_verify(image: Path, identity, device_public, authority) -> tuple[bool, object]:
    store = SegmentStore(image, identity)   # next boot
    store.seal_interrupted()
    again = SegmentStore(image, identity)   # and a second boot changes nothing
    assert again.head == store.head and again.seal_interrupted() == []
    try:
        return True, verify_store(image, device_public, identity=authority[1])
    except NothingToVerify:
        return False, None


def test_cut_at_every_packet_around_rotations(rig_factory, tracker, identity, device_public, authority,
                                              tmp_path):
    rig = rig_factory(video=TINY, pre_record=1, policy=WriterPolicy(segment_seconds=1))
    rig.run_until(1.5)
    rig.recorder.start(announced=True)
    packets = rig.camera.packets()
    cuts = 0
    for i in range(45):  # three seconds: three rotations, every packet a cut
        p = next(packets)
        rig.recorder.on_packet(p)
        image = disk_image(tracker, rig.store.root, tmp_path / f"cut{i}")
        has, report = boot_and_verify(image, identity, device_public, authority)
        assert not has or report.ok, (i, report.to_json())
        cuts += has
    rig.recorder.stop()
    assert cuts > 40


def test_journal_with_an_empty_segment_file_seals_as_no_footage(rig_factory, identity, device_public, tmp_path):
    """A cut before the header was durable (an older store layout, or a disk that lies):
    the seal signs over what is there and verification calls it what it is."""
    rig = rig_factory(video=TINY, pre_record=1, segment_seconds=1)
    rig.run_until(1.5)
    rig.record(1.5)
    seq = rig.store.head.seq + 1
    rig.store.begin(seq, {**_journal_of(rig), "index": 0})
    rig.store.segment_path(seq).write_bytes(b"age-encryption.org/v1\n-> X25")
    store = SegmentStore(rig.store.root, identity)
    (sealed,) = store.seal_interrupted()
    assert sealed.size == 28 and not sealed.complete
    report = verify_store(rig.store.root, device_public)
    assert report.ok, report.to_json()
    assert "no footage" in report.segments[-1].problems[0]


def _journal_of(rig) -> dict:
    from common.manifest import read_manifest
    m = read_manifest(rig.store.manifest_path(rig.store.head.seq).read_bytes(), None)
    from device.segment_store import JOURNAL_FIELDS
    return {k: getattr(m, k) for k in JOURNAL_FIELDS}


def test_segment_file_without_journal_is_discarded_at_boot(rig_factory, identity, device_public):
    rig = rig_factory(video=TINY, pre_record=1, segment_seconds=1)
    rig.run_until(1.5)
    rig.record(1.2)
    orphan = rig.store.segment_path(rig.store.head.seq + 1)
    orphan.write_bytes(b"age-encryption.org/v1\n")
    store = SegmentStore(rig.store.root, identity)
    assert store.discarded == [orphan] and not orphan.exists()
    assert verify_store(rig.store.root, device_public).ok


def test_cut_between_manifest_and_head_is_rolled_forward_not_resealed(rig_factory, identity, device_public,
                                                                      tmp_path):
    rig = rig_factory(video=TINY, pre_record=1, segment_seconds=1)
    rig.run_until(1.5)
    old_head = (rig.store.root / "chain-head.cbor").read_bytes() if (rig.store.root / "chain-head.cbor").exists() else None
    assert old_head is None
    _, segments = rig.record(2.5)
    last = segments[-1]
    # Put the disk back to: last manifest durable, head one behind, journal still there.
    journal = {**_journal_of(rig)}
    head_before = rig.store.head
    prev_record = segments[-2].manifest_path.read_bytes()
    from common.chain_head import ChainHead
    (rig.store.root / "chain-head.cbor").write_bytes(
        ChainHead(last.seq - 1, signed.digest(prev_record), identity.device_id).sign(identity.signing_key))
    rig.store.journal_path(last.seq).write_bytes(signed.canonical(journal))
    manifest_bytes = last.manifest_path.read_bytes()
    store = SegmentStore(rig.store.root, identity)
    assert store.head.seq == head_before.seq and store.seal_interrupted() == []
    assert last.manifest_path.read_bytes() == manifest_bytes  # still complete=true, not re-signed
    assert read_head((rig.store.root / "chain-head.cbor").read_bytes(), device_public).seq == last.seq
    assert not rig.store.journal_path(last.seq).exists()
    assert verify_store(rig.store.root, device_public).ok


def test_verify_reports_an_unsealed_segment_and_recovers_it(rig_factory, tracker, identity, device_public,
                                                            authority, tmp_path):
    rig = rig_factory(video=TINY, pre_record=1, segment_seconds=30)
    rig.run_until(1.5)
    rig.recorder.start(announced=True)
    rig.run_until(6)
    image = disk_image(tracker, rig.store.root, tmp_path / "cut")
    rig.recorder.stop()
    report = verify_store(image, device_public, identity=authority[1], decrypt_to=tmp_path / "out")
    assert not report.ok
    (seg,) = report.segments
    assert not seg.sealed and "not sealed yet" in seg.problems[0] and seg.plaintext_bytes > 0
    assert last_frame_pts_us((tmp_path / "out" / "00000001.unsealed.ts").read_bytes()) is not None


# ----------------------------------------------------------------------------- campaign

CAMPAIGN_RUNS = int(os.environ.get("POWERCUT_RUNS", "8"))


@pytest.mark.parametrize("run", range(CAMPAIGN_RUNS))
def test_sigkill_campaign(run, tmp_path, identity, key_dir, device_public, authority):
    """SIGKILL a recording camera process at a random moment; the disk image must seal,
    verify, and lose at most about a second of footage (sync interval 1 s)."""
    rnd = random.Random(1000 + run)
    work = tmp_path / "cam"
    proc = subprocess.Popen([sys.executable, str(ROOT / "tests" / "powercut_child.py"), str(work),
                             str(key_dir), authority[2]], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while not (work / "progress").exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.02)
    assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
    time.sleep(rnd.uniform(0.05, 2.5))
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    tracker = FsyncTracker.from_log(work / "fsync.log")
    image = disk_image(tracker, work / "store", tmp_path / "image")
    has, report = boot_and_verify(image, identity, device_public, authority)
    assert has, "the camera was recording: there must be segments"
    assert report.ok, report.to_json()
    written_pts = int((work / "progress").read_text().split()[-1])
    last = report.segments[-1]
    data = b"".join(_decrypted(image, s.file, authority[1]) for s in report.segments[-2:])
    recovered = last_frame_pts_us(data)
    assert recovered is not None, report.to_json()
    lost = (written_pts - recovered) / 1e6
    print(f"run {run}: {len(report.segments)} segments, lost {lost:.2f} s")
    assert lost <= 1.5, f"lost {lost:.2f} s of footage (last segment {last.file})"


def _decrypted(image: Path, name: str, identity: bytes) -> bytes:
    from common import age_format
    return age_format.recover((image / "segments" / name).read_bytes(), identity).plaintext
