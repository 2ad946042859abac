"""Segment manifest: what the camera asserts about one encrypted segment file.

One manifest per segment, a COSE_Sign1 record (see :mod:`common.signed`), named
``<seq>.manifest`` beside ``<seq>.ts.age``. Field by field in docs/FORMAT.md.
"""

from __future__ import annotations

import functools
import re
import types
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, Callable, Union, get_args, get_origin, get_type_hints

import cbor2

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from common import signed

MANIFEST_VERSION = 1


@dataclass(frozen=True)
class SegmentManifest:
    device_id: str
    device_key: str                  # hex SHA-256 of the signer's raw Ed25519 public key
    officer_id: str | None
    recording_id: str
    seq: int                         # device-wide, +1 per segment, never reused
    index: int                       # position within the recording, from 0
    file: str                        # file name of the encrypted segment
    size: int                        # bytes of the encrypted file
    sha256: bytes                    # SHA-256 of the encrypted file
    complete: bool                   # False: sealed after an interruption (power cut)
    final: bool                      # last segment of its recording
    start_utc_us: int
    end_utc_us: int | None
    start_mono_us: int
    end_mono_us: int | None
    first_pts_us: int
    last_pts_us: int | None
    frames: int | None
    audio_packets: int | None
    video: dict[str, Any]
    audio: dict[str, Any] | None
    announced: bool
    pre_record_s: float              # configured pre-record window
    press_pts_us: int | None         # pts of the record press (pre-record ends here)
    recipients: list[str]
    prev: bytes | None               # SHA-256 of the previous manifest file, None only for seq 1
    clock: dict[str, Any] | None = None  # last dock time sync: {offset_us, synced_utc_us, dock_id}
    container: str = "mpegts"
    encryption: str = "age-v1-x25519"
    type: str = "segment"
    v: int = MANIFEST_VERSION

    def to_body(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_body(cls, body: dict[str, Any]) -> "SegmentManifest":
        """Exactly the v1 fields, each of exactly its type; anything else is refused."""
        if body.get("type") != "segment" or body.get("v") != MANIFEST_VERSION:
            raise signed.SignatureError(
                f"not a v{MANIFEST_VERSION} segment manifest (type={body.get('type')!r}, v={body.get('v')!r})")
        names = _FIELDS
        if names != body.keys():
            raise signed.SignatureError(f"manifest fields differ from v{MANIFEST_VERSION}: missing "
                                        f"{sorted(names - body.keys())}, unexpected {sorted(body.keys() - names)}")
        values = {k: list(v) if isinstance(v, tuple) else v for k, v in body.items()}  # arrays may be tuples
        for name, ok in _CHECKS.items():
            if not ok(values[name]):
                raise signed.SignatureError(f"manifest field {name!r} has the wrong type "
                                            f"({type(values[name]).__name__})")
        for name in ("sha256", "prev"):
            if values[name] is not None and len(values[name]) != 32:
                raise signed.SignatureError(f"manifest field {name!r} is not 32 bytes")
        if not re.fullmatch(r"[0-9a-f]{64}", values["device_key"]):
            raise signed.SignatureError("manifest field 'device_key' is not a hex SHA-256")
        if values["file"] != segment_file_name(values["seq"]) or values["seq"] < 1:
            raise signed.SignatureError(f"manifest of seq {values['seq']} names file {values['file']!r}")
        return cls(**values)

    def sign(self, key: Ed25519PrivateKey) -> bytes:
        return signed.sign(self.to_body(), key, bytes.fromhex(self.device_key))

    def to_json(self) -> dict[str, Any]:
        return {k: (v.hex() if isinstance(v, bytes) else v) for k, v in self.to_body().items()}


_HINTS: dict[str, Any] = get_type_hints(SegmentManifest)


def segment_file_name(seq: int) -> str:
    return f"{seq:08d}.ts.age"


def check_type(what: str, hint: Any, value: Any) -> None:
    """Raise SignatureError unless ``value`` is exactly of type ``hint`` (no bool for int)."""
    if not checker(hint)(value):
        raise signed.SignatureError(f"{what} has the wrong type ({type(value).__name__})")


@functools.lru_cache(maxsize=None)
def checker(hint: Any) -> Callable[[Any], bool]:
    """A predicate for ``hint``, built once per type: strict decoding of every manifest,
    head and command goes through it, so no ``typing`` introspection per value."""
    origin = get_origin(hint)
    if origin in (Union, types.UnionType):
        options = tuple(checker(h) for h in get_args(hint))
        return lambda v: any(ok(v) for ok in options)
    if hint is type(None):
        return lambda v: v is None
    if hint is float:
        return lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)
    if hint is int:
        return lambda v: isinstance(v, int) and not isinstance(v, bool)
    if origin is list:
        (item,) = get_args(hint)
        each = checker(item)
        return lambda v: isinstance(v, list) and all(each(x) for x in v)
    if origin is dict:
        return lambda v: isinstance(v, Mapping)
    return lambda v: isinstance(v, hint)


_CHECKS: dict[str, Callable[[Any], bool]] = {name: checker(hint) for name, hint in _HINTS.items()}
_FIELDS = frozenset(_HINTS)


def read_manifest(data: bytes, key: Ed25519PublicKey | None) -> SegmentManifest:
    return SegmentManifest.from_body(signed.open_signed(data, key))


def read_checked_manifest(data: bytes) -> SegmentManifest:
    """A manifest that :func:`read_manifest` accepted before (the office's index holds only
    such records): decoded without checking it again, for pages that show hundreds."""
    body = cbor2.loads(cbor2.loads(data).value[2])
    return SegmentManifest(**{k: list(v) if isinstance(v, tuple) else v for k, v in body.items()})


def verify_manifest_chain(records: list[bytes], key: Ed25519PublicKey, **anchor: Any) -> list[SegmentManifest]:
    return [SegmentManifest.from_body(b) for b in signed.verify_chain(records, key, **anchor)]
