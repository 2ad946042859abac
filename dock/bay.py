"""One bay: one docked camera, one worker thread, from handshake to the last receipt.

A bay worker opens the camera's serial node, authenticates it, sets its clock, pushes
the officer assignment, offloads (:mod:`dock.offload`) and says goodbye. Unplugging
mid-transfer ends the worker cleanly; what was stored is kept, the staged part of the
segment in flight stays for the next docking to resume.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from common import link
from evidence.store import EvidenceStore
from dock import revocation
from evidence import recipients as office_recipients
from dock.offload import OffloadReport, Progress, offload
from dock.registry import Registry
from dock.revocation import RevokedCamera, RevokedDock
from evidence import dock_revocations
from common.link_auth import fingerprint_of
from dock.session import DockSession, Refused, UnenrolledCamera


@dataclass
class BayStatus:
    port: str
    state: str = "connecting"   # connecting, transferring, done, refused, unplugged, error
    device: str | None = None
    officer: str | None = None
    total: int = 0
    done: int = 0
    rate_bps: float = 0.0
    eta_s: float | None = None
    message: str = ""
    report: dict[str, Any] | None = None
    started: float = field(default_factory=time.time)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


log = logging.getLogger("bodycam.dock")


class Bay(threading.Thread):
    def __init__(self, port: str, *, key: Ed25519PrivateKey, dock_id: str, registry: Registry,
                 store: EvidenceStore, staging: Path, window: int = 8, timeout: float = 10.0,
                 retry_s: float = 2.0, retry_max_s: float = 60.0,
                 on_change: Callable[[BayStatus], None] = lambda s: None,
                 clock_us: Callable[[], int] = lambda: time.time_ns() // 1000) -> None:
        super().__init__(name=f"bay:{Path(port).name}", daemon=True)
        self.port, self.key, self.dock_id = port, key, dock_id
        self.registry, self.store, self.staging = registry, store, staging
        self.window, self.timeout, self.on_change, self.clock_us = window, timeout, on_change, clock_us
        self.retry_s, self.retry_max_s = retry_s, retry_max_s
        self._stopping = threading.Event()
        self.status = BayStatus(port)
        self.report: OffloadReport | None = None
        self.progress = Progress()
        self._link: link.Link | None = None
        self.retried = 0          # requests asked again after a lost or damaged answer
        self.bad_frames = 0       # damaged frames the dock noticed (CRC, framing)

    def _set(self, **changes: Any) -> None:
        for k, v in changes.items():
            setattr(self.status, k, v)
        self.on_change(self.status)

    def update_rate(self) -> None:
        p = self.progress
        elapsed = max(time.monotonic() - p.started, 1e-6)
        rate = p.done / elapsed
        self._set(total=p.total, done=p.done, rate_bps=rate,
                  eta_s=(p.total - p.done) / rate if rate > 0 and p.total >= p.done else None)

    def stop(self) -> None:
        """The node went away: close the port so a blocked read returns at once."""
        self._stopping.set()
        if self._link is not None:
            self._link.close()

    def run(self) -> None:
        session: DockSession | None = None
        try:
            self._link = link.Link(link.open_port(self.port))
            session = DockSession(self._link, self.key, self.dock_id, self.registry.device_key, self.timeout)
            revoked_docks = self._revoked_docks()     # this dock's own key revoked: it serves no camera
            device = session.handshake()
            self._check_revoked(device)
            officer = self.registry.assignments().get(device)
            self._set(device=device, officer=officer, state="transferring")
            session.command("set_time", "set_time", utc_us=self.clock_us())
            if officer is not None:
                session.command("assign", "assign", officer_id=officer)
            self._push_recipients(session)
            self._push_revoked_docks(session, revoked_docks)
            ticker = threading.Thread(target=self._tick, daemon=True)
            ticker.start()
            self.report = self._offload_until_stored(session)
            try:
                session.call("bye")
            except (link.LinkTimeout, link.LinkClosed):
                pass  # everything is stored and receipted: taken out before the goodbye is still done
            self.update_rate()
            state = "done" if self.report.complete else "done with problems"
            self._set(state=state, report=self.report.to_json(),
                      message=f"{len(self.report.stored)} segments stored, {len(self.report.freed)} freed"
                              + (f"; {len(self.report.quarantined)} quarantined" if self.report.quarantined else "")
                              + (f"; {'; '.join(self.report.problems)}" if self.report.problems else ""))
        except UnenrolledCamera as exc:
            self._set(state="refused", message=str(exc))
        except RevokedCamera as exc:
            self._set(state="revoked", message=str(exc))
        except RevokedDock as exc:
            self._set(state="dock revoked", message=str(exc))
        except link.LinkClosed as exc:
            self._set(state="unplugged", message=f"{exc}; the transfer resumes at the next docking")
        except link.LinkTimeout as exc:
            self._set(state="not answering", message=f"{exc}; re-dock the camera, the transfer resumes")
        except Refused as exc:
            self._set(state="refused" if exc.code in ("dock_not_enrolled", "dock_revoked") else "error", message=str(exc))
        except OSError as exc:
            self._set(state="error", message=f"store: {exc}; footage stays on the camera, retry by re-docking")
        except Exception as exc:  # a bug or an input not foreseen: the bay ends, nothing unreceipted is freed
            log.exception("bay %s failed", self.port)
            self._set(state="error", message=f"unexpected {type(exc).__name__}: {str(exc)[:300]}; footage stays "
                                             "on the camera, retry by re-docking")
        finally:
            if self._link is not None:
                self._link.close()
                self.bad_frames = self._link.stats.bad_frames
            if session is not None:
                self.retried = session.retried

    def _push_recipients(self, session: DockSession) -> None:
        """The office's newest recipients (evidence/recipients.py) to the camera: its footage
        from now on is encrypted to them. A camera whose firmware does not know the command
        keeps its own; the offload goes on either way."""
        try:
            now = office_recipients.current(self.store)
        except OSError:
            return  # the store out of reach: the next docking brings them
        if now is None:
            return
        try:
            session.command("recipients", "recipients", recipients=list(now["recipients"]))
        except Refused as exc:
            log.warning("bay %s: the camera did not take the office's recipients: %s", self.port, exc)

    def _revoked_docks(self) -> dict[str, dict]:
        """The dock keys the office revoked (evidence/dock_revocations.py): the store's list,
        kept in this dock's registry; the registry's alone while the store is out of reach.
        :class:`RevokedDock` (nothing is done) if this dock's own key is on it."""
        known = self.registry.revoked_docks()
        try:
            found = dock_revocations.revoked(self.store, known)
            self.registry.remember_revoked_docks(found)
        except OSError:
            found = known
        own = found.get(fingerprint_of(self.key))
        if own is not None:
            when = dt.datetime.fromtimestamp(int(own.get("utc_us") or 0) / 1e6, dt.timezone.utc)
            raise RevokedDock(f"this dock's key was revoked by the evidence office on {when:%Y-%m-%d %H:%M} UTC "
                                f"by {own.get('by')} ({own.get('reason')}): it serves no camera; give the dock a "
                                "new key (bodycam-keys device --name dock) and enrol it on the cameras")
        return found

    def _push_revoked_docks(self, session: DockSession, revoked: dict[str, dict]) -> None:
        """Tell the camera which dock keys it must no longer trust (it keeps them for good)."""
        if not revoked:
            return
        docks = sorted(revoked)[:dock_revocations.MAX_DOCKS]
        try:
            session.command("revoke_docks", "revoke_docks", docks=docks)
        except Refused as exc:
            log.warning("bay %s: the camera did not take the revoked docks: %s", self.port, exc)

    def _check_revoked(self, device: str) -> None:
        """Refuse a revoked camera before anything is set, read or freed: this dock's list,
        then the store's (where any dock's revocation is; one read), remembered here."""
        found = self.registry.revoked().get(device)
        if found is None:
            try:
                found = revocation.read(self.store, device)
            except OSError:
                found = None  # the store out of reach: this dock's own list decides meanwhile
            if found is not None:
                self.registry.revoke(device, found)
        if found is not None:
            when = dt.datetime.fromtimestamp(int(found.get("utc_us") or 0) / 1e6, dt.timezone.utc)
            self._set(device=device)
            raise RevokedCamera(f"camera {device} was revoked on {when:%Y-%m-%d %H:%M} UTC by {found.get('by')} "
                                f"({found.get('reason')}): nothing is read from it, set or freed; hand it to the "
                                "evidence office")

    def _offload_until_stored(self, session: DockSession) -> OffloadReport:
        """Offload; while the store fails, wait and try again with backoff. Nothing that did not
        reach the store is receipted, so the camera keeps it meanwhile."""
        delay = self.retry_s
        while True:
            try:
                return offload(session, self.store, self.staging, window=self.window, progress=self.progress,
                               now_us=self.clock_us)
            except OSError as exc:
                self._set(state="waiting for store",
                          message=f"store: {exc}; the footage stays on the camera, retrying in {delay:g} s")
                if self._stopping.wait(delay):
                    raise link.LinkClosed("taken out of the dock while the store was unreachable") from None
                delay = min(delay * 2, self.retry_max_s)
                self._set(state="transferring", message="")
                self.progress = Progress()

    def _tick(self) -> None:
        while self.is_alive() and self.status.state in ("transferring", "waiting for store"):
            self.update_rate()
            time.sleep(0.2)
