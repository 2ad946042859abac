"""Replaying a ``dm-log-writes`` log to every crash point (the CrashMonkey method).

The kernel's ``log-writes`` target (Debian's kernel has it as a module) passes writes to a
device and appends each one, in the order it became durable, to a log device; flushes and
FUA writes are marked. Replaying the log onto a blank device up to a flush or FUA entry
gives exactly what a disk may hold after a power cut at that moment. This module reads the
log (format: the kernel's ``drivers/md/dm-log-writes.c``, ``log_write_super`` and
``log_write_entry``; xfstests' ``replay-log`` reads the same) and yields those states. Small
enough to write here rather than build xfstests, which Debian does not package.

Log layout, little-endian: sector 0 holds the super (magic ``0x6a736677736872``, version 1,
the number of entries, the sector size); entries follow from the next sector, each one
sector of header (sector, nr_sectors, flags, data_len; a mark's text inline) and, for a
write, ``nr_sectors`` sectors of its data.

>>> import io, struct
>>> log = io.BytesIO()
>>> def sector(b): log.write(b.ljust(512, b"\\0"))
>>> sector(struct.pack("<QQQI", MAGIC, 1, 3, 512))
>>> sector(struct.pack("<QQQQ", 2, 1, 0, 0)); sector(b"A" * 512)          # a write
>>> sector(struct.pack("<QQQQ", 0, 0, FLUSH, 0))                         # a flush: crash point
>>> sector(struct.pack("<QQQQ", 0, 0, MARK, 4) + b"done")                # a mark
>>> entries = read_log(io.BytesIO(log.getvalue()))
>>> [(e.sector, e.nr_sectors, e.flags, e.mark) for e in entries]
[(2, 1, 0, ''), (0, 0, 1, ''), (0, 0, 8, 'done')]
>>> dev = io.BytesIO(bytes(512 * 4))
>>> [i for i, _ in crash_points(io.BytesIO(log.getvalue()), entries, dev)]
[1]
>>> dev.getvalue()[1024:1028]
b'AAAA'
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import BinaryIO, Iterator

MAGIC = 0x6a736677736872
FLUSH, FUA, DISCARD, MARK, METADATA = 1, 2, 4, 8, 16


class LogError(ValueError):
    """Not a dm-log-writes log, or cut short."""


@dataclass(frozen=True)
class Entry:
    sector: int         # where on the device (in the log's sector size)
    nr_sectors: int
    flags: int
    data_at: int        # byte offset of the write's data in the log
    mark: str = ""

    @property
    def crash_point(self) -> bool:
        return bool(self.flags & (FLUSH | FUA))


def read_log(log: BinaryIO) -> list[Entry]:
    head = log.read(28)
    if len(head) < 28:
        raise LogError("the log is shorter than its super block")
    magic, version, count, size = struct.unpack("<QQQI", head)
    if magic != MAGIC or version != 1:
        raise LogError(f"not a dm-log-writes log (magic {magic:#x}, version {version})")
    if size not in (512, 1024, 2048, 4096):
        raise LogError(f"unexpected sector size {size}")
    entries, at = [], size
    for _ in range(count):
        log.seek(at)
        raw = log.read(size)
        if len(raw) < 32:
            raise LogError(f"the log ends inside entry {len(entries) + 1} of {count}")
        sector, nr, flags, data_len = struct.unpack("<QQQQ", raw[:32])
        mark = raw[32:32 + data_len].decode(errors="replace") if flags & MARK else ""
        entries.append(Entry(sector, nr, flags, at + size, mark))
        at += size + (0 if flags & (DISCARD | MARK) else nr * size)
    return entries


def apply(log: BinaryIO, entry: Entry, device: BinaryIO, size: int) -> None:
    """One entry onto ``device``: its data, or zeros for a discard (what is left is undefined)."""
    if entry.flags & MARK or not entry.nr_sectors:
        return
    device.seek(entry.sector * size)
    if entry.flags & DISCARD:
        device.write(bytes(entry.nr_sectors * size))
        return
    log.seek(entry.data_at)
    left = entry.nr_sectors * size
    while left:
        chunk = log.read(min(left, 1 << 20))
        if not chunk:
            raise LogError("the log ends inside a write's data")
        device.write(chunk)
        left -= len(chunk)


def sector_size(log: BinaryIO) -> int:
    log.seek(24)
    return struct.unpack("<I", log.read(4))[0]


def crash_points(log: BinaryIO, entries: list[Entry], device: BinaryIO) -> Iterator[tuple[int, Entry]]:
    """Apply the entries in order onto ``device``; after each flush or FUA entry, yield
    (its index, it) with ``device`` holding exactly what a power cut then would leave."""
    size = sector_size(log)
    for i, entry in enumerate(entries):
        apply(log, entry, device, size)
        if entry.crash_point:
            device.flush()
            yield i, entry
