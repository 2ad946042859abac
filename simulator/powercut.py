"""A power-cut model: what a disk holds after a cut, given what was fsync'd.

:class:`FsyncTracker` wraps ``os.fsync`` and notes, for every fsync of a file, the
inode and its size (that much of it is durable), and for every fsync of a directory,
the names it held (those entries are durable). :func:`disk_image` then copies a store
as a power cut would leave it:

* a name not in its directory's last fsync'd listing is gone (its entry never reached
  the disk);
* every other file is cut back to the size it had at its inode's last fsync (0 if
  never fsync'd).

Files are append-only or replaced by rename (``write_atomic``), so the durable part
of a file is a prefix of what it holds now. Used in-process (a sweep of cut points)
and, through ``tests/powercut_child.py``, in a campaign of SIGKILLs of a real process.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Callable


class FsyncTracker:
    """Patch ``os.fsync``; keep the log in memory, or append it to ``log_path`` (one JSON
    line per fsync, written before the call returns, so a SIGKILL loses nothing of it)."""

    def __init__(self, log_path: Path | None = None) -> None:
        self.files: dict[int, int] = {}            # inode → durable size
        self.dirs: dict[str, set[str]] = {}        # directory → durable names
        self._fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644) if log_path else None
        self._real: Callable[[int], None] = os.fsync

    def install(self) -> "FsyncTracker":
        self._real = os.fsync
        os.fsync = self._fsync  # type: ignore[assignment]
        return self

    def uninstall(self) -> None:
        os.fsync = self._real  # type: ignore[assignment]

    def _fsync(self, fd: int) -> None:
        self._real(fd)
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            path = os.readlink(f"/proc/self/fd/{fd}")
            entry = {"dir": path, "names": sorted(os.listdir(path))}
            self.dirs[path] = set(entry["names"])
        else:
            entry = {"ino": st.st_ino, "size": st.st_size}
            self.files[st.st_ino] = st.st_size
        if self._fd is not None:
            os.write(self._fd, (json.dumps(entry) + "\n").encode())

    @classmethod
    def from_log(cls, log_path: Path) -> "FsyncTracker":
        t = cls()
        for line in Path(log_path).read_text().splitlines():
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue
            if "dir" in entry:
                t.dirs[entry["dir"]] = set(entry["names"])
            else:
                t.files[entry["ino"]] = entry["size"]
        return t


def disk_image(tracker: FsyncTracker, src: Path, dst: Path) -> Path:
    """Copy the tree ``src`` to ``dst`` as a power cut at this moment would leave it."""
    src, dst = Path(src).resolve(), Path(dst)
    for dirpath, _dirnames, filenames in os.walk(src):
        rel = Path(dirpath).relative_to(src)
        (dst / rel).mkdir(parents=True, exist_ok=True)
        durable_names = tracker.dirs.get(dirpath)
        for name in filenames:
            if durable_names is not None and name not in durable_names:
                continue
            if durable_names is None and not (Path(dirpath) / name).exists():
                continue
            source = Path(dirpath) / name
            try:
                ino = source.stat().st_ino
                data = source.read_bytes()
            except FileNotFoundError:
                continue
            (dst / rel / name).write_bytes(data[:tracker.files.get(ino, 0)])
    return dst
