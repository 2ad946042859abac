"""Backup and restore of the evidence store: every object copied into another store.

``bodycam-evidence --store STORE backup --to DIR|s3://…`` and, after a loss,
``bodycam-evidence --store NEW restore --from DIR|s3://…``. Both are one operation,
:func:`copy`, from one store to another (a directory or any S3; a backup on S3 gets its
own Object Lock from ``init``):

- **incremental and resumable:** one listing of each side; only what the target lacks
  is copied, so a run that was killed, or last night's backup, continues where it is;
- **verified:** every object is written write-once with the SHA-256 of the bytes read
  (the filesystem checks it, S3 must confirm it); ``verify=True`` reads the target back
  and compares every object's hash;
- **lawful:** footage deleted from the store since the last backup (a purge, an early
  deletion) is destroyed in the backup too — a backup must not keep what the law says is
  gone. Anything else missing from the store but in the backup is never removed: it is a
  finding (objects other than footage are never deleted; run ``verify``).

Objects the store replaces by design (a device's ``anchor.cbor``, a quarantine note, a
console user) are copied again when they differ. The index is not backed up: ``reindex``
rebuilds it from the restored store (on S3 from packs).
"""

from __future__ import annotations

import hashlib
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable

from evidence.errors import StoreConflict
from evidence.store import EvidenceStore, unknown_keys

MUTABLE = re.compile(r"devices/[^/]+/anchor\.cbor|quarantine/.+\.reason\.json|console/users/[^/]+\.json")
FOOTAGE = re.compile(r"devices/[^/]+/segments/\d{8,}\.ts\.age")
WORKERS = 8
Progress = Callable[[int, int, int], None]   # (objects done, objects to copy, bytes copied)


@dataclass
class CopyReport:
    source: str
    target: str
    listed: int = 0               # objects in the source
    copied: int = 0
    bytes: int = 0
    updated: int = 0              # replaceable objects that had changed
    unchanged: int = 0
    deleted_footage: list[str] = field(default_factory=list)   # gone from the source: destroyed in the target
    verified: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


class NotARestore(ValueError):
    """The target holds objects the backup does not: restoring would mix two stores."""


def copy(source: EvidenceStore, target: EvidenceStore, *, verify: bool = False, restore: bool = False,
         progress: Progress | None = None, workers: int = WORKERS) -> CopyReport:
    """Make ``target`` hold what ``source`` holds (see the module docstring). ``restore``:
    the target must be empty or an interrupted restore of this backup, and nothing in it is
    ever deleted."""
    report = CopyReport(source.location, target.location)
    listed = source.backend.keys("")
    src_keys = [k for k in listed if not unknown_keys([k])]
    report.problems += [f"{k}: not an object of the store's layout; not copied (bodycam-evidence verify names it)"
                        for k in listed if unknown_keys([k])]
    have = set(target.backend.keys(""))
    report.listed = len(src_keys)
    todo = [k for k in src_keys if k not in have or MUTABLE.fullmatch(k)]
    report.unchanged = report.listed - len(todo)
    src_set = set(src_keys)
    extra = sorted(have - src_set)
    if restore and extra:
        raise NotARestore(f"{target.location} holds {len(extra)} object(s) that {source.location} does not "
                          f"(e.g. {extra[0]}): restore only into an empty store or an interrupted restore of "
                          "this backup")
    for key in extra:
        if FOOTAGE.fullmatch(key):
            try:
                target.backend.destroy(key)
            except (PermissionError, OSError) as exc:   # a legal hold in the backup: the law is the store's
                report.problems.append(f"{key}: deleted in the store, but the backup refused to delete it ({exc})")
                continue
            report.deleted_footage.append(key)
        elif not unknown_keys([key]):
            report.problems.append(f"{key} is in {target.location} but no longer in {source.location}: kept "
                                   "(only footage is ever deleted; run bodycam-evidence verify on the store)")

    def one(key: str) -> tuple[str, int, str]:
        data = source.backend.read(key)
        digest = hashlib.sha256(data).digest()
        if MUTABLE.fullmatch(key):
            try:
                if key in have and hashlib.sha256(target.backend.read(key)).digest() == digest:
                    return key, 0, "unchanged"
            except FileNotFoundError:
                pass
            target.backend.replace(key, data)
            return key, len(data), "updated" if key in have else "copied"
        try:
            target.backend.put_once(key, data, digest)
        except StoreConflict:
            return key, 0, "conflict"
        return key, len(data), "copied"

    done = 0
    with ThreadPoolExecutor(workers) as pool:
        for key, size, what in pool.map(one, todo):
            done += 1
            if what == "conflict":
                report.problems.append(f"{key}: {target.location} holds other bytes under this name; left as it is")
            elif what == "unchanged":
                report.unchanged += 1
            else:
                report.copied += what == "copied"
                report.updated += what == "updated"
                report.bytes += size
            if progress:
                progress(done, len(todo), report.bytes)
        if verify:
            def same(key: str) -> bool:
                return hashlib.sha256(source.backend.read(key)).digest() == \
                    hashlib.sha256(target.backend.read(key)).digest()
            for key, ok in zip(src_keys, pool.map(same, src_keys)):
                report.verified += ok
                if not ok:
                    report.problems.append(f"{key}: the copy in {target.location} differs from the store's")
    return report
