"""End to end in virtual time: simulated camera → buffer → muxer → age → store → verify → decode."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import av
import pyrage
import pytest

from common import age_format, keys, signed
from common.manifest import read_manifest, verify_manifest_chain
from device.segment_store import SegmentStore
from device.segment_writer import WriterPolicy
from dock.verify import verify_store
from simulator import cli
from tests.conftest import SMALL, need

FRAME_US = 1_000_000 // 30


def decode_video(ts: bytes) -> list[tuple[int, bool]]:
    """(pts µs, keyframe) of every decoded video frame."""
    frames = []
    with av.open(io.BytesIO(ts), format="mpegts") as c:
        stream = c.streams.video[0]
        for frame in c.decode(stream):
            frames.append((round(frame.pts * stream.time_base * 1_000_000), frame.key_frame))
    return frames


def plaintexts(segments, secret) -> list[bytes]:
    return [age_format.decrypt(s.path.read_bytes(), secret) for s in segments]


def test_segments_decrypt_with_age_cli_and_pyrage(recording, authority):
    path, secret, _ = authority
    _, _, segments = recording
    ident = pyrage.x25519.Identity.from_str(keys.format_identity(secret))
    for s in segments:
        cli_out = subprocess.run([need("age"), "-d", "-i", str(path), str(s.path)],
                                 capture_output=True, check=True).stdout
        assert cli_out == pyrage.decrypt(s.path.read_bytes(), [ident])
        assert cli_out[:1] == b"G"  # MPEG-TS sync byte


def test_frames_keyframes_and_continuous_pts_across_segments(recording, authority):
    rig, info, segments = recording
    assert len(segments) >= 4
    all_frames = []
    for s, ts in zip(segments, plaintexts(segments, authority[1])):
        frames = decode_video(ts)
        assert frames[0][1], "every segment starts with a keyframe"
        assert len(frames) == s.manifest.frames
        assert frames[0][0] == s.manifest.first_pts_us and frames[-1][0] == s.manifest.last_pts_us
        all_frames += frames
    pts = [p for p, _ in all_frames]
    steps = {b - a for a, b in zip(pts, pts[1:])}
    assert steps <= {FRAME_US, FRAME_US + 1}, "no gap or overlap, also across segment boundaries"
    # Expected frame count: from the first pre-record keyframe to the stop.
    last = segments[-1].manifest
    assert len(pts) == round((last.last_pts_us - segments[0].manifest.first_pts_us) / FRAME_US) + 1


def test_concatenated_recording_plays_in_ffprobe(recording, authority, tmp_path):
    _, _, segments = recording
    joined = tmp_path / "all.ts"
    joined.write_bytes(b"".join(plaintexts(segments, authority[1])))
    out = subprocess.run([need("ffprobe"), "-v", "error", "-count_frames", "-show_entries",
                          "stream=codec_type,nb_read_frames", "-of", "json", str(joined)],
                         capture_output=True, text=True, check=True)
    streams = {s["codec_type"]: int(s["nb_read_frames"]) for s in json.loads(out.stdout)["streams"]}
    assert streams["video"] == sum(s.manifest.frames for s in segments)
    assert streams["audio"] > 0


def test_pre_record_covers_the_window_within_one_gop(recording):
    _, info, segments = recording
    covered = info.press_pts_us - segments[0].manifest.first_pts_us
    assert 3_000_000 <= covered < 3_000_000 + SMALL.gop_frames * FRAME_US
    assert segments[0].manifest.press_pts_us == info.press_pts_us
    assert segments[0].manifest.pre_record_s == 3


def test_rotation_at_first_keyframe_after_segment_seconds(recording):
    _, _, segments = recording
    for s in segments[:-1]:
        duration = s.manifest.end_mono_us - s.manifest.start_mono_us
        assert duration == 2_000_000 or abs(duration - 2_000_000) <= FRAME_US
    assert [s.manifest.final for s in segments] == [False] * (len(segments) - 1) + [True]
    assert [s.manifest.index for s in segments] == list(range(len(segments)))


def test_manifests_signed_and_chained(recording, device_public):
    rig, info, segments = recording
    records = [s.manifest_path.read_bytes() for s in segments]
    ms = verify_manifest_chain(records, device_public, prev=None, first_seq=1)
    for s, m in zip(segments, ms):
        assert m.sha256 == hashlib.sha256(s.path.read_bytes()).digest()
        assert m.recording_id == info.recording_id and m.announced and m.officer_id == "KOD-17"
        assert m.device_key == keys.fingerprint(device_public)
        assert m.audio["codec"] == "aac" and m.video["width"] == 320
        assert m.end_utc_us - m.start_utc_us == m.end_mono_us - m.start_mono_us
    assert rig.store.head.prev == signed.digest(records[-1])


def copy_store(segments, tmp_path) -> Path:
    """A copy of the whole store (segments, manifests, signed head); returns its segments/."""
    root = tmp_path / "copy"
    shutil.copytree(segments[0].path.parent.parent, root)
    return root / "segments"


def test_verify_store_passes_and_detects_tampering(recording, device_public, authority, tmp_path):
    _, _, segments = recording
    d = copy_store(segments, tmp_path)
    assert verify_store(d, device_public, identity=authority[1]).ok
    # flipped byte in a segment file
    victim = d / segments[1].path.name
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0x40
    victim.write_bytes(bytes(data))
    report = verify_store(d, device_public, identity=authority[1])
    assert not report.ok and "altered" in " ".join(report.segments[1].problems)


def test_removed_segment_is_detected(recording, device_public, tmp_path):
    _, _, segments = recording
    d = copy_store(segments, tmp_path)
    (d / segments[2].manifest_path.name).unlink()
    (d / segments[2].path.name).unlink()
    report = verify_store(d, device_public)
    assert not report.ok and "00000003.manifest: missing" in report.chain_error


def test_reordered_segments_are_detected(recording, device_public, tmp_path):
    _, _, segments = recording
    d = copy_store(segments, tmp_path)
    a, b = d / segments[1].manifest_path.name, d / segments[2].manifest_path.name
    a_bytes, b_bytes = a.read_bytes(), b.read_bytes()
    a.write_bytes(b_bytes)
    b.write_bytes(a_bytes)
    assert not verify_store(d, device_public).ok


def test_chain_runs_across_recordings(rig_factory, device_public):
    rig = rig_factory(pre_record=1, segment_seconds=5)
    rig.run_until(2)
    _, first = rig.record(1.5)
    rig.run_until(rig.clock.monotonic_us() / 1e6 + 2)
    _, second = rig.record(1.5, announced=False)
    records = [s.manifest_path.read_bytes() for s in first + second]
    ms = verify_manifest_chain(records, device_public, first_seq=1)
    assert ms[len(first)].prev == signed.digest(records[len(first) - 1])
    assert ms[0].recording_id != ms[-1].recording_id and not ms[-1].announced
    # Deleting the whole first recording breaks the chain at the second one.
    with pytest.raises(signed.ChainError):
        verify_manifest_chain(records[len(first):], device_public, first_seq=1)


def test_nothing_touches_disk_before_activation(rig_factory):
    rig = rig_factory(pre_record=5)
    rig.run_until(8)
    assert rig.buffer.nbytes > 0
    assert list(rig.store.dir.iterdir()) == []


def power_cut(rig, tmp_path, cut_after_s: float) -> tuple[Path, int]:
    """Record, and copy the store as the disk holds it mid-segment (the 'power cut')."""
    rig.recorder.start(announced=True)
    rig.run_until(rig.clock.monotonic_us() / 1e6 + cut_after_s)
    cut_pts = rig.recorder.last_pts_us
    image = tmp_path / "after-power-cut"
    shutil.copytree(rig.store.root, image)
    rig.recorder.stop()
    return image, cut_pts


@pytest.mark.parametrize("pad, max_loss_s", [(True, 1.2), (False, None)])
def test_power_cut_recovers_all_but_about_a_second(rig_factory, identity, authority, device_public,
                                                   tmp_path, pad, max_loss_s):
    # A low bitrate: a 64 KiB chunk would take several seconds to fill without padding.
    video = SMALL.__class__(width=160, height=120, fps=30, bitrate=60_000, gop_frames=30)
    rig = rig_factory(video=video, pre_record=1, policy=WriterPolicy(segment_seconds=60, pad_to_sync=pad))
    rig.run_until(2)
    image, cut_pts = power_cut(rig, tmp_path, 9.7)
    store = SegmentStore(image, identity)  # next boot
    sealed = store.seal_interrupted()
    assert len(sealed) == 1 and not sealed[0].complete
    report = verify_store(store.dir, device_public, identity=authority[1], decrypt_to=tmp_path / "dec")
    seg = report.segments[-1]
    assert report.ok and seg.truncated and any("recovered" in p for p in seg.problems)
    frames = decode_video((tmp_path / "dec" / f"{sealed[0].seq:08d}.truncated.ts").read_bytes())
    assert frames and frames[0][1]
    lost_s = (cut_pts - frames[-1][0]) / 1e6
    if max_loss_s is not None:
        assert lost_s <= max_loss_s
    else:
        assert lost_s > max(1.2, 0)  # without padding a slow stream loses more: the padding matters


def test_fsync_at_least_once_per_second_of_footage(rig_factory, monkeypatch):
    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd)))
    rig = rig_factory(pre_record=1, segment_seconds=60)
    rig.run_until(2)
    synced.clear()
    rig.record(10)
    assert len(synced) >= 10


def test_cli_contract(tmp_path, capsys):
    assert cli.main(["record", "--out", str(tmp_path), "--pre-record", "2", "--record", "3",
                     "--resolution", "320x240", "--fps", "15", "--bitrate", "500000",
                     "--segment-seconds", "2", "--seed", "4", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    for field in ("identity", "recipient", "device_public_key", "press_pts_us", "segments"):
        assert field in out
    assert Path(out["identity"]).exists() and out["recipient"].startswith("age1")
    key = keys.load_verify_key(Path(out["device_public_key"]))
    secret = keys.load_identity(Path(out["identity"]))
    for s in out["segments"]:
        m = read_manifest(Path(s["manifest"]).read_bytes(), key)
        assert m.sha256.hex() == s["sha256"]
        assert age_format.decrypt(Path(s["path"]).read_bytes(), secret)[:1] == b"G"
    assert out["pre_record_covered_s"] >= 2


@pytest.mark.parametrize("argv", [
    ["record", "--out", "x", "--record", "3", "--resolution", "big"],
    ["record", "--out", "x", "--record", "3", "--pre-record", "500"],
    ["record", "--out", "x", "--record", "-1"],
    ["record", "--out", "x", "--record", "3", "--fps", "0"],
    ["record", "--record", "3"],
])
def test_cli_bad_arguments_exit_2_with_a_message(argv, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "simulator.cli", *argv], capture_output=True,
                          text=True, cwd=tmp_path)
    assert proc.returncode == 2
    assert "error:" in proc.stderr
