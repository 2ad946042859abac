"""The camera's side of the dock link: it answers, the dock asks (docs/FORMAT.md §9).

:class:`LinkService` owns one :class:`~common.link.Link` (the USB gadget port
``/dev/ttyGS0`` on the Pi, a pty in the simulator). The runtime calls :meth:`poll`
from its tick; every request that has arrived is answered at once.

Before anything else the dock must authenticate (``hello``, ``auth``): only a dock
whose key was enrolled at provisioning (``[link] dock_keys``) may list or read files,
set the time, assign an officer, or hand over a receipt. A receipt frees exactly the
file whose SHA-256 it names, and only in the session it was signed for; everything
refused is logged with the reason.

>>> # service = LinkService(Link(open_port("/dev/ttyGS0")), store, events, identity, dock_keys, hooks)
>>> # runtime tick: service.poll()
"""

from __future__ import annotations

import hashlib
import os
import re
import time
from collections import OrderedDict, deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from common import link, link_auth, signed
from common.fsutil import fsync_dir
from common.manifest import read_manifest
from device.event_log import EventLog
from device.identity import DeviceIdentity
from device.segment_store import SegmentStore

_READABLE = re.compile(r"segments/\d{8,}\.(ts\.age|manifest)|events\.cbors|chain-head\.cbor")
LIST_LIMIT = 128


@dataclass
class LinkHooks:
    """What the link may ask of the runtime (the runtime's own methods)."""
    log: Callable[..., None]                       # log(kind, **data) into the event log
    docked: Callable[[str], None]                  # an enrolled dock authenticated (dock id)
    undocked: Callable[[], None]                   # the link went away (taken out of the dock)
    set_utc: Callable[[int, str], int]             # (utc_us, dock_id) → offset applied, µs
    assign: Callable[[str | None, str], None]      # (officer_id, dock_id)
    set_recipients: Callable[[list[str], str], None] = lambda recipients, dock_id: None  # new footage's recipients
    revoke_docks: Callable[[list[str], str], None] = lambda docks, dock_id: None     # dock keys no longer trusted


ANSWERED = 512              # signed commands remembered per session, to answer a repeat alike
_COMMANDS = ("set_time", "assign", "receipt", "recipients", "revoke_docks")
MAX_RECIPIENTS = 8          # the office's current recipient and a few being rotated in
MAX_REVOKED_DOCKS = 256     # a city has tens of docks; revocations are rare and permanent
REFUSALS_LOGGED = 5         # unauthenticated requests logged one by one; then one summary a minute
REFUSAL_SUMMARY_S = 60.0
# One poll answers for at most this long, then lets the loop record, blink and ping the
# watchdog; what arrived beyond waits, and the port is not read again until it is answered,
# so the tty's own flow control holds a flooding peer back. Seen on the booted system: a flood
# of well-formed hellos (each answered with a signature) held the loop past the 10-s watchdog.
POLL_BUDGET_S = 0.02
READ_BYTES = 64 * 1024      # read per poll at most (hellos of a flood: ~500)


class LinkService:
    def __init__(self, port: link.Link, store: SegmentStore, events: EventLog, identity: DeviceIdentity,
                 dock_keys: dict[str, Ed25519PublicKey], hooks: LinkHooks,
                 revoked_docks: set[str] | None = None) -> None:
        """``dock_keys``: the docks enrolled at provisioning; ``revoked_docks``: fingerprints
        among them the office revoked (a set the runtime shares, so a revocation learned on
        this link holds for the next one)."""
        self.link, self.store, self.events, self.identity = port, store, events, identity
        self.dock_keys, self.hooks = dock_keys, hooks
        self.revoked_docks = revoked_docks if revoked_docks is not None else set()
        self._transcript: link_auth.Transcript | None = None
        self._dock_id: str | None = None
        self.authenticated = False
        self.closed = False
        self.finished = False      # the dock said goodbye
        self._reading: tuple[str, Any] | None = None
        # A command whose answer was lost on the cable is sent again, byte for byte: it gets
        # the first answer again instead of acting twice (a receipt frees once).
        self._answered: OrderedDict[bytes, dict[str, Any]] = OrderedDict()
        self._refusals = _RefusalLog(hooks.log)
        self._pending: deque[dict[str, Any] | link.ProtocolError] = deque()

    @property
    def link_closing(self) -> bool:
        """The dropped port is still being let go of: opening it again now would wait."""
        return bool(getattr(self.link, "closing", False))

    # ------------------------------------------------------------------ loop
    def poll(self) -> int:
        """Answer what has arrived, for at most ``POLL_BUDGET_S``; return how many messages
        were handled (the rest waits for the next poll)."""
        if self.closed:
            return 0
        handled = 0
        try:
            if self._pending:
                self.link.flush()   # answers move on (and a peer that takes none is dropped)
            else:
                self._pending.extend(self.link.poll(limit=READ_BYTES))
            deadline = time.monotonic() + POLL_BUDGET_S
            while self._pending:
                self._handle(self._pending.popleft())
                handled += 1
                if time.monotonic() >= deadline:
                    break
        except link.LinkClosed:
            self._pending.clear()
            self.closed = True
            # let go of the port: its exclusive lock would refuse the next open of the same
            # ttyGS0 for good (seen on the booted system: the camera never docked again)
            try:
                self.link.close()
            except OSError:
                pass
            self._refusals.flush()
            self.hooks.log("link_lost", authenticated=self.authenticated)
            self.authenticated = False
            self.hooks.undocked()  # the cable is gone: the camera left the dock
            return 0
        return handled

    def _handle(self, item: dict[str, Any] | link.ProtocolError) -> None:
        if isinstance(item, link.ProtocolError):
            self.link.send(link.refuse(0, item.code, str(item)))
            return
        rid, op, args = item["id"], item.get("op"), item.get("args")
        if not isinstance(op, str) or not isinstance(args, dict):
            self.link.send(link.refuse(rid, "bad_message", "a request needs op (text) and args (map)"))
            return
        handler = getattr(self, f"_op_{op}", None)
        if handler is None:
            self.link.send(link.refuse(rid, "unknown_op", f"unknown operation {op!r}"))
            return
        if op not in ("hello", "auth") and not self.authenticated:
            self._refusals.refused("link_refused", op=op[:32], reason="not authenticated")
            self.link.send(link.refuse(rid, "not_authenticated", "authenticate first (hello, auth)"))
            return
        key = hashlib.sha256(args["record"]).digest() if op in _COMMANDS and isinstance(args.get("record"), bytes) \
            else None
        if key is not None and key in self._answered:
            self.link.send(link.ok(rid, self._answered[key]))
            return
        try:
            result = handler(args)
            if key is not None:
                self._answered[key] = result
                while len(self._answered) > ANSWERED:
                    self._answered.popitem(last=False)
        except _Refusal as r:
            self.link.send(link.refuse(rid, r.code, str(r)))
            return
        except link.LinkClosed:
            raise
        except Exception as exc:  # a bug must not take the camera's link (or runtime) down
            self.hooks.log("link_internal_error", op=op, error=f"{type(exc).__name__}: {exc}")
            self.link.send(link.refuse(rid, "internal_error", f"{op} failed on the camera: {exc}"))
            return
        self.link.send(link.ok(rid, result))

    # ------------------------------------------------------------------ handshake
    def _op_hello(self, args: dict[str, Any]) -> dict[str, Any]:
        if args.get("protocol") != link.PROTOCOL_VERSION:
            raise _Refusal("bad_version", f"dock speaks protocol {args.get('protocol')!r}, camera "
                                          f"{link.PROTOCOL_VERSION}")
        dock_id, dock_key, nonce = args.get("dock_id"), args.get("dock_key"), args.get("nonce")
        if not (isinstance(dock_id, str) and isinstance(dock_key, str) and isinstance(nonce, bytes)
                and len(nonce) == link_auth.NONCE_SIZE and 0 < len(dock_id) <= 128
                and link_auth.FINGERPRINT.fullmatch(dock_key)):
            raise _Refusal("bad_message", "hello needs dock_id (1–128 characters), dock_key (a key's 64-hex "
                                          "fingerprint) and a 32-byte nonce")
        self.authenticated = False
        self._answered.clear()  # a new session: its commands are bound to it anyway
        self._transcript = link_auth.Transcript(dock_id, dock_key, nonce, self.identity.device_id,
                                                self.identity.key_fingerprint, os.urandom(link_auth.NONCE_SIZE))
        return {"device_id": self.identity.device_id, "device_key": self.identity.key_fingerprint,
                "nonce": self._transcript.device_nonce,
                "proof": link_auth.prove(self.identity.signing_key, link_auth.DEVICE_PROOF, self._transcript)}

    def _op_auth(self, args: dict[str, Any]) -> dict[str, Any]:
        t = self._transcript
        if t is None:
            raise _Refusal("no_session", "send hello first")
        self._transcript = None  # one try per hello: a new nonce for every attempt
        if t.dock_key in self.revoked_docks:
            self._refusals.refused("dock_refused", dock_id=t.dock_id, dock_key=t.dock_key, reason="revoked")
            raise _Refusal("dock_revoked", f"dock {t.dock_id} ({t.dock_key[:16]}…) was revoked by the evidence "
                                           "office; this camera no longer trusts it")
        key = self.dock_keys.get(t.dock_key)
        if key is None:
            self._refusals.refused("dock_refused", dock_id=t.dock_id, dock_key=t.dock_key, reason="not enrolled")
            raise _Refusal("dock_not_enrolled", f"dock {t.dock_id} ({t.dock_key[:16]}…) is not enrolled on "
                                                "this camera; enrol its key at provisioning")
        if not link_auth.check_proof(key, link_auth.DOCK_PROOF, t, args.get("proof")):
            self._refusals.refused("dock_refused", dock_id=t.dock_id, reason="bad proof")
            raise _Refusal("bad_proof", "the dock's proof does not verify for this session")
        self.authenticated, self._session, self._dock_id = True, t.session, t.dock_id
        self._refusals.flush()
        self.hooks.log("dock_authenticated", dock_id=t.dock_id, session=t.session.hex()[:16])
        self.hooks.docked(t.dock_id)
        return {"session": t.session}

    # ------------------------------------------------------------------ files
    def _op_list(self, args: dict[str, Any]) -> dict[str, Any]:
        after = args.get("after_seq", 0)
        if isinstance(after, bool) or not isinstance(after, int):
            raise _Refusal("bad_message", "after_seq must be an integer")
        entries = []
        for path in sorted(self.store.dir.glob("*.manifest")):
            seq = int(path.name.split(".")[0])
            if seq <= after:
                continue
            if len(entries) == LIST_LIMIT:
                break
            segment = self.store.segment_path(seq)
            entries.append({"seq": seq, "manifest": path.read_bytes(),
                            "size": segment.stat().st_size if segment.exists() else None})
        head = self.store.root / "chain-head.cbor"
        events = self.events.path
        return {"segments": entries, "more": len(entries) == LIST_LIMIT,
                "journals": sorted(int(p.name.split(".")[0]) for p in self.store.dir.glob("*.open")),
                "head": head.read_bytes() if head.exists() else None,
                "events_size": events.stat().st_size if events.exists() else 0}

    def _op_read(self, args: dict[str, Any]) -> dict[str, Any]:
        name, offset, length = args.get("file"), args.get("offset"), args.get("length")
        if not (isinstance(name, str) and _READABLE.fullmatch(name)):
            raise _Refusal("bad_file", f"cannot read {name!r}")
        if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in (offset, length)) \
                or length > link.READ_CHUNK or offset > link.MAX_OFFSET:
            raise _Refusal("bad_message", f"0 ≤ offset ≤ {link.MAX_OFFSET} and 0 ≤ length ≤ {link.READ_CHUNK}")
        try:
            f = self._open_for_read(name)
            f.seek(offset)
            return {"data": f.read(length)}
        except FileNotFoundError:
            raise _Refusal("no_such_file", f"{name} is not on the camera") from None

    def _open_for_read(self, name: str) -> Any:
        """A segment file being read stays open across the many reads of one transfer. Only
        segment files: they never change, while the event log and the head are replaced
        (atomically) and must be opened afresh."""
        if not name.startswith("segments/"):
            if self._reading is not None:
                self._reading[1].close()
            self._reading = (name, open(self.store.root / name, "rb"))
            return self._reading[1]
        if self._reading is None or self._reading[0] != name or self._reading[1].closed:
            if self._reading is not None:
                self._reading[1].close()
            self._reading = (name, open(self.store.root / name, "rb"))
        return self._reading[1]

    # ------------------------------------------------------------------ dock commands
    def _command(self, args: dict[str, Any], command: str) -> dict[str, Any]:
        try:
            return link_auth.open_command(args.get("record"), self.trusted_docks(), self._session, command)
        except link_auth.CommandError as exc:
            self.hooks.log(f"{command}_refused", reason=str(exc))
            raise _Refusal("refused", f"{command} refused: {exc}") from None

    def _op_set_time(self, args: dict[str, Any]) -> dict[str, Any]:
        body = self._command(args, "set_time")
        offset = self.hooks.set_utc(body["utc_us"], body["dock_id"])
        return {"offset_us": offset}

    def _op_assign(self, args: dict[str, Any]) -> dict[str, Any]:
        body = self._command(args, "assign")
        self.hooks.assign(body["officer_id"], body["dock_id"])
        save_assignment(self.store.root, args["record"], self._session)
        return {"officer_id": body["officer_id"]}

    def _op_recipients(self, args: dict[str, Any]) -> dict[str, Any]:
        """The office's recipients for footage from now on (a rotation, docs/keys.md),
        pushed by an enrolled dock; footage already written stays as it is."""
        body = self._command(args, "recipients")
        recipients = body["recipients"]
        from common import keys
        try:
            if not 1 <= len(recipients) <= MAX_RECIPIENTS or not all(isinstance(r, str) for r in recipients):
                raise ValueError(f"1–{MAX_RECIPIENTS} age1… recipients")
            for r in recipients:
                keys.parse_recipient(r)   # KeyFileError (a ValueError) names what is wrong
        except ValueError as exc:
            self.hooks.log("recipients_refused", reason=str(exc)[:200])
            raise _Refusal("bad_recipients", f"recipients refused: {exc}") from None
        if list(self.identity.recipients) != recipients:
            self.hooks.set_recipients(list(recipients), body["dock_id"])
            save_signed(self.store.root, RECIPIENTS_FILE, args["record"], self._session)
        return {"recipients": recipients}

    def trusted_docks(self) -> dict[str, Ed25519PublicKey]:
        return trusted(self.dock_keys, self.revoked_docks)

    def _op_revoke_docks(self, args: dict[str, Any]) -> dict[str, Any]:
        """Dock keys the evidence office revoked (a stolen or retired dock), pushed by another
        enrolled dock: from now on this camera refuses them, and what they set before (an
        assignment, recipients) no longer counts at the next boot. Revocations only add up."""
        body = self._command(args, "revoke_docks")
        docks = body["docks"]
        if not 1 <= len(docks) <= MAX_REVOKED_DOCKS or not all(link_auth.FINGERPRINT.fullmatch(d) for d in docks):
            self.hooks.log("revoke_docks_refused", reason="not 1–256 key fingerprints")
            raise _Refusal("bad_message", f"revoke_docks needs 1–{MAX_REVOKED_DOCKS} dock key fingerprints")
        if body["dock_key"] in docks:
            # a dock cannot revoke itself here: the office's list named the dock that serves it
            self.hooks.log("revoke_docks_refused", reason="names the dock that sends it")
            raise _Refusal("refused", "revoke_docks names the dock that sends it; that dock must stop serving")
        new = sorted(set(docks) - self.revoked_docks)
        if new and len(self.revoked_docks) + len(new) <= MAX_REVOKED_DOCKS:
            save_revoked_docks(self.store.root, args["record"], self._session)
            self.revoked_docks.update(new)
            self.hooks.revoke_docks(new, body["dock_id"])
        return {"revoked": len(self.revoked_docks)}

    def _op_receipt(self, args: dict[str, Any]) -> dict[str, Any]:
        body = self._command(args, "receipt")
        if body["device_id"] != self.identity.device_id:
            return self._refuse_receipt(body, "for another camera")
        if body["kind"] == "segment":
            return self._free_segment(body)
        if body["kind"] == "events":
            return self._free_events(body)
        return self._refuse_receipt(body, f"unknown kind {body['kind']!r}")

    def _refuse_receipt(self, body: dict[str, Any], why: str) -> dict[str, Any]:
        self.hooks.log("receipt_refused", seq=body.get("seq"), receipt_kind=body.get("kind"), reason=why)
        raise _Refusal("receipt_refused", f"receipt refused: {why}")

    def _free_segment(self, body: dict[str, Any]) -> dict[str, Any]:
        seq = body["seq"]
        manifest_path, segment = self.store.manifest_path(seq), self.store.segment_path(seq)
        if not manifest_path.exists():
            return self._refuse_receipt(body, f"segment {seq} is not on the camera (replayed receipt?)")
        try:
            manifest = read_manifest(manifest_path.read_bytes(), None)
        except signed.SignatureError as exc:
            return self._refuse_receipt(body, f"segment {seq}'s manifest on the camera is unreadable: {exc}")
        if body["file"] != manifest.file or body["sha256"] != manifest.sha256 or body["size"] != manifest.size:
            return self._refuse_receipt(body, f"names another file than segment {seq} holds")
        # The dock signed that it stored a file with exactly this manifest's hash; what the
        # camera still holds needs no re-hashing (slow on a Pi 4) to be freed.
        if self._reading is not None:
            self._reading[1].close()
        segment.unlink(missing_ok=True)
        manifest_path.unlink()
        fsync_dir(self.store.dir)
        self.hooks.log("segment_freed", seq=seq, sha256=manifest.sha256.hex(), location=body["location"],
                       dock_id=body["dock_id"])
        return {"freed": seq}

    def _free_events(self, body: dict[str, Any]) -> dict[str, Any]:
        try:
            dropped = self.events.drop_prefix(body["size"], body["sha256"], body["seq"])
        except ValueError as exc:
            return self._refuse_receipt(body, str(exc))
        self.hooks.log("events_freed", upto_seq=body["seq"], records=dropped, location=body["location"],
                       dock_id=body["dock_id"])
        return {"freed_events": body["seq"]}

    def _op_bye(self, args: dict[str, Any]) -> dict[str, Any]:
        """The dock is done (the camera stays in it, charging, until it is taken out)."""
        self.hooks.log("dock_bye", dock_id=self._dock_id)
        self.authenticated = False
        self.finished = True
        return {}


class _Refusal(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


ASSIGNMENT_FILE = "assignment.cbor"


RECIPIENTS_FILE = "recipients.cbor"
REVOKED_DOCKS_FILE = "revoked-docks.cbor"
REVOKED_DOCKS_KEPT = 32     # signed commands kept; each names every revoked dock the office knew then


def trusted(dock_keys: dict[str, Ed25519PublicKey], revoked: set[str]) -> dict[str, Ed25519PublicKey]:
    """The enrolled docks the camera still trusts."""
    return {fp: key for fp, key in dock_keys.items() if fp not in revoked}


def save_revoked_docks(root: Path, record: bytes, session: bytes) -> None:
    """Keep a ``revoke_docks`` command beside the earlier ones (the newest 32): each names
    every dock the office had revoked when it was sent, so the newest alone would do, but a
    command from a dock revoked later must not take the earlier revocations with it."""
    from common.fsutil import write_atomic
    path = Path(root) / REVOKED_DOCKS_FILE
    kept: list = []
    if path.exists():
        try:
            kept = list(signed.loads_exact(path.read_bytes(), REVOKED_DOCKS_FILE)["commands"])
        except (signed.SignatureError, KeyError, TypeError):
            kept = []
    kept = [*kept, {"record": record, "session": session}][-REVOKED_DOCKS_KEPT:]
    write_atomic(path, signed.canonical({"commands": kept}))


def load_revoked_docks(root: Path, dock_keys: dict[str, Ed25519PublicKey]) -> set[str]:
    """The dock keys revoked by commands kept on the camera, each re-verified at boot against
    the docks enrolled at provisioning (a command was taken only from a dock trusted then)."""
    path = Path(root) / REVOKED_DOCKS_FILE
    if not path.exists():
        return set()
    try:
        kept = signed.loads_exact(path.read_bytes(), REVOKED_DOCKS_FILE)["commands"]
    except (signed.SignatureError, KeyError, TypeError):
        return set()
    out: set[str] = set()
    for saved in kept if isinstance(kept, list) else []:
        try:
            body = link_auth.open_command(saved["record"], dock_keys, saved["session"], "revoke_docks")
        except (link_auth.CommandError, KeyError, TypeError):
            continue
        out.update(d for d in body["docks"][:MAX_REVOKED_DOCKS] if link_auth.FINGERPRINT.fullmatch(d)
                   and d != body["dock_key"])
    return out


def save_assignment(root: Path, record: bytes, session: bytes) -> None:
    save_signed(root, ASSIGNMENT_FILE, record, session)


def save_signed(root: Path, name: str, record: bytes, session: bytes) -> None:
    """A dock's signed command kept on the camera, re-verified at every boot."""
    from common.fsutil import write_atomic
    write_atomic(Path(root) / name, signed.canonical({"record": record, "session": session}))


def load_signed(root: Path, name: str, command: str, dock_keys: dict[str, Ed25519PublicKey]) -> dict | None:
    """A dock command kept on the camera (``save_signed``), verified again: its body, or None."""
    path = Path(root) / name
    if not path.exists():
        return None
    try:
        saved = signed.loads_exact(path.read_bytes(), name)
        return link_auth.open_command(saved["record"], dock_keys, saved["session"], command)
    except (signed.SignatureError, link_auth.CommandError, KeyError, TypeError):
        return None


def load_recipients(root: Path, dock_keys: dict[str, Ed25519PublicKey]) -> list[str] | None:
    """The recipients an enrolled dock set last (re-verified at every boot), or None: then
    the configured ones hold."""
    body = load_signed(root, RECIPIENTS_FILE, "recipients", dock_keys)
    if body is None:
        return None
    from common import keys
    try:
        for r in body["recipients"]:
            keys.parse_recipient(r)
    except ValueError:
        return None
    return list(body["recipients"])


def load_assignment(root: Path, dock_keys: dict[str, Ed25519PublicKey]) -> str | None:
    """The officer an enrolled dock assigned last (re-verified at every boot), or None."""
    body = load_signed(root, ASSIGNMENT_FILE, "assign", dock_keys)
    return None if body is None else body["officer_id"]


def load_dock_keys(paths: list[Path]) -> dict[str, Ed25519PublicKey]:
    """The enrolled docks' public keys (PEM files), by fingerprint."""
    from common import keys
    out = {}
    for path in paths:
        key = keys.load_verify_key(Path(path))
        out[keys.fingerprint(key)] = key
    return out


class _RefusalLog:
    """Refusals of peers that have not authenticated, logged without letting a babbling or
    guessing peer fill the camera's event log: the first few one by one, then counts per
    kind (and per operation) at most once a minute, and when the link goes or a dock
    authenticates. Unauthenticated traffic so adds at most a few hundred bytes a minute."""

    def __init__(self, log: Callable[..., None], clock: Callable[[], float] = time.monotonic) -> None:
        self.log, self.clock = log, clock
        self.logged = 0
        self.unlogged: dict[str, int] = {}
        self.last_summary = clock()

    def refused(self, kind: str, **data: Any) -> None:
        if self.logged < REFUSALS_LOGGED:
            self.logged += 1
            self.log(kind, **data)
            return
        what = f"{kind}:{data['op']}" if "op" in data else kind
        if len(self.unlogged) < 16 or what in self.unlogged:
            self.unlogged[what] = self.unlogged.get(what, 0) + 1
        else:
            self.unlogged["…"] = self.unlogged.get("…", 0) + 1
        if self.clock() - self.last_summary >= REFUSAL_SUMMARY_S:
            self.flush()

    def flush(self) -> None:
        if self.unlogged:
            self.log("link_refused_summary", reason="not authenticated", count=sum(self.unlogged.values()),
                     kinds=dict(self.unlogged))
        self.unlogged, self.last_summary = {}, self.clock()
