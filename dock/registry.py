"""What the dock knows: enrolled cameras, officers (with their training), assignments.

Kept as small files in the dock's state directory, each written atomically::

    <state>/devices/<device-id>.pub.pem    enrolled camera keys (bodycam-dock enroll)
    <state>/officers.json                  [{id, name, trained: "YYYY-MM-DD", refresher_due: "YYYY-MM-DD"}]
    <state>/assignments.json               {device-id: officer-id}
    <state>/revoked.json                   {device-id: {utc_us, reason, by, dock}}: refused at every docking
    <state>/revoked-docks.json             {fingerprint: {dock_id, utc_us, reason, by}}: pushed to every camera

The city trains its staff before equipping them, so an officer without a recorded
training date cannot be assigned a camera; a training lapses (``refresher_due``, by
default two years after it) and then refuses an assignment until the refresher is recorded.

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
from typing import Callable

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from common import keys
from common.fsutil import write_atomic
from common.text import check_plain

ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
REFRESHER_MONTHS = 24    # a body-cam training holds this long unless the city says otherwise


class RegistryError(ValueError):
    """Refused: the message says why and what to do."""


@dataclass(frozen=True)
class Officer:
    id: str
    name: str
    trained: str | None      # ISO date of the body-cam training, None: not trained
    refresher_due: str | None = None   # ISO date from which the training has lapsed (None: never recorded)


def check_id(value: str, what: str) -> str:
    if not ID_RE.fullmatch(value or ""):
        raise RegistryError(f"{what} {value!r} must be 1–64 letters, digits, '.', '_' or '-'")
    return value


def _add_months(day: dt.date, months: int) -> dt.date:
    y, m = divmod(day.month - 1 + months, 12)
    year, month = day.year + y, m + 1
    for d in (day.day, 30, 29, 28):  # 31 January + 1 month: the last day of February
        try:
            return dt.date(year, month, d)
        except ValueError:
            continue
    raise ValueError(day)


class Registry:
    def __init__(self, state: Path, today: Callable[[], dt.date] = dt.date.today) -> None:
        self.state = Path(state)
        self.devices_dir = self.state / "devices"
        self.today = today

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

    def revoked(self) -> dict[str, dict]:
        path = self.state / "revoked.json"
        return json.loads(path.read_text()) if path.exists() else {}

    def revoke(self, device_id: str, revocation: dict) -> None:
        """Remember a camera's revocation (ours, or one another dock put into the store)."""
        check_id(device_id, "device id")
        current = self.revoked()
        if device_id in current:
            return
        current[device_id] = {k: revocation.get(k) for k in ("utc_us", "reason", "by", "dock")}
        self.state.mkdir(parents=True, exist_ok=True)
        write_atomic(self.state / "revoked.json", json.dumps(current, indent=2, sort_keys=True).encode())

    def revoked_docks(self) -> dict[str, dict]:
        """Dock keys the office revoked, as this dock last read them from the store."""
        path = self.state / "revoked-docks.json"
        return json.loads(path.read_text()) if path.exists() else {}

    def remember_revoked_docks(self, revoked: dict[str, dict]) -> None:
        """Keep what the store said (revocations only add up), for a docking while it is out of reach."""
        current = self.revoked_docks()
        if set(revoked) <= set(current):
            return
        self.state.mkdir(parents=True, exist_ok=True)
        write_atomic(self.state / "revoked-docks.json",
                     json.dumps({**revoked, **current}, indent=2, sort_keys=True).encode())

    # ------------------------------------------------------------------ officers
    def officers(self) -> list[Officer]:
        path = self.state / "officers.json"
        if not path.exists():
            return []
        return [Officer(**o) for o in json.loads(path.read_text())]

    def officer(self, officer_id: str) -> Officer | None:
        return next((o for o in self.officers() if o.id == officer_id), None)

    def add_officer(self, officer_id: str, name: str, trained: str | None,
                    refresher_months: int = REFRESHER_MONTHS) -> Officer:
        """Add an officer or record their (refresher) training; the training lapses
        ``refresher_months`` after ``trained``."""
        check_id(officer_id, "officer id")
        if not 1 <= refresher_months <= 120:
            raise RegistryError(f"--refresher-months must be 1…120, got {refresher_months}")
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
            if day > self.today():
                raise RegistryError(f"--trained {trained} is in the future")
            trained = day.isoformat()
        due = _add_months(dt.date.fromisoformat(trained), refresher_months).isoformat() if trained else None
        officer = Officer(officer_id, name.strip(), trained, due)
        others = [o for o in self.officers() if o.id != officer_id]
        self.state.mkdir(parents=True, exist_ok=True)
        write_atomic(self.state / "officers.json",
                     json.dumps([asdict(o) for o in [*others, officer]], indent=2).encode())
        return officer

    def remove_officer(self, officer_id: str) -> Officer:
        """Remove an officer who left; refused while a camera is assigned to them."""
        officer = self.officer(officer_id)
        if officer is None:
            raise RegistryError(f"no officer {officer_id} (bodycam-dock officers list)")
        cams = sorted(d for d, o in self.assignments().items() if o == officer_id)
        if cams:
            raise RegistryError(f"officer {officer_id} is assigned {', '.join(cams)}; assign "
                                f"{'them' if len(cams) > 1 else 'it'} to someone else first "
                                f"(bodycam-dock assign --device {cams[0]} --officer ID)")
        write_atomic(self.state / "officers.json", json.dumps(
            [asdict(o) for o in self.officers() if o.id != officer_id], indent=2).encode())
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
        if officer.refresher_due is not None and dt.date.fromisoformat(officer.refresher_due) <= self.today():
            raise RegistryError(f"the body-cam training of officer {officer_id} ({officer.name}) lapsed on "
                                f"{officer.refresher_due}; record the refresher first (bodycam-dock officers add "
                                f"--id {officer_id} --name … --trained YYYY-MM-DD)")
        current = self.assignments()
        current[device_id] = officer_id
        write_atomic(self.state / "assignments.json", json.dumps(current, indent=2, sort_keys=True).encode())
