"""The evidence office's actions: init, view, hold, release, delete (four eyes), purge.

Each action checks what the law and the policy ask first, changes the store, and puts
a signed record in the audit trail (:mod:`evidence.audit`), whose fold
(:mod:`evidence.state`) is what the next action checks against. Order matters for a
crash in between, and is chosen so a crash never loses footage that should stay nor
leaves a deletion unrecorded:

- hold: the store's legal hold first, then the record (a re-run completes it);
- release: the record last, after the store's hold is lifted (until then it stays held);
- delete/purge: the record first ("deleted, by whom"), then the footage is destroyed;
  a re-run (or ``verify``, which reports leftover footage) finishes an interrupted one.

The signed manifests stay after a deletion: they hold no picture or sound, keep the
device's hash chain verifiable, and show what was deleted and when.

>>> import tempfile
>>> from pathlib import Path
>>> from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
>>> from evidence.store import FsEvidenceStore
>>> office = Office(FsEvidenceStore(Path(tempfile.mkdtemp())), Ed25519PrivateKey.generate(), lambda: 0)
>>> office.init(14, ["sup.schmidt"], by="anna")["retention_days"]
14
"""

from __future__ import annotations

import json

import re
from dataclasses import dataclass
from typing import Any, Callable

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from common import signed
from common.keys import fingerprint
from common.text import plain
from evidence import audit
from evidence.errors import LockedError, StoreUnavailable
from evidence.index import Filters, Index, case_key
from evidence.recordings import Recording, UnknownRecording, iso
from evidence.state import HOLD_REASONS, REDACTION_APPROVAL, State
from evidence.store import EvidenceStore

USER = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")
CLOCK_SLACK_US = 60_000_000   # purge --now may be this far ahead of the clock (two clocks a minute apart)


class Refused(ValueError):
    """The request is not allowed or names something that is not there; nothing changed.

    The message is English for the command line; ``key`` and ``params`` name the refusal,
    so the console says it in the user's language (``refused_<key>`` in its texts)."""

    def __init__(self, message: str, key: str = "", **params: Any) -> None:
        super().__init__(message)
        self.key, self.params = key, params


def check_user(name: str, what: str = "--by") -> str:
    if not USER.fullmatch(name or ""):
        raise Refused(f"{what + ' ' if what else ''}{name!r} is not a user name (letters, digits, . _ @ -; up to 64; "
                      "e.g. f.leitung)")
    return name


@dataclass
class Office:
    """The office's actions on ``store``; reads go through its index (built on first use)."""
    store: EvidenceStore
    key: Ed25519PrivateKey | None
    now_us: Callable[[], int]
    index: Index | None = None
    rebuild: bool = True        # False in the console: a stale index is rebuilt in the background

    # ------------------------------------------------------------------ reading
    def idx(self) -> Index:
        if self.index is None:
            self.index = Index(self.store, now_us=self.now_us)
        return self.index

    def refresh(self) -> Any:
        """Bring the index up to what the store holds (what other docks and offices did)."""
        return self.idx().refresh(rebuild=self.rebuild)

    def find(self, recording_id: str) -> tuple[Recording, State]:
        """The recording and the office's state for it, as the store holds them now."""
        self.refresh()
        rec = self.idx().recording(recording_id) if recording_id else None
        if rec is None:
            latest = [r["id"] for r in self.idx().page(Filters(), limit=3).rows]
            raise UnknownRecording(f"no recording {recording_id!r} in the store (see: bodycam-evidence list; "
                                   f"latest: {', '.join(latest) or 'the store holds none'})")
        return rec, self.idx().state([rec.id])

    def check_key(self) -> None:
        """Refused unless the signing key is an office key registered in this store."""
        self._signing_key()

    def _signing_key(self) -> Ed25519PrivateKey:
        if self.key is None:
            raise Refused("this command is recorded in the audit trail and needs the office's signing key: "
                          "--key FILE or BODYCAM_OFFICE_KEY (create one with: bodycam-keys office --out DIR)")
        known = self.store.public_key(fingerprint(self.key.public_key()))
        if known is None or known[0] != "office":
            raise Refused("this signing key is not an office key of this store; register it with: "
                          "bodycam-evidence --store STORE --key FILE init")
        return self.key

    def sign(self, body: dict[str, Any]) -> bytes:
        """``body`` as a record signed by the office key (a redaction report)."""
        key = self._signing_key()
        return signed.sign(body, key, bytes.fromhex(fingerprint(key.public_key())))

    def _record(self, action: str, **kw: Any) -> audit.Entry:
        return audit.append(self.store, self._signing_key(), action, now_us=self.now_us(), **kw)

    # ------------------------------------------------------------------ init
    def init(self, retention_days: int, supervisors: list[str], by: str, *, demo: bool = False,
             redaction_approval: str | None = None) -> dict[str, Any]:
        """Prepare the store (on S3: Object Lock, default GOVERNANCE retention) and register
        the office key; again later to change the supervisors or the retention.

        The retention may be lengthened at once. Shortening it while the store holds
        recordings moves their deletion forward, so it needs two people, one of them a
        supervisor (the first call is recorded as ``approve-retention``, the second
        makes it so). ``demo``: a store for demonstrations and tests (only at the first
        init, never later), on which ``purge --now`` may look into the future.
        ``redaction_approval``: who approves a redacted copy — ``supervisor`` (the default)
        or ``second`` (any clerk other than its author, or a supervisor); None keeps it."""
        if self.key is None:
            raise Refused("init needs the office's signing key (--key FILE); create one with: "
                          "bodycam-keys office --out DIR")
        if not 1 <= retention_days <= 3650:
            raise Refused(f"--retention-days must be 1…3650, got {retention_days}")
        for name in supervisors:
            check_user(name, "--supervisor")
        check_user(by)
        try:
            first = audit.last_seq(self.store) == 0
        except StoreUnavailable:  # an S3 bucket not made yet
            first = True
        if first:
            self.store.prepare(retention_days)  # the store must exist before its trail can be read
        self.store.register_key("office", "office", self.key.public_key())
        state = self._policy()
        if state.initialised and demo and not state.demo:
            raise Refused("this store was not created for demos (init --demo at its very first init); "
                          "it cannot become one")
        details: dict[str, Any] = {"retention_days": retention_days, "supervisors": sorted(set(supervisors))}
        if redaction_approval is not None:
            if redaction_approval not in REDACTION_APPROVAL:
                raise Refused(f"--redaction-approval: one of {', '.join(REDACTION_APPROVAL)}")
            details["redaction_approval"] = redaction_approval
        if demo or state.demo:
            details["demo"] = True
        shorter = state.initialised and retention_days < state.retention_days and \
            self.idx().page(Filters(include_deleted=False), limit=1).total > 0
        if shorter:
            pending = state.retention_approval
            if pending is None or pending["retention_days"] != retention_days or pending["by"] == by:
                entry = self._record("approve-retention", by=by, details={"retention_days": retention_days})
                self.refresh()
                return {"retention_days": state.retention_days, "proposed_retention_days": retention_days,
                        "waiting_for": "a second person, one of the two a supervisor", "audit_seq": entry.seq}
            if not (state.is_supervisor(by) or state.is_supervisor(pending["by"] or "")):
                raise Refused(f"shortening the retention of stored recordings needs a supervisor: {pending['by']} "
                              f"proposed {retention_days} days, {by} is no supervisor either")
            details["approved_by"] = pending["by"]
        self.store.prepare(retention_days)
        entry = self._record("init", by=by, details=details)
        self.refresh()
        return {"store": self.store.location, "retention_days": retention_days,
                "supervisors": sorted(set(supervisors)), "office_key": fingerprint(self.key.public_key()),
                "demo": bool(details.get("demo")),
                "redaction_approval": redaction_approval or state.redaction_approval, "audit_seq": entry.seq}

    def _policy(self) -> State:
        """The office's policy as on record (an empty store: none yet)."""
        self.refresh()
        return self.idx().state([])

    def set_user(self, user_id: str, role: str, password: str, by: str) -> dict[str, Any]:
        """Create a console user or change their role and password; on record (and every
        session of theirs ends, in every console that follows the store)."""
        from evidence.users import Users
        check_user(by)
        known = Users(self.store).get(user_id) if USER.fullmatch(user_id or "") else None
        change = "created" if known is None or known.state == "removed" else "changed"
        user, seq = self._user_change(by, change, lambda users: users.set(user_id, role, password))
        return {"user": user.id, "role": user.role, "change": change, "audit_seq": seq}

    def user_passwd(self, user_id: str, password: str, by: str) -> dict[str, Any]:
        user, seq = self._user_change(by, "password", lambda users: users.passwd(user_id, password))
        return {"user": user.id, "change": "password", "audit_seq": seq}

    def user_state(self, user_id: str, state: str, by: str) -> dict[str, Any]:
        """``disabled`` (no login; ``active`` again later) or ``removed`` (for good)."""
        user, seq = self._user_change(by, state, lambda users: users.set_state(user_id, state))
        return {"user": user.id, "state": state, "audit_seq": seq}

    def set_officer(self, officer_id: str, name: str, by: str) -> dict[str, Any]:
        """The officer's name in the office's directory (shown beside the number in the
        console and the reports); an empty name removes it. On record."""
        check_user(by)
        check_user(officer_id, "--id")
        name = name.strip()
        if len(name) > 200 or (name and not plain(name)):
            raise Refused("--name: up to 200 characters, no control or direction characters", "name")
        known = self.officers()
        if known.get(officer_id) == (name or None):
            return {"officer": officer_id, "name": name or None, "changed": False}
        entry = self._record("officer", by=by, details={"id": officer_id, "name": name})
        self.refresh()
        return {"officer": officer_id, "name": name or None, "changed": True, "audit_seq": entry.seq}

    def officers(self) -> dict[str, str]:
        """The directory of officers: id → name."""
        self.refresh()
        return json.loads(self.idx().meta().get("officers") or "{}")

    def _user_change(self, by: str, change: str, apply: Callable[[Any], Any]) -> tuple[Any, int]:
        """Apply one change to the console's users and put it on record (every console
        ends the user's sessions when it reads it)."""
        from evidence.users import UserError, Users
        check_user(by)
        try:
            user = apply(Users(self.store))
        except UserError as exc:
            raise Refused(str(exc)) from None
        entry = self._record("user", by=by, details={"id": user.id, "role": user.role, "state": user.state,
                                                     "change": change})
        return user, entry.seq

    # ------------------------------------------------------------------ view
    def show(self, recording_id: str, by: str) -> dict[str, Any]:
        check_user(by)
        rec, state = self.find(recording_id)
        entry = self._record("view", by=by, device=rec.device_id, recording=rec.id)
        self.refresh()
        out = rec.summary(state)
        out["manifests"] = [s.manifest.to_json() for s in rec.segments]
        out["audit"] = [e.to_json() for e in self.idx().trail(rec.id)]
        out["audit_seq"] = entry.seq
        return out

    # ------------------------------------------------------------------ hold / release
    def hold(self, recording_id: str, reason: str, case: str, by: str) -> dict[str, Any]:
        check_user(by)
        if reason not in HOLD_REASONS:
            raise Refused(f"--reason must be one of {', '.join(HOLD_REASONS)}, got {reason!r}", "reason")
        if not case.strip() or len(case) > 200 or not case_key(case) or not plain(case):
            raise Refused("--case must name the proceedings (a file or case reference, up to 200 characters, "
                          "no control or direction characters)", "case")
        rec, state = self.find(recording_id)
        if rec.id in state.deleted:
            raise Refused(f"recording {rec.id} was deleted (audit record {state.deleted[rec.id].seq}); "
                          "nothing left to hold", "deleted")
        if any(h.reason == reason and h.case == case for h in state.holds.get(rec.id, [])):
            return {"recording": rec.id, "held": True, "holds": [h.to_json() for h in state.holds[rec.id]],
                    "changed": False}
        self._set_store_hold(rec, True)
        entry = self._record("hold", by=by, device=rec.device_id, recording=rec.id,
                             details={"reason": reason, "case": case})
        self.refresh()
        holds = self.idx().state([rec.id]).holds.get(rec.id, [])
        return {"recording": rec.id, "held": True, "holds": [h.to_json() for h in holds], "changed": True,
                "audit_seq": entry.seq}

    def release(self, recording_id: str, reason: str, by: str, why: str) -> dict[str, Any]:
        """Lift the hold for ``reason``, with the reason for lifting it (``why``) on record.
        A hold for criminal proceedings (``straf``) is lifted only with a supervisor: a
        clerk's release is recorded as a request (``approve-release``) that a supervisor's
        release of the same hold then carries out."""
        check_user(by)
        why = why.strip()
        if not why or len(why) > 500 or not plain(why):
            raise Refused("--why must say why the hold ends (up to 500 characters), e.g. the decision that "
                          "closed the proceedings", "why")
        rec, state = self.find(recording_id)
        active = state.holds.get(rec.id, [])
        if not any(h.reason == reason for h in active):
            raise Refused(f"recording {rec.id} has no hold for {reason!r} (holds: "
                          f"{', '.join(f'{h.reason} {h.case}' for h in active) or 'none'})", "no_hold")
        details: dict[str, Any] = {"reason": reason, "why": why}
        if reason == "straf":
            request = state.release_requests.get(rec.id, {}).get(reason)
            if not state.is_supervisor(by):
                if request is None or request["by"] != by:
                    entry = self._record("approve-release", by=by, device=rec.device_id, recording=rec.id,
                                         details={"reason": reason, "why": why})
                    self.refresh()
                    return {"recording": rec.id, "held": True, "holds": [h.to_json() for h in active],
                            "waiting_for": "supervisor", "audit_seq": entry.seq}
                return {"recording": rec.id, "held": True, "holds": [h.to_json() for h in active],
                        "waiting_for": "supervisor", "changed": False}
            if request is not None:
                details["requested_by"] = request["by"]
        remaining = [h for h in active if h.reason != reason]
        if not remaining:
            self._set_store_hold(rec, False)
        entry = self._record("release", by=by, device=rec.device_id, recording=rec.id, details=details)
        self.refresh()
        return {"recording": rec.id, "held": bool(remaining), "holds": [h.to_json() for h in remaining],
                "audit_seq": entry.seq}

    def decline(self, what: str, by: str, why: str, recording_id: str | None = None,
                reason: str | None = None) -> dict[str, Any]:
        """A supervisor declines what waits for them, with the reason on record: a request to
        lift a ``straf`` hold (``release``, with the hold's ``reason``), an officer's consent to
        early deletion (``delete``), a proposal to shorten the retention (``retention``).
        The request no longer stands; it may be made again."""
        check_user(by)
        why = why.strip()
        if not why or len(why) > 500 or not plain(why):
            raise Refused("say why it is declined (up to 500 characters)", "why")
        if what not in ("release", "delete", "retention"):
            raise Refused(f"nothing of the kind {what!r} waits for a decision", "nothing_waiting")
        state = self._policy() if recording_id is None else None
        if what == "retention":
            assert state is not None
            pending = state.retention_approval
            if pending is None:
                raise Refused("no shorter retention is proposed", "nothing_waiting")
            if not state.is_supervisor(by):
                raise Refused(f"{by} is no supervisor; only a supervisor declines", "not_supervisor")
            entry = self._record("decline", by=by, details={"what": what, "why": why,
                                                             "requested_by": pending["by"],
                                                             "retention_days": pending["retention_days"]})
            self.refresh()
            return {"declined": what, "audit_seq": entry.seq}
        rec, state = self.find(recording_id or "")
        if not state.is_supervisor(by):
            raise Refused(f"{by} is no supervisor; only a supervisor declines", "not_supervisor")
        details: dict[str, Any] = {"what": what, "why": why}
        if what == "release":
            request = state.release_requests.get(rec.id, {}).get(reason or "")
            if request is None:
                raise Refused(f"nobody asked to lift the {reason!r} hold of {rec.id}", "nothing_waiting")
            details.update(reason=reason, requested_by=request["by"])
        else:
            approvals = state.approvals.get(rec.id, {})
            if "officer" not in approvals or "supervisor" in approvals or rec.id in state.deleted:
                raise Refused(f"no officer's consent to deleting {rec.id} waits for a supervisor", "nothing_waiting")
            details["requested_by"] = approvals["officer"]
        entry = self._record("decline", by=by, device=rec.device_id, recording=rec.id, details=details)
        self.refresh()
        return {"recording": rec.id, "declined": what, "audit_seq": entry.seq}

    def _set_store_hold(self, rec: Recording, on: bool) -> None:
        for s in rec.segments:
            try:
                self.store.backend.hold(self.store.footage_key(rec.device_id, s.seq), on)
            except FileNotFoundError:
                continue

    # ------------------------------------------------------------------ deletion
    def delete(self, recording_id: str, by: str) -> dict[str, Any]:
        """Record ``by``'s approval (as the recording officer or as a supervisor); once both
        are on record, delete. Early deletion needs both; a held recording none."""
        check_user(by)
        rec, state = self.find(recording_id)
        if rec.id in state.deleted:
            self._destroy(rec)  # finishes an interrupted deletion; nothing to do otherwise
            return {"recording": rec.id, "deleted": True, "audit_seq": state.deleted[rec.id].seq,
                    "approvals": state.approvals.get(rec.id, {}), "changed": False}
        if state.held(rec.id):
            h = state.holds[rec.id][0]
            raise Refused(f"recording {rec.id} is held ({h.reason}, case {h.case}); release every hold first",
                          "held", case=h.case)
        if rec.officer_id is None:
            raise Refused(f"recording {rec.id} has no assigned officer to decide its deletion; it is deleted by "
                          "purge when its retention ends", "no_officer")
        if by == rec.officer_id:
            role = "officer"
        elif state.is_supervisor(by):
            role = "supervisor"
        else:
            raise Refused(f"{by} may not approve deleting {rec.id}: only its officer ({rec.officer_id}) and a "
                          f"supervisor ({', '.join(state.supervisors) or 'none named: init --supervisor NAME'})",
                          "not_deciding", officer=rec.officer_id or "")
        approvals = dict(state.approvals.get(rec.id, {}))
        if role not in approvals:
            self._record("approve-delete", by=by, device=rec.device_id, recording=rec.id, details={"role": role})
            approvals[role] = by
        missing = [r for r in ("officer", "supervisor") if r not in approvals]
        if missing:
            self.refresh()
            return {"recording": rec.id, "deleted": False, "approvals": approvals,
                    "waiting_for": missing[0], "changed": True}
        entry = self._record("delete", by=by, device=rec.device_id, recording=rec.id,
                             details={"approvals": approvals, "segments": [s.seq for s in rec.segments]})
        self.refresh()
        self._destroy(rec)
        return {"recording": rec.id, "deleted": True, "approvals": approvals, "audit_seq": entry.seq,
                "changed": True}

    def purge(self, now_us: int, by: str) -> dict[str, Any]:
        """Delete every recording past retention that is not held, and finish deletions an
        interruption left unfinished. Idempotent. Reads only what is due: the index knows
        which recordings expired, so a purge costs what it deletes, not what the store holds.
        ``kept`` names (up to 100) recordings past retention that a hold keeps."""
        check_user(by)
        idx = self.idx()
        self.refresh()
        if now_us > self.now_us() + CLOCK_SLACK_US and not idx.state([]).demo:
            raise Refused("purge judges expiry by this machine's clock: --now may name the past, never the "
                          "future (only a store made with init --demo allows that, for demonstrations)")
        self.store.remove_orphans()  # a copy a killed writer left behind must not outlive its deletion
        for rid in idx.unfinished_deletions():
            rec = idx.recording(rid)
            if rec is not None:
                self._destroy(rec)
        state = idx.state([])
        deleted: list[str] = []
        kept: list[dict[str, str]] = []
        for rid in idx.expired(now_us):
            rec = idx.recording(rid)
            if rec is None:
                continue
            expires = rec.expires_utc_us(state.retention_days)
            if self._store_holds(rec):
                kept.append({"id": rec.id, "reason": "the store has a legal hold on its footage that the audit "
                                                     "trail does not show; release it there or hold it here"})
                continue
            self._record("purge", by=by, device=rec.device_id, recording=rec.id,
                         details={"retention_days": state.retention_days, "expired_utc": iso(expires),
                                  "now_utc": iso(now_us), "segments": [s.seq for s in rec.segments]})
            self.refresh()
            self._destroy(rec)
            deleted.append(rec.id)
        for row in idx.expired_but_held(now_us):
            kept.append({"id": row["id"], "reason": "held: " + "; ".join(f"{h.reason} {h.case}" for h in row["holds"])})
        return {"deleted": deleted, "kept": kept, "within_retention": idx.count_within_retention(now_us)}

    def _store_holds(self, rec: Recording) -> bool:
        is_held = getattr(self.store.backend, "is_held", None)
        return is_held is not None and any(
            is_held(self.store.footage_key(rec.device_id, s.seq)) for s in rec.segments)

    def _destroy(self, rec: Recording) -> None:
        self.store.remove_orphans(deep=False)
        for s in rec.segments:
            try:
                self.store.backend.destroy(self.store.footage_key(rec.device_id, s.seq))
            except FileNotFoundError:
                continue
            except LockedError as exc:
                raise LockedError(f"{exc}; the footage of {rec.id} stays (is it under a legal hold?)") from None
        self.idx().mark_destroyed(rec.id)
