"""The microphone: ALSA/PyAV capture → AAC on the runtime clock (device/microphone.py).

Real sources throughout: a paced FFmpeg test tone (lavfi ``sine`` + ``arealtime``, whose
``speed`` plays a sound card whose crystal runs fast or slow), ALSA's ``null`` device
through PyAV's own alsa-lib, and FFmpeg's AAC encoder and decoder.
"""

from __future__ import annotations

import time

import av
import numpy as np
import pytest

from common.clock import SystemClock
from device.camera import AudioParams, CameraError, EncodedPacket
from device.camera_picamera2 import FrameSink
from device.microphone import AudioTimeline, Microphone, MicrophoneError, probe_microphone


def capture(seconds: float, source: str, clock: SystemClock) -> tuple[Microphone, list[tuple[int, EncodedPacket]]]:
    got: list[tuple[int, EncodedPacket]] = []
    mic = Microphone(AudioParams(), clock.monotonic_us, lambda p: got.append((clock.monotonic_us(), p)),
                     device=source, fmt="lavfi")
    time.sleep(seconds)
    mic.close()
    return mic, got


def decode(params: AudioParams, packets: list[EncodedPacket]) -> np.ndarray:
    dec = av.CodecContext.create("aac", "r")
    dec.extradata = params.extradata
    out = []
    for p in packets:
        for frame in dec.decode(av.Packet(p.data)):
            out.append(frame.to_ndarray()[0])
    return np.concatenate(out)


def test_timeline_is_sample_exact_between_blocks_and_pinned_to_the_clock():
    tl = AudioTimeline(rate=48_000)
    starts = [tl.place(960, now_us=20_000 * (i + 1)) for i in range(100)]  # 20 ms blocks, on time
    assert starts == [20_000 * i for i in range(100)]
    assert tl.dropped_blocks == tl.jumps == 0


def test_timeline_drops_audio_that_runs_ahead_and_jumps_over_lost_samples():
    fast = AudioTimeline(rate=48_000, max_lead_us=40_000)
    placed = []
    for i in range(500):  # a card 5 % fast: 20 ms of samples every 19 ms
        now = 19_000 * (i + 1)
        start = fast.place(960, now)
        if start is not None:
            placed.append(start)
            assert start <= now - 20_000 + 40_000  # never further ahead of the clock than the tolerance
    assert fast.dropped_blocks > 0 and placed == sorted(set(placed))
    slow = AudioTimeline(rate=48_000, max_lag_us=500_000)
    starts = [slow.place(960, 20_000 * (i + 1)) for i in range(10)]
    overrun = slow.place(960, 20_000 * 11 + 900_000)  # 0.9 s of samples lost to an overrun
    assert slow.jumps == 1 and overrun == 20_000 * 10 + 900_000
    assert starts[-1] < overrun


def test_timeline_does_not_jump_on_a_burst_after_a_scheduling_stall():
    tl = AudioTimeline(rate=48_000, max_lag_us=500_000)
    for i in range(10):
        tl.place(960, 20_000 * (i + 1))
    # the reader slept 300 ms; ALSA hands over the 15 buffered blocks at once
    starts = [tl.place(960, 200_000 + 300_000) for _ in range(15)]
    assert tl.jumps == 0 and tl.dropped_blocks == 0
    assert starts == [200_000 + 20_000 * i for i in range(15)]


def test_captured_tone_is_aac_on_the_clock_and_sounds_right():
    clock = SystemClock()
    start = clock.monotonic_us()
    mic, got = capture(1.5, "sine=frequency=1000:sample_rate=44100,arealtime", clock)  # resampled to 48 kHz
    assert mic.error is None and len(got) > 50
    packets = [p for _, p in got]
    assert all(p.kind == "audio" for p in packets)
    pts = [p.pts_us for p in packets]
    assert pts == sorted(set(pts))
    steps = np.diff(pts[1:])
    assert abs(np.median(steps) - 1024 / 48_000 * 1e6) <= 1            # sample-exact AAC frames
    assert -150_000 < pts[1] - start < 150_000                        # starts when capture started
    for received, p in got[1:]:
        assert p.pts_us <= received                                   # never stamped in the future
    samples = decode(mic.params, packets)
    spectrum = np.abs(np.fft.rfft(samples[4096:]))
    peak_hz = np.argmax(spectrum) * 48_000 / len(samples[4096:])
    assert abs(peak_hz - 1000) < 5
    assert mic.params.extradata  # the AudioSpecificConfig the TS muxer needs


@pytest.mark.parametrize("speed, counter", [(1.25, "dropped_blocks"), (0.5, "jumps")])
def test_a_sound_card_running_fast_or_slow_stays_on_the_video_clock(speed, counter):
    clock = SystemClock()
    mic, got = capture(2.5, f"sine=frequency=440:sample_rate=48000,arealtime=speed={speed}", clock)
    assert getattr(mic.timeline, counter) > 0
    pts = [p.pts_us for _, p in got]
    assert pts == sorted(set(pts))
    for received, p in got[2:]:  # within the tolerances of the clock, however far the card drifted
        assert received - 1_000_000 < p.pts_us <= received + 40_000


def test_a_microphone_that_goes_away_is_reported_and_the_video_goes_on():
    clock = SystemClock()
    sink = FrameSink(clock.monotonic_us, stall_s=1.0)
    mic = Microphone(AudioParams(), clock.monotonic_us, sink.put_audio,
                     device="sine=duration=0.3,arealtime", fmt="lavfi")
    deadline = time.monotonic() + 3
    while mic.error is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert isinstance(mic.error, MicrophoneError) and "device removed" in str(mic.error)
    sink.outputframe(b"\x00\x00\x00\x01\x65", keyframe=True, timestamp=1)
    sink.close()
    kinds = [p.kind for p in sink.packets()]
    assert kinds.count("video") == 1 and kinds.count("audio") > 5


def test_a_live_microphone_does_not_hide_a_dead_camera():
    clock = SystemClock()
    sink = FrameSink(clock.monotonic_us, stall_s=0.5)
    mic = Microphone(AudioParams(), clock.monotonic_us, sink.put_audio,
                     device="sine=frequency=1000,arealtime", fmt="lavfi")
    try:
        sink.outputframe(b"\x00\x00\x00\x01\x65", keyframe=True, timestamp=1)
        began = time.monotonic()
        with pytest.raises(CameraError, match="no frame from the camera"):
            for _ in sink.packets():
                assert time.monotonic() - began < 3
        assert 0.4 < time.monotonic() - began < 2
    finally:
        mic.close()


def test_alsa_devices_open_through_pyav_and_a_missing_one_says_what_to_do():
    assert "48000 Hz" in probe_microphone("null")  # ALSA's null PCM, through PyAV's bundled alsa-lib
    with pytest.raises(MicrophoneError, match="arecord -L"):
        probe_microphone("hw:CARD=NoSuchMic")


@pytest.mark.hardware
def test_the_pis_microphone_delivers_aac_on_the_clock():
    """On a Pi with its microphone: BODYCAM_AUDIO_DEVICE names it (arecord -L), default 'default'."""
    import os
    clock = SystemClock()
    got: list[EncodedPacket] = []
    mic = Microphone(AudioParams(), clock.monotonic_us, got.append,
                     device=os.environ.get("BODYCAM_AUDIO_DEVICE", "default"))
    time.sleep(2)
    mic.close()
    assert mic.error is None and len(got) > 60
    assert [p.pts_us for p in got] == sorted({p.pts_us for p in got})
    assert len(decode(mic.params, got)) > 1.5 * 48_000
