"""Filesystem backend of the evidence store: keys are paths under one directory.

Write-once files: written into the store's staging directory (``.staging/``, named by
the writer's pid), fsync'd, mode 0444, hard-linked into place (``link`` fails if the
name exists, so evidence is never replaced), the staged name removed, the directory
fsync'd. A writer killed in between leaves its staged file in ``.staging/`` only —
never beside the evidence — and :meth:`FsBackend.orphans` finds it (its pid is dead);
the dock at start, ``purge``, ``delete`` and ``verify`` remove such orphans, so no copy
of footage outlives its deletion. Names starting with a dot are never store objects.
What this backend cannot do is refuse its own administrator: holds are kept in the
signed audit trail (:mod:`evidence.audit`) and enforced by the tool, not the disk.

>>> import tempfile
>>> b = FsBackend(Path(tempfile.mkdtemp()))
>>> b.put_once("a/b.txt", b"hi", hashlib.sha256(b"hi").digest()).endswith("a/b.txt")
True
>>> b.read("a/b.txt"), b.keys("a"), b.children("")
(b'hi', ['a/b.txt'], ['a'])
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
import threading
from pathlib import Path

from common.fsutil import fsync_dir, write_atomic
from evidence.errors import StoreConflict


def _move_in(src: Path, dst: Path, sha256: bytes) -> None:
    """Rename ``src`` to ``dst``, or copy it where a rename cannot cross: under systemd's
    ``ProtectSystem=strict`` the dock's state and the store's ``ReadWritePaths=`` are separate
    mounts even on one filesystem (EXDEV, seen on the booted system). The copy is hashed as
    it is written and must be what the dock hashed on arrival; the source goes only after."""
    try:
        os.replace(src, dst)
        return
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
    h = hashlib.sha256()
    try:
        with open(src, "rb") as fin, open(dst, "wb") as fout:
            while chunk := fin.read(1 << 20):
                h.update(chunk)
                fout.write(chunk)
            fout.flush()
            os.fsync(fout.fileno())
        if h.digest() != sha256:
            raise StoreConflict(f"{src} changed while it was copied into the store; it stays where it is")
    except BaseException:
        dst.unlink(missing_ok=True)
        raise
    src.unlink()


def sha256_file(path: Path) -> bytes:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.digest()


STAGING = ".staging"


def _is_temp(name: str) -> bool:
    """Not a store object: the staging directory, and temporary names of older versions."""
    return name.startswith(".")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class FsBackend:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        if self.root.exists() and not self.root.is_dir():
            raise NotADirectoryError(f"evidence store {self.root} is a file, not a directory")

    def _path(self, key: str) -> Path:
        if key.startswith("/") or ".." in key.split("/"):
            raise ValueError(f"bad store key {key!r}")
        return self.root / key

    def where(self, key: str) -> str:
        return str(self._path(key))

    def read(self, key: str) -> bytes:
        return self._path(key).read_bytes()

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def put_once(self, key: str, data: bytes | Path, sha256: bytes) -> str:
        """Create ``key`` (bytes, or a file moved in) whose SHA-256 must be ``sha256``; the
        same content again is fine, other content under a stored name raises
        :class:`StoreConflict`."""
        path = self._path(key)
        # What an S3 server checks (BadDigest), checked here too — except for a new file moved
        # in: the dock hashed it as it arrived, and a second pass would double its CPU per MB.
        if isinstance(data, bytes) or path.exists():
            actual = sha256_file(data) if isinstance(data, Path) else hashlib.sha256(data).digest()
            if actual != sha256:
                raise StoreConflict(f"refusing to store {path}: its bytes do not have the SHA-256 they must have")
        if path.exists():
            if sha256_file(path) != sha256:
                raise StoreConflict(f"{path} is stored with other content; refusing to replace evidence")
            if isinstance(data, Path):
                data.unlink()
            return str(path)
        self._mkdirs(path.parent)
        tmp = self._staged()
        if isinstance(data, Path):
            _move_in(data, tmp, sha256)
        else:
            with open(tmp, "wb") as f:
                f.write(data)
        try:
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
            os.chmod(tmp, 0o444)
            try:
                os.link(tmp, path)  # fails if the name exists: write-once
            except FileExistsError:  # another writer won the race: same content or a conflict
                if sha256_file(path) != sha256:
                    raise StoreConflict(f"{path} is stored with other content; refusing to replace evidence") from None
        finally:
            tmp.unlink(missing_ok=True)
        fsync_dir(path.parent)
        return str(path)

    def _staged(self) -> Path:
        """A fresh staging name of this writer (pid first: a dead writer's are orphans)."""
        staging = self.root / STAGING
        self._mkdirs(staging)
        return staging / f"{os.getpid()}.{threading.get_ident()}.{os.urandom(6).hex()}.tmp"

    def replace(self, key: str, data: bytes) -> None:
        """Old or new, never torn, and no temporary name beside it."""
        path = self._path(key)
        self._mkdirs(path.parent)
        write_atomic(path, data, tmp=self._staged())

    def _mkdirs(self, folder: Path) -> None:
        """``mkdir -p``; in a store shared by a dock and the office on one server (its root
        setgid, group-writable: flash.sh), each new folder is made 2770 like the root, whatever
        the umask of who made it (a technician's ``sudo -u`` has 022; seen on the booted system)."""
        if folder.is_dir():
            return
        try:
            shared = self.root.stat().st_mode & stat.S_ISGID
        except FileNotFoundError:
            shared = 0
        missing = []
        p = folder
        while not p.exists():
            missing.append(p)
            p = p.parent
        for d in reversed(missing):
            try:
                d.mkdir()
            except FileExistsError:
                continue
            if shared:
                os.chmod(d, 0o2770)

    def orphans(self, deep: bool = True) -> list[Path]:
        """What killed writers left: staged files of dead processes, and (``deep``: a walk
        of the whole tree) temporary names of older versions (``.NAME.PID.TID.tmp``, ``NAME.tmp``)."""
        out = []
        staging = self.root / STAGING
        if staging.is_dir():
            for p in staging.iterdir():
                pid = p.name.split(".", 1)[0]
                if not pid.isdigit() or not _alive(int(pid)):
                    out.append(p)
        if deep and self.root.is_dir():
            for p in self.root.rglob("*.tmp"):
                if STAGING not in p.relative_to(self.root).parts[:1] and p.is_file():
                    out.append(p)
        return out

    def remove_orphans(self, deep: bool = True) -> list[str]:
        """Remove :meth:`orphans`; their paths."""
        removed = []
        for p in self.orphans(deep):
            p.unlink(missing_ok=True)
            removed.append(str(p))
        return removed

    def keys(self, prefix: str) -> list[str]:
        base = self._path(prefix) if prefix else self.root
        if not base.is_dir():
            return []
        out = []
        for p in base.rglob("*"):
            rel = p.relative_to(self.root).as_posix()
            if p.is_file() and not any(_is_temp(part) for part in rel.split("/")):
                out.append(rel)
        return sorted(out)

    def keys_after(self, prefix: str, after: str = "", limit: int | None = None, until: str | None = None) -> list[str]:
        """Keys in ``prefix``'s directory that start with ``prefix`` and sort after ``after`` (and
        not after ``until``), sorted (not recursive). One directory read: S3 answers this from
        ``after`` on."""
        folder, _, start = prefix.rpartition("/")
        base = self._path(folder) if folder else self.root
        try:
            with os.scandir(base) as it:
                names = [e.name for e in it if e.name.startswith(start) and not _is_temp(e.name) and e.is_file()]
        except (FileNotFoundError, NotADirectoryError):
            return []
        keys = sorted(k for k in (f"{folder}/{n}" if folder else n for n in names)
                      if k > after and (until is None or k <= until))
        return keys if limit is None else keys[:limit]

    def listing(self, prefix: str, after: str = "", limit: int | None = None,
                until: str | None = None) -> list[tuple[str, str | None]]:
        """As :meth:`keys_after`, with no MD5 (a directory keeps none; reads are local and
        cheap, so :mod:`evidence.packs` is not used here)."""
        return [(k, None) for k in self.keys_after(prefix, after, limit, until)]

    def children(self, prefix: str) -> list[str]:
        base = self._path(prefix) if prefix else self.root
        if not base.is_dir():
            return []
        return sorted(p.name for p in base.iterdir() if not _is_temp(p.name))

    def destroy(self, key: str) -> None:
        path = self._path(key)
        path.unlink()  # FileNotFoundError if it is gone already
        fsync_dir(path.parent)

    def hold(self, key: str, on: bool) -> None:
        """Nothing to do on a plain filesystem: the audit trail carries the hold."""
        if not self.exists(key):
            raise FileNotFoundError(key)
