"""The dock's side of one link session: authenticate the camera, then ask.

>>> # session = DockSession(Link(open_port(path)), dock_key, "dock-1", registry.device_key)
>>> # device_id = session.handshake(); session.call("list", {})
"""

from __future__ import annotations

import os
import secrets
import time
from typing import Any, Callable

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from common import link, link_auth

HELLO_RETRY_S = 0.5
READ_RETRIES = 3            # a read whose answer was lost or damaged is asked again this often
EARLY_ANSWERS = 256         # answers that arrived before the one awaited, kept (bounded)


class Refused(Exception):
    """The camera refused a request; ``code`` names the rule."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class UnenrolledCamera(Exception):
    """The camera's key is not enrolled at this dock (or it could not prove it holds it)."""


class DockSession:
    def __init__(self, port: link.Link, key: Ed25519PrivateKey, dock_id: str,
                 device_key_of: Callable[[str], Ed25519PublicKey | None], timeout: float = 10.0) -> None:
        self.link, self.key, self.dock_id = port, key, dock_id
        self.device_key_of, self.timeout = device_key_of, timeout
        self.session: bytes | None = None
        self.device_id: str | None = None
        self.device_key: Ed25519PublicKey | None = None
        # Request ids start anywhere: answers left in the pipe by an earlier session (a peer
        # that flooded the camera and read nothing; seen on the booted system's real gadget)
        # carry small ids, and one of them taken for this hello's answer failed the proof,
        # so the bay ended "refused" and the camera was never offloaded.
        self._next_id = secrets.randbelow(1 << 30) + 1
        self._early: dict[int, dict[str, Any]] = {}   # answers to requests not awaited yet
        self.retried = 0                              # requests asked again (a noisy link)

    def _id(self) -> int:
        rid, self._next_id = self._next_id, self._next_id + 1
        return rid

    def send(self, op: str, args: dict[str, Any]) -> int:
        rid = self._id()
        self.link.send(link.request(rid, op, args))
        return rid

    def wait(self, rid: int) -> dict[str, Any]:
        """The answer to request ``rid`` within ``timeout`` overall: frames for other requests
        (kept for when they are awaited) or garbage do not restart the clock."""
        deadline = time.monotonic() + self.timeout
        while True:
            msg = self._early.pop(rid, None)
            if msg is None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise link.LinkTimeout(f"no answer to request {rid} within {self.timeout:g} s")
                msg = self.link.recv(remaining)
                if isinstance(msg, link.ProtocolError):
                    continue  # a corrupted frame: the request it answered times out and is asked again
                other = msg.get("id")
                if other != rid:
                    if isinstance(other, int) and not isinstance(other, bool) and rid < other < self._next_id \
                            and len(self._early) < EARLY_ANSWERS:
                        self._early[other] = msg  # answered before its turn: kept for its wait
                    continue  # a late answer to something given up on, or a made-up id
            if not msg.get("ok"):
                raise Refused(str(msg.get("code"))[:64], str(msg.get("error"))[:500])
            result = msg.get("result")
            return result if isinstance(result, dict) else {}

    def call(self, op: str, args: dict[str, Any] | None = None, *, retries: int = 0) -> dict[str, Any]:
        """Ask and wait; ``retries``: ask again after a lost answer (only for what changes
        nothing on the camera: listing, reading)."""
        for attempt in range(retries + 1):
            try:
                return self.wait(self.send(op, args or {}))
            except link.LinkTimeout:
                if attempt == retries:
                    raise
                self.retried += 1
        raise AssertionError("unreachable")

    # ------------------------------------------------------------------ handshake
    def handshake(self) -> str:
        """Mutual authentication; returns the camera's id. :class:`UnenrolledCamera` if the
        camera is not enrolled here or cannot prove its key; :class:`Refused` if the camera
        does not accept this dock. An answer lost on the cable starts it over (a new hello
        is a new session on the camera)."""
        for attempt in range(READ_RETRIES + 1):
            try:
                return self._handshake()
            except link.LinkTimeout:
                if attempt == READ_RETRIES:
                    raise
                self.retried += 1
        raise AssertionError("unreachable")

    def _handshake(self) -> str:
        fp = link_auth.fingerprint_of(self.key)
        nonce = os.urandom(link_auth.NONCE_SIZE)
        hello = self._hello({"protocol": link.PROTOCOL_VERSION, "dock_id": self.dock_id, "dock_key": fp,
                             "nonce": nonce})
        device_id, device_fp = hello.get("device_id"), hello.get("device_key")
        device_nonce = hello.get("nonce")
        if not (isinstance(device_id, str) and 0 < len(device_id) <= 64 and isinstance(device_fp, str)
                and link_auth.FINGERPRINT.fullmatch(device_fp) and isinstance(device_nonce, bytes)
                and len(device_nonce) == link_auth.NONCE_SIZE):
            raise UnenrolledCamera("the camera's hello is malformed (device_id of 1–64 characters, device_key a "
                                   "64-hex fingerprint, a 32-byte nonce)")
        key = self.device_key_of(device_id)
        if key is None:
            raise UnenrolledCamera(f"camera {device_id!r} is not enrolled at this dock "
                                   f"(key {device_fp[:16]}…): bodycam-dock enroll --device-id {device_id} …")
        if link_auth.fingerprint_of(key) != device_fp:
            raise UnenrolledCamera(f"camera {device_id!r} presents key {device_fp[:16]}…, not its enrolled key")
        t = link_auth.Transcript(self.dock_id, fp, nonce, device_id, device_fp, device_nonce)
        if not link_auth.check_proof(key, link_auth.DEVICE_PROOF, t, hello.get("proof")):
            raise UnenrolledCamera(f"camera {device_id!r} could not prove it holds its enrolled key")
        result = self.call("auth", {"proof": link_auth.prove(self.key, link_auth.DOCK_PROOF, t)})
        if result.get("session") != t.session:
            raise Refused("bad_session", "the camera derived another session id")
        self.session, self.device_id, self.device_key = t.session, device_id, key
        return device_id

    def _hello(self, args: dict[str, Any]) -> dict[str, Any]:
        """Say hello until the camera answers: a camera still booting, or one that opens its
        port just after the cable came up (opening a serial port flushes what was waiting),
        has not heard the first one."""
        deadline = time.monotonic() + self.timeout
        saved, self.timeout = self.timeout, HELLO_RETRY_S
        try:
            while True:
                try:
                    return self.call("hello", args)
                except link.LinkTimeout:
                    if time.monotonic() > deadline:
                        raise link.LinkTimeout(f"no answer to hello within {saved:g} s (not a bodycam, or "
                                               "not booted yet)") from None
        finally:
            self.timeout = saved

    def command(self, op: str, command: str, **fields: Any) -> dict[str, Any]:
        """A signed command; asked again, the same record, after a lost answer (the camera
        answers a repeat as it answered the first, acting once)."""
        assert self.session is not None, "handshake first"
        record = link_auth.sign_command(self.key, self.dock_id, self.session, command, **fields)
        return self.call(op, {"record": record}, retries=READ_RETRIES)

    def receipt_record(self, **fields: Any) -> bytes:
        assert self.session is not None, "handshake first"
        return link_auth.sign_command(self.key, self.dock_id, self.session, "receipt", **fields)

    # ------------------------------------------------------------------ bulk
    def fetch(self, name: str, offset: int, size: int, sink: Callable[[bytes], None], window: int,
              progress: Callable[[int], None] | None = None) -> None:
        """Read ``name`` from ``offset`` to ``size`` with up to ``window`` requests in flight;
        every piece goes to ``sink`` in order. Resumable: call again from any offset."""
        pending: list[tuple[int, int, int]] = []   # (request id, offset, length)
        next_offset = offset
        while next_offset < size or pending:
            while next_offset < size and len(pending) < window:
                length = min(link.READ_CHUNK, size - next_offset)
                pending.append((self.send("read", {"file": name, "offset": next_offset, "length": length}),
                                next_offset, length))
                next_offset += length
            rid, at, length = pending.pop(0)
            for attempt in range(READ_RETRIES + 1):
                short = False
                try:
                    data = self.wait(rid).get("data")
                    if isinstance(data, bytes) and len(data) == length:
                        break
                    short, problem = True, f"{name}: the camera returned {len(data or b'')} of {length} bytes"
                except link.LinkTimeout as exc:  # lost or damaged on the way: ask again (reads change nothing)
                    problem = str(exc)
                if attempt == READ_RETRIES:
                    if short:  # answered every time, but not what it listed: the camera's fault, not the cable's
                        raise Refused("short_read", f"{problem} (asked {READ_RETRIES + 1} times)")
                    raise link.LinkTimeout(f"{problem} (asked {READ_RETRIES + 1} times)")
                self.retried += 1
                rid = self.send("read", {"file": name, "offset": at, "length": length})
            sink(data)
            if progress:
                progress(len(data))
