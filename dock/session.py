"""The dock's side of one link session: authenticate the camera, then ask.

>>> # session = DockSession(Link(open_port(path)), dock_key, "dock-1", registry.device_key)
>>> # device_id = session.handshake(); session.call("list", {})
"""

from __future__ import annotations

import os
import time
from typing import Any, Callable

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from common import link, link_auth

HELLO_RETRY_S = 0.5


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
        self._next_id = 1

    def _id(self) -> int:
        rid, self._next_id = self._next_id, self._next_id + 1
        return rid

    def send(self, op: str, args: dict[str, Any]) -> int:
        rid = self._id()
        self.link.send(link.request(rid, op, args))
        return rid

    def wait(self, rid: int) -> dict[str, Any]:
        while True:
            msg = self.link.recv(self.timeout)
            if isinstance(msg, link.ProtocolError):
                continue  # a corrupted frame: the request it answered will time out or be retried
            if msg.get("id") != rid:
                continue  # a late answer to something we gave up on
            if not msg.get("ok"):
                raise Refused(str(msg.get("code")), str(msg.get("error")))
            result = msg.get("result")
            return result if isinstance(result, dict) else {}

    def call(self, op: str, args: dict[str, Any] | None = None) -> dict[str, Any]:
        return self.wait(self.send(op, args or {}))

    # ------------------------------------------------------------------ handshake
    def handshake(self) -> str:
        """Mutual authentication; returns the camera's id. :class:`UnenrolledCamera` if the
        camera is not enrolled here or cannot prove its key; :class:`Refused` if the camera
        does not accept this dock."""
        fp = link_auth.fingerprint_of(self.key)
        nonce = os.urandom(link_auth.NONCE_SIZE)
        hello = self._hello({"protocol": link.PROTOCOL_VERSION, "dock_id": self.dock_id, "dock_key": fp,
                             "nonce": nonce})
        device_id, device_fp = hello.get("device_id"), hello.get("device_key")
        device_nonce = hello.get("nonce")
        if not (isinstance(device_id, str) and isinstance(device_fp, str) and isinstance(device_nonce, bytes)
                and len(device_nonce) == link_auth.NONCE_SIZE):
            raise UnenrolledCamera("the camera's hello is malformed")
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
        assert self.session is not None, "handshake first"
        record = link_auth.sign_command(self.key, self.dock_id, self.session, command, **fields)
        return self.call(op, {"record": record})

    def receipt_record(self, **fields: Any) -> bytes:
        assert self.session is not None, "handshake first"
        return link_auth.sign_command(self.key, self.dock_id, self.session, "receipt", **fields)

    # ------------------------------------------------------------------ bulk
    def fetch(self, name: str, offset: int, size: int, sink: Callable[[bytes], None], window: int,
              progress: Callable[[int], None] | None = None) -> None:
        """Read ``name`` from ``offset`` to ``size`` with up to ``window`` requests in flight;
        every piece goes to ``sink`` in order. Resumable: call again from any offset."""
        pending: list[tuple[int, int]] = []
        next_offset = offset
        while next_offset < size or pending:
            while next_offset < size and len(pending) < window:
                length = min(link.READ_CHUNK, size - next_offset)
                pending.append((self.send("read", {"file": name, "offset": next_offset, "length": length}),
                                length))
                next_offset += length
            rid, length = pending.pop(0)
            data = self.wait(rid).get("data")
            if not isinstance(data, bytes) or len(data) != length:
                raise Refused("short_read", f"{name}: the camera returned {len(data or b'')} of {length} bytes")
            sink(data)
            if progress:
                progress(len(data))
