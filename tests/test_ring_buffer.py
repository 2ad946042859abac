"""Pre-record buffer: keyframe alignment, the time and byte bounds, clear, pass-through."""

from __future__ import annotations

import pytest

from device.camera import EncodedPacket
from device.ring_buffer import PreRecordBuffer

FRAME = 33_333


def stream(seconds: float, *, gop: int = 30, size: int = 1000, audio: bool = False, start: int = 0):
    for i in range(int(seconds * 30)):
        pts = start + i * FRAME
        yield EncodedPacket(bytes(size), pts, i % gop == 0)
        if audio:
            yield EncodedPacket(b"a" * 10, pts + 1, True, "audio")


def drain(buf: PreRecordBuffer) -> list[EncodedPacket]:
    out: list[EncodedPacket] = []
    buf.activate(out.append)
    return out


@pytest.mark.parametrize("window", [1, 2.5, 5, 30])
def test_handover_starts_at_a_keyframe_covering_the_window_within_one_gop(window):
    buf = PreRecordBuffer(window, 1 << 30)
    packets = list(stream(window + 10))
    for p in packets:
        buf.push(p)
    out = drain(buf)
    press = packets[-1].pts_us
    assert out[0].keyframe
    covered = press - out[0].pts_us
    assert window * 1e6 <= covered < window * 1e6 + 30 * FRAME
    assert out == packets[-len(out):]  # nothing lost or reordered inside the window


def test_short_history_hands_over_everything_from_the_first_keyframe():
    buf = PreRecordBuffer(30, 1 << 30)
    packets = list(stream(4))
    for p in packets:
        buf.push(p)
    assert drain(buf) == packets


def test_packets_before_the_first_keyframe_are_not_kept():
    buf = PreRecordBuffer(30, 1 << 30)
    packets = list(stream(3))[10:]  # starts mid-GOP
    for p in packets:
        buf.push(p)
    out = drain(buf)
    assert out[0].keyframe and out[0].pts_us == 30 * FRAME


def test_byte_bound_drops_whole_gops_from_the_front():
    buf = PreRecordBuffer(30, max_bytes=75_000)  # 2.5 GOPs of 30 kB
    for p in stream(10):
        buf.push(p)
        assert buf.nbytes <= 75_000
    out = drain(buf)
    assert out[0].keyframe
    assert len(out) == 60  # the two newest whole GOPs (60 kB); a third would exceed 75 kB


def test_a_single_gop_over_the_byte_bound_is_dropped_not_kept_half():
    buf = PreRecordBuffer(30, max_bytes=5_000)
    for p in stream(2, size=1000):
        buf.push(p)
        assert buf.nbytes <= 5_000
    out = drain(buf)
    assert not out or out[0].keyframe


def test_clear_discards_everything():
    buf = PreRecordBuffer(10, 1 << 30)
    for p in stream(5):
        buf.push(p)
    assert buf.nbytes > 0
    buf.clear()
    assert buf.nbytes == 0 and buf.packet_count == 0
    out = drain(buf)
    assert out == []


def test_live_packets_pass_straight_through_after_activation():
    buf = PreRecordBuffer(2, 1 << 30)
    for p in stream(3):
        buf.push(p)
    out: list[EncodedPacket] = []
    buf.activate(out.append)
    handed = len(out)
    live = EncodedPacket(b"live", 10**7, False)
    buf.push(live)
    assert out[-1] is live and len(out) == handed + 1  # no lag: visible at once
    assert buf.nbytes == 0


def test_deactivate_restarts_empty():
    buf = PreRecordBuffer(2, 1 << 30)
    for p in stream(3):
        buf.push(p)
    drain(buf)
    buf.deactivate()
    assert not buf.active and buf.nbytes == 0


def test_zero_window_buffers_nothing_and_starts_at_next_keyframe():
    buf = PreRecordBuffer(0, 1 << 30)
    packets = list(stream(3))
    for p in packets[:45]:
        buf.push(p)
    assert buf.nbytes == 0
    out: list[EncodedPacket] = []
    assert buf.activate(out.append) == 0
    for p in packets[45:]:
        buf.push(p)
    assert out[0].keyframe and out[0].pts_us == 60 * FRAME


def test_audio_kept_only_when_configured():
    without = PreRecordBuffer(5, 1 << 30)
    with_audio = PreRecordBuffer(5, 1 << 30, keep_audio=True)
    for p in stream(3, audio=True):
        without.push(p)
        with_audio.push(p)
    assert all(p.kind == "video" for p in drain(without))
    assert any(p.kind == "audio" for p in drain(with_audio))


@pytest.mark.parametrize("seconds", [-1, 121])
def test_window_outside_0_to_120_is_refused(seconds):
    with pytest.raises(ValueError, match="0–120"):
        PreRecordBuffer(seconds, 1000)
