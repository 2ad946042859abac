"""What pages and commands ask the index: every question one indexed query.

Pages are keyset-paginated (``(sort value, id)`` after or before a cursor), filters are
SQL predicates on indexed columns, times are compared as UTC microseconds (a local date
range is turned into UTC bounds once, not per row): no per-row Python on a hot path.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import sqlite3
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from common.manifest import read_checked_manifest
from evidence.audit import Entry
from evidence.index.follow import case_key
from evidence.recordings import Recording, Segment, iso
from evidence.state import Hold, State

DAY_US = 86_400_000_000
PAGE = 50
LOCAL = ZoneInfo("Europe/Berlin")
SORTS = {  # name: (column expression, descending)
    "start_desc": ("start_utc_us", True), "start_asc": ("start_utc_us", False),
    "due": ("end_utc_us", False), "officer": ("COALESCE(officer, '')", False), "device": ("device", False),
    "duration": ("duration_us", True),
}


class BadQuery(ValueError):
    """A filter or cursor that cannot be used; the message says which."""


def local_day_bounds(first: dt.date | None, last: dt.date | None) -> tuple[int | None, int | None]:
    """[first 00:00, last+1 00:00) in Europe/Berlin as UTC microseconds (DST-correct)."""
    def at(day: dt.date) -> int:
        return int(dt.datetime.combine(day, dt.time(), LOCAL).timestamp() * 1_000_000)
    return (at(first) if first else None, at(last + dt.timedelta(days=1)) if last else None)


@dataclass
class Filters:
    officer: str | list[str] = ""       # one id, or any of several (a filter that matched several)
    device: str = ""
    since_us: int | None = None
    until_us: int | None = None
    held: bool | None = None
    reason: str = ""
    due_days: int | None = None
    case: str = ""
    own: str | None = None          # an officer's view: only their own recordings
    include_deleted: bool = True

    def where(self, retention_days: int, now_us: int) -> tuple[str, list[Any]]:
        parts: list[str] = []
        args: list[Any] = []
        for column, value in (("officer", self.officer), ("device", self.device)):
            if isinstance(value, list):
                parts.append(f"{column} IN (SELECT value FROM json_each(?))")
                args.append(json.dumps(value))
            elif value:
                parts.append(f"{column} = ?")
                args.append(value)
        if self.own is not None:
            parts.append("officer = ?")
            args.append(self.own)
        if self.since_us is not None:
            parts.append("start_utc_us >= ?")
            args.append(self.since_us)
        if self.until_us is not None:
            parts.append("start_utc_us < ?")
            args.append(self.until_us)
        if self.held is not None:
            parts.append("held > 0" if self.held else "held = 0")
        if not self.include_deleted:
            parts.append("deleted = 0")
        if self.due_days is not None:
            parts.append("deleted = 0 AND held = 0 AND end_utc_us < ?")
            args.append(now_us + (self.due_days + 1) * DAY_US - retention_days * DAY_US)
        if self.reason or self.case:
            # through the holds (a few thousand), not a look at every recording's holds
            sub = []
            if self.reason:
                sub.append("h.reason = ?")
                args.append(self.reason)
            if self.case:
                sub.append("h.case_key LIKE ?")
                args.append(f"%{case_key(self.case)}%")
            parts.append(f"id IN (SELECT h.recording FROM holds h WHERE {' AND '.join(sub)})")
        return (" AND ".join(parts) or "1"), args


@dataclass
class Page:
    rows: list[dict[str, Any]]
    total: int
    next: str | None = None         # cursor of the next page (older, in the sort order)
    prev: str | None = None
    first: int = 0                  # position of the first row (1-based), when known
    extra: dict[str, Any] = field(default_factory=dict)


def _cursor(value: Any, rid: str) -> str:
    return base64.urlsafe_b64encode(json.dumps([value, rid]).encode()).decode().rstrip("=")


def _uncursor(text: str) -> tuple[Any, str]:
    try:
        value, rid = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
    except (ValueError, TypeError):
        raise BadQuery("the page link is damaged; start from the first page") from None
    if not isinstance(rid, str) or not isinstance(value, (int, str, type(None))):
        raise BadQuery("the page link is damaged; start from the first page")
    return value, rid


COLUMNS = ("id, device, officer, start_utc_us, end_utc_us, duration_us, segments, seqs, frames, announced, "
           "truncated, final, held, deleted, markers")


def page(conn: sqlite3.Connection, f: Filters, *, sort: str = "start_desc", after: str | None = None,
         before: str | None = None, limit: int = PAGE, retention_days: int, now_us: int) -> Page:
    if sort not in SORTS:
        raise BadQuery(f"unknown sort {sort!r}: {', '.join(SORTS)}")
    if not 1 <= limit <= 100_000:
        raise BadQuery("a page holds 1…100000 rows")
    column, desc = SORTS[sort]
    where, args = f.where(retention_days, now_us)
    total = conn.execute(f"SELECT COUNT(*) FROM recordings WHERE {where}", args).fetchone()[0]
    backwards = before is not None
    key_where, key_args = "", []
    if after or before:
        value, rid = _uncursor(after or before)  # type: ignore[arg-type]
        forward_op = "<" if desc else ">"
        op = forward_op if not backwards else (">" if forward_op == "<" else "<")
        key_where = f" AND ({column}, id) {op} (?, ?)"
        key_args = [value, rid]
    order_desc = desc != backwards
    direction = "DESC" if order_desc else "ASC"
    rows = conn.execute(f"SELECT {COLUMNS}, {column} AS sortkey FROM recordings WHERE {where}{key_where} "
                        f"ORDER BY {column} {direction}, id {direction} LIMIT ?",
                        [*args, *key_args, limit + 1]).fetchall()
    more = len(rows) > limit
    rows = rows[:limit]
    if backwards:
        rows.reverse()
    out = Page([dict(r) for r in rows], total)
    if rows:
        last, first = rows[-1], rows[0]
        has_next = more if not backwards else True
        has_prev = (after is not None) if not backwards else more
        out.next = _cursor(last["sortkey"], last["id"]) if has_next else None
        out.prev = _cursor(first["sortkey"], first["id"]) if has_prev else None
        before_first = conn.execute(
            f"SELECT COUNT(*) FROM recordings WHERE {where} AND ({column}, id) {'>' if desc else '<'} (?, ?)",
            [*args, first["sortkey"], first["id"]]).fetchone()[0]
        out.first = before_first + 1
    attach_holds(conn, out.rows)
    return out


def attach_holds(conn: sqlite3.Connection, rows: list[dict[str, Any]]) -> None:
    """Each row's active holds (one query for the page)."""
    held = [r["id"] for r in rows if r.get("held")]
    by: dict[str, list[Hold]] = {}
    if held:
        for h in conn.execute("SELECT * FROM holds WHERE recording IN (SELECT value FROM json_each(?)) "
                              "ORDER BY audit_seq", (json.dumps(held),)):
            by.setdefault(h["recording"], []).append(_hold(h))
    for r in rows:
        r["holds"] = by.get(r["id"], [])


def _hold(h: sqlite3.Row) -> Hold:
    return Hold(h["reason"], h["case_ref"], h["by"], h["utc_us"], h["audit_seq"])


def entry(row: sqlite3.Row) -> Entry:
    return Entry(row["seq"], row["utc_us"], row["action"], row["by"], row["device"], row["recording"],
                 json.loads(row["details"] or "{}"), row["signer"] or "", bytes(row["digest"] or b""))


def recording(conn: sqlite3.Connection, rid: str) -> Recording | None:
    rows = conn.execute("SELECT device, seq, manifest FROM segments WHERE recording = ? ORDER BY idx, seq",
                        (rid,)).fetchall()
    if not rows:
        return None
    rec = Recording(rid, rows[0]["device"])
    rec.segments = [Segment(r["seq"], bytes(r["manifest"]), read_checked_manifest(bytes(r["manifest"])))
                    for r in rows]
    return rec


def state(conn: sqlite3.Connection, rids: list[str], meta: dict[str, str]) -> State:
    """The office's state (policy, roles) and what concerns ``rids``: holds, approvals, deletion."""
    s = State(initialised=meta.get("initialised") == "1", retention_days=int(meta.get("retention_days") or 14),
              supervisors=json.loads(meta.get("supervisors") or "[]"), demo=meta.get("demo") == "1",
              retention_approval=json.loads(meta["retention_approval"]) if meta.get("retention_approval") else None,
              redaction_approval=meta.get("redaction_approval") or "supervisor")
    ids = json.dumps(sorted(set(rids)))
    for h in conn.execute("SELECT * FROM holds WHERE recording IN (SELECT value FROM json_each(?)) "
                          "ORDER BY audit_seq", (ids,)):
        s.holds.setdefault(h["recording"], []).append(_hold(h))
    for a in conn.execute("SELECT * FROM approvals WHERE recording IN (SELECT value FROM json_each(?))", (ids,)):
        s.approvals.setdefault(a["recording"], {})[a["role"]] = a["by"]
    for r in conn.execute("SELECT * FROM release_requests WHERE recording IN (SELECT value FROM json_each(?))",
                          (ids,)):
        s.release_requests.setdefault(r["recording"], {})[r["reason"]] = {"by": r["by"], "why": r["why"],
                                                                          "audit_seq": r["audit_seq"]}
    for d in conn.execute("SELECT a.* FROM deletions d JOIN audit a ON a.seq = d.audit_seq "
                          "WHERE d.recording IN (SELECT value FROM json_each(?))", (ids,)):
        s.deleted[d["recording"]] = entry(d)
    s.roles = {u["id"]: u["role"] for u in conn.execute("SELECT id, role FROM users WHERE state = 'active'")}
    return s


def summary(row: dict[str, Any], s: State) -> dict[str, Any]:
    """The JSON a command prints for a recording (as :meth:`Recording.summary`)."""
    rid, deleted = row["id"], s.deleted.get(row["id"])
    return {
        "id": rid, "device": row["device"], "officer": row["officer"],
        "start_utc": iso(row["start_utc_us"]), "end_utc": iso(row["end_utc_us"]),
        "duration_s": round(row["duration_us"] / 1e6, 3), "segments": json.loads(row["seqs"]),
        "frames": row["frames"], "announced": bool(row["announced"]), "truncated": bool(row["truncated"]),
        "final": bool(row["final"]), "held": bool(row["held"]),
        "holds": [h.to_json() for h in s.holds.get(rid, [])],
        "expires_utc": iso(row["end_utc_us"] + s.retention_days * DAY_US),
        "deleted": None if deleted is None else {"action": deleted.action, "utc_us": deleted.utc_us,
                                                  "audit_seq": deleted.seq},
        "delete_approvals": s.approvals.get(rid, {}),
    }


WAITING_RELEASES = (
    "FROM release_requests q JOIN recordings r ON r.id = q.recording JOIN audit a ON a.seq = q.audit_seq "
    "WHERE r.deleted = 0")
WAITING_DELETIONS = (
    "FROM approvals q JOIN recordings r ON r.id = q.recording "
    "JOIN audit a ON a.seq = (SELECT MAX(seq) FROM audit WHERE recording = q.recording AND action = 'approve-delete') "
    "WHERE q.role = 'officer' AND r.deleted = 0 "
    "AND NOT EXISTS (SELECT 1 FROM approvals s WHERE s.recording = q.recording AND s.role = 'supervisor')")


def waiting(conn: sqlite3.Connection, limit: int = 200) -> dict[str, list[dict[str, Any]]]:
    """What waits for a supervisor, oldest first: requests to lift a ``straf`` hold
    (``releases``) and officers' consents to early deletion (``deletions``); each with the
    recording's row, who asked (``asked_by``), when (``asked_us``) and why."""
    cols = ", ".join(f"r.{c.strip()}" for c in COLUMNS.split(","))
    releases = [dict(r) for r in conn.execute(
        f"SELECT {cols}, q.reason AS hold_reason, q.by AS asked_by, q.why AS why, a.utc_us AS asked_us, "
        f"a.seq AS asked_seq {WAITING_RELEASES} ORDER BY a.seq LIMIT ?", (limit,))]
    deletions = [dict(r) for r in conn.execute(
        f"SELECT {cols}, q.by AS asked_by, '' AS why, a.utc_us AS asked_us, a.seq AS asked_seq "
        f"{WAITING_DELETIONS} ORDER BY a.seq LIMIT ?", (limit,))]
    attach_holds(conn, releases)
    attach_holds(conn, deletions)
    return {"releases": releases, "deletions": deletions}


def waiting_count(conn: sqlite3.Connection) -> int:
    return sum(conn.execute(f"SELECT COUNT(*) {q}").fetchone()[0] for q in (WAITING_RELEASES, WAITING_DELETIONS))


def audit_page(conn: sqlite3.Connection, *, action: str = "", recording: str = "", by: str = "",
               before: int | None = None, after: int | None = None, limit: int = PAGE) -> Page:
    """Audit entries, newest first, keyset by sequence number."""
    parts, args = [], []
    for column, value in (("action", action), ("recording", recording), ("by", by)):
        if value:
            parts.append(f"{column} = ?")
            args.append(value)
    where = " AND ".join(parts) or "1"
    total = conn.execute(f"SELECT COUNT(*) FROM audit WHERE {where}", args).fetchone()[0]
    if after is not None:  # towards newer
        rows = conn.execute(f"SELECT * FROM audit WHERE {where} AND seq > ? ORDER BY seq ASC LIMIT ?",
                            [*args, after, limit + 1]).fetchall()
        more_newer = len(rows) > limit
        rows = list(reversed(rows[:limit]))
    else:
        rows = conn.execute(f"SELECT * FROM audit WHERE {where}{' AND seq < ?' if before is not None else ''} "
                            f"ORDER BY seq DESC LIMIT ?", [*args, *([before] if before is not None else []),
                                                           limit + 1]).fetchall()
        more_newer = before is not None
        more_older = len(rows) > limit
        rows = rows[:limit]
    out = Page([dict(r) for r in rows], total)
    if rows:
        older = conn.execute(f"SELECT 1 FROM audit WHERE {where} AND seq < ? LIMIT 1",
                             [*args, rows[-1]["seq"]]).fetchone() is not None
        out.next = str(rows[-1]["seq"]) if (older if after is not None else more_older) else None
        out.prev = str(rows[0]["seq"]) if more_newer else None
    return out
