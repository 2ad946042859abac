"""Durable file writes, shared by camera and dock: what survives a power cut.

>>> import tempfile, pathlib
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> write_atomic(d / "x", b"new"); (d / "x").read_bytes()
b'new'
"""

from __future__ import annotations

import os
from pathlib import Path


def fsync_dir(path: Path) -> None:
    """Make the directory's entries (files created, renamed, removed) durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes, *, tmp: Path | None = None) -> None:
    """Write, fsync, rename over, fsync the directory: the file is old or new, never torn.
    ``tmp``: where to write first (default ``NAME.tmp`` beside it; same filesystem)."""
    tmp = tmp or path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
