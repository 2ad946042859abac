"""What the audit trail says now: policy, holds, deletion approvals, deletions.

Nothing here is stored on its own: it is folded from the signed trail
(:mod:`evidence.audit`) every time, so the rules the tool enforces are the ones on record.

>>> s = State.fold([])
>>> s.retention_days, s.supervisors, s.holds
(14, [], {})
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

from evidence.audit import Entry

DEFAULT_RETENTION_DAYS = 14
HOLD_REASONS = {
    "owi": "Ordnungswidrigkeit (administrative offence proceedings)",
    "straf": "Straftat (criminal proceedings)",
    "gefahrenabwehr": "Gefahrenabwehr (averting a danger)",
    "affected-request": "an affected person asked for it to be kept (review of lawfulness)",
}


@dataclass(frozen=True)
class Hold:
    reason: str
    case: str
    by: str | None
    utc_us: int
    audit_seq: int

    def to_json(self) -> dict[str, Any]:
        return {"reason": self.reason, "case": self.case, "by": self.by, "utc_us": self.utc_us,
                "audit_seq": self.audit_seq}


REDACTION_APPROVAL = ("supervisor", "second")   # who approves a redaction (init --redaction-approval)


@dataclass
class State:
    initialised: bool = False
    retention_days: int = DEFAULT_RETENTION_DAYS
    supervisors: list[str] = field(default_factory=list)
    holds: dict[str, list[Hold]] = field(default_factory=dict)          # recording → active holds
    approvals: dict[str, dict[str, str]] = field(default_factory=dict)  # recording → {role: user}
    deleted: dict[str, Entry] = field(default_factory=dict)             # recording → delete/purge entry
    roles: dict[str, str] = field(default_factory=dict)                 # console user → role
    demo: bool = False                                                  # created for demos (first init)
    retention_approval: dict[str, Any] | None = None                    # {retention_days, by, audit_seq}
    release_requests: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)  # rec → reason → request
    redaction_approval: str = "supervisor"   # who approves a redaction: "supervisor", or "second" (any other clerk)

    @classmethod
    def fold(cls, entries: Iterable[Entry]) -> "State":
        s = cls()
        for e in entries:
            rec = e.recording or ""
            if e.action == "init":
                if not s.initialised:
                    s.demo = bool(e.details.get("demo", False))
                s.initialised = True
                s.retention_days = int(e.details.get("retention_days", s.retention_days))
                s.supervisors = list(e.details.get("supervisors", s.supervisors))
                s.redaction_approval = str(e.details.get("redaction_approval", s.redaction_approval))
                s.retention_approval = None
            elif e.action == "approve-retention":
                s.retention_approval = {"retention_days": int(e.details["retention_days"]), "by": e.by,
                                        "audit_seq": e.seq}
            elif e.action == "approve-release":
                s.release_requests.setdefault(rec, {})[e.details["reason"]] = {
                    "by": e.by, "why": e.details.get("why", ""), "audit_seq": e.seq}
            elif e.action == "hold":
                s.holds.setdefault(rec, []).append(
                    Hold(e.details["reason"], e.details.get("case", ""), e.by, e.utc_us, e.seq))
            elif e.action == "release":
                s.holds[rec] = [h for h in s.holds.get(rec, []) if h.reason != e.details["reason"]]
                if not s.holds[rec]:
                    del s.holds[rec]
                s.release_requests.get(rec, {}).pop(e.details["reason"], None)
                if rec in s.release_requests and not s.release_requests[rec]:
                    del s.release_requests[rec]
            elif e.action == "approve-delete":
                s.approvals.setdefault(rec, {})[e.details["role"]] = e.by or ""
            elif e.action == "decline":
                what = e.details.get("what")
                if what == "release":
                    s.release_requests.get(rec, {}).pop(str(e.details.get("reason", "")), None)
                    if rec in s.release_requests and not s.release_requests[rec]:
                        del s.release_requests[rec]
                elif what == "delete":
                    s.approvals.pop(rec, None)
                elif what == "retention":
                    s.retention_approval = None
            elif e.action in ("delete", "purge"):
                s.deleted[rec] = e
            elif e.action == "user":
                if e.details.get("state", "active") == "active":
                    s.roles[e.details["id"]] = e.details["role"]
                else:
                    s.roles.pop(e.details["id"], None)
        return s

    def is_supervisor(self, user: str) -> bool:
        """Named at init, or a console user with the supervisor role."""
        return user in self.supervisors or self.roles.get(user) == "supervisor"

    def redaction_approver(self, user: str, author: str) -> str | None:
        """Why ``user`` may not approve a redaction ``author`` made (None: they may). Four
        eyes: never its author; a supervisor, or — with the policy ``second`` — any other clerk."""
        if user == author:
            return "own"
        if self.is_supervisor(user):
            return None
        if self.redaction_approval == "second" and self.roles.get(user) == "clerk":
            return None
        return "approver"

    def held(self, recording: str) -> bool:
        return bool(self.holds.get(recording))
