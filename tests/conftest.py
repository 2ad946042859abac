"""Shared fixtures: keys, a device identity, and a small simulated recording."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings

# The reliability campaign's full run fuzzes longer than CI's (--hypothesis-profile=long).
settings.register_profile("long", max_examples=2000)

from common import keys
from common.clock import VirtualClock
from device.camera import CameraConfig, VideoParams, AudioParams, open_camera
from device.identity import DeviceIdentity
from device.recorder import Recorder
from device.ring_buffer import PreRecordBuffer
from device.segment_store import SegmentStore
from device.segment_writer import WriterPolicy

SMALL = VideoParams(width=320, height=240, fps=30, bitrate=800_000, gop_frames=30)


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
    """Each test its own cache directory: an S3 store's index lives there by default, and a
    bucket name reused by a later run (another SeaweedFS) must not meet an old index."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))


def need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.fail(f"{tool} is not installed; run ./dev.sh setup (apt-get install age ffmpeg espeak-ng)")
    return path


@pytest.fixture(scope="session")
def key_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("keys")
    keys.create_authority(d)
    keys.create_device_key(d)
    return d


@pytest.fixture(scope="session")
def authority(key_dir) -> tuple[Path, bytes, str]:
    path = key_dir / "authority.key"
    secret = keys.load_identity(path)
    return path, secret, keys.recipient_of(secret)


@pytest.fixture(scope="session")
def identity(key_dir, authority) -> DeviceIdentity:
    return DeviceIdentity.load("test-cam", key_dir / "device.key", [authority[2]], officer_id="KOD-17")


@pytest.fixture(scope="session")
def device_public(identity):
    return identity.signing_key.public_key()


class Rig:
    """A simulated camera wired to a recorder, driven packet by packet in virtual time."""

    def __init__(self, root: Path, identity: DeviceIdentity, *, video: VideoParams = SMALL,
                 audio: AudioParams | None = None, pre_record: float = 3, segment_seconds: float = 2,
                 policy: WriterPolicy | None = None, seed: int = 1, noise: int = 0,
                 keep_audio: bool = False) -> None:
        self.clock = VirtualClock()
        self.camera = open_camera(CameraConfig("sim", video, audio, {"seed": seed, "noise": noise}),
                                  clock=self.clock)
        self.store = SegmentStore(root, identity)
        self.identity = identity
        self.buffer = PreRecordBuffer(pre_record, 256 << 20, keep_audio=keep_audio)
        self.recorder = Recorder(self.store, identity, self.camera.video, self.camera.audio, self.clock,
                                 self.buffer, policy or WriterPolicy(segment_seconds=segment_seconds))
        self._packets = self.camera.packets()
        self.fed: list[Any] = []

    def run_until(self, mono_s: float) -> None:
        for p in self._packets:
            self.recorder.on_packet(p)
            if p.pts_us >= mono_s * 1e6:
                return

    def record(self, seconds: float, announced: bool = True):
        info = self.recorder.start(announced=announced)
        self.run_until((self.clock.monotonic_us() / 1e6) + seconds)
        return info, self.recorder.stop()


@pytest.fixture
def rig_factory(tmp_path, identity):
    def make(**kw) -> Rig:
        return Rig(tmp_path / "store", identity, **kw)
    return make


@pytest.fixture(scope="session")
def recording(tmp_path_factory, identity):
    """One recording: 3 s pre-record, 7 s recorded, 2 s segments, AAC audio."""
    rig = Rig(tmp_path_factory.mktemp("rec") / "store", identity, audio=AudioParams(), pre_record=3)
    rig.run_until(4.5)
    info, segments = rig.record(7)
    return rig, info, segments


def run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, **kw)


# ---------------------------------------------------------------------- a real S3 engine
# One SeaweedFS per test session: it also binds the fixed ports 8181 and 9101.

@pytest.fixture(scope="session")
def s3(tmp_path_factory):
    from simulator.s3_server import SeaweedS3
    try:
        server = SeaweedS3(tmp_path_factory.mktemp("seaweedfs"))
    except RuntimeError as exc:
        pytest.fail(str(exc))
    yield server.endpoint
    server.stop()


_buckets = [0]


@pytest.fixture
def bucket(s3) -> str:
    """A fresh bucket with Object Lock and a 14-day GOVERNANCE default (the office's init)."""
    import time
    from evidence.s3 import init_bucket
    _buckets[0] += 1
    name = f"evidence-{_buckets[0]}-{int(time.time() * 1000) % 100000}"
    from simulator.s3_server import s3_client
    init_bucket(s3_client(s3, "office"), name, retention_days=14)
    return name
