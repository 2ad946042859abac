"""Sessions that end, and logins that cannot be guessed at: as an attacker would try.

The console runs on loopback (werkzeug's threaded server, so requests really run in
parallel); users are changed through the office's own commands, as `bodycam-evidence
users …` does, also while the console serves."""

from __future__ import annotations

import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from evidence.console import create_app
from evidence.index import Index
from tests.test_console import chromium_path, login
from tests.test_console_scale import PASSWORD, _world


@dataclass
class Served:
    url: str
    app: object
    office: object
    rids: list[str]
    clock: list[int]
    root: Path


@pytest.fixture
def served(tmp_path):
    store, writer, office, rids, _ = _world(tmp_path)
    for uid, role in (("anna", "clerk"), ("bert", "clerk"), ("dsb", "dpo")):
        office.set_user(uid, role, PASSWORD, by="admin")
    clock = [time.time_ns() // 1000]
    index = Index(store, tmp_path / "ci")
    index.refresh()
    app = create_app(store, office.key, writer.identity, index=index, now_us=lambda: clock[0], refresh_s=0.2)
    from werkzeug.serving import make_server
    server = make_server("127.0.0.1", 0, app, threaded=True)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    yield Served(f"http://127.0.0.1:{server.server_port}", app, office, rids, clock, tmp_path)
    app.extensions["bodycam"].stop.set()
    server.shutdown()
    t.join(10)
    server.server_close()


def _token(s: requests.Session, url: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', s.get(f"{url}/login").text).group(1)


def _login(served: Served, user: str, password: str = PASSWORD) -> requests.Session:
    s = requests.Session()
    r = s.post(f"{served.url}/login", data={"csrf_token": _token(s, served.url), "user": user, "password": password},
               allow_redirects=False)
    assert r.status_code == 302, r.text[:300]
    return s


def _in(s: requests.Session, served: Served) -> bool:
    return s.get(f"{served.url}/recordings", allow_redirects=False).status_code == 200


def _until(cond, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline
        time.sleep(0.1)


def test_the_cookie_holds_only_an_id_and_a_replay_after_logout_is_a_stranger(served):
    s = _login(served, "anna")
    cookie = s.cookies.get("sichtung")
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", cookie) and "anna" not in cookie and "clerk" not in cookie
    assert _in(s, served)
    replay = requests.Session()
    replay.cookies.set("sichtung", cookie)
    assert _in(replay, served)                                   # the same cookie, elsewhere: yes …
    page = s.get(f"{served.url}/recordings").text
    s.post(f"{served.url}/logout", data={"csrf_token": re.search(r'name="csrf_token" value="([^"]+)"',
                                                                 page).group(1)})
    assert not _in(replay, served)                               # … until the logout: then never again
    again = _login(served, "anna")
    assert again.cookies.get("sichtung") != cookie               # a new id at every login


@pytest.mark.parametrize("change", ["passwd", "role", "disable", "remove"])
def test_a_users_change_made_elsewhere_ends_all_their_sessions(served, change):
    """Made through the office's commands on the store (as a CLI on another machine would):
    the console learns it from the trail and ends every session of that user."""
    one, two, other = _login(served, "anna"), _login(served, "anna"), _login(served, "bert")
    office = served.office
    if change == "passwd":
        office.user_passwd("anna", "a-new-password-1", by="admin")
    elif change == "role":
        office.set_user("anna", "supervisor", PASSWORD, by="admin")
    else:
        office.user_state("anna", "disabled" if change == "disable" else "removed", by="admin")
    _until(lambda: not _in(one, served) and not _in(two, served))
    assert _in(other, served)                                    # bert goes on
    if change == "passwd":
        _login(served, "anna", "a-new-password-1")
    elif change in ("disable", "remove"):
        s = requests.Session()
        r = s.post(f"{served.url}/login", data={"csrf_token": _token(s, served.url), "user": "anna",
                                                "password": PASSWORD})
        assert r.status_code == 401


def test_sessions_end_when_idle_and_after_their_lifetime(served):
    s = _login(served, "anna")
    served.clock[0] += 29 * 60 * 1_000_000
    assert _in(s, served)                                        # 29 minutes idle: still in
    served.clock[0] += 31 * 60 * 1_000_000
    assert not _in(s, served)                                    # 31 more: gone
    s = _login(served, "anna")
    for _ in range(17):                                          # busy all day: ends after 8 h all the same
        served.clock[0] += 29 * 60 * 1_000_000
        assert _in(s, served) or served.clock[0]
    assert not _in(s, served)


def test_secure_cookie_behind_tls(tmp_path):
    store, writer, office, rids, _ = _world(tmp_path)
    office.set_user("anna", "clerk", PASSWORD, by="admin")
    index = Index(store, tmp_path / "ci")
    index.refresh()
    app = create_app(store, office.key, writer.identity, index=index, behind_tls=True, refresh_s=3600)
    client = app.test_client()
    token = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/login").text).group(1)
    r = client.post("/login", data={"csrf_token": token, "user": "anna", "password": PASSWORD})
    cookie = r.headers["Set-Cookie"]
    assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=Strict" in cookie
    app.extensions["bodycam"].stop.set()


def test_forty_parallel_guesses_check_at_most_five_passwords_and_never_lock_out_others(served, monkeypatch):
    c = served.app.extensions["bodycam"]
    checks = []
    real = c.users.check

    def counted(uid, pw):
        if uid == "anna":
            checks.append(pw)
            time.sleep(0.05)  # a password check takes its time (Argon2id): attempts overlap
        return real(uid, pw)
    monkeypatch.setattr(c.users, "check", counted)

    def guess(i: int) -> int:
        s = requests.Session()
        return s.post(f"{served.url}/login", data={"csrf_token": _token(s, served.url), "user": "anna",
                                                    "password": f"guess-{i}"}).status_code
    with ThreadPoolExecutor(40) as pool:
        codes = list(pool.map(guess, range(40)))
    assert len(checks) <= 5 and set(codes) <= {401, 429}
    # the office sits behind one proxy address: bert's right password still gets him in
    assert _in(_login(served, "bert"), served)
    # after five real failures anna waits (in German, with how long), even with her right password
    while guess(99) != 429:
        pass
    assert len(checks) == 5
    s = requests.Session()
    r = s.post(f"{served.url}/login", data={"csrf_token": _token(s, served.url), "user": "anna",
                                            "password": PASSWORD})
    assert r.status_code == 429 and "Minute" in r.text
    # the data-protection officer sees it in the login log, not in the audit trail
    dpo = _login(served, "dsb")
    log = dpo.get(f"{served.url}/logins").text
    assert log.count("gebremst") + log.count("falsches Passwort") >= 36
    assert not any(e.action == "user" and e.by == "anna" for e in c.index.entries(0))


def test_logout_and_throttling_in_chromium(served):
    from playwright.sync_api import sync_playwright
    shots = served.root / "screens"
    shots.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path(), args=["--no-sandbox"])
        context = browser.new_context()
        page = context.new_page()
        login(page, served.url, "anna", PASSWORD)
        page.wait_for_selector("#recordings")
        cookie = next(c for c in context.cookies() if c["name"] == "sichtung")
        page.click("header form button")                          # Abmelden
        page.wait_for_selector("#login")
        stolen = browser.new_context()
        stolen.add_cookies([cookie])
        replay = stolen.new_page()
        replay.goto(f"{served.url}/recordings")
        assert replay.url.startswith(f"{served.url}/login")      # the old cookie opens nothing
        for i in range(6):
            login(page, served.url, "bert", f"wrong-{i}")
        shown = page.inner_text("#login-error")
        assert "Zu viele Fehlversuche" in shown and "Bitte in 1 Minute erneut versuchen." in shown  # German plural
        assert "(n)" not in shown
        page.screenshot(path=shots / "throttled.png", full_page=True)
        browser.close()


def test_a_store_that_goes_away_gives_a_german_page_not_a_500(served, monkeypatch):
    from evidence.errors import StoreUnavailable
    s = _login(served, "anna")
    c = served.app.extensions["bodycam"]

    def gone(*a, **kw):
        raise StoreUnavailable("S3 get: connection refused")
    monkeypatch.setattr(c.store.backend, "read", gone)
    monkeypatch.setattr(c.store.backend, "put_once", gone)
    r = s.get(f"{served.url}/recordings/{served.rids[0]}")
    assert r.status_code == 503 and "Speicher ist gerade nicht erreichbar" in r.text
    r = s.get(f"{served.url}/recordings/{served.rids[0]}/hls/1.ts")
    assert r.status_code == 503 and "Speicher" in r.text


def test_opening_a_page_is_no_playback_only_playing_is(served):
    """The audit trail shows a playback when a picture was sent, not when a page opened."""
    c = served.app.extensions["bodycam"]
    rid = served.rids[-1]                                        # the 60-second recording

    def playbacks() -> int:
        c.index.refresh()
        return sum(1 for e in c.index.trail(rid) if e.action == "view" and e.details.get("what") == "playback")
    s = _login(served, "anna")
    assert s.get(f"{served.url}/recordings/{rid}").status_code == 200
    assert s.get(f"{served.url}/recordings/{rid}/poster.jpg").status_code == 200
    assert s.get(f"{served.url}/recordings/{rid}/hls/index.m3u8").status_code == 200
    assert playbacks() == 0
    playlist = s.get(f"{served.url}/recordings/{rid}/hls/index.m3u8").text
    first = next(line for line in playlist.splitlines() if line.endswith(".ts"))
    assert s.get(served.url + first).status_code == 200
    assert playbacks() == 1
    s.get(served.url + first)
    assert playbacks() == 1                                      # once per session and recording


def test_export_links_expire_and_are_the_makers_in_chromium(served):
    """An export link in the browser: it downloads for its maker, another clerk gets the
    German page that says why not, and an hour later it is gone for its maker too."""
    from playwright.sync_api import sync_playwright
    shots = served.root / "screens"
    shots.mkdir(exist_ok=True)
    rid = served.rids[0]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path(), args=["--no-sandbox"])
        page = browser.new_context(accept_downloads=True).new_page()
        login(page, served.url, "anna", PASSWORD)
        page.goto(f"{served.url}/recordings/{rid}")
        with page.expect_navigation():
            page.click("#export")
        link = page.locator("#downloads a[href$='.mp4']").first
        with page.expect_download() as download:
            link.click()
        assert download.value.path().stat().st_size > 1000
        href = link.get_attribute("href")
        other = browser.new_context().new_page()
        login(other, served.url, "bert", PASSWORD)
        other.goto(served.url + href)
        assert "gilt nicht mehr" in other.inner_text("main") and "Exportieren Sie" in other.inner_text("main")
        other.screenshot(path=shots / "export-not-yours.png", full_page=True)
        for _ in range(4):                                          # an hour later, the clerk still at work
            served.clock[0] += 16 * 60 * 1_000_000
            page.goto(f"{served.url}/recordings/{rid}")
        response = page.request.get(served.url + href)
        assert response.status == 410 and "60 Minuten" in response.text()
        browser.close()
