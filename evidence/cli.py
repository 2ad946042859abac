"""``bodycam-evidence``: the evidence office's tool for the evidence store.

    bodycam-evidence --store STORE --key office.key init --supervisor NAME [--retention-days 14] [--demo]
                     [--redaction-approval supervisor|second]
    bodycam-evidence --store STORE list [--officer X] [--device X] [--since DATE] [--until DATE] [--held|--not-held]
                     [--case AZ] [--reason R] [--due-days N] [--sort S] [--limit N] [--after CURSOR]
    bodycam-evidence --store STORE case --case AZ                       every recording held under an Aktenzeichen
    bodycam-evidence --store STORE show --recording ID --by USER
    bodycam-evidence --store STORE verify [--recording ID | --since DATE|2d] [--restart]
    bodycam-evidence --store STORE reindex [--status]
    bodycam-evidence --store STORE purge [--now ISO]
    bodycam-evidence --store STORE hold --recording ID --reason owi|straf|gefahrenabwehr|affected-request \\
                     --case REF --by USER
    bodycam-evidence --store STORE release --recording ID --reason … --why TEXT --by USER
    bodycam-evidence --store STORE delete --recording ID --by USER      (officer, then supervisor)
    bodycam-evidence --store STORE --key office.key export --recording ID --identity FILE --out FILE.mp4 --by USER
    bodycam-evidence --store STORE audit [--verify [--expect SEQ:HEX]] [--limit N] [--before SEQ]
    bodycam-evidence --store STORE backup --to DIR|s3://… [--verify]      incremental, resumable
    bodycam-evidence --store NEW restore --from DIR|s3://… [--verify]     then reindex and verify
    bodycam-evidence --store STORE users add|passwd|disable|enable|remove --id ID [--role R]   (password on stdin)
    bodycam-evidence --store STORE users list
    bodycam-evidence --store STORE --key office.key officers set --id KOD-101 --name "Anna Becker" --by USER
    bodycam-evidence --store STORE officers list

Every command reads through the office's index of the store (--index DIR or
$BODYCAM_INDEX; default STORE.index beside a directory store, the user's cache for S3),
which it brings up to date first: only what is new is read from the store.

STORE (--store, or $BODYCAM_STORE) is a directory or s3://bucket[/prefix] (endpoint and credentials the usual boto3 way:
AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, profiles; the office's, which
may bypass governance retention and set legal holds). Every command that is recorded in
the audit trail signs with the office key: --key FILE or BODYCAM_OFFICE_KEY. Every
command takes --json. Times without a zone are UTC.

Exit codes: 0 done; 1 the store is unreachable or verification found problems;
2 bad input or a refused request (unknown recording, not allowed, held): nothing changed.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import getpass
import json
import os
import re
import shutil
import signal
import sqlite3
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from common import keys, signed
from common.service_notify import ServiceNotifier
from evidence import audit
from evidence.errors import LockedError, NotAStore, StoreConflict, StoreUnavailable
from evidence.index import BadQuery, Filters, Index, IndexBusy, IndexCorrupt
from evidence.index.query import SORTS
from evidence.office import Office, Refused, check_user
from evidence.recordings import UnknownRecording, iso
from evidence.state import DEFAULT_RETENTION_DAYS, HOLD_REASONS
from evidence.store import EvidenceStore, FsEvidenceStore, open_store
from evidence.verify import verify_all, verify_recording, verify_since


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        raise SystemExit(2)


def _utc(text: str) -> dt.datetime:
    try:
        value = dt.datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 date or time: {text!r} (e.g. 2026-11-22T10:00Z)") from None
    return value.replace(tzinfo=dt.timezone.utc) if value.tzinfo is None else value


def _since(text: str) -> dt.datetime:
    """An ISO 8601 time, or how long before now: ``2d``, ``36h`` (what a daily timer passes)."""
    m = re.fullmatch(r"(\d{1,4})([dh])", text.strip())
    if m:
        hours = int(m.group(1)) * (24 if m.group(2) == "d" else 1)
        return dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=hours)
    try:
        return _utc(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 date or time, nor a span before now: {text!r} "
                                         "(e.g. 2026-11-22T10:00Z, 2d or 36h)") from None


def _count(text: str) -> int:
    if not text.isdigit() or not 0 < int(text) <= 1_000_000:
        raise argparse.ArgumentTypeError(f"not a count (1…1000000): {text!r}")
    return int(text)


def _user(text: str) -> str:
    try:
        return check_user(text, what="")  # argparse names the flag itself
    except Refused as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _reason(text: str) -> str:
    """A reason on record: plain text, 1–300 characters."""
    from common.text import check_plain
    if not text.strip() or len(text) > 300:
        raise argparse.ArgumentTypeError("say why, in 1–300 characters")
    try:
        return check_plain(text, "the reason")
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _span(text: str) -> tuple[float, float]:
    """``T0-T1`` in seconds from the start of the recording."""
    try:
        a, b = (float(v) for v in text.split("-", 1))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: seconds from the start as T0-T1, e.g. 12.5-14") from None
    if not (0 <= a <= b < 1e7):
        raise argparse.ArgumentTypeError(f"{text!r}: 0 ≤ T0 ≤ T1")
    return a, b


def _region(text: str) -> tuple[float, float, tuple[float, float, float, float], bool]:
    """``T0-T1:X0,Y0,X1,Y1[:fixed]``: a span and a box in video pixels."""
    parts = text.split(":")
    if len(parts) not in (2, 3) or (len(parts) == 3 and parts[2] != "fixed"):
        raise argparse.ArgumentTypeError(f"{text!r}: T0-T1:X0,Y0,X1,Y1[:fixed], e.g. 3-9:100,80,220,240")
    a, b = _span(parts[0])
    try:
        x0, y0, x1, y1 = (float(v) for v in parts[1].split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: the box as X0,Y0,X1,Y1 in pixels") from None
    if not (0 <= x0 < x1 < 1e5 and 0 <= y0 < y1 < 1e5):
        raise argparse.ArgumentTypeError(f"{text!r}: 0 ≤ X0 < X1 and 0 ≤ Y0 < Y1")
    return a, b, (x0, y0, x1, y1), len(parts) == 2


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="machine-readable output")
    p = _Parser(prog="bodycam-evidence", description=__doc__.splitlines()[0],
                formatter_class=argparse.RawDescriptionHelpFormatter, epilog="\n".join(__doc__.splitlines()[2:]))
    p.add_argument("--store", default=os.environ.get("BODYCAM_STORE") or None,
                   required=not os.environ.get("BODYCAM_STORE"),
                   help="directory or s3://bucket[/prefix] (default $BODYCAM_STORE)")
    p.add_argument("--key", type=Path, default=os.environ.get("BODYCAM_OFFICE_KEY"),
                   help="the office's Ed25519 signing key (default $BODYCAM_OFFICE_KEY)")
    p.add_argument("--index", type=Path, default=None,
                   help="the office's index directory (default $BODYCAM_INDEX, or beside the store)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    me = getpass.getuser()

    c = sub.add_parser("init", parents=[common], help="prepare the store, register the office key, set the policy")
    c.add_argument("--retention-days", type=int, default=DEFAULT_RETENTION_DAYS)
    c.add_argument("--supervisor", action="append", type=_user, default=[],
                   help="a supervisor whose consent early deletion needs (repeat)")
    c.add_argument("--by", type=_user, default=me)
    c.add_argument("--demo", action="store_true",
                   help="a store for demonstrations and tests (first init only): purge --now may look ahead")
    c.add_argument("--redaction-approval", choices=["supervisor", "second"],
                   help="who approves a redacted copy: a supervisor (default), or any second person "
                        "(another clerk or a supervisor); never its author")

    c = sub.add_parser("list", parents=[common], help="recordings, filtered")
    c.add_argument("--officer")
    c.add_argument("--device")
    c.add_argument("--since", type=_utc, help="recorded at or after")
    c.add_argument("--until", type=_utc, help="recorded before")
    held = c.add_mutually_exclusive_group()
    held.add_argument("--held", action="store_true", default=None, dest="held")
    held.add_argument("--not-held", action="store_false", dest="held")
    c.add_argument("--case", default="", help="held under this Aktenzeichen (part of it is enough)")
    c.add_argument("--reason", choices=sorted(HOLD_REASONS), help="held for this reason")
    c.add_argument("--due-days", type=_count, help="not held, deleted within N days")
    c.add_argument("--sort", default="start_asc", choices=sorted(SORTS), help="default: oldest first")
    c.add_argument("--limit", type=_count, default=1000, help="rows at most (default 1000); --after for more")
    c.add_argument("--after", help="the cursor a previous list printed as 'next'")

    c = sub.add_parser("case", parents=[common], help="every recording held under one Aktenzeichen")
    c.add_argument("--case", required=True, help="the Aktenzeichen (case reference)")

    c = sub.add_parser("reindex", parents=[common], help="rebuild the index from the store alone (resumable)")
    c.add_argument("--status", action="store_true", help="only show the index's state")

    c = sub.add_parser("show", parents=[common], help="one recording in full (recorded as a view)")
    c.add_argument("--recording", required=True)
    c.add_argument("--by", type=_user, required=True)

    c = sub.add_parser("verify", parents=[common], help="hashes, signatures, chain continuity, the index")
    scope = c.add_mutually_exclusive_group()
    scope.add_argument("--recording")
    scope.add_argument("--since", type=_since, help="only what was docked since then, ISO 8601 or a span before "
                       "now such as 2d (the daily check)")
    c.add_argument("--restart", action="store_true", help="start a full verification over (default: resume)")

    c = sub.add_parser("recipients", parents=[common], help="the recipients new footage is encrypted to; --set "
                                                            "rotates them (every camera at its next docking)")
    c.add_argument("--set", dest="recipients", action="append", default=[], metavar="AGE1",
                   help="the office's new age1… recipient (or its .pub file); repeat for several")
    c.add_argument("--by", type=_user, default=None)

    c = sub.add_parser("revoke-dock", parents=[common], help="a stolen or retired dock: every camera refuses its "
                                                            "key from its next docking at another dock")
    c.add_argument("--dock-key", required=True, metavar="PEM|FINGERPRINT",
                   help="the dock's public key (its .pub.pem) or its 64-hex fingerprint")
    c.add_argument("--reason", required=True, type=_reason)
    c.add_argument("--by", type=_user, required=True)

    c = sub.add_parser("backup", parents=[common], help="copy the store into a backup: incremental, verified, "
                                                       "resumable; footage deleted since is deleted there too")
    c.add_argument("--to", required=True, help="the backup: a directory or s3://bucket[/prefix]")
    c.add_argument("--verify", action="store_true", help="read every object back from the backup and compare")
    c = sub.add_parser("restore", parents=[common], help="copy a backup into this store (empty, or an "
                                                         "interrupted restore), then reindex and verify")
    c.add_argument("--from", dest="source", required=True, help="the backup: a directory or s3://bucket[/prefix]")
    c.add_argument("--verify", action="store_true", help="read every object back and compare")

    c = sub.add_parser("purge", parents=[common], help="delete what is past retention and not held")
    c.add_argument("--now", type=_utc, help="the time to judge expiry by (default: now)")
    c.add_argument("--by", type=_user, default=me)

    c = sub.add_parser("hold", parents=[common], help="keep a recording for proceedings")
    c.add_argument("--recording", required=True)
    c.add_argument("--reason", required=True, choices=sorted(HOLD_REASONS))
    c.add_argument("--case", required=True, help="file or case reference")
    c.add_argument("--by", type=_user, required=True)

    c = sub.add_parser("release", parents=[common],
                       help="lift a hold (straf: a clerk asks, a supervisor's release carries it out)")
    c.add_argument("--recording", required=True)
    c.add_argument("--reason", required=True, choices=sorted(HOLD_REASONS))
    c.add_argument("--why", required=True, help="why the hold ends (on record), e.g. the decision closing the case")
    c.add_argument("--by", type=_user, required=True)

    c = sub.add_parser("delete", parents=[common],
                       help="approve early deletion (the recording officer and a supervisor; the second deletes)")
    c.add_argument("--recording", required=True)
    c.add_argument("--by", type=_user, required=True)

    c = sub.add_parser("export", parents=[common], help="decrypt and join into an MP4 with an evidence report")
    c.add_argument("--recording", required=True)
    c.add_argument("--identity", type=Path, required=True, action="append",
                   help="the evidence office's age identity; repeat for those of earlier rotations")
    c.add_argument("--out", type=Path, required=True, help="FILE.mp4 (reports go beside it)")
    c.add_argument("--lang", choices=["de", "en"], default="de", help="the report's language (default de)")
    c.add_argument("--by", type=_user, required=True)

    c = sub.add_parser("redact", parents=[common], help="a copy for disclosure with faces masked and audio "
                                                       "muted, and a signed report (docs/redaction.md)")
    c.add_argument("--recording", required=True)
    c.add_argument("--identity", type=Path, required=True, action="append",
                   help="the evidence office's age identity; repeat for those of earlier rotations")
    c.add_argument("--out", type=Path, required=True, help="NAME.redacted.mp4 (the signed report goes beside it)")
    c.add_argument("--box", action="append", default=[], type=_region, metavar="T0-T1:X0,Y0,X1,Y1[:fixed]",
                   help="mask this region too (video pixels, seconds from the start); it follows the object "
                        "unless :fixed; repeat for several")
    c.add_argument("--ignore", action="append", default=[], type=_region, metavar="T0-T1:X0,Y0,X1,Y1",
                   help="a false detection: automatic boxes centred here are not masked")
    c.add_argument("--mute", action="append", default=[], type=_span, metavar="T0-T1", help="silence this span")
    c.add_argument("--bleep", action="append", default=[], type=_span, metavar="T0-T1",
                   help="a tone over this span")
    c.add_argument("--style", choices=["fill", "pixelate"], default="fill")
    c.add_argument("--shape", choices=["box", "ellipse"], default="box")
    c.add_argument("--margin", type=float, default=0.45, help="boxes grown by this share of a face (default 0.45)")
    c.add_argument("--every", type=int, default=5, help="detect on every k-th frame, track between (default 5)")
    c.add_argument("--by", type=_user, required=True, help="who redacted")
    c.add_argument("--approved-by", type=_user, required=True,
                   help="who reviewed and approved it: a second person, never --by (init --redaction-approval)")

    c = sub.add_parser("check-redaction", parents=[common], help="check a redaction report: signature, sources "
                                                                "in the store, the video")
    c.add_argument("--report", type=Path, required=True, help="NAME.redacted.report.cbor")
    c.add_argument("--video", type=Path, help="NAME.redacted.mp4: its SHA-256 must be the report's")

    c = sub.add_parser("serve", parents=[common], help="the Sichtung web console (docs/console.md)")
    c.add_argument("--identity", type=Path, required=True, action="append",
                   help="the evidence office's age identity; repeat for those of earlier rotations")
    c.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    c.add_argument("--port", type=int, default=8080)
    c.add_argument("--export-ttl-minutes", type=_count, default=60,
                   help="how long an export's download link works (default 60)")
    c.add_argument("--idle-minutes", type=_count, default=30, help="a session ends after this long idle (default 30)")
    c.add_argument("--behind-tls", action="store_true",
                   help="served through a TLS reverse proxy: the session cookie is sent over HTTPS only")

    c = sub.add_parser("users", parents=[common],
                       help="console users: add (or change role and password), passwd, disable, enable, remove, list")
    c.add_argument("users_command", choices=["add", "passwd", "disable", "enable", "remove", "list"])
    c.add_argument("--id", help="user id (an officer's id for the officer role)")
    c.add_argument("--role", choices=["clerk", "supervisor", "officer", "dpo"])
    c.add_argument("--by", type=_user, default=me)

    c = sub.add_parser("officers", parents=[common],
                       help="the office's directory of officers: the names shown beside their numbers")
    c.add_argument("officers_command", choices=["set", "list"])
    c.add_argument("--id", help="the officer's number, as the cameras record it (e.g. KOD-101)")
    c.add_argument("--name", help="the name to show (empty: remove it)")
    c.add_argument("--by", type=_user, default=me)

    c = sub.add_parser("audit", parents=[common], help="the audit trail")
    c.add_argument("--verify", action="store_true", help="check numbering, chaining and signatures")
    c.add_argument("--expect", metavar="SEQ:HEX", help="a head printed earlier that must still be in the trail")
    c.add_argument("--limit", type=_count, default=100, help="entries at most, newest first (default 100)")
    c.add_argument("--before", type=_count, help="entries before this sequence number")
    return p


def _open(args: argparse.Namespace) -> EvidenceStore:
    try:
        store = open_store(args.store)
    except (ValueError, NotADirectoryError) as exc:
        raise Refused(str(exc)) from None
    if args.command in ("init", "restore"):
        return store
    if isinstance(store, FsEvidenceStore):
        if not store.root.is_dir():
            raise Refused(f"no evidence store at {store.root}; create one with: bodycam-evidence --store "
                          f"{store.root} --key FILE init")
        if not (store.root / "audit").is_dir() and not (store.root / "devices").is_dir():
            raise Refused(f"{store.root} is not an evidence store (no audit/ or devices/ in it)")
    else:
        check = getattr(store, "check_bucket", None)
        if check is not None:
            check()
    return store


def _load_key(args: argparse.Namespace) -> Any:
    if args.key is None:
        return None
    try:
        return keys.load_signing_key(args.key)
    except FileNotFoundError:
        raise Refused(f"--key {args.key}: no such file") from None
    except keys.KeyFileError as exc:
        raise Refused(f"--key: {exc}") from None


def run(args: argparse.Namespace) -> tuple[int, Any]:
    store = _open(args)
    if args.command in ("backup", "restore"):
        return _backup(args, store)
    now = lambda: time.time_ns() // 1000  # noqa: E731
    office = Office(store, _load_key(args), now, Index(store, args.index, now_us=now))
    try:
        return _command(args, store, office)
    finally:
        office.idx().close()  # its files closed, its reader threads ended


def _command(args: argparse.Namespace, store: EvidenceStore, office: Office) -> tuple[int, Any]:
    cmd = args.command
    if cmd == "recipients":
        return _recipients(args, store, office)
    if cmd == "revoke-dock":
        return _revoke_dock(args, store, office)
    if cmd in ("show", "hold", "release", "delete", "purge", "export", "redact"):
        office.check_key()  # these are recorded: refuse before doing anything
    if cmd == "init":
        return 0, office.init(args.retention_days, args.supervisor, args.by, demo=args.demo,
                              redaction_approval=args.redaction_approval)
    if cmd == "reindex":
        if args.status:
            return 0, office.idx().status()
        with _progress("Index") as progress:
            report = office.idx().rebuild(progress)
        return 0, {**office.idx().status(), "read": report.to_json()}
    if cmd in ("list", "case", "show", "verify", "purge", "hold", "release", "delete", "export", "audit") and not (
            cmd == "audit" and args.verify):
        with _progress("Index") as progress:
            report = office.idx().refresh(progress)
        for problem in report.problems[:20]:
            print(f"bodycam-evidence: warning: {problem}", file=sys.stderr)
    if cmd == "list":
        return _list(args, office.idx())
    if cmd == "case":
        page = office.idx().case(args.case)
        return 0, {"case": args.case, "recordings": office.idx().summaries(page.rows)}
    if cmd == "show":
        return 0, office.show(args.recording, args.by)
    if cmd == "verify":
        with _progress("Prüfung") as progress:
            if args.recording is not None:
                rec, state = office.find(args.recording)
                one = verify_recording(office.idx(), rec, state, use_cache=False)
                general = office.idx().problems()
                result = {"ok": one["ok"] and not general, "recordings": [
                    {k: one[k] for k in ("id", "ok", "deleted", "problems")}], "problems": general}
            elif args.since is not None:
                result = verify_since(office.idx(), int(args.since.timestamp() * 1e6), progress=progress)
            else:
                result = verify_all(office.idx(), progress=progress, restart=args.restart)
        return (0 if result["ok"] else 1), result
    if cmd == "purge":
        now_s = args.now.timestamp() if args.now else time.time()
        return 0, office.purge(int(now_s * 1e6), args.by)
    if cmd == "hold":
        return 0, office.hold(args.recording, args.reason, args.case, args.by)
    if cmd == "release":
        return 0, office.release(args.recording, args.reason, args.by, args.why)
    if cmd == "delete":
        return 0, office.delete(args.recording, args.by)
    if cmd == "export":
        from evidence.export import export  # PyAV: only the command that needs it pays for loading it
        return 0, export(office, args.recording, [_identity(p) for p in args.identity], args.out, args.by,
                         args.lang)
    if cmd == "redact":
        return 0, _redact(args, office)
    if cmd == "check-redaction":
        from evidence.redaction.redact import check
        result = check(office, args.report, args.video)
        return (0 if result["ok"] else 1), result
    if cmd == "users":
        return _users(args, office)
    if cmd == "officers":
        if args.officers_command == "list":
            return 0, {"officers": [{"id": k, "name": v} for k, v in sorted(office.officers().items())]}
        if not args.id or args.name is None:
            raise Refused("officers set needs --id and --name")
        office.check_key()
        return 0, office.set_officer(args.id, args.name, args.by)
    if cmd == "serve":
        return _serve(args, office)
    # audit
    if args.verify:
        try:
            report = audit.verify(store, args.expect)
        except ValueError as exc:
            raise Refused(str(exc)) from None
        return (0 if report.ok else 1), report.to_json()
    if args.expect:
        raise Refused("--expect goes with --verify")
    page = office.idx().audit_page(before=args.before, limit=args.limit)
    signers = office.idx().signers()
    entries = [office_entry.to_json(signers) for office_entry in map(_entry, reversed(page.rows))]
    head = office.idx().meta()
    return 0, {"entries": entries, "head": f"{head['audit_seq']}:{head['audit_digest']}" if head["audit_digest"] else None,
               "total": page.total, "before": int(page.next) if page.next else None}


def _recipients(args: argparse.Namespace, store: EvidenceStore, office: Office) -> tuple[int, Any]:
    """Show the office's recipients for new footage, or rotate them (docs/keys.md)."""
    from evidence import recipients as office_recipients
    if not args.recipients:
        now = office_recipients.current(store)
        return 0, {"recipients": now["recipients"] if now else None, "n": now["n"] if now else None,
                   "note": None if now else "none published: the cameras use the recipients they were flashed with"}
    if args.by is None:
        raise Refused("--set is recorded: name who decided it with --by")
    office.check_key()
    try:
        wanted = [keys.format_recipient(keys.load_recipient(r)) for r in args.recipients]
    except (keys.KeyFileError, FileNotFoundError) as exc:
        raise Refused(f"--set: {exc}") from None
    now_us = time.time_ns() // 1000
    done = office_recipients.publish(store, office.key, wanted, args.by, now_us)
    entry = audit.append(store, office.key, "recipients", by=args.by, now_us=now_us,
                         details={"recipients": wanted, "n": done["n"]})
    return 0, {**done, "audit_seq": entry.seq,
               "note": "every camera encrypts to these from its next docking on; keep the earlier identity "
                       "for what was recorded before (serve and export take several --identity)"}


def _redact(args: argparse.Namespace, office: Office) -> dict[str, Any]:
    """Redact into a private directory beside --out, then approve: the files appear only at the end."""
    import tempfile
    from evidence.redaction.redact import approve, check_approver, check_out, prepare
    from evidence.redaction.render import AudioRange, Settings
    from evidence.redaction.track import Ignore, ManualBox
    check_out(args.out)
    check_approver(office, args.by, args.approved_by)     # before the long work, not after it
    settings = Settings(every=args.every, margin=args.margin, style=args.style, shape=args.shape,
                        manual=[ManualBox(a, b, box, follow) for a, b, box, follow in args.box],
                        ignore=[Ignore(a, b, box) for a, b, box, _ in args.ignore],
                        audio=[AudioRange(a, b, "mute") for a, b in args.mute] +
                              [AudioRange(a, b, "bleep") for a, b in args.bleep])
    identity = [_identity(p) for p in args.identity]
    _sweep_stale(args.out)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))   # stopped: the decrypted copy goes with it
    with tempfile.TemporaryDirectory(dir=args.out.parent, prefix=f".{args.out.name}.") as tmp:
        os.chmod(tmp, 0o700)   # decrypted footage
        with _progress("Schwärzung") as progress:
            stages = {"decrypt": "Entschlüsseln", "analyse": "Gesichter", "render": "Kodieren"}
            draft = prepare(office, args.recording, identity, Path(tmp), settings, args.by,
                            progress=lambda stage, f: progress(stages.get(stage, stage), int(f * 1000), 1000))
        return approve(office, draft, args.out, args.approved_by)


def _sweep_stale(out: Path) -> None:
    """What a killed ``redact`` for the same --out left (decrypted footage in a hidden directory)."""
    for stale in out.parent.glob(f".{glob_escape(out.name)}.*"):
        if stale.is_dir():
            shutil.rmtree(stale, ignore_errors=True)


def glob_escape(text: str) -> str:
    import glob
    return glob.escape(text)


def _revoke_dock(args: argparse.Namespace, store: EvidenceStore, office: Office) -> tuple[int, Any]:
    """The office revokes a dock key (evidence/dock_revocations.py), on record."""
    from common.link_auth import FINGERPRINT
    from evidence import dock_revocations
    office.check_key()
    named = args.dock_key.strip()
    if not FINGERPRINT.fullmatch(named):
        try:
            named = keys.fingerprint(keys.load_verify_key(Path(named)))
        except (keys.KeyFileError, OSError, ValueError) as exc:
            raise Refused(f"--dock-key: neither a 64-hex fingerprint nor a readable public key file: {exc}") from None
    if dock_revocations.read(store, named) is not None:
        raise Refused(f"dock key {named[:16]}… is revoked already")
    now_us = time.time_ns() // 1000
    try:
        done = dock_revocations.publish(store, office.key, named, args.reason, args.by, now_us)
    except ValueError as exc:
        raise Refused(f"--dock-key: {exc}") from None
    entry = audit.append(store, office.key, "revoke-dock", by=args.by, now_us=now_us,
                         details={"kind": "dock", "dock_key": named, "dock_id": done["dock_id"], "reason": args.reason})
    return 0, {"dock_key": named, "dock_id": done["dock_id"], "where": done["where"], "audit_seq": entry.seq,
               "note": "every dock refuses to work with this key's dock from its next look at the store, and "
                       "pushes the revocation to each camera it serves; a camera refuses the revoked dock from then on"}


def _backup(args: argparse.Namespace, store: EvidenceStore) -> tuple[int, Any]:
    """``backup`` (store → backup) and ``restore`` (backup → store): :func:`evidence.backup.copy`."""
    from evidence.backup import NotARestore, copy
    other_url = args.to if args.command == "backup" else args.source
    flag = "--to" if args.command == "backup" else "--from"
    if not other_url.strip():
        raise Refused(f"{flag} needs a directory or s3://bucket[/prefix]")
    try:
        other = open_store(other_url)
    except (ValueError, NotADirectoryError) as exc:
        raise Refused(f"{flag}: {exc}") from None
    source, target = (store, other) if args.command == "backup" else (other, store)
    if args.command == "restore" and not source.backend.keys("audit"):
        raise Refused(f"--from {other_url} holds no evidence store (no audit trail): nothing to restore")
    if source.location == target.location:
        raise Refused("the backup and the store are the same place")
    if isinstance(target, FsEvidenceStore) and target.root.is_dir() and any(target.root.iterdir()) and not (
            (target.root / "audit").is_dir() or (target.root / "devices").is_dir()):
        raise Refused(f"{target.root} holds other files and is no evidence store nor a backup of one: name a new "
                      "or empty directory")
    target.prepare(14)  # a directory made, or an S3 bucket with Object Lock (idempotent)
    with _progress("Sicherung" if args.command == "backup" else "Wiederherstellung") as progress:
        try:
            report = copy(source, target, verify=args.verify, restore=args.command == "restore",
                          progress=lambda done, total, size: progress("objects", done, total))
        except NotARestore as exc:
            raise Refused(str(exc)) from None
    result = {**report.__dict__, "ok": report.ok}
    if args.command == "restore":
        prog = sys.argv[0] if Path(sys.argv[0]).name == "bodycam-evidence" else "bodycam-evidence"  # as it was run
        result["next"] = f"{prog} --store {args.store} reindex && {prog} --store {args.store} verify"
    return (0 if report.ok else 1), result


def _entry(row: dict[str, Any]) -> audit.Entry:
    from evidence.index.query import entry
    return entry(row)  # type: ignore[arg-type]


def _list(args: argparse.Namespace, index: Index) -> tuple[int, Any]:
    f = Filters(officer=args.officer or "", device=args.device or "", held=args.held, case=args.case,
                reason=args.reason or "", due_days=args.due_days,
                since_us=int(args.since.timestamp() * 1e6) if args.since else None,
                until_us=int(args.until.timestamp() * 1e6) if args.until else None)
    try:
        page = index.page(f, sort=args.sort, after=args.after, limit=args.limit)
    except BadQuery as exc:
        raise Refused(str(exc)) from None
    problems = index.problems(20)
    return (1 if problems else 0), {"recordings": index.summaries(page.rows), "total": page.total,
                                    "next": page.next, "problems": problems}


@contextlib.contextmanager
def _progress(what: str) -> Iterator[Callable[[str, int, int], None]]:
    """A progress bar on a terminal (rich), nothing when the output goes to a file."""
    if not sys.stderr.isatty():
        yield lambda phase, done, total: None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  transient=True, console=_stderr_console()) as bar:
        tasks: dict[str, Any] = {}

        def update(phase: str, done: int, total: int) -> None:
            if phase not in tasks:
                tasks[phase] = bar.add_task(f"{what}: {phase}", total=total or None)
            bar.update(tasks[phase], completed=done, total=total or None)
        yield update


def _stderr_console() -> Any:
    from rich.console import Console
    return Console(stderr=True)


def _identity_passphrase() -> str:
    """For an identity protected with a passphrase (docs/keys.md): a systemd credential
    ``identity-passphrase`` (LoadCredentialEncrypted=, bound to this server's TPM), else
    the terminal, else one line of standard input."""
    creds = os.environ.get("CREDENTIALS_DIRECTORY")
    if creds and (Path(creds) / "identity-passphrase").is_file():
        return (Path(creds) / "identity-passphrase").read_text().rstrip("\r\n")
    if sys.stdin.isatty():
        return getpass.getpass("Passphrase of the office's age identity: ")
    return sys.stdin.readline().rstrip("\r\n")


def _identity(path: Path) -> bytes:
    try:
        return keys.load_identity(path, passphrase=_identity_passphrase)
    except FileNotFoundError:
        raise Refused(f"--identity {path}: no such file") from None
    except keys.KeyFileError as exc:
        raise Refused(f"--identity: {exc}") from None


def _read_password(user_id: str) -> str:
    """From standard input when it is not a terminal (scripts), else prompted twice."""
    if not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\r\n")
    first = getpass.getpass(f"password for {user_id}: ")
    if getpass.getpass("again: ") != first:
        raise Refused("the two passwords differ; nothing changed")
    return first


def _users(args: argparse.Namespace, office: Office) -> tuple[int, Any]:
    from evidence.users import Users
    if args.users_command == "list":
        return 0, {"users": [{"id": u.id, "role": u.role, "state": u.state} for u in Users(office.store).all()]}
    if args.users_command == "add" and (not args.id or not args.role):
        raise Refused("users add needs --id and --role")
    if not args.id:
        raise Refused(f"users {args.users_command} needs --id")
    if args.users_command == "add":
        office.check_key()
        return 0, office.set_user(args.id, args.role, _read_password(args.id), args.by)
    office.check_key()
    if args.users_command == "passwd":
        return 0, office.user_passwd(args.id, _read_password(args.id), args.by)
    state = {"disable": "disabled", "enable": "active", "remove": "removed"}[args.users_command]
    return 0, office.user_state(args.id, state, args.by)


class ConsoleWatchdog(threading.Thread):
    """systemd's ``Type=notify`` and ``WatchdogSec=`` for the console: ``READY=1`` once it
    answers, then ``WATCHDOG=1`` only while it still answers a request for its own icon
    over loopback within the deadline (a console whose workers all hang stops the pings,
    and systemd restarts it). Not under systemd: does nothing."""

    def __init__(self, service: ServiceNotifier, host: str, port: int) -> None:
        super().__init__(name="console-watchdog", daemon=True)
        self.service, self.stop = service, threading.Event()
        self.url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '') else host}:{port}/static/favicon.svg"

    def answers(self, timeout: float) -> bool:
        import urllib.request
        try:
            with urllib.request.urlopen(self.url, timeout=timeout) as reply:
                return reply.status == 200
        except OSError:
            return False

    def run(self) -> None:
        if not self.service.address:
            return
        while not self.stop.is_set() and not self.answers(5.0):
            self.stop.wait(0.5)
        self.service.ready(f"serving {self.url.rsplit('/static', 1)[0]}/")
        period = self.service.interval_s or 0
        while period and not self.stop.wait(period / 2):
            if self.answers(period):
                self.service.alive()


def _serve(args: argparse.Namespace, office: Office) -> tuple[int, Any]:
    import waitress
    from evidence.console import create_app
    if not 1 <= args.port <= 65535:
        raise Refused(f"--port must be 1…65535, got {args.port}")
    identity = [_identity(p) for p in args.identity]   # the current one, and those of earlier rotations
    office.check_key()
    app = create_app(office.store, office.key, identity, index=office.idx(),
                     export_ttl_s=args.export_ttl_minutes * 60.0, idle_s=args.idle_minutes * 60.0,
                     behind_tls=args.behind_tls)
    server = waitress.create_server(app, host=args.host, port=args.port, threads=8, ident="bodycam")
    print(f"Sichtung console on http://{args.host}:{args.port}/ (Ctrl-C stops it)", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # systemd's stop: clean up like Ctrl-C
    watchdog = ConsoleWatchdog(ServiceNotifier.from_env(), args.host, server.effective_port)
    watchdog.start()
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    finally:  # decrypted footage does not outlive the console
        watchdog.stop.set()
        app.extensions["bodycam"].stop.set()
        shutil.rmtree(app.extensions["bodycam"].cache, ignore_errors=True)
    return 0, {"served": f"{args.host}:{args.port}"}


def _human(cmd: str, result: Any) -> str:
    if cmd == "list":
        lines = [f"{'recording':48} {'officer':14} {'start (UTC)':26} {'dur s':>7} {'state'}"]
        for r in result["recordings"]:
            state = "deleted" if r["deleted"] else ("held" if r["held"] else f"expires {r['expires_utc']}")
            lines.append(f"{r['id']:48} {str(r['officer']):14} {r['start_utc']:26} {r['duration_s']:7.1f} {state}"
                         + (" truncated" if r["truncated"] else ""))
        if result.get("next"):
            lines.append(f"({len(result['recordings'])} of {result['total']}; more with --after {result['next']})")
        lines += [f"PROBLEM  {p}" for p in result.get("problems", [])]
        return "\n".join(lines)
    if cmd == "reindex":
        if not result["usable"]:
            left = result.get("unfinished_rebuild")
            return (f"no usable index in {result['index']} yet" + (
                f" (a rebuild stopped after {left['devices_done']} of {left['devices']} cameras; "
                "run reindex to go on)" if left else ""))
        built = iso(result["built_utc_us"]) if result.get("built_utc_us") else "?"
        return (f"index {result['index']} of {result['store']}: {result['recordings']} recordings, "
                f"{result['segments']} segments, audit trail followed to record {result['audit_seq']}, "
                f"{result['problems']} problem(s); built {built}")
    if cmd == "case":
        return _human("list", {"recordings": result["recordings"]}) if result["recordings"] else \
            f"no recording is held under {result['case']!r}"
    if cmd in ("backup", "restore"):
        lines = [f"{result['source']} → {result['target']}: {result['listed']} objects, {result['copied']} copied "
                 f"({result['bytes']:,} bytes), {result['updated']} updated, {result['unchanged']} already there"]
        if result["deleted_footage"]:
            lines.append(f"{len(result['deleted_footage'])} footage file(s) deleted from the store since: "
                         "deleted in the backup too")
        if result["verified"]:
            lines.append(f"{result['verified']} objects read back and compared")
        lines += [f"PROBLEM  {p}" for p in result["problems"]]
        if result.get("next"):
            lines.append(f"next: {result['next']}")
        return "\n".join(lines)
    if cmd == "verify":
        lines = [f"{'ok' if r['ok'] else 'PROBLEMS':8} {r['id']}" + (" (deleted)" if r["deleted"] else "") + "".join(f"\n         - {p}" for p in r["problems"])
                 for r in result["recordings"]]
        lines += [f"PROBLEM  {p}" for p in result["problems"]]
        lines.append("all recordings verified" if result["ok"] else "verification found problems")
        return "\n".join(lines)
    if cmd == "officers" and "officers" in result:
        return "\n".join(f"{o['id']:24} {o['name']}" for o in result["officers"]) or "no officers named"
    if cmd == "users" and "users" in result:
        return "\n".join(f"{u['id']:24} {u['role']:12} {u['state']}" for u in result["users"]) or "no users"
    if cmd == "audit" and "signers" in result:
        signers = ", ".join(f"{v.get('role')} {v.get('id')} ({k[:12]}…)" for k, v in result["signers"].items())
        rest = {k: v for k, v in result.items() if k != "signers"}
        return "\n".join([_human("", rest), f"signers: {signers}"])
    if cmd == "audit" and "entries" in result:
        return "\n".join(f"{e['seq']:6} {iso(e['utc_us']):26} {e['action']:15} {e['by'] or e['signer']['id']:16} "
                         f"{e['recording'] or e['device'] or ''}" for e in result["entries"]) + f"\nhead {result['head']}"
    return "\n".join(f"{k}: {json.dumps(v) if isinstance(v, (dict, list)) else v}" for k, v in result.items())


READ_ONLY = ("list", "case", "audit", "verify", "reindex")


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        try:
            code, result = run(args)
        except sqlite3.OperationalError as exc:  # full, read-only or locked: not damage
            raise IndexBusy(f"the index cannot be written ({exc}): is its disk full or read-only? "
                            "(--index DIR names another place)") from None
        except sqlite3.DatabaseError as exc:  # the index file is damaged: set aside, rebuilt from the store
            message = Index(open_store(args.store), args.index).damaged(exc)
            if args.command not in READ_ONLY:
                raise IndexCorrupt(f"{message}; run the command again") from None
            print(f"bodycam-evidence: warning: {message}", file=sys.stderr)
            code, result = run(args)
    except (Refused, UnknownRecording, NotAStore, BadQuery) as exc:
        print(f"bodycam-evidence: error: {exc.args[0]}", file=sys.stderr)
        return 2
    except (StoreUnavailable, LockedError, StoreConflict, IndexBusy, IndexCorrupt) as exc:
        print(f"bodycam-evidence: error: {exc}", file=sys.stderr)
        return 1
    except signed.SignatureError as exc:
        print(f"bodycam-evidence: error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"bodycam-evidence: error: {exc.filename or ''}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    print(json.dumps(result, indent=2) if args.json else _human(args.command, result))
    return code


if __name__ == "__main__":
    sys.exit(main())
