"""Exports made in the console, and how long decrypted footage may live on this machine.

An export (one recording, or every recording of a case) is made into its own directory
``CACHE/exports/TOKEN/`` (0700, files 0600) with ``meta.json`` naming who made it, when,
and which recordings it holds. A download link works only for that user, for at most
``ttl_s`` (default 1 h), and only while none of its recordings has been deleted: the
console's background thread removes expired exports and those of deleted recordings
(whoever deleted them: this console, another one, or a CLI ``purge``), and the oldest
when all exports together exceed ``max_bytes``. A failed export leaves nothing behind.

The cache directory itself is ``INDEX/console/PID`` (0700): removed when ``serve`` stops,
and — what a killed console left — when the next one starts.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

TOKEN = re.compile(r"[0-9a-f]{32}")


def cache_dir(index_dir: Path) -> Path:
    """This process's private cache beside the index; leftovers of dead consoles removed."""
    base = index_dir / "console"
    base.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(base, 0o700)
    for old in base.iterdir():
        if old.name.isdigit() and int(old.name) != os.getpid() and not _alive(int(old.name)):
            shutil.rmtree(old, ignore_errors=True)
    mine = base / str(os.getpid())
    mine.mkdir(exist_ok=True, mode=0o700)
    return mine


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    return True


@dataclass
class Exports:
    root: Path
    now_us: Callable[[], int]
    ttl_s: float = 3600.0
    max_bytes: int = 4 << 30
    # the background sweep must never see an export between its directory and its meta.json
    # (it would take it for a crash's leftover and remove it under the request making it)
    _lock: threading.RLock = field(default_factory=threading.RLock, repr=False)

    def __post_init__(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)

    def new(self, user: str, recordings: list[str], ttl_s: float | None = None) -> tuple[str, Path]:
        """A fresh private directory for one export (living ``ttl_s``, default the
        console's); ``finish`` or ``discard`` it."""
        token = secrets.token_hex(16)
        d = self.root / token
        with self._lock:
            d.mkdir(mode=0o700)
            _write_meta(d, {"user": user, "recordings": recordings, "created_us": self.now_us(),
                            "complete": False, "ttl_s": self.ttl_s if ttl_s is None else ttl_s})
        return token, d

    def finish(self, token: str) -> list[str]:
        """Mark the export complete (files 0600) and name its files; its download links
        live the console's ``ttl_s`` from now on."""
        d = self.root / token
        with self._lock:
            meta = json.loads((d / "meta.json").read_text())
            meta.update(complete=True, created_us=self.now_us(), ttl_s=self.ttl_s)
            for p in d.iterdir():
                os.chmod(p, 0o600)
            _write_meta(d, meta)
        return sorted(p.name for p in d.iterdir() if p.name != "meta.json")

    def discard(self, token: str) -> None:
        with self._lock:
            shutil.rmtree(self.root / token, ignore_errors=True)

    def file(self, token: str, name: str, user: str, deleted: Callable[[list[str]], bool]) -> Path | None:
        """The file if ``user`` made this export, it is complete and young enough, and none of
        its recordings was deleted; None otherwise (and a dead export is removed)."""
        if not TOKEN.fullmatch(token) or name == "meta.json" or "/" in name or name.startswith("."):
            return None
        meta = self._meta(token)
        if meta is None or meta.get("user") != user or not meta.get("complete"):
            return None
        if self._expired(meta) or deleted(meta.get("recordings", [])):
            self.discard(token)
            return None
        path = self.root / token / name
        return path if path.is_file() else None

    def sweep(self, deleted: Callable[[list[str]], bool]) -> int:
        """Remove expired exports, those of deleted recordings, unfinished ones of a crash,
        and the oldest beyond ``max_bytes``; how many were removed."""
        with self._lock:
            return self._sweep(deleted)

    def _sweep(self, deleted: Callable[[list[str]], bool]) -> int:
        removed = 0
        alive: list[tuple[int, int, str]] = []
        for token, meta in self._all():
            if meta is None or self._expired(meta) or deleted(meta.get("recordings", [])):
                self.discard(token)
                removed += 1
            else:
                alive.append((meta.get("created_us", 0), _size(self.root / token), token))
        total = sum(size for _, size, _ in alive)
        for _, size, token in sorted(alive):
            if total <= self.max_bytes:
                break
            self.discard(token)
            total -= size
            removed += 1
        return removed

    def _all(self) -> Iterator[tuple[str, Any]]:
        for d in list(self.root.iterdir()):
            if TOKEN.fullmatch(d.name):
                yield d.name, self._meta(d.name)
            else:
                shutil.rmtree(d, ignore_errors=True) if d.is_dir() else d.unlink(missing_ok=True)

    def _meta(self, token: str) -> dict[str, Any] | None:
        try:
            return json.loads((self.root / token / "meta.json").read_text())
        except (OSError, ValueError):
            return None

    def _age_s(self, meta: dict[str, Any]) -> float:
        return (self.now_us() - int(meta.get("created_us", 0))) / 1e6

    def _expired(self, meta: dict[str, Any]) -> bool:
        return self._age_s(meta) > float(meta.get("ttl_s", self.ttl_s))

    def expires_us(self, token: str) -> int | None:
        """When the export's links stop working (UTC µs), None if it is gone."""
        meta = self._meta(token) if TOKEN.fullmatch(token) else None
        if meta is None:
            return None
        return int(meta.get("created_us", 0) + float(meta.get("ttl_s", self.ttl_s)) * 1e6)

    def sizes(self, token: str) -> dict[str, int]:
        """The export's files and their sizes in bytes."""
        d = self.root / token
        return {p.name: p.stat().st_size for p in sorted(d.iterdir()) if p.is_file() and p.name != "meta.json"
                and not p.name.startswith(".")} if d.is_dir() else {}


def _write_meta(d: Path, meta: dict[str, Any]) -> None:
    """Whole or not at all: a reader never sees a meta.json cut short."""
    tmp = d / ".meta.json.tmp"
    with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
        f.write(json.dumps(meta))
    os.replace(tmp, d / "meta.json")


def _size(d: Path) -> int:
    return sum(p.stat().st_size for p in d.iterdir() if p.is_file())
