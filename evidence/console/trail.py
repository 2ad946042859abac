"""The audit trail, newest first, 50 a page, filtered by action, recording and person:
the data-protection officer's page (clerks and supervisors see each recording's entries
on its page).

The chain is verified as the index follows it (each new record's signature and link);
the page shows how far that reaches, and a full check stays ``audit --verify``."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, render_template, request

from evidence import audit
from evidence.console import ctx, login_required
from evidence.index.query import entry

bp = Blueprint("trail", __name__)


def _seq(text: str) -> int | None:
    """A record number from a page link; anything else (or beyond any trail) is ignored."""
    return int(text) if text.isdigit() and len(text) <= 15 else None


@bp.get("/audit")
@login_required("dpo")  # the whole trail: the data-protection officer's (docs/console.md); others see a recording's
def audit_page() -> Any:
    c = ctx()
    f = {k: request.args.get(k, "").strip()[:128] for k in ("action", "recording", "by")}
    if f["action"] and f["action"] not in audit.ACTIONS:
        f["action"] = ""
    before, after = (_seq(request.args.get(k, "")) for k in ("before", "after"))
    page = c.index.audit_page(**f, before=before, after=after)
    signers = c.index.signers()
    problems = [p for p in c.index.problems(20) if p.startswith("audit")]
    meta = c.index.meta()
    rows = [entry(r) for r in page.rows]  # type: ignore[arg-type]
    return render_template("audit.html", page=page, rows=rows, f=f, actions=audit.ACTIONS, signers=signers,
                           problems=problems, head=int(meta["audit_seq"]),
                           keep={k: v for k, v in f.items() if v})
