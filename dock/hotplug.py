"""The dock service: watch for docked cameras, one bay worker each, a status file.

Cameras appear as serial device nodes (on Linux udev's ``/dev/serial/by-id/…``, a
symlink per USB gadget, named after its serial number, which carries the camera id).
``watchdog`` (inotify) reports a new node within milliseconds; each gets a
:class:`~dock.bay.Bay` thread, so bays run in parallel; a removed node stops its bay.
``<state>/status.json`` is rewritten (atomically) on every change, for
``bodycam-dock status --json`` and monitoring.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from pathlib import Path
from typing import Any, Callable

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

from common import keys
from common.fsutil import write_atomic
from dock.bay import Bay, BayStatus
from dock.config import DockConfig
from evidence.store import open_store
from dock.registry import Registry

log = logging.getLogger("bodycam.dock")


# a transfer that ended in one of these while the camera is still in its bay is tried again
RETRY_STATES = frozenset({"not answering", "unplugged", "error"})

class Dock:
    def __init__(self, config: DockConfig, on_change: Callable[[], None] = lambda: None,
                 clock_for: Callable[[Path], Callable[[], int]] | None = None) -> None:
        """``clock_for``: the clock a bay for this port sets cameras by and dates its records
        with (default: this machine's; the simulator's demo back-dates a shift's start)."""
        self.config = config
        self.clock_for = clock_for
        self.key = keys.load_signing_key(config.path(config.dock.key))
        self.state_dir = config.path(config.dock.state)
        self.registry = Registry(self.state_dir)
        self.store = open_store(config.dock.store, config.base_dir)
        self.watch_dir = config.path(config.dock.watch)
        self.bays: dict[str, Bay] = {}
        self.finished: list[BayStatus] = []
        self.on_change = on_change
        self._lock = threading.Lock()
        self._observer: Any = None
        self._present: set[str] = set()   # the nodes seen by the last rescan
        self._scan_lock = threading.Lock()
        self._retry: dict[str, tuple[float | None, float]] = {}   # node → (when to try again, wait)
        self._last_status = 0.0
        self._written: dict[str, str] = {}   # bay port → the state status.json last showed
        self._status_lock = threading.RLock()  # bays change from their own threads; one writer at a time

    # ------------------------------------------------------------------ bays
    def appeared(self, node: Path) -> None:
        node_s = str(node)
        with self._lock:
            current = self.bays.get(node_s)
            if current is not None and current.is_alive():
                return
            bay = Bay(node_s, key=self.key, dock_id=self.config.dock.id, registry=self.registry,
                      store=self.store, staging=self.state_dir / "incoming", window=self.config.transfer.window,
                      timeout=self.config.transfer.timeout_s, retry_s=self.config.transfer.retry_s,
                      retry_max_s=self.config.transfer.retry_max_s, on_change=self._changed,
                      **({"clock_us": self.clock_for(node)} if self.clock_for is not None else {}))
            if current is not None:
                self.finished.append(current.status)
            self.bays[node_s] = bay
        bay.start()
        self._changed(bay.status, force=True)

    def disappeared(self, node: Path) -> None:
        with self._lock:
            bay = self.bays.get(str(node))
        if bay is not None and bay.is_alive():
            bay.stop()

    def _changed(self, status: BayStatus, force: bool = False) -> None:
        """Progress is written at most every ``status_interval_s``; a change of state always
        (a bay that ended must never look as if it still transfers)."""
        with self._status_lock:
            now = time.monotonic()
            changed_state = self._written.get(status.port) != status.state
            self._written[status.port] = status.state
            if force or changed_state or now - self._last_status >= self.config.transfer.status_interval_s:
                self._last_status = now
                self.write_status()
        self.on_change()

    def status(self) -> dict[str, Any]:
        with self._lock:
            bays = [b.status.to_json() for b in self.bays.values()]
        return {"dock_id": self.config.dock.id, "updated_utc": time.time(), "watch": str(self.watch_dir),
                "store": str(self.config.dock.store), "bays": bays}

    def write_status(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        with self._status_lock:
            write_atomic(self.state_dir / "status.json", json.dumps(self.status(), indent=2).encode())

    # ------------------------------------------------------------------ watching
    def start(self) -> None:
        dock = self
        try:  # what an earlier dock process killed mid-write left in the store (not evidence: never linked)
            for path in self.store.remove_orphans():
                log.warning("removed a copy an interrupted write left in the store: %s", path)
        except OSError as exc:
            log.warning("could not look for leftovers of interrupted writes in the store: %s", exc)

        class Handler(FileSystemEventHandler):
            def on_created(self, event: FileSystemEvent) -> None:
                dock.rescan()   # at once, rather than at the service loop's next look

            def on_deleted(self, event: FileSystemEvent) -> None:
                dock.rescan()

        try:
            self.watch_dir.mkdir(parents=True, exist_ok=True)
        except OSError:
            # /dev/serial/by-id: udev makes it with the first USB serial device and removes it
            # with the last; the dock (no root) cannot make it, so :meth:`rescan` watches for it
            log.info("%s does not exist yet: waiting for the first camera", self.watch_dir)
        if self.watch_dir.is_dir():
            self._observer = Observer()
            self._observer.schedule(Handler(), str(self.watch_dir), recursive=False)
            self._observer.start()
        self.rescan()  # cameras docked before the service started
        self.write_status()

    def rescan(self) -> None:
        """Compare the watched folder with what was there: the observer's events can be lost
        (udev removes and makes ``/dev/serial/by-id`` again, and inotify forgets a removed
        folder), so the service loop calls this a few times a second. Only changes count."""
        with self._scan_lock:
            try:
                present = {str(p) for p in self.watch_dir.iterdir()} if self.watch_dir.is_dir() else set()
            except OSError:
                present = set()
            for node in sorted(present - self._present):
                self.appeared(Path(node))
            for node in sorted(self._present - present):
                self.disappeared(Path(node))
                self._retry.pop(node, None)
            for node in sorted(present & self._present):
                self._retry_if_due(node)
            self._present = present

    def _retry_if_due(self, node: str) -> None:
        """A camera still in its bay whose transfer ended without finishing (it did not answer
        yet: it was still booting, its runtime restarted, its port closed) is tried again,
        waiting ``retry_s`` and doubling up to ``retry_max_s``: no one has to re-dock it. Seen
        on the booted system: a camera that boots in the dock opens its port after the dock
        first knocked."""
        with self._lock:
            bay = self.bays.get(node)
        if bay is None or bay.is_alive() or bay.status.state not in RETRY_STATES:
            if bay is not None and not bay.is_alive():
                self._retry.pop(node, None)
            return
        now = time.monotonic()
        due, wait = self._retry.get(node, (None, self.config.transfer.retry_s))
        if due is None:
            self._retry[node] = (now + wait, wait)
        elif now >= due:
            log.info("%s: trying the camera again (%s)", node, bay.status.state)
            nxt = min(wait * 2, self.config.transfer.retry_max_s)
            self._retry[node] = (None, nxt)
            self.appeared(Path(node))

    def stop(self) -> None:
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout=5)
        with self._lock:
            bays = list(self.bays.values())
        for bay in bays:
            bay.stop()
            bay.join(timeout=10)
        self.write_status()

    def busy(self) -> bool:
        with self._lock:
            return any(b.is_alive() for b in self.bays.values())


class StatusDamaged(ValueError):
    """status.json is not what ``bodycam-dock run`` writes (cut short, edited by hand)."""


def read_status(state_dir: Path) -> dict[str, Any]:
    """What the running dock last wrote; :class:`StatusDamaged` if it is not its format."""
    path = Path(state_dir) / "status.json"
    try:
        status = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise StatusDamaged(f"{path} is damaged ({exc}); bodycam-dock run rewrites it at the next change") from None
    bays = status.get("bays") if isinstance(status, dict) else None
    if not (isinstance(bays, list) and all(isinstance(b, dict) and isinstance(b.get("port"), str)
                                           and isinstance(b.get("state"), str) for b in bays)):
        raise StatusDamaged(f"{path} is not a dock status (a map with bays, each with a port and a state); "
                            "bodycam-dock run rewrites it at the next change")
    return status
