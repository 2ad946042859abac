"""Packs: copies of many small store objects in one, so a cold reindex from S3 reads a few
hundred objects instead of hundreds of thousands.

A city's store holds about 250,000 manifests and an audit trail of 100,000 records and
more, each its own small object. One GET costs about 5–10 ms of CPU (botocore and the
server, on the same two cores here), so reading them one by one takes the better part of
an hour (measured: 102 objects/s with 16 threads). A listing, by contrast, returns 1,000
keys per request *with each object's MD5* (its ETag), which is what makes packs safe:

- A pack is **a copy, never the truth.** Every member is used only if its MD5 equals
  the ETag the store's own listing gives for that key. A member that differs, an object
  no pack holds, a pack that is damaged or missing: read on its own, as before. What the
  index learns is therefore exactly what the store holds, only fetched in bulk; a
  deletion or an alteration behind the index's back is seen in the listing.
- Where the listing carries no MD5 (the filesystem backend, whose reads are local and
  cheap; an S3 service whose ETags are not MD5s), packs are neither written nor read.

Written by the index (:mod:`evidence.index.follow`), write-once like every evidence
object, by whoever first has the members in hand: the manifests of one docking when the
refresh reads them (and, in a rebuild, a device's manifests that no pack held yet); a
block of 1,000 audit records once the index has applied the whole block. Two writers
write the same bytes (the encoding is deterministic), so a race is harmless.

Layout (docs/FORMAT.md §10.4)::

    packs/audit/FIRST-LAST.cbor              audit records FIRST…LAST (twelve digits; one block)
    packs/devices/<device>/FIRST-LAST.cbor   manifests FIRST…LAST of one device (eight digits)

A pack is deterministic CBOR: ``{"v": 1, "kind": "audit"|"manifests", "members": {name:
bytes}}``, ``name`` the member's file name in its folder (``000000001234.cbor``,
``00000012.manifest``).

>>> data = encode("manifests", {"00000001.manifest": b"m1"})
>>> decode(data, "manifests")
{'00000001.manifest': b'm1'}
"""

from __future__ import annotations

import hashlib
import re
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Iterator

import cbor2

from evidence.errors import LockedError, StoreConflict, StoreUnavailable

BLOCK = 1000                  # audit records per pack
MAX_MEMBERS = 1000            # manifests per pack (a longer docking makes several)
MAX_PACK = 32 << 20           # bytes: far above 1,000 manifests or records (about 1 KiB each)
AUDIT_PREFIX = "packs/audit/"
_NAME = {"audit": re.compile(r"\d{12}\.cbor"), "manifests": re.compile(r"\d{8,}\.manifest")}

Listed = list[tuple[str, "str | None"]]   # (key, MD5 hex from the listing, or None)


class PackError(ValueError):
    """A pack that is not one (damaged, too big, of another kind): its members are read one by one."""


def audit_pack_key(first: int) -> str:
    return f"{AUDIT_PREFIX}{first:012d}-{first + BLOCK - 1:012d}.cbor"


def block_of(seq: int) -> int:
    """The first record of the block that holds record ``seq``."""
    return (seq - 1) // BLOCK * BLOCK + 1


def manifest_prefix(device: str) -> str:
    return f"packs/devices/{device}/"


def manifest_pack_key(device: str, first: int, last: int) -> str:
    return f"{manifest_prefix(device)}{first:08d}-{last:08d}.cbor"


def encode(kind: str, members: dict[str, bytes]) -> bytes:
    if kind not in _NAME:
        raise ValueError(f"unknown pack kind {kind!r}")
    return cbor2.dumps({"v": 1, "kind": kind, "members": dict(sorted(members.items()))}, canonical=True)


def decode(data: bytes, kind: str) -> dict[str, bytes]:
    """The members, checked for shape; :class:`PackError` otherwise."""
    if len(data) > MAX_PACK:
        raise PackError(f"a pack of {len(data)} bytes (at most {MAX_PACK})")
    try:
        body = cbor2.loads(data)
    except Exception as exc:  # cbor2 raises several kinds on garbage
        raise PackError(f"not CBOR ({exc})") from None
    if not (isinstance(body, dict) and body.get("v") == 1 and body.get("kind") == kind
            and isinstance(body.get("members"), dict)):
        raise PackError(f"not a v1 {kind} pack")
    members = body["members"]
    if len(members) > max(BLOCK, MAX_MEMBERS) or not all(
            isinstance(k, str) and _NAME[kind].fullmatch(k) and isinstance(v, bytes) for k, v in members.items()):
        raise PackError(f"a {kind} pack with members that are not {kind} objects")
    return members


def lists_md5(backend: Any) -> bool:
    """Whether the backend's listing carries each object's MD5 (only then are packs used)."""
    return bool(getattr(backend, "LISTS_MD5", False))


def read_packs(backend: Any, pool: ThreadPoolExecutor, keys: list[str], kind: str) -> tuple[dict[str, bytes], list[str]]:
    """Every member of the packs ``keys`` (read in parallel) and what was wrong with any."""
    def get(key: str) -> tuple[str, dict[str, bytes] | str]:
        try:
            return key, decode(backend.read(key), kind)
        except FileNotFoundError:
            return key, {}
        except PackError as exc:
            return key, str(exc)
    members: dict[str, bytes] = {}
    problems: list[str] = []
    for key, got in pool.map(get, keys):
        if isinstance(got, str):
            problems.append(f"{key}: {got}; its members are read one by one")
        else:
            members.update(got)
    return members, problems


def matches(member: bytes | None, md5: str | None) -> bool:
    return member is not None and md5 is not None and hashlib.md5(member).hexdigest() == md5


def write(backend: Any, key: str, data: bytes) -> str | None:
    """Write a pack once; None if done (or already there), else why not (it is only a
    copy: a store that refuses it, or is unreachable for a moment, loses nothing)."""
    try:
        backend.put_once(key, data, hashlib.sha256(data).digest())
    except (StoreConflict, StoreUnavailable, LockedError, PermissionError, OSError) as exc:
        return f"{key} not written ({exc})"
    return None


def read_through(backend: Any, pool: ThreadPoolExecutor, listed: Listed, members: dict[str, bytes],
                 batch: int = 256) -> Iterator[tuple[str, bytes | None, bool]]:
    """(key, bytes or None if gone, whether it came from a pack) for every listed key, in
    order: from ``members`` where its MD5 matches the listing, else one GET each (in
    parallel, ``batch`` at a time)."""
    def get(key: str) -> bytes | None:
        try:
            return backend.read(key)
        except FileNotFoundError:
            return None
    for i in range(0, len(listed), batch):
        chunk = listed[i:i + batch]
        packed = [members.get(key.rsplit("/", 1)[1]) for key, _ in chunk]
        missing = [key for (key, md5), m in zip(chunk, packed) if not matches(m, md5)]
        fetched = dict(zip(missing, pool.map(get, missing))) if missing else {}
        for (key, md5), m in zip(chunk, packed):
            if matches(m, md5):
                yield key, m, True
            else:
                yield key, fetched[key], False
