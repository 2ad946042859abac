"""The audit trail in sentences, for people: "Gesichert: Straftat, Aktenzeichen AZ 4711/26."
instead of ``reason: straf; case: AZ 4711/26`` — German first, English available.

One function per page that shows the trail (the data-protection officer's, and each
recording's). No raw keys, no Python structures: an unknown detail is left out of the
sentence, never dumped (the record itself stays in the store and in ``audit --json``).

>>> from evidence.audit import Entry
>>> e = Entry(7, 0, "hold", "anna", "cam", "rec", {"reason": "straf", "case": "AZ 1/26"}, "", b"")
>>> audit_sentence(e, "de")
'Gesichert wegen Straftat, Aktenzeichen AZ 1/26.'
>>> audit_sentence(Entry(8, 0, "user", "admin", None, None,
...     {"id": "anna", "role": "clerk", "state": "active", "change": "created"}, "", b""), "de")
'Benutzer anna angelegt (Sachbearbeitung).'
"""

from __future__ import annotations

from typing import Any

from evidence.console.i18n import role_text, text

_USER_CHANGES = {
    "created": ("Benutzer {id} angelegt ({role}).", "User {id} created ({role})."),
    "changed": ("Benutzer {id} geändert: Rolle {role}, neues Passwort.", "User {id} changed: role {role}, new password."),
    "password": ("Passwort von {id} geändert.", "Password of {id} changed."),
    "disabled": ("Benutzer {id} gesperrt.", "User {id} disabled."),
    "active": ("Benutzer {id} wieder freigeschaltet.", "User {id} enabled again."),
    "removed": ("Benutzer {id} entfernt.", "User {id} removed."),
}


def _n(n: Any, one: tuple[str, str], many: tuple[str, str], lang: str) -> str:
    k = 0 if lang == "de" else 1
    count = int(n) if isinstance(n, (int, float)) and not isinstance(n, bool) else len(n) if isinstance(n, list) else 0
    return (one[k] if count == 1 else many[k]).format(n=count)


def _size(n: Any, lang: str) -> str:
    if not isinstance(n, (int, float)):
        return ""
    mb = n / 1e6
    value = f"{mb:.1f}" if mb < 100 else f"{mb:.0f}"
    return (value.replace(".", ",") if lang == "de" else value) + " MB"


def audit_sentence(e: Any, lang: str) -> str:
    """What record ``e`` (:class:`evidence.audit.Entry`) says, as one sentence."""
    d: dict[str, Any] = e.details if isinstance(e.details, dict) else {}
    de = lang == "de"
    a = e.action

    def pick(g: str, en: str) -> str:
        return g if de else en
    reason = text(str(d.get("reason", "")), lang) if d.get("reason") else ""
    why = f" „{d['why']}“" if de and d.get("why") else (f" “{d['why']}”" if d.get("why") else "")
    if a == "ingest":
        segs = _n(d.get("segments", []), ("1 Segment", "1 segment"), ("{n} Segmente", "{n} segments"), lang)
        new = _n(d.get("stored_now", 0), ("davon 1 neu", "1 of them new"), ("davon {n} neu", "{n} of them new"), lang)
        return pick(f"Von der Dockingstation {d.get('dock', '?')} übernommen: {segs} ({new}), {_size(d.get('bytes'), lang)}.",
                    f"Taken in by dock {d.get('dock', '?')}: {segs} ({new}), {_size(d.get('bytes'), lang)}.")
    if a == "view":
        return {"page": pick("Seite der Aufnahme geöffnet.", "Recording page opened."),
                "playback": pick("Wiedergabe gestartet.", "Playback started.")}.get(
            str(d.get("what", "")), pick("Angesehen.", "Viewed."))
    if a == "hold":
        return pick(f"Gesichert wegen {reason}, Aktenzeichen {d.get('case', '—')}.",
                    f"Held for {reason}, case {d.get('case', '—')}.")
    if a == "release":
        asked = pick(f" Beantragt von {d['requested_by']}.", f" Requested by {d['requested_by']}.") \
            if d.get("requested_by") else ""
        return pick(f"Sicherung ({reason}) aufgehoben:{why}.{asked}", f"Hold ({reason}) released:{why}.{asked}")
    if a == "approve-release":
        return pick(f"Aufhebung der Sicherung ({reason}) beantragt:{why}.", f"Release of the hold ({reason}) requested:{why}.")
    if a == "approve-delete":
        return pick(f"Zustimmung zur vorzeitigen Löschung ({role_text(d.get('role'), lang)}).",
                    f"Consent to early deletion ({role_text(d.get('role'), lang)}).")
    if a == "delete":
        who = ", ".join(f"{role_text(r, lang)} {u}" for r, u in (d.get("approvals") or {}).items())
        return pick(f"Vorzeitig gelöscht mit Zustimmung von {who}.", f"Deleted early with the consent of {who}.")
    if a == "purge":
        return pick(f"Nach Ablauf der Speicherfrist ({d.get('retention_days', '?')} Tage) gelöscht.",
                    f"Deleted after the retention period ({d.get('retention_days', '?')} days).")
    if a == "export":
        return pick("Als MP4 mit Bericht exportiert.", "Exported as MP4 with its report.")
    if a == "redact":
        parts = [pick(f"freigegeben von {d.get('approved_by', '?')}", f"approved by {d.get('approved_by', '?')}")]
        if d.get("manual"):
            parts.append(_n(d["manual"], ("1 Bereich von Hand", "1 area by hand"), ("{n} Bereiche von Hand", "{n} areas by hand"), lang))
        if d.get("audio_ranges"):
            parts.append(_n(d["audio_ranges"], ("1 Tonabschnitt", "1 audio range"), ("{n} Tonabschnitte", "{n} audio ranges"), lang))
        return pick("Geschwärzte Kopie erstellt, ", "Redacted copy made, ") + ", ".join(parts) + "."
    if a == "user":
        tpl = _USER_CHANGES.get(str(d.get("change", "")), _USER_CHANGES["changed"])
        return tpl[0 if de else 1].format(id=d.get("id", "?"), role=role_text(d.get("role"), lang))
    if a == "init":
        sup = ", ".join(d.get("supervisors") or []) or pick("keine benannt", "none named")
        extra = pick(" Demo-Speicher.", " Demo store.") if d.get("demo") else ""
        who = {"supervisor": pick(" Schwärzungen gibt eine Leitung frei.", " A supervisor approves redactions."),
               "second": pick(" Schwärzungen gibt eine zweite Person frei.", " A second person approves redactions.")
               }.get(str(d.get("redaction_approval", "")), "")
        return pick(f"Regeln: Speicherfrist {d.get('retention_days', '?')} Tage; Leitungen: {sup}.{who}{extra}",
                    f"Policy: retention {d.get('retention_days', '?')} days; supervisors: {sup}.{who}{extra}")
    if a == "approve-retention":
        return pick(f"Kürzere Speicherfrist vorgeschlagen: {d.get('retention_days', '?')} Tage.",
                    f"Shorter retention proposed: {d.get('retention_days', '?')} days.")
    if a == "revoke":
        return pick(f"Kamera gesperrt (verloren oder gestohlen):{why or ' ' + str(d.get('reason', ''))}.",
                    f"Camera revoked (lost or stolen): {d.get('reason', '')}.")
    if a == "revoke-dock":
        return pick(f"Dockingstation {d.get('dock_id') or ''} gesperrt: {d.get('reason', '')}.",
                    f"Dock {d.get('dock_id') or ''} revoked: {d.get('reason', '')}.")
    if a == "recipients":
        return pick(f"Schlüssel der Beweismittelstelle gewechselt (Nr. {d.get('n', '?')}).",
                    f"Office key rotated (no. {d.get('n', '?')}).")
    if a == "decline":
        what = {"release": pick(f"die Aufhebung der Sicherung ({reason})", f"lifting the hold ({reason})"),
                "delete": pick("die vorzeitige Löschung", "the early deletion"),
                "retention": pick(f"die kürzere Speicherfrist ({d.get('retention_days', '?')} Tage)",
                                  f"the shorter retention ({d.get('retention_days', '?')} days)")}.get(
            str(d.get("what", "")), "?")
        asked = pick(f", beantragt von {d['requested_by']}", f", asked by {d['requested_by']}") \
            if d.get("requested_by") else ""
        return pick(f"Abgelehnt: {what}{asked}:{why}.", f"Declined: {what}{asked}:{why}.")
    if a == "officer":
        return pick(f"Name der Einsatzkraft {d.get('id', '?')}: {d.get('name') or '(entfernt)'}.",
                    f"Name of officer {d.get('id', '?')}: {d.get('name') or '(removed)'}.")
    return ""
