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
    "login_throttled": {"de": "Zu viele Fehlversuche für diesen Benutzer. Bitte in {minutes} Minuten erneut "
                              "versuchen.",
                        "en": "Too many failed attempts for this user. Please try again in {minutes} minutes."},
    "login_throttled_one": {"de": "Zu viele Fehlversuche für diesen Benutzer. Bitte in 1 Minute erneut versuchen.",
                            "en": "Too many failed attempts for this user. Please try again in 1 minute."},
    "logins": {"de": "Anmeldungen", "en": "Logins"},
    "result": {"de": "Ergebnis", "en": "Result"},
    "address": {"de": "Adresse", "en": "Address"},
    "login_ok": {"de": "angemeldet", "en": "logged in"},
    "login_wrong": {"de": "falsches Passwort oder unbekannt", "en": "wrong password or unknown"},
    "login_throttled_short": {"de": "gebremst", "en": "throttled"},
    "recordings": {"de": "Aufnahmen", "en": "Recordings"},
    "audit": {"de": "Protokoll", "en": "Audit trail"},
    "officer": {"de": "Einsatzkraft", "en": "Officer"},
    "device": {"de": "Kamera", "en": "Camera"},
    "start": {"de": "Beginn", "en": "Start"},
    "end": {"de": "Ende", "en": "End"},
    "duration": {"de": "Dauer", "en": "Duration"},
    "kind": {"de": "Art", "en": "Kind"},
    "announced": {"de": "angekündigt", "en": "announced"},
    "emergency": {"de": "Gefahr im Verzug (ohne Ankündigung)", "en": "imminent danger (not announced)"},
    "markers": {"de": "Markierungen", "en": "Markers"},
    "status": {"de": "Status", "en": "Status"},
    "deleted_in": {"de": "Löschung in {n} Tagen", "en": "deleted in {n} days"},
    "deleted_in_one": {"de": "Löschung in 1 Tag", "en": "deleted in 1 day"},
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
    "request_release": {"de": "Aufhebung beantragen", "en": "Request release"},
    "approve_release": {"de": "Aufhebung genehmigen", "en": "Approve release"},
    "release_requested": {"de": "Aufhebung beantragt von {by}: „{why}“", "en": "Release requested by {by}: “{why}”"},
    "why": {"de": "Begründung", "en": "Reason for lifting"},
    "request_delete": {"de": "Vorzeitige Löschung beantragen", "en": "Request early deletion"},
    "approve_delete": {"de": "Vorzeitige Löschung genehmigen", "en": "Approve early deletion"},
    "approvals": {"de": "Zustimmungen", "en": "Approvals"},
    "export": {"de": "Exportieren (MP4 + Bericht)", "en": "Export (MP4 + report)"},
    "download": {"de": "Herunterladen", "en": "Download"},
    "audit_ok": {"de": "Protokollkette geprüft: unverändert", "en": "Audit chain verified: intact"},
    "audit_bad": {"de": "Protokollkette BESCHÄDIGT", "en": "Audit chain BROKEN"},
    "action": {"de": "Aktion", "en": "Action"},
    "by": {"de": "durch", "en": "by"},
    "time": {"de": "Zeit", "en": "Time"},
    "page": {"de": "Seite", "en": "page"},
    "playback": {"de": "Wiedergabe", "en": "playback"},
    "recording": {"de": "Aufnahme", "en": "Recording"},
    "done": {"de": "Erledigt.", "en": "Done."},
    "release_waiting_supervisor": {"de": "Beantragt; die Aufhebung wartet auf die Zustimmung einer Leitung.",
                                   "en": "Requested; the release waits for a supervisor's approval."},
    "delete_waiting_supervisor": {"de": "Zustimmung erfasst; es fehlt noch die Zustimmung einer Leitung.",
                                  "en": "Approval recorded; a supervisor's is still missing."},
    "delete_waiting_officer": {"de": "Zustimmung erfasst; es fehlt noch die der aufnehmenden Einsatzkraft.",
                               "en": "Approval recorded; the recording officer's is still missing."},
    "forbidden": {"de": "Für Ihre Rolle nicht erlaubt.", "en": "Not allowed for your role."},
    "not_found": {"de": "Nicht gefunden.", "en": "Not found."},
    "export_gone": {"de": "Dieser Download gilt nicht mehr: Exporte gelten {minutes} Minuten, nur für die Person, "
                          "die sie erstellt hat, und nur solange die Aufnahme besteht. Exportieren Sie die Aufnahme "
                          "bei Bedarf erneut.",
                    "en": "This download is no longer valid: exports last {minutes} minutes, only for the person "
                          "who made them, and only while the recording exists. Export the recording again if "
                          "needed."},
    "csrf": {"de": "Formular abgelaufen oder ungültig; bitte neu laden.",
             "en": "Form expired or invalid; please reload."},
    "owi": {"de": "Ordnungswidrigkeit", "en": "administrative offence"},
    "straf": {"de": "Straftat", "en": "criminal offence"},
    "gefahrenabwehr": {"de": "Gefahrenabwehr", "en": "averting a danger"},
    "affected-request": {"de": "Antrag einer betroffenen Person", "en": "request of an affected person"},
    "from": {"de": "von", "en": "from"},
    "to": {"de": "bis", "en": "to"},
    "sort": {"de": "Sortierung", "en": "Sort"},
    "start_desc": {"de": "neueste zuerst", "en": "newest first"},
    "start_asc": {"de": "älteste zuerst", "en": "oldest first"},
    "due": {"de": "Löschung zuerst fällig", "en": "deletion due first"},
    "duration_sort": {"de": "längste zuerst", "en": "longest first"},
    "officer_sort": {"de": "nach Einsatzkraft", "en": "by officer"},
    "device_sort": {"de": "nach Kamera", "en": "by camera"},
    "shown": {"de": "{first}–{last} von {total}", "en": "{first}–{last} of {total}"},
    "none_found": {"de": "Keine Aufnahmen gefunden.", "en": "No recordings found."},
    "first_page": {"de": "« Anfang", "en": "« First"},
    "prev_page": {"de": "‹ Zurück", "en": "‹ Previous"},
    "next_page": {"de": "Weiter ›", "en": "Next ›"},
    "bad_date": {"de": "Datum „{what}“ ungültig (TT.MM.JJJJ).", "en": "Invalid date '{what}'."},
    "bad_due": {"de": "„Löschung in ≤ Tagen“ muss eine Zahl von 0 bis 3650 sein.",
                "en": "'deleted within days' must be a number from 0 to 3650."},
    "case_search": {"de": "Aktenzeichen enthält", "en": "Case reference contains"},
    "hold_selected": {"de": "Ausgewählte sichern", "en": "Hold selected"},
    "none_selected": {"de": "Keine Aufnahme ausgewählt.", "en": "No recording selected."},
    "case_title": {"de": "Akte {az}", "en": "Case {az}"},
    "case_needed": {"de": "Bitte ein Aktenzeichen angeben.", "en": "Please give a case reference."},
    "case_empty": {"de": "Unter diesem Aktenzeichen ist keine Aufnahme gesichert.",
                   "en": "No recording is held under this case reference."},
    "case_export": {"de": "Akte {az} exportieren (alle Aufnahmen als MP4 + Berichte)",
                    "en": "Export case {az} (every recording as MP4 + reports)"},
    "case_count": {"de": "{n} Aufnahmen", "en": "{n} recordings"},
    "case_count_one": {"de": "1 Aufnahme", "en": "1 recording"},
    "poster": {"de": "Vorschau", "en": "Preview"},
    "play_button": {"de": "▶ Abspielen", "en": "▶ Play"},
    "checking": {"de": "wird geprüft … (Seite neu laden)", "en": "being verified … (reload the page)"},
    "checked_at": {"de": "geprüft am {when}", "en": "verified {when}"},
    "frames": {"de": "Bilder", "en": "Frames"},
    "details": {"de": "Einzelheiten", "en": "Details"},
    "back": {"de": "Zurück", "en": "Back"},
    "redact": {"de": "Schwärzen (Herausgabe an Betroffene)", "en": "Redact (for disclosure)"},
    "redact_title": {"de": "Geschwärzte Kopie", "en": "Redacted copy"},
    "redact_intro": {"de": "Gesichter werden automatisch erkannt und in jedem Bild abgedeckt. Zusätzliche Bereiche "
                             "und Tonabschnitte hier eintragen (Sekunden ab Beginn, Bildpunkte im Video: {width} × "
                             "{height}). Das Original bleibt unverändert.",
                     "en": "Faces are found automatically and covered on every frame. Add regions and audio "
                           "ranges here (seconds from the start, video pixels: {width} × {height}). The original "
                           "stays as it is."},
    "redact_boxes": {"de": "Zusätzliche Bereiche", "en": "Additional regions"},
    "redact_audio": {"de": "Ton", "en": "Audio"},
    "redact_ignore": {"de": "Fehlerkennungen (dort keine automatische Abdeckung)",
                      "en": "False detections (no automatic mask there)"},
    "from_s": {"de": "von (s)", "en": "from (s)"}, "to_s": {"de": "bis (s)", "en": "to (s)"},
    "follow": {"de": "mitführen", "en": "follow"},
    "mute": {"de": "stumm", "en": "mute"}, "bleep": {"de": "Piepton", "en": "bleep"},
    "style": {"de": "Abdeckung", "en": "Masking"},
    "style_fill": {"de": "schwarz füllen", "en": "solid black"},
    "style_pixelate": {"de": "grob verpixeln", "en": "coarse pixelation"},
    "redact_start": {"de": "Schwärzung erstellen", "en": "Create redaction"},
    "redact_running": {"de": "Schwärzung läuft: {stage} ({percent} %)", "en": "Redacting: {stage} ({percent} %)"},
    "stage_decrypt": {"de": "Entschlüsseln", "en": "decrypting"},
    "stage_analyse": {"de": "Gesichter erkennen", "en": "finding faces"},
    "stage_render": {"de": "Kodieren", "en": "encoding"},
    "redact_failed": {"de": "Die Schwärzung ist fehlgeschlagen: {error}", "en": "The redaction failed: {error}"},
    "redact_review": {"de": "Vorschau prüfen (rot: automatisch, blau: eingetragen), dann freigeben.",
                      "en": "Check the preview (red: automatic, blue: added), then approve."},
    "redact_stats": {"de": "{masked} von {frames} Bildern mit Abdeckung; {faces} Gesichter erkannt.",
                     "en": "{masked} of {frames} frames masked; {faces} faces found."},
    "redact_at": {"de": "Zeitpunkt (s)", "en": "Time (s)"},
    "redact_show": {"de": "Bild zeigen", "en": "Show frame"},
    "redact_approve": {"de": "Freigeben", "en": "Approve"},
    "redact_discard": {"de": "Verwerfen", "en": "Discard"},
    "redact_approved": {"de": "Freigegeben und im Protokoll vermerkt. Die Dateien stehen zum Herunterladen bereit.",
                        "en": "Approved and recorded in the audit trail. The files are ready to download."},
    "redact_gone": {"de": "Diese Schwärzung gibt es nicht mehr (abgelaufen, verworfen oder die Aufnahme wurde "
                          "gelöscht).",
                    "en": "This redaction is gone (expired, discarded, or its recording was deleted)."},
    "redact_wait": {"de": "Bitte warten, bis die Schwärzung fertig ist.", "en": "Please wait until it is done."},
    "redact_busy": {"de": "Es laufen bereits zwei Schwärzungen. Bitte später erneut versuchen.",
                    "en": "Two redactions are running already. Please try again later."},
    "redact_bad_number": {"de": "Ungültige Zahl im Feld {field}.", "en": "Invalid number in field {field}."},
    "redact_bad_box": {"de": "Bereich {n}: bitte alle sechs Felder ausfüllen (von ≤ bis, links < rechts, oben < "
                                "unten).",
                       "en": "Region {n}: fill in all six fields (from ≤ to, left < right, top < bottom)."},
    "redact_bad_range": {"de": "Tonabschnitt {n}: bitte von und bis ausfüllen (von ≤ bis).",
                         "en": "Audio range {n}: fill in from and to (from ≤ to)."},
    "refused_reason": {"de": "Bitte einen der angebotenen Gründe wählen.", "en": "Please choose one of the reasons."},
    "refused_case": {"de": "Bitte ein Aktenzeichen angeben (bis 200 Zeichen, ohne Steuer- oder Richtungszeichen).",
                     "en": "Please give a case reference (up to 200 characters, no control or direction characters)."},
    "refused_deleted": {"de": "Die Aufnahme ist gelöscht.", "en": "The recording was deleted."},
    "refused_why": {"de": "Bitte begründen, warum die Sicherung endet (bis 500 Zeichen).",
                    "en": "Please say why the hold ends (up to 500 characters)."},
    "refused_no_hold": {"de": "Für diesen Grund besteht keine Sicherung.", "en": "There is no hold for this reason."},
    "refused_held": {"de": "Die Aufnahme ist gesichert (Aktenzeichen {case}); erst alle Sicherungen aufheben.",
                     "en": "The recording is held (case {case}); release every hold first."},
    "refused_no_officer": {"de": "Die Aufnahme hat keine zugeordnete Einsatzkraft; sie wird nach Ablauf der Frist "
                                 "gelöscht.", "en": "The recording has no officer; it is deleted when its retention ends."},
    "refused_not_deciding": {"de": "Über die vorzeitige Löschung entscheiden nur die aufnehmende Einsatzkraft "
                                   "({officer}) und eine Leitung.",
                             "en": "Only its officer ({officer}) and a supervisor decide an early deletion."},
    "refused_no_footage": {"de": "Von dieser Aufnahme ist kein Bildmaterial mehr vorhanden oder lesbar.",
                           "en": "None of this recording's footage is there or readable."},
    "refused_identity": {"de": "Segment {seq} lässt sich mit dem Schlüssel der Beweismittelstelle nicht "
                               "entschlüsseln; bitte die IT verständigen.",
                         "en": "Segment {seq} cannot be decrypted with the office's identity; please call IT."},
    "store_unavailable": {"de": "Der Speicher ist gerade nicht erreichbar; bitte später erneut versuchen. ({error})",
                          "en": "The store cannot be reached right now; please try again later. ({error})"},
    "too_large": {"de": "Die Anfrage ist zu groß.", "en": "The request is too large."},
    "server_error": {"de": "Ein interner Fehler ist aufgetreten; er ist protokolliert. Bitte erneut versuchen "
                           "oder die IT verständigen.",
                     "en": "An internal error occurred and was logged. Please try again or call IT."},
    "demo_store": {"de": "Demo-Speicher: Zeitangaben dürfen hier vorgreifen. Keine echten Beweismittel.",
                   "en": "Demo store: time may be moved ahead here. No real evidence."},
    "key": {"de": "Schlüssel", "en": "key"},
    "unverified": {"de": "Signatur nicht geprüft", "en": "signature not verified"},
    "entries": {"de": "{n} Einträge", "en": "{n} entries"},
    "count_items": {"de": "{n} Einträge", "en": "{n} items"},
    "detail_retention_days": {"de": "Speicherfrist (Tage)", "en": "retention (days)"},
    "detail_supervisors": {"de": "Leitungen", "en": "supervisors"},
    "detail_demo": {"de": "Demo", "en": "demo"},
    "detail_approved_by": {"de": "vorgeschlagen von", "en": "proposed by"},
    "detail_dock": {"de": "Dockingstation", "en": "dock"},
    "detail_segments": {"de": "Segmente", "en": "segments"},
    "detail_stored_now": {"de": "neu gespeichert", "en": "stored now"},
    "detail_recordings": {"de": "Aufnahmen", "en": "recordings"},
    "detail_bytes": {"de": "Bytes", "en": "bytes"},
    "detail_what": {"de": "was", "en": "what"},
    "detail_reason": {"de": "Grund", "en": "reason"},
    "detail_case": {"de": "Aktenzeichen", "en": "case"},
    "detail_why": {"de": "Begründung", "en": "why"},
    "detail_requested_by": {"de": "beantragt von", "en": "requested by"},
    "detail_role": {"de": "Rolle", "en": "role"},
    "detail_approvals": {"de": "Zustimmungen", "en": "approvals"},
    "detail_expired_utc": {"de": "Frist abgelaufen (UTC)", "en": "expired (UTC)"},
    "detail_now_utc": {"de": "Zeitpunkt (UTC)", "en": "at (UTC)"},
    "detail_file": {"de": "Datei", "en": "file"},
    "detail_sha256": {"de": "SHA-256", "en": "SHA-256"},
    "detail_id": {"de": "Benutzer", "en": "user"},
    "index_unavailable": {"de": "Der Index ist noch nicht bereit: {error}", "en": "The index is not ready: {error}"},
    "banner_rebuilding": {"de": "Der Index wird aus dem Speicher neu aufgebaut ({phase}: {done} von {total}). "
                                "Bis dahin zeigen die Seiten den bisherigen Stand.",
                          "en": "The index is being rebuilt from the store ({phase}: {done} of {total}). "
                                "Until then pages show the previous state."},
    "banner_stale": {"de": "Der Speicher ist nicht erreichbar ({error}); Stand der Anzeige: {since}.",
                     "en": "The store cannot be reached ({error}); shown as of {since}."},
    "banner_busy": {"de": "Der Index wird gerade von einem anderen Vorgang (reindex) neu aufgebaut; bis dahin "
                          "zeigen die Seiten den bisherigen Stand.",
                    "en": "Another process (reindex) is rebuilding the index; until then pages show the previous "
                          "state."},
    "phase_trail": {"de": "Protokoll", "en": "audit trail"},
    "phase_devices": {"de": "Kameras", "en": "cameras"},
    "audit_through": {"de": "Protokoll bis Eintrag {n} fortlaufend geprüft.",
                      "en": "Audit trail verified as followed, up to record {n}."},
    "newer": {"de": "‹ Neuere", "en": "‹ Newer"},
    "older": {"de": "Ältere ›", "en": "Older ›"},
}


# The console as a product (issue 24): confirmations, results in words, the inbox, four eyes
# on redaction, the player's errors, the look.
TEXT.update({
    "skip": {"de": "Zum Inhalt springen", "en": "Skip to content"},
    "nav_main": {"de": "Hauptnavigation", "en": "Main navigation"},
    "nav_lang": {"de": "Sprache", "en": "Language"},
    "office_name": {"de": "Beweismittelstelle", "en": "Evidence office"},
    "signed_in_as": {"de": "Angemeldet als", "en": "Signed in as"},
    "logged_out": {"de": "Sie sind abgemeldet.", "en": "You are logged out."},
    "inbox": {"de": "Eingang", "en": "Inbox"},
    "inbox_title": {"de": "Zur Entscheidung", "en": "Waiting for your decision"},
    "inbox_intro": {"de": "Älteste zuerst. Genehmigen fragt bei allem, was sich nicht rückgängig machen lässt, noch "
                            "einmal nach; Ablehnen braucht eine Begründung und wird protokolliert.",
                    "en": "Oldest first. Approving asks once more wherever it cannot be undone; declining needs a "
                          "reason and is recorded."},
    "inbox_empty": {"de": "Nichts wartet auf Ihre Entscheidung.", "en": "Nothing waits for your decision."},
    "inbox_count_one": {"de": "1 Vorgang wartet", "en": "1 item waiting"},
    "inbox_count": {"de": "{n} Vorgänge warten", "en": "{n} items waiting"},
    "kind_release": {"de": "Aufhebung einer Sicherung", "en": "Lifting a hold"},
    "kind_delete": {"de": "Vorzeitige Löschung", "en": "Early deletion"},
    "kind_retention": {"de": "Kürzere Speicherfrist", "en": "Shorter retention"},
    "kind_redaction": {"de": "Geschwärzte Kopie freigeben", "en": "Approve a redacted copy"},
    "since": {"de": "Seit", "en": "Since"},
    "asked_by": {"de": "Beantragt von", "en": "Asked by"},
    "subject": {"de": "Gegenstand", "en": "Subject"},
    "decision": {"de": "Entscheidung", "en": "Decision"},
    "why_label": {"de": "Begründung", "en": "Reason"},
    "approve": {"de": "Genehmigen", "en": "Approve"},
    "decline": {"de": "Ablehnen", "en": "Decline"},
    "review": {"de": "Prüfen", "en": "Review"},
    "retention_item": {"de": "Speicherfrist von {old} auf {new} Tage verkürzen", "en": "Shorten the retention from "
                                                                                  "{old} to {new} days"},
    "release_item": {"de": "{reason}, Aktenzeichen {case}", "en": "{reason}, case {case}"},
    "consent_item": {"de": "Die Einsatzkraft hat zugestimmt.", "en": "The officer consented."},
    "decline_why": {"de": "Bitte begründen, warum abgelehnt wird.", "en": "Please give a reason for declining."},
    "declined_release": {"de": "Abgelehnt: Die Sicherung der Aufnahme {rec} bleibt bestehen.",
                         "en": "Declined: the hold of recording {rec} stays."},
    "declined_delete": {"de": "Abgelehnt: Die Aufnahme {rec} wird nicht vorzeitig gelöscht.",
                        "en": "Declined: recording {rec} is not deleted early."},
    "declined_retention": {"de": "Abgelehnt: Die Speicherfrist bleibt unverändert.",
                           "en": "Declined: the retention stays as it is."},
    "confirm_cancel": {"de": "Abbrechen", "en": "Cancel"},
    "confirm_irreversible": {"de": "Das lässt sich nicht rückgängig machen.", "en": "This cannot be undone."},
    "confirm_delete_title": {"de": "Vorzeitig löschen?", "en": "Delete early?"},
    "confirm_delete": {"de": "Die Aufnahme {rec} wird endgültig gelöscht: Bild, Ton und alle Kopien im Speicher. "
                             "Im Protokoll bleibt nur der Vermerk.",
                       "en": "Recording {rec} is deleted for good: picture, sound and every copy in the store. "
                             "Only the record in the audit trail remains."},
    "confirm_delete_button": {"de": "Endgültig löschen", "en": "Delete for good"},
    "confirm_consent_officer": {"de": "Sie stimmen der vorzeitigen Löschung Ihrer Aufnahme {rec} zu. Gelöscht wird "
                                      "sie, sobald auch eine Leitung zustimmt; dann endgültig.",
                                "en": "You consent to deleting your recording {rec} early. It is deleted for good "
                                      "once a supervisor consents too."},
    "confirm_consent_supervisor": {"de": "Sie stimmen der vorzeitigen Löschung der Aufnahme {rec} zu. Gelöscht "
                                         "wird sie, sobald auch die aufnehmende Einsatzkraft zustimmt; dann endgültig.",
                                   "en": "You consent to deleting recording {rec} early. It is deleted for good once "
                                         "its officer consents too."},
    "confirm_consent_button": {"de": "Zustimmen", "en": "Consent"},
    "confirm_delete_button_inbox": {"de": "Endgültig löschen", "en": "Delete for good"},
    "confirm_release_title": {"de": "Sicherung aufheben?", "en": "Lift the hold?"},
    "confirm_release": {"de": "Die Sicherung der Aufnahme {rec} ({reason}, Aktenzeichen {case}) wird aufgehoben.",
                        "en": "The hold of recording {rec} ({reason}, case {case}) is lifted."},
    "confirm_release_here": {"de": "Die Sicherung „{reason}“ (Aktenzeichen {case}) wird aufgehoben. {then}",
                             "en": "The hold “{reason}” (case {case}) is lifted. {then}"},
    "confirm_release_request": {"de": "Sie beantragen, die Sicherung „{reason}“ (Aktenzeichen {case}) aufzuheben. "
                                      "Aufgehoben wird sie erst, wenn eine Leitung zustimmt. {then}",
                                "en": "You ask to lift the hold “{reason}” (case {case}). It is lifted only once a "
                                      "supervisor approves. {then}"},
    "release_then_held": {"de": "Andere Sicherungen der Aufnahme bleiben bestehen.",
                          "en": "The recording's other holds stay."},
    "release_then_due": {"de": "Danach wird die Aufnahme nach Ablauf der Speicherfrist gelöscht (am {when}).",
                         "en": "Then the recording is deleted when its retention ends ({when})."},
    "confirm_release_button": {"de": "Sicherung aufheben", "en": "Lift the hold"},
    "confirm_retention_title": {"de": "Speicherfrist verkürzen?", "en": "Shorten the retention?"},
    "confirm_retention": {"de": "Die Speicherfrist wird von {old} auf {new} Tage verkürzt. Aufnahmen, die älter "
                                "sind und nicht gesichert, werden beim nächsten Löschlauf gelöscht.",
                          "en": "The retention is shortened from {old} to {new} days. Older recordings that are "
                                "not held are deleted at the next purge."},
    "confirm_retention_button": {"de": "Frist verkürzen", "en": "Shorten the retention"},
    "held_done": {"de": "Die Aufnahme ist gesichert: {reason}, Aktenzeichen {case}.",
                  "en": "The recording is held: {reason}, case {case}."},
    "held_already": {"de": "Die Aufnahme war unter diesem Grund und Aktenzeichen schon gesichert ({case}).",
                     "en": "The recording was already held for this reason and case ({case})."},
    "held_many": {"de": "{n} Aufnahmen gesichert: {reason}, Aktenzeichen {case}.",
                  "en": "{n} recordings held: {reason}, case {case}."},
    "held_one": {"de": "1 Aufnahme gesichert: {reason}, Aktenzeichen {case}.",
                 "en": "1 recording held: {reason}, case {case}."},
    "released_done": {"de": "Die Sicherung „{reason}“ der Aufnahme {rec} ist aufgehoben.",
                      "en": "The hold “{reason}” of recording {rec} is lifted."},
    "deleted_done": {"de": "Die Aufnahme {rec} ist endgültig gelöscht.", "en": "Recording {rec} is deleted for good."},
    "retention_done": {"de": "Die Speicherfrist beträgt jetzt {days} Tage.", "en": "The retention is now {days} days."},
    "refused_redact_own": {"de": "Ihre eigene Schwärzung können Sie nicht freigeben: Das tut eine zweite Person "
                                 "(Vier-Augen-Prinzip).",
                           "en": "You cannot approve your own redaction: a second person does (four eyes)."},
    "refused_redact_approver": {"de": "Diese Schwärzung gibt eine Leitung frei.",
                                "en": "A supervisor approves this redaction."},
    "refused_nothing_waiting": {"de": "Darüber ist nichts mehr zu entscheiden (schon erledigt).",
                                "en": "Nothing is left to decide there (already done)."},
    "refused_not_supervisor": {"de": "Das entscheidet eine Leitung.", "en": "A supervisor decides this."},
    "redact_confirm_title": {"de": "Geschwärzte Kopie freigeben?", "en": "Approve the redacted copy?"},
    "redact_confirm": {"de": "Sie geben die geschwärzte Kopie der Aufnahme {when} zur Herausgabe frei. Der Bericht "
                             "wird mit Ihrem Namen und dem von {author} signiert; {author} kann die Dateien danach "
                             "herunterladen.",
                       "en": "You approve the redacted copy of recording {when} for disclosure. The report is signed "
                             "naming you and {author}; {author} can then download the files."},
    "redact_approved_by": {"de": "Freigegeben und im Protokoll vermerkt. {author} kann die Dateien jetzt "
                                 "herunterladen.",
                           "en": "Approved and recorded. {author} can download the files now."},
    "redact_waiting": {"de": "Fertig zur Prüfung. Freigeben muss eine zweite Person ({who}); die Schwärzung steht "
                             "in deren Eingang.",
                       "en": "Ready for review. A second person ({who}) approves it; it is in their inbox."},
    "redact_who_supervisor": {"de": "eine Leitung", "en": "a supervisor"},
    "redact_who_second": {"de": "eine Leitung oder eine andere Sachbearbeitung", "en": "a supervisor or another clerk"},
    "redact_returned": {"de": "Zurückgewiesen von {by}: „{why}“. Bitte verwerfen und neu erstellen.",
                        "en": "Sent back by {by}: “{why}”. Please discard it and make a new one."},
    "redact_returned_done": {"de": "Zurückgewiesen; {author} sieht Ihre Begründung.",
                             "en": "Sent back; {author} sees your reason."},
    "redact_return": {"de": "Zurückweisen", "en": "Send back"},
    "redact_discarded": {"de": "Die Schwärzung ist verworfen; ihre Dateien sind gelöscht.",
                         "en": "The redaction is discarded and its files deleted."},
    "redact_made_by": {"de": "Erstellt von {by} am {when}.", "en": "Made by {by} on {when}."},
    "redact_draft_until": {"de": "Der Entwurf bleibt bis {when} erhalten.", "en": "The draft is kept until {when}."},
    "redact_lost": {"de": "Bereich {n}: Das Objekt ging bei {at} verloren; ab dort steht der Bereich still. Bitte "
                          "prüfen und bei Bedarf einen weiteren Bereich einzeichnen.",
                    "en": "Area {n}: its object was lost at {at}; from there the area stays put. Please check and "
                          "draw another area if needed."},
    "redact_draw_help": {"de": "Bereiche mit der Maus ins Bild zeichnen: Zeitpunkt wählen, dann ziehen. Ein "
                               "gezeichneter Bereich erscheint unten in der Liste und lässt sich dort anpassen "
                               "(Tastatur: die Felder direkt ausfüllen).",
                         "en": "Draw areas on the picture with the mouse: pick a time, then drag. A drawn area "
                               "appears in the list below and can be adjusted there (keyboard: fill in the fields)."},
    "redact_draw_kind": {"de": "Gezeichnet wird", "en": "Drawing"},
    "redact_draw_box": {"de": "ein abzudeckender Bereich", "en": "an area to mask"},
    "redact_draw_ignore": {"de": "eine Fehlerkennung", "en": "a false detection"},
    "redact_picture": {"de": "Bild der Aufnahme zum Einzeichnen", "en": "Picture of the recording to draw on"},
    "redact_time": {"de": "Zeitpunkt im Video", "en": "Time in the video"},
    "area": {"de": "Bereich {n}", "en": "Area {n}"},
    "x0": {"de": "links (px)", "en": "left (px)"}, "y0": {"de": "oben (px)", "en": "top (px)"},
    "x1": {"de": "rechts (px)", "en": "right (px)"}, "y1": {"de": "unten (px)", "en": "bottom (px)"},
    "export_title": {"de": "Export der Aufnahme {rec}", "en": "Export of recording {rec}"},
    "export_until": {"de": "Die Links gelten bis {when} ({minutes} Minuten), nur für Sie.",
                     "en": "The links work until {when} ({minutes} minutes), for you only."},
    "file": {"de": "Datei", "en": "File"},
    "size": {"de": "Größe", "en": "Size"},
    "zip_contents": {"de": "Enthält: {files}", "en": "Contains: {files}"},
    "player_label": {"de": "Video der Aufnahme", "en": "Video of the recording"},
    "player_error": {"de": "Die Wiedergabe ist bei {at} stehen geblieben ({what}).",
                     "en": "Playback stopped at {at} ({what})."},
    "player_reload": {"de": "Ab dieser Stelle neu laden", "en": "Reload from here"},
    "player_export": {"de": "Stattdessen als MP4 exportieren", "en": "Export as MP4 instead"},
    "marker_label": {"de": "Markierung {n} bei {at}", "en": "Marker {n} at {at}"},
    "markers_help": {"de": "Springt zur Markierung und spielt weiter.", "en": "Jumps to the marker and plays on."},
    "before_clock": {"de": "Kamerauhr noch nicht gestellt", "en": "camera clock not yet set"},
    "picture_time": {"de": "Uhrzeit im Bild", "en": "Time in the picture"},
    "picture_time_text": {"de": "Die Kamera blendet ihre eigene Uhrzeit in UTC ins Bild ein; diese Seite zeigt "
                                "deutsche Ortszeit. Die Kamerauhr wurde am {when} an der Dockingstation {dock} "
                                "gestellt und ging bis dahin um {offset} {direction}.",
                          "en": "The camera burns its own clock into the picture, in UTC; this page shows German "
                                "local time. The camera clock was set on {when} at dock {dock}; until then it was "
                                "{offset} {direction}."},
    "clock_ahead": {"de": "vor", "en": "fast"}, "clock_behind": {"de": "nach", "en": "slow"},
    "picture_time_ok": {"de": "Die Kamera blendet ihre Uhrzeit in UTC ins Bild ein; diese Seite zeigt deutsche "
                              "Ortszeit. Die Kamerauhr ging beim Stellen weniger als eine Sekunde falsch.",
                        "en": "The camera burns its clock into the picture in UTC; this page shows German local "
                              "time. The camera clock was less than a second off when it was set."},
    "bad_range": {"de": "Das Datum „von“ liegt nach „bis“. Bitte den Zeitraum umdrehen.",
                  "en": "'From' is after 'to'. Please swap the dates."},
    "no_officer_match": {"de": "Keine Einsatzkraft passt zu „{q}“.", "en": "No officer matches “{q}”."},
    "officer_hint": {"de": "Name, Nummer oder Kennung", "en": "Name, number or id"},
    "select_recording": {"de": "Aufnahme {rec} auswählen", "en": "Select recording {rec}"},
    "recording_of": {"de": "Aufnahme vom {when}", "en": "Recording of {when}"},
    "facts_title": {"de": "Angaben zur Aufnahme", "en": "About the recording"},
    "integrity": {"de": "Echtheit", "en": "Integrity"},
    "events_title": {"de": "Ereignisse der Kamera", "en": "Camera events"},
    "segments_title": {"de": "Abschnitte (Segmente) und Übernahme", "en": "Segments and custody"},
    "segment": {"de": "Abschnitt", "en": "Segment"},
    "fingerprint": {"de": "Prüfsumme", "en": "Checksum"},
    "actions": {"de": "Aktionen", "en": "Actions"},
    "trail_title": {"de": "Protokoll dieser Aufnahme", "en": "Audit trail of this recording"},
    "entry": {"de": "Eintrag", "en": "Entry"},
    "what_happened": {"de": "Was geschah", "en": "What happened"},
    "event": {"de": "Ereignis", "en": "Event"},
    "print": {"de": "Drucken", "en": "Print"},
    "camera_key": {"de": "Gerätekennung", "en": "Device key"},
    "approvals_none": {"de": "Noch keine Zustimmung zur vorzeitigen Löschung.", "en": "No consent to early deletion yet."},
    "approvals_by": {"de": "Zugestimmt haben: {who}.", "en": "Consented: {who}."},
    "consented_already": {"de": "Sie haben der vorzeitigen Löschung zugestimmt; es fehlt noch die Zustimmung einer "
                                "Leitung.", "en": "You consented to the early deletion; a supervisor's is missing."},
    "request_pending": {"de": "Aufhebung beantragt von {by}: „{why}“ – wartet auf eine Leitung.",
                        "en": "Release requested by {by}: “{why}” – waiting for a supervisor."},
    "role_label": {"de": "Rolle", "en": "Role"},
    "play_now": {"de": "Abspielen", "en": "Play"},
    "err_network": {"de": "ein Teil des Videos kam nicht an", "en": "part of the video did not arrive"},
    "err_media": {"de": "das Video ließ sich nicht weiter abspielen", "en": "the video could not be played on"},
})
TEXT["delete_waiting_supervisor"] = {"de": "Ihre Zustimmung ist erfasst. Gelöscht wird die Aufnahme {rec}, sobald "
                                           "auch eine Leitung zustimmt.",
                                     "en": "Your consent is recorded. Recording {rec} is deleted once a supervisor "
                                           "consents too."}
TEXT["delete_waiting_officer"] = {"de": "Ihre Zustimmung ist erfasst. Gelöscht wird die Aufnahme {rec}, sobald auch "
                                        "die aufnehmende Einsatzkraft zustimmt.",
                                  "en": "Your consent is recorded. Recording {rec} is deleted once its officer "
                                        "consents too."}
TEXT["release_waiting_supervisor"] = {"de": "Die Aufhebung ist beantragt; sie wartet auf die Zustimmung einer "
                                            "Leitung.",
                                      "en": "The release is requested; it waits for a supervisor's approval."}
TEXT["facts"] = TEXT["facts_title"]
TEXT["export"] = {"de": "Als MP4 mit Bericht exportieren", "en": "Export as MP4 with report"}


ROLES = {"clerk": {"de": "Sachbearbeitung", "en": "clerk"}, "supervisor": {"de": "Leitung", "en": "supervisor"},
         "officer": {"de": "Einsatzkraft", "en": "officer"}, "dpo": {"de": "Datenschutz", "en": "data-protection officer"}}
ACTIONS = {
    "init": {"de": "Einrichtung und Regeln", "en": "set-up and policy"},
    "ingest": {"de": "Übernahme durch die Dockingstation", "en": "ingest by the dock"},
    "view": {"de": "Ansicht", "en": "view"}, "export": {"de": "Export", "en": "export"},
    "hold": {"de": "Sicherung", "en": "hold"}, "release": {"de": "Aufhebung der Sicherung", "en": "release"},
    "approve-delete": {"de": "Zustimmung zur Löschung", "en": "deletion approval"},
    "delete": {"de": "Löschung (vorzeitig)", "en": "early deletion"},
    "purge": {"de": "Löschung nach Frist", "en": "deletion after retention"},
    "user": {"de": "Benutzerverwaltung", "en": "user change"},
    "approve-retention": {"de": "Vorschlag kürzere Speicherfrist", "en": "shorter retention proposed"},
    "approve-release": {"de": "Antrag auf Aufhebung", "en": "release requested"},
    "revoke": {"de": "Kamera gesperrt (verloren/gestohlen)", "en": "camera revoked (lost/stolen)"},
    "recipients": {"de": "Schlüsselwechsel der Beweismittelstelle", "en": "office key rotated"},
    "revoke-dock": {"de": "Dockingstation gesperrt", "en": "dock revoked"},
    "redact": {"de": "Geschwärzte Kopie freigegeben", "en": "redacted copy approved"},
}
STATES = {"READY": {"de": "bereit", "en": "ready"}, "STANDBY": {"de": "Bereitschaft", "en": "standby"},
          "ANNOUNCING": {"de": "Ankündigung", "en": "announcing"}, "RECORDING": {"de": "Aufnahme", "en": "recording"},
          "DOCKED": {"de": "angedockt", "en": "docked"}, "ERROR": {"de": "Fehler", "en": "error"},
          "BOOTING": {"de": "Start", "en": "booting"}, "SHUTDOWN": {"de": "ausgeschaltet", "en": "shut down"}}
EVENTS = {
    "announcement": {"de": "Ankündigung: „{text}“", "en": "announcement: “{text}”"},
    "state": {"de": "Zustand: {state}", "en": "state: {state}"},
    "gesture_press": {"de": "Taste kurz gedrückt", "en": "button pressed"},
    "gesture_double": {"de": "Taste doppelt gedrückt (Gefahr im Verzug)", "en": "double press (imminent danger)"},
    "gesture_hold": {"de": "Taste gehalten", "en": "button held"},
    "marker": {"de": "Markierung Nr. {n}", "en": "marker no. {n}"},
    "recording_stop": {"de": "Aufnahme beendet ({reason})", "en": "recording stopped ({reason})"},
    "clock_set": {"de": "Uhr gestellt (Abweichung {offset_ms} ms, {dock_id})",
                  "en": "clock set (offset {offset_ms} ms, {dock_id})"},
    "officer_assigned": {"de": "Einsatzkraft zugewiesen: {officer_id}", "en": "officer assigned: {officer_id}"},
    "warning": {"de": "Warnung: {warning}", "en": "warning: {warning}"},
    "recipients_set": {"de": "Neuer Schlüssel der Beweismittelstelle übernommen ({dock_id})",
                       "en": "new office key taken ({dock_id})"},
    "docks_revoked": {"de": "Sperrliste der Dockingstationen übernommen ({dock_id})",
                      "en": "dock revocation list taken ({dock_id})"},
}
STOP_REASONS = {"button_hold": {"de": "Halten 3 s", "en": "held 3 s"},
                "storage_full": {"de": "Speicher voll", "en": "storage full"},
                "storage_error": {"de": "Speicherfehler", "en": "storage error"},
                "shutdown": {"de": "Ausschalten", "en": "shutdown"},
                "shutdown_sigterm": {"de": "Herunterfahren", "en": "shut down"},
                "shutdown_sigint": {"de": "Herunterfahren", "en": "shut down"},
                "docked": {"de": "angedockt", "en": "docked"},
                "battery_critical": {"de": "Akku leer", "en": "battery empty"},
                "external": {"de": "von außen beendet", "en": "stopped from outside"}}


def _pick(table: dict[str, dict[str, str]], key: str, lang: str) -> str:
    entry = table.get(key)
    return entry.get(lang, entry["de"]) if entry else key


def role_text(role: str | None, lang: str) -> str:
    return _pick(ROLES, role or "", lang)


def action_text(action: str, lang: str) -> str:
    return _pick(ACTIONS, action, lang)


def event_text(kind: str, data: dict[str, object], lang: str) -> str:
    """An event of the camera's log as a sentence (unknown kinds by their name)."""
    template = EVENTS.get(kind)
    if template is None:
        return kind
    values = {k: v for k, v in data.items()}
    values.setdefault("text", "")
    values["state"] = _pick(STATES, str(data.get("state", "")), lang)  # the state entered
    values["reason"] = _pick(STOP_REASONS, str(data.get("reason", "")), lang)
    offset = data.get("offset_us")
    ms = f"{offset / 1000:.1f}" if isinstance(offset, (int, float)) else "?"
    values["offset_ms"] = ms.replace(".", ",") if lang == "de" else ms
    for k in ("n", "dock_id", "officer_id", "warning"):
        values.setdefault(k, "?")
    return template.get(lang, template["de"]).format(**values)


def days_text(n: int, lang: str) -> str:
    """"Löschung in 1 Tag" / "in 3 Tagen": the plural German needs."""
    return text("deleted_in_one" if n == 1 else "deleted_in", lang, n=n)


def text(key: str, lang: str, **kw: object) -> str:
    entry = TEXT.get(key)
    if entry is None:
        return key
    return entry.get(lang, entry["de"]).format(**kw)
