"""What the dock knows: enrolled cameras, officers (with their training), assignments.

Kept as small files in the dock's state directory, each written atomically::

    <state>/devices/<device-id>.pub.pem    enrolled camera keys (bodycam-dock enroll)
    <state>/officers.json                  [{id, name, trained: "YYYY-MM-DD"}]
    <state>/assignments.json               {device-id: officer-id}

The city trains its staff before equipping them, so an officer without a recorded
training date cannot be assigned a camera.

>>> import tempfile
>>> reg = Registry(Path(tempfile.mkdtemp()))
>>> reg.add_officer("KOD-1", "A. Beispiel", "2026-03-01").trained
'2026-03-01'
"""

from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from common import keys
from common.fsutil import write_atomic
from common.text import check_plain

ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


class RegistryError(ValueError):
    """Refused: the message says why and what to do."""


@dataclass(frozen=True)
class Officer:
    id: str
    name: str
    trained: str | None      # ISO date of the body-cam training, None: not trained


def check_id(value: str, what: str) -> str:
    if not ID_RE.fullmatch(value or ""):
        raise RegistryError(f"{what} {value!r} must be 1–64 letters, digits, '.', '_' or '-'")
    return value


class Registry:
    def __init__(self, state: Path) -> None:
        self.state = Path(state)
        self.devices_dir = self.state / "devices"

    # ------------------------------------------------------------------ cameras
    def enroll(self, device_id: str, public_pem: Path) -> str:
        """Enrol a camera's public key; returns its fingerprint."""
        check_id(device_id, "device id")
        key = keys.load_verify_key(Path(public_pem))
        self.devices_dir.mkdir(parents=True, exist_ok=True)
        target = self.devices_dir / f"{device_id}.pub.pem"
        if target.exists() and keys.load_verify_key(target).public_bytes_raw() != key.public_bytes_raw():
            raise RegistryError(f"{device_id} is enrolled with another key; remove {target} first if the "
                                "camera really was re-provisioned")
        write_atomic(target, keys.public_key_pem(key).encode())
        return keys.fingerprint(key)

    def device_key(self, device_id: str) -> Ed25519PublicKey | None:
        if not ID_RE.fullmatch(device_id or ""):
            return None
        path = self.devices_dir / f"{device_id}.pub.pem"
        return keys.load_verify_key(path) if path.exists() else None

    def devices(self) -> list[str]:
        return sorted(p.name.removesuffix(".pub.pem") for p in self.devices_dir.glob("*.pub.pem"))

    # ------------------------------------------------------------------ officers
    def officers(self) -> list[Officer]:
        path = self.state / "officers.json"
        if not path.exists():
            return []
        return [Officer(**o) for o in json.loads(path.read_text())]

    def officer(self, officer_id: str) -> Officer | None:
        return next((o for o in self.officers() if o.id == officer_id), None)

    def add_officer(self, officer_id: str, name: str, trained: str | None) -> Officer:
        check_id(officer_id, "officer id")
        if not name.strip() or len(name) > 200:
            raise RegistryError("officer name must be 1–200 characters")
        try:
            check_plain(name, "officer name")
        except ValueError as exc:
            raise RegistryError(str(exc)) from None
        if trained is not None:
            try:
                day = dt.date.fromisoformat(trained)
            except ValueError:
                raise RegistryError(f"--trained must be a date YYYY-MM-DD, got {trained!r}") from None
            if day > dt.date.today():
                raise RegistryError(f"--trained {trained} is in the future")
            trained = day.isoformat()
        officer = Officer(officer_id, name.strip(), trained)
        others = [o for o in self.officers() if o.id != officer_id]
        self.state.mkdir(parents=True, exist_ok=True)
        write_atomic(self.state / "officers.json",
                     json.dumps([asdict(o) for o in [*others, officer]], indent=2).encode())
        return officer

    # ------------------------------------------------------------------ assignments
    def assignments(self) -> dict[str, str]:
        path = self.state / "assignments.json"
        return json.loads(path.read_text()) if path.exists() else {}

    def assign(self, device_id: str, officer_id: str) -> None:
        if self.device_key(device_id) is None:
            raise RegistryError(f"camera {device_id} is not enrolled: bodycam-dock enroll --device-id "
                                f"{device_id} --key device.pub.pem")
        officer = self.officer(officer_id)
        if officer is None:
            raise RegistryError(f"no officer {officer_id}: add them with bodycam-dock officers add")
        if officer.trained is None:
            raise RegistryError(f"officer {officer_id} ({officer.name}) has no recorded body-cam training; "
                                "record it first (bodycam-dock officers add --id … --trained YYYY-MM-DD)")
        current = self.assignments()
        current[device_id] = officer_id
        write_atomic(self.state / "assignments.json", json.dumps(current, indent=2, sort_keys=True).encode())
