"""The camera ⇄ dock serial link: frames and messages (docs/FORMAT.md §9).

On the wire every message is one frame::

    COBS( CBOR(message) ‖ CRC-32(CBOR(message)), 4 bytes big-endian ) ‖ 0x00

COBS (the ``cobs`` package) removes every zero byte from the frame, so 0x00 only ever
delimits frames and a receiver that joins mid-stream, or loses bytes, resynchronises
at the next zero. The CRC catches corruption the USB or serial layer let through.
A frame is at most :data:`MAX_FRAME` bytes before encoding; longer input is
discarded up to the next delimiter and reported.

Messages are CBOR maps with text keys: a request ``{v, id, op, args}``, a response
``{v, id, ok: true, result}`` or ``{v, id, ok: false, code, error}``. ``id`` pairs a
response with its request, so several requests may be in flight.

The same :class:`Link` runs over any pyserial port (``serial_for_url`` accepts a
device path such as ``/dev/ttyGS0`` or a pty, and pyserial URLs).

>>> d = FrameDecoder()
>>> d.feed(encode_frame(request(7, "hello", {"protocol": 1})))
[{'v': 1, 'id': 7, 'op': 'hello', 'args': {'protocol': 1}}]
>>> d.feed(b"\\x05garbage\\x00")[0].code
'bad_frame'
"""

from __future__ import annotations

import io
import os
import select
import termios
import threading
import time
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import cbor2
from cobs import cobs

PROTOCOL_VERSION = 1
MAX_FRAME = 256 * 1024            # CBOR + CRC, before COBS
MAX_ENCODED = MAX_FRAME + MAX_FRAME // 254 + 2
READ_CHUNK = 128 * 1024           # bulk data per response frame
MAX_OFFSET = 1 << 40              # no file on a camera is that large: a read or size beyond is malformed
PUMP_BYTES = 1 << 20              # at most this much is drained from the port in one go
OUTBOX_BYTES = 4 << 20            # unsent answers a non-blocking link holds before it gives up on the peer
STALL_S = 10.0                    # a peer that takes nothing for this long is dropped


class ProtocolError(Exception):
    """The peer sent something that is not a valid frame or message. ``code`` names the rule."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class LinkClosed(Exception):
    """The serial port went away (unplugged, or the peer closed it)."""


class LinkTimeout(Exception):
    """No answer in time."""


def encode_frame(message: Mapping[str, Any]) -> bytes:
    body = cbor2.dumps(dict(message), canonical=True)
    body += zlib.crc32(body).to_bytes(4, "big")
    if len(body) > MAX_FRAME:
        raise ValueError(f"message of {len(body)} bytes exceeds the {MAX_FRAME}-byte frame limit")
    return cobs.encode(body) + b"\x00"


def decode_body(encoded: bytes) -> dict[str, Any]:
    """One frame without its delimiter → message; :class:`ProtocolError` on any fault."""
    if len(encoded) > MAX_ENCODED:
        raise ProtocolError("frame_too_long", f"frame of {len(encoded)} bytes exceeds the limit")
    try:
        body = cobs.decode(encoded)
    except cobs.DecodeError as exc:
        raise ProtocolError("bad_frame", f"not a COBS frame: {exc}") from None
    if len(body) < 5:
        raise ProtocolError("bad_frame", "frame too short for a message and its CRC")
    payload, crc = body[:-4], body[-4:]
    if zlib.crc32(payload).to_bytes(4, "big") != crc:
        raise ProtocolError("bad_crc", "CRC-32 mismatch: the frame was corrupted on the line")
    fp = io.BytesIO(payload)
    try:
        message = cbor2.CBORDecoder(fp).decode()
    except Exception as exc:  # cbor2 raises several types for garbage
        raise ProtocolError("bad_message", f"not CBOR: {exc}") from None
    if fp.tell() != len(payload):
        raise ProtocolError("bad_message", "bytes after the CBOR message")
    if not isinstance(message, dict) or not all(isinstance(k, str) for k in message):
        raise ProtocolError("bad_message", "a message must be a map with text keys")
    if message.get("v") != PROTOCOL_VERSION:
        raise ProtocolError("bad_version", f"protocol version {message.get('v')!r}, this side speaks "
                            f"{PROTOCOL_VERSION}: update the older side")
    rid = message.get("id")
    if isinstance(rid, bool) or not isinstance(rid, int) or not 0 <= rid < 2**63:
        raise ProtocolError("bad_message", "message id must be an integer ≥ 0")
    return message


class FrameDecoder:
    """Bytes in, messages (or :class:`ProtocolError` for each bad frame) out."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._discarding = False

    def feed(self, data: bytes) -> list[dict[str, Any] | ProtocolError]:
        out: list[dict[str, Any] | ProtocolError] = []
        start = 0
        while True:
            end = data.find(b"\x00", start)
            if end < 0:
                self._take(data[start:], out)
                return out
            self._take(data[start:end], out)
            if self._discarding:
                self._discarding = False
            elif self._buf:
                try:
                    out.append(decode_body(bytes(self._buf)))
                except ProtocolError as exc:
                    out.append(exc)
            self._buf.clear()
            start = end + 1

    def _take(self, piece: bytes, out: list) -> None:
        if self._discarding:
            return
        self._buf += piece
        if len(self._buf) > MAX_ENCODED:
            self._buf.clear()
            self._discarding = True
            out.append(ProtocolError("frame_too_long", f"frame exceeds {MAX_ENCODED} bytes; discarded"))


def request(rid: int, op: str, args: Mapping[str, Any] | None = None) -> dict[str, Any]:
    return {"v": PROTOCOL_VERSION, "id": rid, "op": op, "args": dict(args or {})}


def ok(rid: int, result: Mapping[str, Any] | None = None) -> dict[str, Any]:
    return {"v": PROTOCOL_VERSION, "id": rid, "ok": True, "result": dict(result or {})}


def refuse(rid: int, code: str, error: str) -> dict[str, Any]:
    return {"v": PROTOCOL_VERSION, "id": rid, "ok": False, "code": code, "error": error}


class Port(Protocol):
    """What :class:`Link` needs of a pyserial ``Serial``."""

    def read(self, size: int = 1) -> bytes: ...
    def write(self, data: bytes) -> int | None: ...
    @property
    def in_waiting(self) -> int: ...
    def close(self) -> None: ...


@dataclass
class Stats:
    frames_in: int = 0
    frames_out: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    bad_frames: int = 0


class Link:
    """Messages over one pyserial port. ``recv`` blocks up to a timeout; ``poll`` never blocks.

    A port that raises ``OSError``/``SerialException`` (unplugged) or reads EOF becomes
    :class:`LinkClosed`.

    ``nonblocking=True`` (the camera's side): ``send`` never waits for the peer. Frames go to
    an outbox that every ``send`` and ``poll`` moves on as far as the port takes without
    waiting; a peer that takes nothing for ``stall_s`` while answers wait, or lets more than
    ``OUTBOX_BYTES`` pile up, is dropped (:class:`LinkClosed`). A blocking pyserial write
    would instead freeze the caller's loop for its ``write_timeout``.
    """

    def __init__(self, port: Port, *, nonblocking: bool = False, stall_s: float = STALL_S) -> None:
        self.port = port
        self._decoder = FrameDecoder()
        self._inbox: list[dict[str, Any] | ProtocolError] = []
        self.stats = Stats()
        fileno = getattr(port, "fileno", None)
        self._fd: int | None = fileno() if (nonblocking and fileno is not None) else None
        if self._fd is not None:
            os.set_blocking(self._fd, False)
        self._outbox = bytearray()
        self._stall_s = stall_s
        self._last_progress = time.monotonic()
        self._closer: threading.Thread | None = None

    def send(self, message: Mapping[str, Any]) -> None:
        frame = encode_frame(message)
        if self._fd is not None:
            if len(self._outbox) + len(frame) > OUTBOX_BYTES:
                raise LinkClosed(f"the peer does not read: {len(self._outbox)} bytes of answers wait")
            if not self._outbox:
                self._last_progress = time.monotonic()
            self._outbox += frame
            self.flush()
        else:
            try:
                self.port.write(frame)
            except Exception as exc:  # pyserial's SerialException or OSError: the cable is gone
                raise LinkClosed(f"write failed: {exc}") from None
        self.stats.frames_out += 1
        self.stats.bytes_out += len(frame)

    @property
    def unsent(self) -> int:
        """Bytes in the outbox (non-blocking links)."""
        return len(self._outbox)

    def flush(self) -> None:
        """Move the outbox on as far as the port takes now, never waiting."""
        if self._fd is None or not self._outbox:
            return
        written = 0
        while self._outbox and written < PUMP_BYTES:
            try:
                n = os.write(self._fd, self._outbox[:65536])
            except BlockingIOError:
                break
            except OSError as exc:
                raise LinkClosed(f"write failed: {exc}") from None
            if n <= 0:
                break
            del self._outbox[:n]
            written += n
        now = time.monotonic()
        if written:
            self._last_progress = now
        elif self._outbox and now - self._last_progress > self._stall_s:
            raise LinkClosed(f"the peer took nothing for {self._stall_s:g} s ({len(self._outbox)} bytes wait)")

    def _pump(self, block: bool, limit: int = PUMP_BYTES) -> None:
        try:
            data = self._read_available(block, limit)
        except Exception as exc:
            raise LinkClosed(f"read failed: {exc}") from None
        if data:
            self.stats.bytes_in += len(data)
            for item in self._decoder.feed(data):
                if isinstance(item, ProtocolError):
                    self.stats.bad_frames += 1
                else:
                    self.stats.frames_in += 1
                self._inbox.append(item)

    def _read_available(self, block: bool, limit: int = PUMP_BYTES) -> bytes:
        """Everything the port holds now (waiting up to the port's timeout for the first byte
        if ``block``). A tty hands over at most ~4 KiB per read, so on a port with a file
        descriptor (pyserial's POSIX ports, which it opens non-blocking) we drain it with
        plain reads until it is empty rather than paying pyserial's select + ioctl per 4 KiB."""
        fileno = getattr(self.port, "fileno", None)
        if fileno is None:  # e.g. pyserial URL handlers without a descriptor
            waiting = min(self.port.in_waiting, limit)
            return self.port.read(waiting or (1 if block else 0)) if (waiting or block) else b""
        fd = fileno()
        wait = (getattr(self.port, "timeout", None) or 0.05) if block else 0
        ready, _, _ = select.select([fd], [], [], wait)
        if not ready:
            return b""
        chunks: list[bytes] = []
        got = 0
        while got < limit:
            try:
                chunk = os.read(fd, min(65536, limit - got))
            except BlockingIOError:
                break
            if not chunk:
                if not chunks:  # readable but nothing to read: the other end hung up
                    raise LinkClosed("the port was hung up (disconnected)")
                break  # a raw tty (VMIN 0) reads 0 bytes when it is empty
            chunks.append(chunk)
            got += len(chunk)
        return b"".join(chunks)

    def poll(self, limit: int = PUMP_BYTES) -> list[dict[str, Any] | ProtocolError]:
        """What has arrived (up to about ``limit`` bytes read from the port), without
        waiting; what waits to be sent moves on."""
        self.flush()
        self._pump(block=False, limit=limit)
        items, self._inbox = self._inbox, []
        return items

    def recv(self, timeout: float) -> dict[str, Any] | ProtocolError:
        """The next message (or protocol error), waiting up to ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while not self._inbox:
            if time.monotonic() > deadline:
                raise LinkTimeout(f"no message within {timeout:g} s")
            self._pump(block=True)
        return self._inbox.pop(0)

    def close(self) -> None:
        """Let go of the port. A non-blocking (the camera's) link lets go in a thread of its
        own: closing a tty waits for its unsent output to drain to a peer that may read
        nothing (the USB gadget's ``gs_close`` waits up to 15 s, and its driver has no way to
        discard that output), and on the booted system that wait in the camera's loop let
        its 10-s watchdog kill it. Until that thread is done, :attr:`closing` is true and the
        port must not be opened again (an open would wait on the same close)."""
        self._outbox.clear()
        if self._fd is not None:
            try:
                termios.tcflush(self._fd, termios.TCIOFLUSH)   # what the driver can discard
            except (OSError, termios.error):
                pass   # not a tty (a pipe in a test), or already gone with the cable
            self._closer = threading.Thread(target=self._close_port, name="link-close", daemon=True)
            self._closer.start()
            return
        self._close_port()

    def _close_port(self) -> None:
        try:
            self.port.close()
        except Exception:
            pass

    @property
    def closing(self) -> bool:
        """The port is still being let go of (see :meth:`close`)."""
        return self._closer is not None and self._closer.is_alive()


def open_port(url: str, *, timeout: float = 0.05) -> Any:
    """A pyserial port for a device path (``/dev/ttyGS0``, a pty) or a pyserial URL."""
    import serial
    try:
        return serial.serial_for_url(url, baudrate=4_000_000, timeout=timeout, write_timeout=10,
                                     exclusive=True)
    except (serial.SerialException, OSError, ValueError) as exc:
        raise LinkClosed(f"cannot open {url}: {exc}") from None
