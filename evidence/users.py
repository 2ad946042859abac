"""People of the Sichtung console and their roles, kept in the store (``console/users/``).

Roles: ``clerk`` (review, hold, release, export), ``supervisor`` (second approval of early
deletion), ``officer`` (own recordings only, may ask for early deletion; the user id is the
officer id), ``dpo`` (data-protection officer: the audit trail, read-only). Passwords are
stored as Argon2id hashes (argon2-cffi, memory-hard); every change of a user is a ``user``
record in the audit trail, so the roles in force are on record.

On S3, keep the dock's credentials away from ``console/*`` with a bucket policy (docs/s3.md).

>>> import tempfile
>>> from pathlib import Path
>>> from evidence.store import FsEvidenceStore
>>> users = Users(FsEvidenceStore(Path(tempfile.mkdtemp())))
>>> users.set("anna", "clerk", "correct horse battery")
User(id='anna', role='clerk', state='active')
>>> users.check("anna", "correct horse battery").role, users.check("anna", "wrong")
('clerk', None)
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from evidence.store import EvidenceStore

ROLES = ("clerk", "supervisor", "officer", "dpo")
USER_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")
MIN_PASSWORD = 10
_HASHER = PasswordHasher()  # argon2id, the library's current defaults (64 MiB, t=3)
_DUMMY = _HASHER.hash("not a password of anybody")  # checked against for unknown users: same time


STATES = ("active", "disabled", "removed")


@dataclass(frozen=True)
class User:
    id: str
    role: str
    state: str = "active"


class UserError(ValueError):
    """A user or password that cannot be accepted; the message says why."""


class Users:
    """The console's users in the store. A removed user stays as a tombstone (id, role,
    ``removed``, no password), so the id is not silently given to someone else."""

    def __init__(self, store: EvidenceStore) -> None:
        self.store = store

    def _key(self, user_id: str) -> str:
        if not USER_ID.fullmatch(user_id or ""):
            raise UserError(f"user id {user_id!r}: letters, digits, . _ @ -; up to 64")
        return f"console/users/{user_id}.json"

    def _read(self, user_id: str) -> dict[str, Any] | None:
        try:
            record = json.loads(self.store.backend.read(self._key(user_id)))
        except (FileNotFoundError, UserError, ValueError):
            return None
        return record if isinstance(record, dict) and record.get("role") in ROLES else None

    def _write(self, record: dict[str, Any]) -> None:
        self.store.backend.replace(self._key(record["id"]), json.dumps(record).encode())

    def set(self, user_id: str, role: str, password: str) -> User:
        """Create the user (or an earlier removed one anew) or replace their role and password."""
        self._key(user_id)
        if role not in ROLES:
            raise UserError(f"role must be one of {', '.join(ROLES)}, got {role!r}")
        _check_password(password)
        record = {"id": user_id, "role": role, "hash": _HASHER.hash(password), "state": "active"}
        self._write(record)
        return _user(record)

    def passwd(self, user_id: str, password: str) -> User:
        record = self._existing(user_id)
        _check_password(password)
        record["hash"] = _HASHER.hash(password)
        self._write(record)
        return _user(record)

    def set_state(self, user_id: str, state: str) -> User:
        """``disabled`` (no login, sessions end; ``active`` again later) or ``removed``."""
        if state not in STATES:
            raise UserError(f"state must be one of {', '.join(STATES)}")
        record = self._existing(user_id)
        record["state"] = state
        if state == "removed":
            record.pop("hash", None)
        self._write(record)
        return _user(record)

    def _existing(self, user_id: str) -> dict[str, Any]:
        record = self._read(user_id)
        if record is None or record.get("state", "active") == "removed":
            raise UserError(f"there is no console user {user_id!r} (see: bodycam-evidence users list)")
        return record

    def get(self, user_id: str) -> User | None:
        record = self._read(user_id)
        return _user(record) if record is not None else None

    def check(self, user_id: str, password: str) -> User | None:
        """The user if the password is theirs and they may log in; None otherwise (in about
        the same time either way)."""
        record = self._read(user_id)
        try:
            _HASHER.verify(record.get("hash") or _DUMMY if record else _DUMMY, password)
        except (VerificationError, InvalidHashError):
            return None
        if record is None or not record.get("hash") or record.get("state", "active") != "active":
            return None
        return _user(record)

    def all(self) -> list[User]:
        out = []
        for key in self.store.backend.keys("console/users"):
            user = self.get(key.rsplit("/", 1)[1].removesuffix(".json"))
            if user is not None:
                out.append(user)
        return out


def _user(record: dict[str, Any]) -> User:
    return User(record["id"], record["role"], record.get("state", "active"))


def _check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise UserError(f"the password must have at least {MIN_PASSWORD} characters")
