"""The evidence store on S3 with Object Lock (any S3: AWS, MinIO, Ceph RGW, SeaweedFS).

Same layout and interface as :class:`~dock.evidence_store.FsEvidenceStore`, as object
keys in one bucket. The bucket is created by the evidence office with Object Lock and a
default GOVERNANCE retention (:func:`init_bucket`), so the dock needs only
read/write/list credentials and can neither delete nor shorten a retention.

Every upload carries the SHA-256 the manifest names (``ChecksumSHA256``): the server
refuses bytes that do not match (``BadDigest``) and confirms the checksum it stored, and
only a confirmed upload counts as stored — the dock signs a custody receipt after that,
never before. Evidence objects are written with ``If-None-Match: *`` (write-once); a
second upload of the same bytes (a dock that died mid-way) is recognised by its stored
checksum, different bytes are refused (:class:`~dock.evidence_store.StoreConflict`).

Endpoint and credentials come the usual boto3 way (``AWS_ENDPOINT_URL``,
``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``, profiles). Any failure to reach the
store is an :class:`StoreUnavailable` (an ``OSError``): the bay reports it and frees
nothing on the camera.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from common import signed
from common.manifest import read_manifest
from dock.evidence_store import Anchor, StoreConflict


class StoreUnavailable(OSError):
    """The S3 store could not be reached or refused the request; the message says which."""


def parse_url(url: str) -> tuple[str, str]:
    """``s3://bucket[/prefix]`` → (bucket, prefix); ValueError for anything else."""
    u = urlparse(url)
    if u.scheme != "s3" or not u.netloc or u.params or u.query or u.fragment:
        raise ValueError(f"not an S3 store URL (s3://bucket[/prefix]): {url!r}")
    return u.netloc, u.path.strip("/")


def make_client() -> Any:
    import boto3
    from botocore.config import Config
    return boto3.client("s3", config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 3}))


def init_bucket(client: Any, bucket: str, retention_days: int = 14) -> None:
    """Create ``bucket`` with Object Lock and default GOVERNANCE retention (office credentials)."""
    try:
        client.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
    except Exception as exc:
        if _code(exc) not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
            raise StoreUnavailable(f"cannot create bucket {bucket}: {exc}") from None
    client.put_object_lock_configuration(Bucket=bucket, ObjectLockConfiguration={
        "ObjectLockEnabled": "Enabled",
        "Rule": {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": retention_days}}})


def _code(exc: BaseException) -> str:
    return str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))


def _b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode()


class S3EvidenceStore:
    def __init__(self, url: str, client: Any = None) -> None:
        self.bucket, self.prefix = parse_url(url)
        self.url = url
        self.client = client if client is not None else make_client()

    def _key(self, *parts: str) -> str:
        return "/".join(p for p in (self.prefix, *parts) if p)

    def _call(self, what: str, fn: Any, **kw: Any) -> Any:
        try:
            return fn(Bucket=self.bucket, **kw)
        except Exception as exc:  # botocore: ClientError, EndpointConnectionError, …
            if _code(exc) in ("NoSuchKey", "404", "NotFound"):
                raise FileNotFoundError(kw.get("Key", what)) from None
            if _code(exc) == "PreconditionFailed":
                raise FileExistsError(kw.get("Key", what)) from None
            raise StoreUnavailable(f"S3 {what} {self.bucket}/{kw.get('Key', '')}: {exc}") from None

    # ------------------------------------------------------------------ write-once
    def _put_once(self, key: str, body: bytes, sha256: bytes) -> str:
        """Upload with the checksum the server must confirm; same bytes again are fine."""
        try:
            got = self._call("put", self.client.put_object, Key=key, Body=body, ChecksumSHA256=_b64(sha256),
                             IfNoneMatch="*")
        except FileExistsError:
            head = self._call("head", self.client.head_object, Key=key, ChecksumMode="ENABLED")
            if head.get("ChecksumSHA256") != _b64(sha256):
                raise StoreConflict(f"s3://{self.bucket}/{key} is stored with other content; "
                                    "refusing to replace evidence") from None
            return f"s3://{self.bucket}/{key}"
        if got.get("ChecksumSHA256") != _b64(sha256):
            raise StoreUnavailable(f"S3 did not confirm the SHA-256 of {key}; not counted as stored")
        return f"s3://{self.bucket}/{key}"

    # ------------------------------------------------------------------ interface
    def anchor(self, device_id: str) -> Anchor:
        try:
            obj = self._call("get", self.client.get_object, Key=self._key("devices", device_id, "anchor.cbor"))
        except FileNotFoundError:
            return Anchor()
        return Anchor(**signed.loads_exact(obj["Body"].read(), "anchor.cbor"))

    def set_anchor(self, device_id: str, anchor: Anchor) -> None:
        data = signed.canonical(anchor.__dict__)
        self._call("put", self.client.put_object, Key=self._key("devices", device_id, "anchor.cbor"), Body=data,
                   ChecksumSHA256=_b64(hashlib.sha256(data).digest()))

    def has_segment(self, device_id: str, seq: int) -> bool:
        try:
            self._call("head", self.client.head_object,
                       Key=self._key("devices", device_id, "segments", f"{seq:08d}.manifest"))
        except FileNotFoundError:
            return False
        return True

    def put_segment(self, device_id: str, seq: int, manifest: bytes, segment: Path) -> str:
        m = read_manifest(manifest, None)  # the server checks the bytes against the manifest's own hash
        location = self._put_once(self._key("devices", device_id, "segments", m.file), segment.read_bytes(),
                                  m.sha256)
        self._put_once(self._key("devices", device_id, "segments", f"{seq:08d}.manifest"), manifest,
                       hashlib.sha256(manifest).digest())
        segment.unlink()
        return location

    def put_events(self, device_id: str, first: int, last: int, data: bytes) -> str:
        return self._put_once(self._key("devices", device_id, "events", f"{first:08d}-{last:08d}.cbors"), data,
                              hashlib.sha256(data).digest())

    def put_receipt(self, device_id: str, name: str, record: bytes) -> str:
        return self._put_once(self._key("devices", device_id, "receipts", f"{name}.cbor"), record,
                              hashlib.sha256(record).digest())

    def quarantine(self, device_id: str, name: str, data: bytes | Path | None, reason: str) -> str:
        key = self._key("quarantine", device_id, name)
        if data is not None:
            body = data.read_bytes() if isinstance(data, Path) else data
            self._put_once(key, body, hashlib.sha256(body).digest())
            if isinstance(data, Path):
                data.unlink()  # it is in the store now (as the filesystem store moves it)
        note = json.dumps({"reason": reason, "utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")})
        self._call("put", self.client.put_object, Key=f"{key}.reason.json", Body=note.encode(),
                   ChecksumSHA256=_b64(hashlib.sha256(note.encode()).digest()))
        return f"s3://{self.bucket}/{key}"

    def is_quarantined(self, device_id: str, name: str) -> bool:
        try:
            self._call("head", self.client.head_object, Key=self._key("quarantine", device_id, f"{name}.reason.json"))
        except FileNotFoundError:
            return False
        return True

    def segments(self, device_id: str) -> list[int]:
        prefix = self._key("devices", device_id, "segments") + "/"
        out: list[int] = []
        token: dict[str, str] = {}
        while True:
            page = self._call("list", self.client.list_objects_v2, Prefix=prefix, **token)
            out += [int(o["Key"][len(prefix):][:8]) for o in page.get("Contents", [])
                    if o["Key"].endswith(".manifest")]
            if not page.get("IsTruncated"):
                return sorted(out)
            token = {"ContinuationToken": page["NextContinuationToken"]}
