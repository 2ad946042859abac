"""UI text, German (default: the users are German clerks) and English."""

from __future__ import annotations

LANGS = ("de", "en")

TEXT: dict[str, dict[str, str]] = {
    "title": {"de": "Sichtung – Beweismittelstelle", "en": "Review – evidence office"},
    "login": {"de": "Anmelden", "en": "Log in"},
    "logout": {"de": "Abmelden", "en": "Log out"},
    "user": {"de": "Benutzer", "en": "User"},
    "password": {"de": "Passwort", "en": "Password"},
    "login_failed": {"de": "Benutzer oder Passwort falsch.", "en": "Wrong user or password."},
    "login_throttled": {"de": "Zu viele Fehlversuche. Bitte später erneut versuchen.",
                        "en": "Too many failed attempts. Please try again later."},
    "recordings": {"de": "Aufnahmen", "en": "Recordings"},
    "audit": {"de": "Protokoll", "en": "Audit trail"},
    "officer": {"de": "Einsatzkraft", "en": "Officer"},
    "device": {"de": "Kamera", "en": "Camera"},
    "start": {"de": "Beginn (UTC)", "en": "Start (UTC)"},
    "duration": {"de": "Dauer", "en": "Duration"},
    "kind": {"de": "Art", "en": "Kind"},
    "announced": {"de": "angekündigt", "en": "announced"},
    "emergency": {"de": "Gefahr im Verzug (ohne Ankündigung)", "en": "imminent danger (not announced)"},
    "markers": {"de": "Markierungen", "en": "Markers"},
    "status": {"de": "Status", "en": "Status"},
    "deleted_in": {"de": "Löschung in {n} Tagen", "en": "deleted in {n} days"},
    "due_now": {"de": "Löschung fällig", "en": "deletion due"},
    "held": {"de": "gesichert", "en": "held"},
    "deleted": {"de": "gelöscht", "en": "deleted"},
    "filter": {"de": "Filtern", "en": "Filter"},
    "all": {"de": "alle", "en": "all"},
    "yes": {"de": "ja", "en": "yes"},
    "no": {"de": "nein", "en": "no"},
    "date": {"de": "Datum", "en": "Date"},
    "due_within": {"de": "Löschung in ≤ Tagen", "en": "deleted within days"},
    "none": {"de": "keine", "en": "none"},
    "play": {"de": "Wiedergabe", "en": "Playback"},
    "segments": {"de": "Segmente", "en": "Segments"},
    "verified": {"de": "geprüft", "en": "verified"},
    "problems": {"de": "Befunde", "en": "Problems"},
    "truncated": {"de": "abgeschnitten (Stromausfall)", "en": "truncated (power cut)"},
    "facts": {"de": "Fakten aus Manifest und Ereignisprotokoll", "en": "Facts from manifests and event log"},
    "clock_offset": {"de": "Uhrzeitabweichung beim Andocken", "en": "Clock offset at docking"},
    "receipts": {"de": "Empfangsbestätigungen der Dockingstation", "en": "Dock custody receipts"},
    "events": {"de": "Ereignisse", "en": "Events"},
    "hold": {"de": "Sichern (Verfahren)", "en": "Hold (proceedings)"},
    "reason": {"de": "Grund", "en": "Reason"},
    "case": {"de": "Aktenzeichen", "en": "Case reference"},
    "release": {"de": "Sicherung aufheben", "en": "Release hold"},
    "request_delete": {"de": "Vorzeitige Löschung beantragen", "en": "Request early deletion"},
    "approve_delete": {"de": "Vorzeitige Löschung genehmigen", "en": "Approve early deletion"},
    "approvals": {"de": "Zustimmungen", "en": "Approvals"},
    "export": {"de": "Exportieren (MP4 + Bericht)", "en": "Export (MP4 + report)"},
    "download": {"de": "Herunterladen", "en": "Download"},
    "audit_ok": {"de": "Protokollkette geprüft: unverändert", "en": "Audit chain verified: intact"},
    "audit_bad": {"de": "Protokollkette BESCHÄDIGT", "en": "Audit chain BROKEN"},
    "action": {"de": "Aktion", "en": "Action"},
    "by": {"de": "durch", "en": "by"},
    "time": {"de": "Zeit (UTC)", "en": "Time (UTC)"},
    "recording": {"de": "Aufnahme", "en": "Recording"},
    "done": {"de": "Erledigt.", "en": "Done."},
    "forbidden": {"de": "Für Ihre Rolle nicht erlaubt.", "en": "Not allowed for your role."},
    "not_found": {"de": "Nicht gefunden.", "en": "Not found."},
    "csrf": {"de": "Formular abgelaufen oder ungültig; bitte neu laden.",
             "en": "Form expired or invalid; please reload."},
    "owi": {"de": "Ordnungswidrigkeit", "en": "administrative offence"},
    "straf": {"de": "Straftat", "en": "criminal offence"},
    "gefahrenabwehr": {"de": "Gefahrenabwehr", "en": "averting a danger"},
    "affected-request": {"de": "Antrag einer betroffenen Person", "en": "request of an affected person"},
}


def text(key: str, lang: str, **kw: object) -> str:
    entry = TEXT.get(key)
    if entry is None:
        return key
    return entry.get(lang, entry["de"]).format(**kw)
