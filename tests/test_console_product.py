"""The clerk's console as a product, on the demo's own store (``bodycam-sim demo``), in
Debian's chromium driven by Playwright: every recording played to its end, markers, the
supervisor's inbox, confirmations, drawing a box, four eyes on redaction, axe-core on
every page for every role, and the clerk's path by keyboard alone.

Screenshots go to the module's temporary directory (``screens/``)."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

import pytest

from common import keys
from evidence.cli import main as evidence_main
from evidence.console import create_app
from evidence.store import FsEvidenceStore
from tests.test_console import chromium_path, login, wait_js

USERS = {"sichtung": "clerk", "pruefung": "clerk", "leitung": "supervisor", "dsb": "dpo", "KOD-101": "officer",
         "KOD-102": "officer", "KOD-103": "officer"}


def password(uid: str) -> str:
    return f"demo-passwort-{uid}"


@dataclass
class Demo:
    url: str
    root: Path
    store: FsEvidenceStore
    recordings: list[dict]
    screens: Path

    def rec(self, officer: str, announced: bool = True) -> dict:
        return next(r for r in self.recordings if r["officer"] == officer and r["announced"] == announced)


def add_users(base: list[str], users: dict[str, str]) -> None:
    for uid, role in users.items():
        old, sys.stdin = sys.stdin, io.StringIO(password(uid) + "\n")
        try:
            assert evidence_main([*base, "users", "add", "--id", uid, "--role", role, "--by", "admin"]) == 0
        finally:
            sys.stdin = old


def serve(app):
    from werkzeug.serving import make_server
    server = make_server("127.0.0.1", 0, app, threaded=True)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    return server, t


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo")
    done = subprocess.run([sys.executable, "-m", "simulator.cli", "demo", "--workdir", str(root / "w"), "--json"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads(done.stdout)
    w = root / "w"
    base = ["--store", str(w / "evidence"), "--key", str(w / "keys" / "office.key")]
    add_users(base, USERS)
    store = FsEvidenceStore(w / "evidence")
    app = create_app(store, keys.load_signing_key(w / "keys" / "office.key"),
                     keys.load_identity(w / "keys" / "authority.key"), cache_dir=root / "cache")
    server, t = serve(app)
    screens = Path(os.environ.get("BODYCAM_SCREENS", root / "screens"))   # kept where asked
    screens.mkdir(parents=True, exist_ok=True)
    yield Demo(f"http://127.0.0.1:{server.server_port}", w, store, summary["recordings"], screens)
    app.extensions["bodycam"].stop.set()
    server.shutdown()
    t.join(10)
    server.server_close()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium_path(), args=["--no-sandbox", "--autoplay-policy=no-user-gesture-required"])
        yield b
        b.close()


def player_state(page) -> dict:
    return page.evaluate("""() => { const v = document.getElementById('player');
        const e = document.getElementById('player-error');
        return {t: v.currentTime, d: v.duration, ended: v.ended, paused: v.paused,
                error: e && !e.hidden ? e.innerText : null}; }""")


def play_to_end(page, rate: float, limit_s: float) -> dict:
    """Play from where the player stands until ``ended`` (or within 1 s of the end): the
    state at the end. Fails on a player error, or when the time stops moving for 8 s."""
    import time
    page.evaluate(f"() => {{ const v = document.getElementById('player'); v.muted = true; v.playbackRate = {rate}; }}")
    deadline = time.monotonic() + limit_s
    last, still_since = -1.0, time.monotonic()
    while True:
        s = player_state(page)
        assert s["error"] is None, s
        if s["ended"] or (s["d"] and s["d"] == s["d"] and s["t"] >= s["d"] - 1.0):
            return s
        if s["t"] != last:
            last, still_since = s["t"], time.monotonic()
        assert time.monotonic() - still_since < 8, f"playback stopped at {s['t']:.1f} s of {s['d']}: {s}"
        assert time.monotonic() < deadline, s
        page.wait_for_timeout(200)


def test_every_demo_recording_plays_to_its_end_and_markers_play_on(demo, browser):
    """The blocker: playback froze for good where the sound begins (after a silent
    pre-record). Every recording of the demo plays to its last frame at 1× (the first)
    and 4× (all), and a seek to every marker plays on from there."""
    page = browser.new_page()
    login(page, demo.url, "sichtung", password("sichtung"))
    for i, r in enumerate(demo.recordings):
        page.goto(f"{demo.url}/recordings/{r['id']}")
        page.evaluate("() => { document.getElementById('player').muted = true; }")
        page.click("#play")
        wait_js(page, "document.getElementById('player').currentTime > 0.2")
        assert not page.locator("#play").is_visible()          # the overlay leaves the picture free
        end = play_to_end(page, 1.0 if i == 0 else 4.0, r["duration_s"] / (1.0 if i == 0 else 4.0) + 30)
        assert abs(end["d"] - r["duration_s"]) < 1.5, (end, r)
        for m in range(page.locator("button.marker").count()):
            marker = page.locator("button.marker").nth(m)
            offset = float(marker.get_attribute("data-offset"))
            marker.click()
            wait_js(page, f"Math.abs(document.getElementById('player').currentTime - {offset}) < 1.0")
            wait_js(page, f"document.getElementById('player').currentTime > {offset} + 1.0", timeout=15)
            play_to_end(page, 4.0, r["duration_s"] / 4 + 30)
        if i == 0:
            page.screenshot(path=demo.screens / "recording-played.png", full_page=True)
    page.close()


def test_a_player_error_is_said_in_german_with_a_way_out(demo, browser):
    """A segment that cannot be fetched (here: the server answers 500 for it) stops the
    player with a German message and a reload link at that time — never a silent freeze."""
    page = browser.new_page()
    login(page, demo.url, "sichtung", password("sichtung"))
    r = demo.rec("KOD-101")
    page.route("**/hls/3.ts", lambda route: route.fulfill(status=500, body="nein"))
    page.goto(f"{demo.url}/recordings/{r['id']}")
    page.evaluate("() => { const v = document.getElementById('player'); v.muted = true; v.playbackRate = 4; }")
    page.click("#play")
    wait_js(page, "!document.getElementById('player-error').hidden", timeout=60)
    said = page.inner_text("#player-error")
    assert "Die Wiedergabe ist bei" in said and "stehen geblieben" in said and "neu laden" in said
    href = page.get_attribute("#player-reload", "href")
    assert "?t=" in href and page.locator("#player-error button[form=export-form]").count() == 1
    page.screenshot(path=demo.screens / "player-error.png", full_page=True)
    page.unroute("**/hls/3.ts")
    page.goto(demo.url + href)                                   # the way out: on from where it stopped
    at = float(href.split("?t=")[1])
    wait_js(page, f"Math.abs(document.getElementById('player').currentTime - {at}) < 1.5", timeout=30)
    page.close()


# ---------------------------------------------------------------- accessibility (BITV 2.0)

AXE_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]


def axe_source() -> str:
    root = Path(__file__).resolve().parents[1]
    path = root / ".venv" / "axe" / "node_modules" / "axe-core" / "axe.min.js"
    if not path.is_file():
        pytest.fail("axe-core is not installed; run ./dev.sh setup (npm install axe-core into .venv/axe)")
    return path.read_text()


def axe(page, source: str) -> list[dict]:
    """axe-core's violations of WCAG 2.1 A and AA on the page as it stands (injected through
    the DevTools protocol: the console's CSP stays on)."""
    if not page.evaluate("() => typeof window.axe === 'object'"):
        page.evaluate(source)
    result = page.evaluate("async (tags) => { const r = await axe.run(document, {runOnly: {type: 'tag', values: tags},"
                           " resultTypes: ['violations']}); return r.violations.map(v => ({id: v.id, impact: v.impact,"
                           " help: v.help, nodes: v.nodes.map(n => n.target.join(' ')).slice(0, 5)})); }", AXE_TAGS)
    return result


def test_every_page_for_every_role_passes_axe_core_at_wcag_21_aa(demo, browser):
    """axe-core 4.14 (npm) at WCAG 2.1 A + AA on every page each role reaches: 0 violations.
    The pages are visited as a user does (logged in, with data, a redaction draft, a
    confirmation, an export, an error page), in German and in English."""
    source = axe_source()
    rec = demo.rec("KOD-101")
    short = min(demo.recordings, key=lambda r: r["duration_s"])
    pages: dict[str, list] = {}

    def check(page, name: str) -> None:
        page.wait_for_load_state("load")
        pages[name] = axe(page, source)

    page = browser.new_page()
    page.goto(f"{demo.url}/login")
    check(page, "login")
    page.goto(f"{demo.url}/login?lang=en")
    check(page, "login (en)")
    page.goto(f"{demo.url}/login?lang=de")
    # the clerk
    login(page, demo.url, "sichtung", password("sichtung"))
    for name, path in (("clerk: recordings", "/recordings"), ("clerk: recordings filtered", "/recordings?officer=103"),
                       ("clerk: recordings, reversed dates", "/recordings?from=2026-12-06&to=2026-12-01"),
                       ("clerk: recording", f"/recordings/{rec['id']}"), ("clerk: inbox", "/inbox"),
                       ("clerk: case", "/cases?az=nichts"), ("clerk: redact form", f"/recordings/{short['id']}/redact"),
                       ("clerk: not found", "/recordings/nope"), ("clerk: recording (en)", f"/recordings/{rec['id']}?lang=en")):
        page.goto(demo.url + path)
        check(page, name)
    page.goto(f"{demo.url}/recordings?lang=de")
    page.goto(f"{demo.url}/recordings/{short['id']}")
    with page.expect_navigation():
        page.click("#export")
    check(page, "clerk: export")
    page.goto(f"{demo.url}/recordings/{short['id']}/redact")
    page.click("#redact-start")
    page.wait_for_selector("#redact-stats", timeout=120_000)
    check(page, "clerk: redaction draft")
    page.click("#logout")
    page.wait_for_load_state("load")
    check(page, "logged out")
    # the supervisor: the inbox with the redaction, its review, a confirmation
    login(page, demo.url, "leitung", password("leitung"))
    check(page, "supervisor: inbox")
    with page.expect_navigation():
        page.locator("#inbox li[data-kind=redaction] a.button").click()
    check(page, "supervisor: redaction review")
    with page.expect_navigation():
        page.click("#redact-approve")
    check(page, "supervisor: confirmation")
    page.goto(f"{demo.url}/recordings/{rec['id']}")
    check(page, "supervisor: recording")
    page.click("#logout")
    # the officer
    login(page, demo.url, "KOD-101", password("KOD-101"))
    check(page, "officer: recordings")
    page.goto(f"{demo.url}/recordings/{rec['id']}")
    check(page, "officer: recording")
    page.click("#logout")
    # the data-protection officer
    login(page, demo.url, "dsb", password("dsb"))
    check(page, "dpo: audit trail")
    page.goto(f"{demo.url}/logins")
    check(page, "dpo: logins")
    page.goto(f"{demo.url}/recordings")
    check(page, "dpo: forbidden")
    # the check can fail: a field without a label, as the console had them, is caught
    page.evaluate("() => document.querySelector('main').appendChild(document.createElement('input'))")
    assert "label" in {v["id"] for v in axe(page, source)}
    page.close()
    summary = {name: len(v) for name, v in pages.items()}
    (demo.screens / "axe-summary.json").write_text(json.dumps({"axe-core": "4.14.1", "tags": AXE_TAGS,
                                                               "pages": summary}, indent=2, ensure_ascii=False))
    print("axe-core 4.14.1, WCAG 2.1 A+AA:", json.dumps(summary, ensure_ascii=False))
    assert len(pages) >= 20 and {n: v for n, v in pages.items() if v} == {}


# ---------------------------------------------------------------- the clerk's path by keyboard alone

def tab_to(page, selector: str, limit: int = 120) -> None:
    """Press Tab (only Tab) until ``selector`` has the focus; its focus must be visible."""
    for _ in range(limit):
        if page.evaluate(f"() => document.activeElement && document.activeElement.matches({json.dumps(selector)})"):
            style = page.evaluate("() => { const s = getComputedStyle(document.activeElement);"
                                  " return [s.outlineStyle, s.outlineWidth]; }")
            assert style[0] != "none" and style[1] != "0px", (selector, style)      # a visible focus
            return
        page.keyboard.press("Tab")
    raise AssertionError(f"Tab never reached {selector}")


def test_the_clerks_whole_path_works_by_keyboard_alone(demo, browser):
    """Login, find a recording by the officer's number, open it, play it, hold it under an
    Aktenzeichen, export it and reach the download, log out: Tab, typing, Enter and Space,
    never the mouse. Every focused control shows its focus."""
    page = browser.new_page()
    page.goto(f"{demo.url}/login")
    tab_to(page, "#user")
    page.keyboard.type("sichtung")
    page.keyboard.press("Tab")
    page.keyboard.type(password("sichtung"))
    with page.expect_navigation():
        page.keyboard.press("Enter")
    tab_to(page, "#f-officer")
    page.keyboard.type("101")                          # the number alone finds KOD-101
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert page.locator("#recordings tr[data-recording]").count() == 1
    tab_to(page, "#recordings tbody tr td a")
    with page.expect_navigation():
        page.keyboard.press("Enter")
    page.evaluate("() => { document.getElementById('player').muted = true; }")
    tab_to(page, "#play")
    page.keyboard.press("Enter")
    wait_js(page, "document.getElementById('player').currentTime > 0.5")
    tab_to(page, "#hold-reason")
    page.keyboard.press("ArrowDown")                   # Straftat
    tab_to(page, "#hold-case")
    page.keyboard.type("AZ 77/26")
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert "Die Aufnahme ist gesichert: Straftat, Aktenzeichen AZ 77/26." in page.inner_text("#message")
    tab_to(page, "#export")
    with page.expect_navigation():
        page.keyboard.press("Space")
    tab_to(page, "#downloads a")
    assert page.evaluate("() => document.activeElement.textContent").endswith(".mp4")
    assert "Minuten" in page.inner_text("#export-until")
    page.screenshot(path=demo.screens / "keyboard-export.png", full_page=True)
    tab_to(page, "#logout")
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert "abgemeldet" in page.inner_text("#logged-out")
    page.close()


# ---------------------------------------------------------------- the supervisor's inbox

def test_the_supervisors_inbox_lists_what_waits_oldest_first_and_decides_with_one_click(demo, browser):
    """An officer consents to deleting a recording; a clerk asks to lift a criminal
    proceedings hold. The supervisor's start page lists both, oldest first, counted in the
    bar; declining the release needs a reason and is on record in words; approving the
    deletion asks once more, names the recording, then deletes it and says so."""
    page = browser.new_page()
    emergency = demo.rec("KOD-102", announced=False)
    held = demo.rec("KOD-101")                   # held under AZ 77/26 (Straftat) by the keyboard test
    login(page, demo.url, "KOD-102", password("KOD-102"))
    page.goto(f"{demo.url}/recordings/{emergency['id']}")
    with page.expect_navigation():
        page.click("#delete")
    with page.expect_navigation():
        page.click("#confirm-yes")
    page.click("#logout")
    login(page, demo.url, "sichtung", password("sichtung"))
    page.goto(f"{demo.url}/recordings/{held['id']}")
    page.fill(".release-form input[name=why]", "Verfahren eingestellt")
    with page.expect_navigation():
        page.click(".release-form button")
    assert "Aufgehoben wird sie erst, wenn eine Leitung zustimmt" in page.inner_text("#confirm-what")
    with page.expect_navigation():
        page.click("#confirm-yes")
    assert "wartet auf die Zustimmung einer Leitung" in page.inner_text("#message")
    assert "wartet auf eine Leitung" in page.inner_text(".release-form")       # the request shows, its button is gone
    assert page.locator(".release-form button").count() == 0
    page.click("#logout")
    login(page, demo.url, "leitung", password("leitung"))
    assert page.url.endswith("/inbox")
    items = page.locator("#inbox li.item")
    kinds = [items.nth(i).get_attribute("data-kind") for i in range(items.count())]
    # oldest first: the redaction drafted in the accessibility test, then the consent, then the request
    assert kinds == ["redaction", "delete", "release"], kinds
    assert page.inner_text("#inbox-count").strip("() \n") == "3"
    assert "Murat Yilmaz (KOD-102)" in page.inner_text("#inbox li[data-kind=delete]")
    assert "Straftat, Aktenzeichen AZ 77/26" in page.inner_text("#inbox li[data-kind=release]")
    page.screenshot(path=demo.screens / "inbox.png", full_page=True)
    # decline the release: without a reason it is refused and nothing changes …
    release = page.locator("#inbox li[data-kind=release]")
    release.locator("input[name=why]").fill("")
    with page.expect_navigation():
        release.locator("button[value=decline]").click()
    assert "Bitte begründen" in page.inner_text("#message") and page.locator("#inbox li[data-kind=release]").count()
    # … with one, on record
    release = page.locator("#inbox li[data-kind=release]")
    release.locator("input[name=why]").fill("Ermittlungen laufen noch")
    with page.expect_navigation():
        release.locator("button[value=decline]").click()
    assert "bleibt bestehen" in page.inner_text("#message") and page.locator("#inbox li[data-kind=release]").count() == 0
    # approve the deletion: once more, with what will happen
    with page.expect_navigation():
        page.locator("#inbox li[data-kind=delete] button[value=approve]").click()
    assert "wird endgültig gelöscht" in page.inner_text("#confirm-what") and "Murat Yilmaz" in page.inner_text("#confirm-what")
    page.screenshot(path=demo.screens / "confirm-delete.png", full_page=True)
    with page.expect_navigation():
        page.click("#confirm-yes")
    assert "ist endgültig gelöscht" in page.inner_text("#message")
    assert page.locator("#inbox li[data-kind=delete]").count() == 0 and page.inner_text("#inbox-count").strip("() \n") == "1"
    page.goto(f"{demo.url}/recordings/{held['id']}")
    assert "gesichert" in page.inner_text("#status")                          # the hold stays
    page.click("#logout")
    # the trail says it in words
    login(page, demo.url, "dsb", password("dsb"))
    page.goto(f"{demo.url}/audit?action=decline")
    text = page.inner_text("#audit")
    assert "Abgelehnt: die Aufhebung der Sicherung (Straftat), beantragt von sichtung: „Ermittlungen laufen noch“." in text
    page.close()


def test_a_shorter_retention_waits_for_a_supervisor_who_declines_or_approves_it(demo):
    """A clerk proposes to shorten the retention (init, as on the command line); the
    supervisor's inbox lists it; declined, it is gone (on record); proposed again and
    approved after the confirmation, the office's retention is the shorter one."""
    import re
    import time

    import requests

    from evidence.office import Office
    app_office = Office(demo.store, keys.load_signing_key(demo.root / "keys" / "office.key"),
                        lambda: time.time_ns() // 1000)
    assert app_office.init(10, ["KOD-SL-1"], "sichtung")["waiting_for"]
    s = requests.Session()
    token = re.search(r'name="csrf_token" value="([^"]+)"', s.get(f"{demo.url}/login").text).group(1)
    s.post(f"{demo.url}/login", data={"csrf_token": token, "user": "leitung", "password": password("leitung")})
    page = s.get(f"{demo.url}/inbox").text
    assert "Speicherfrist von 14 auf 10 Tage verkürzen" in page
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    form = {"csrf_token": token, "kind": "retention", "rid": "", "reason": ""}
    declined = s.post(f"{demo.url}/inbox/decide", data={**form, "decision": "decline", "why": "Nicht mit dem Rat abgestimmt"})
    assert "Die Speicherfrist bleibt unverändert" in declined.text and "verkürzen" not in declined.text
    assert app_office.init(10, ["KOD-SL-1"], "sichtung")["waiting_for"]              # proposed again
    asked = s.post(f"{demo.url}/inbox/decide", data={**form, "decision": "approve"})
    assert "von 14 auf 10 Tage verkürzt" in asked.text and 'name="confirm" value="1"' in asked.text
    assert app_office._policy().retention_days == 14                                  # not before the confirmation
    done = s.post(f"{demo.url}/inbox/decide", data={**form, "decision": "approve", "confirm": "1"})
    assert "Die Speicherfrist beträgt jetzt 10 Tage." in done.text
    assert app_office._policy().retention_days == 10
