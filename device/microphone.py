"""The camera's microphone: ALSA capture through PyAV, AAC-encoded, on the video's timeline.

Capture runs in its own thread: PyAV reads blocks from ALSA (``av.open(device,
format="alsa")``), resamples them to the encoder's format and rate, encodes AAC, and hands
each packet to a callback as an :class:`~device.camera.EncodedPacket` of kind ``audio``.
Whether audio goes into the pre-record buffer is the ring buffer's decision (off by
default, as the law and the simulator have it); this module always captures.

Timestamps (:class:`AudioTimeline`): a sound card's crystal is not the system clock, so a
pure sample count drifts from the video over a shift (50 ppm is 1.4 s in 8 h). Each block
is pinned to the runtime clock: its first sample was captured at most ``now − duration``.
The count is trusted between blocks (sample-exact pts), and corrected only when it leaves
a tolerance: audio that runs ahead of the clock drops a block; audio that fell behind
(samples lost to an overrun) jumps forward, leaving a gap. pts therefore only increase
and stay within ``max_lead_us`` / ``max_lag_us`` of the truth.

PyAV's wheels carry their own alsa-lib, which looks for its configuration under a build
path; :func:`open_input` points it at Debian's ``/usr/share/alsa/alsa.conf`` (package
libasound2-data) unless ``ALSA_CONFIG_PATH`` is set — without it no named device opens
(measured: "Unknown PCM default" even with a sound card present).

>>> tl = AudioTimeline(rate=48_000)
>>> tl.place(1024, now_us=1_000_000)      # the first block: captured just before now
978667
>>> tl.place(1024, now_us=1_021_000)      # the next one follows sample-exactly
1000000
"""

from __future__ import annotations

import logging
import os
import threading
from fractions import Fraction
from pathlib import Path
from typing import Any, Callable

import av

from device.camera import AudioParams, EncodedPacket

log = logging.getLogger(__name__)
ALSA_CONF = Path("/usr/share/alsa/alsa.conf")


class MicrophoneError(RuntimeError):
    """The microphone cannot be opened or stopped delivering; the message says what to check."""


class AudioTimeline:
    """Places blocks of captured samples on the runtime clock (µs); see the module docstring."""

    def __init__(self, rate: int, max_lead_us: int = 40_000, max_lag_us: int = 500_000) -> None:
        self.rate = rate
        self.max_lead_us, self.max_lag_us = max_lead_us, max_lag_us
        self._next: float | None = None   # predicted clock time of the next sample
        self.dropped_blocks = 0           # audio ran ahead of the clock
        self.jumps = 0                    # audio fell behind (lost samples): a gap

    def place(self, samples: int, now_us: int) -> int | None:
        """Clock time of the first of ``samples`` read at ``now_us``, or None: drop this block."""
        duration = samples * 1_000_000 / self.rate
        latest = now_us - duration         # the block cannot have started later than this
        if self._next is None:
            self._next = latest
        elif self._next > latest + self.max_lead_us:
            self.dropped_blocks += 1
            return None
        elif self._next < latest - self.max_lag_us:
            self.jumps += 1
            self._next = latest
        start = self._next
        self._next += duration
        return round(start)


def open_input(device: str, fmt: str = "alsa", options: dict[str, str] | None = None) -> Any:
    """Open a capture device with PyAV; :class:`MicrophoneError` in plain words if it fails."""
    if fmt == "alsa" and "ALSA_CONFIG_PATH" not in os.environ and ALSA_CONF.exists():
        # read by alsa-lib at open (see the module docstring); the unit file sets the same
        os.environ["ALSA_CONFIG_PATH"] = str(ALSA_CONF)
        os.environ.setdefault("ALSA_CONFIG_DIR", str(ALSA_CONF.parent))
    try:
        container = av.open(device, format=fmt, options=options or {})
    except (av.FFmpegError, OSError, ValueError) as exc:
        hint = (" (list the devices with arecord -L; set camera.audio_device, e.g. \"plughw:CARD=Device\" "
                "for a USB microphone)" if fmt == "alsa" else "")
        raise MicrophoneError(f"the microphone {device!r} cannot be opened: no such capture device, or "
                              f"it is busy ({exc}){hint}") from None
    if not container.streams.audio:
        container.close()
        raise MicrophoneError(f"{device!r} has no audio input")
    return container


def probe_microphone(device: str, fmt: str = "alsa") -> str:
    """Open the device, read one block, close it: what ``bodycam-device --check`` reports."""
    container = open_input(device, fmt)
    try:
        ctx = container.streams.audio[0].codec_context
        return f"{device}: {ctx.sample_rate} Hz, {ctx.channels} channel(s)"
    finally:
        container.close()


class Microphone:
    """Captures ``device`` and calls ``on_packet`` with AAC packets until :meth:`close`.

    Off a Pi, any PyAV input works, e.g. a paced test tone::

        mic = Microphone(AudioParams(), clock.monotonic_us, packets.append,
                         device="sine=frequency=1000,arealtime", fmt="lavfi")
    """

    def __init__(self, params: AudioParams, now_us: Callable[[], int], on_packet: Callable[[EncodedPacket], None],
                 device: str = "default", fmt: str = "alsa", options: dict[str, str] | None = None) -> None:
        self.now_us, self.on_packet = now_us, on_packet
        self.device = device
        self._input = open_input(device, fmt, options)
        layout = "mono" if params.channels == 1 else "stereo"
        enc = av.CodecContext.create(params.codec, "w")
        enc.sample_rate, enc.layout, enc.format = params.sample_rate, layout, "fltp"
        enc.bit_rate = params.bitrate
        enc.time_base = Fraction(1, params.sample_rate)
        enc.open()
        self._encoder = enc
        self.params = AudioParams(params.codec, params.sample_rate, params.channels, params.bitrate,
                                  extradata=bytes(enc.extradata or b""))
        self._resampler = av.AudioResampler(format="fltp", layout=layout, rate=params.sample_rate,
                                            frame_size=enc.frame_size or 1024)
        self.timeline = AudioTimeline(params.sample_rate)
        self._anchors: list[tuple[int, int]] = []   # (encoder sample index, clock µs), increasing
        self._fed = 0                                # samples handed to the resampler (output rate)
        self._encoded = 0                            # samples handed to the encoder
        self.error: Exception | None = None
        self.packets = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="microphone", daemon=True)
        self._thread.start()

    def _clock_of(self, sample: int) -> int:
        base_sample, base_us = self._anchors[0]
        for s, us in self._anchors:
            if s > sample:
                break
            base_sample, base_us = s, us
        return base_us + round((sample - base_sample) * 1_000_000 / self.params.sample_rate)

    def _run(self) -> None:
        rate = self.params.sample_rate
        try:
            for frame in self._input.decode(audio=0):
                if self._stop.is_set():
                    break
                now = self.now_us()
                out_samples = round(frame.samples * rate / frame.sample_rate)
                start = self.timeline.place(out_samples, now)
                if start is None:
                    continue
                if not self._anchors or abs(self._clock_of(self._fed) - start) > 2:  # a drop or a jump
                    self._anchors.append((self._fed, start))
                    del self._anchors[:-64]  # old anchors are long encoded
                self._fed += out_samples
                frame.pts = None
                for chunk in self._resampler.resample(frame):
                    chunk.pts, chunk.time_base = self._encoded, self._encoder.time_base
                    self._encoded += chunk.samples
                    for packet in self._encoder.encode(chunk):
                        self._emit(packet)
            if not self._stop.is_set():  # a capture device does not end by itself: it was unplugged
                raise MicrophoneError("no more samples (device removed?)")
        except Exception as exc:  # noqa: BLE001 - a dying microphone must not take the video with it
            if not self._stop.is_set():
                self.error = MicrophoneError(f"the microphone {self.device!r} stopped: {exc}")
                log.error("%s; recording continues without sound", self.error)
        finally:
            self._input.close()

    def _emit(self, packet: Any) -> None:
        pts = self._clock_of(int(packet.pts))  # the encoder's priming packet maps just before the first
        self.packets += 1
        self.on_packet(EncodedPacket(bytes(packet), pts, True, "audio"))

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
