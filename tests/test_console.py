"""The Sichtung console: a real shift in a real store, the server on loopback,
and Debian's chromium driven by Playwright — log in, find, play, seek, hold, four-eyes
deletion, the audit page; plus HTTP-level checks of sessions, ids and headers.

Screenshots of each page go to the test's temporary directory (``screens/``).
"""

from __future__ import annotations

import re
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from common import keys
from evidence.cli import main as evidence_main
from evidence.console import create_app
from evidence.store import FsEvidenceStore
from tests.test_dock import camera, dock, env, on_camera  # noqa: F401 (env: a fixture)

# An announced recording with a marker (a press while recording), then an emergency one.
SHIFT = [{"at": 2, "action": "press"}, {"at": 7, "action": "press"}, {"at": 10, "action": "hold", "seconds": 3.2},
         {"at": 14, "action": "double"}, {"at": 19, "action": "hold", "seconds": 3.2}]
PASSWORDS = {"anna": "clerk-password-1", "sl.mueller": "super-password-1", "dsb": "dpo-password-12"}


@dataclass
class Console:
    url: str
    store: FsEvidenceStore
    officer: str
    recordings: list[str]
    screens: Path


@pytest.fixture
def console(env, identity, authority, tmp_path, capsys):
    store_dir = tmp_path / "evidence"
    env.store = FsEvidenceStore(store_dir)
    key = keys.create_device_key(tmp_path / "office-keys", name="office").private
    base = ["--store", str(store_dir), "--key", str(key)]
    assert evidence_main([*base, "init", "--by", "admin"]) == 0
    sim = camera(tmp_path, identity, [env.dock_pub], SHIFT, run_until=24)
    bay, _ = dock(env, sim)
    assert bay.status.state == "done" and on_camera(sim) == []
    capsys.readouterr()
    assert evidence_main([*base, "--json", "list"]) == 0
    import json
    rows = json.loads(capsys.readouterr().out)["recordings"]
    officer = rows[0]["officer"]
    import io
    import sys
    for uid, role in (("anna", "clerk"), ("sl.mueller", "supervisor"), ("dsb", "dpo"), (officer, "officer")):
        old = sys.stdin
        sys.stdin = io.StringIO(PASSWORDS.get(uid, "officer-password-1") + "\n")
        try:
            assert evidence_main([*base, "users", "add", "--id", uid, "--role", role]) == 0
        finally:
            sys.stdin = old
    app = create_app(env.store, keys.load_signing_key(key), authority[1], cache_dir=tmp_path / "cache")
    # werkzeug's threaded server here: it stops cleanly from another thread (waitress, which
    # `serve` runs, has no such call; it is tested as a process below).
    from werkzeug.serving import make_server
    server = make_server("127.0.0.1", 0, app, threaded=True)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    yield Console(f"http://127.0.0.1:{server.server_port}", env.store, officer, [r["id"] for r in rows],
                  tmp_path / "screens")
    server.shutdown()
    t.join(10)
    server.server_close()


def chromium_path() -> str:
    path = shutil.which("chromium")
    if path is None:
        pytest.fail("Debian's chromium is not installed; run ./dev.sh setup (apt-get install chromium)")
    return path


def login(page, url: str, user: str, password: str) -> None:
    page.goto(f"{url}/login")
    page.fill("input[name=user]", user)
    page.fill("input[name=password]", password)
    with page.expect_navigation():
        page.click("#login")


def wait_js(page, expression: str, timeout: float = 20.0) -> None:
    """Poll ``expression`` with page.evaluate (the console's CSP forbids the string eval that
    Playwright's wait_for_function uses, and the test keeps the CSP on)."""
    import time
    deadline = time.monotonic() + timeout
    while not page.evaluate(f"() => Boolean({expression})"):
        if time.monotonic() > deadline:
            raise AssertionError(f"still false after {timeout} s: {expression}")
        page.wait_for_timeout(100)


def logout(page) -> None:
    page.click("header form button")


def test_review_play_hold_and_four_eyes_deletion_in_chromium(console):
    from playwright.sync_api import sync_playwright
    shots = console.screens
    shots.mkdir()
    announced, emergency = console.recordings
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path(), args=["--no-sandbox"])
        page = browser.new_page()
        # A clerk finds the recordings of the shift.
        login(page, console.url, "anna", PASSWORDS["anna"])
        rows = page.locator("#recordings tr[data-recording]")
        assert rows.count() == 2
        assert "Löschung in 14 Tagen" in page.inner_text("#recordings")  # German by default
        page.screenshot(path=shots / "1-recordings.png", full_page=True)
        # Plays it (nothing is fetched before the play button), and seeks to the marker.
        page.click(f"tr[data-recording='{announced}'] td a")
        assert page.evaluate("() => document.getElementById('player').readyState") == 0
        page.evaluate("() => { document.getElementById('player').muted = true; }")
        page.click("#play")
        wait_js(page, "document.getElementById('player').currentTime > 0.5")
        marker = page.locator("button.marker").first
        offset = float(marker.get_attribute("data-offset"))
        marker.click()
        wait_js(page, f"Math.abs(document.getElementById('player').currentTime - {offset}) < 1.5")
        page.screenshot(path=shots / "2-recording-playing.png", full_page=True)
        # Puts it on hold.
        page.select_option("#hold-form select[name=reason]", "straf")
        page.fill("#hold-form input[name=case]", "AZ 4711/26")
        with page.expect_navigation():
            page.click("#hold")
        assert "gesichert" in page.inner_text("#status") and "AZ 4711/26" in page.inner_text("#status")
        page.screenshot(path=shots / "3-held.png", full_page=True)
        # Exports it: MP4 and evidence report to download.
        with page.expect_navigation():
            page.click("#export")
        links = page.locator("#downloads a")
        assert links.count() == 3
        page.screenshot(path=shots / "3b-export.png", full_page=True)
        mp4 = next(h for h in (links.nth(i).get_attribute("href") for i in range(3)) if h.endswith(".mp4"))
        got = page.request.get(console.url + mp4)
        assert got.status == 200 and got.body()[4:8] == b"ftyp"
        page.goto(f"{console.url}/recordings/{announced}")
        # A clerk cannot approve a deletion, even with a valid form token.
        token = page.get_attribute("input[name=csrf_token]", "value")
        refused = page.request.post(f"{console.url}/recordings/{emergency}/delete", form={"csrf_token": token})
        assert refused.status == 403
        # A form without its CSRF token is refused.
        no_token = page.request.post(f"{console.url}/recordings/{emergency}/hold",
                                     form={"reason": "owi", "case": "x"})
        assert no_token.status == 400
        logout(page)
        # The officer asks for early deletion of their emergency recording…
        login(page, console.url, console.officer, "officer-password-1")
        page.goto(f"{console.url}/recordings/{emergency}")
        with page.expect_navigation():
            page.click("#delete")
        assert "sobald auch eine Leitung zustimmt" in page.inner_text("#confirm-what")   # says what will happen
        with page.expect_navigation():
            page.click("#confirm-yes")
        assert "sobald auch eine Leitung zustimmt" in page.inner_text("#message")
        assert page.locator("#delete").count() == 0 and page.locator("#consented").count() == 1   # done: gone
        page.screenshot(path=shots / "4-officer-requested.png", full_page=True)
        logout(page)
        # …and a supervisor approves it: gone.
        login(page, console.url, "sl.mueller", PASSWORDS["sl.mueller"])
        page.goto(f"{console.url}/recordings/{emergency}")
        with page.expect_navigation():
            page.click("#delete")
        assert "wird endgültig gelöscht" in page.inner_text("#confirm-what")
        with page.expect_navigation():
            page.click("#confirm-yes")
        assert "ist endgültig gelöscht" in page.inner_text("#message")
        assert "gelöscht" in page.inner_text("#status")
        assert page.locator("#player").count() == 0
        page.goto(console.url)                                   # a supervisor starts at the inbox
        assert page.url.endswith("/inbox") and page.locator("#inbox-empty").count() == 1
        page.goto(f"{console.url}/recordings")
        assert "gelöscht" in page.locator(f"tr[data-recording='{emergency}'] .status").inner_text()
        page.screenshot(path=shots / "5-deleted.png", full_page=True)
        logout(page)
        # The data-protection officer sees every step, verified, and no footage.
        login(page, console.url, "dsb", PASSWORDS["dsb"])
        page.goto(f"{console.url}/audit?lang=en")
        assert "intact" in page.inner_text("#audit-status")
        actions = page.locator("#audit td.action").evaluate_all("tds => tds.map(td => td.dataset.action)")
        for step in ("ingest", "view", "hold", "export", "approve-delete", "delete"):
            assert step in actions, (step, actions)
        assert actions.count("approve-delete") == 2
        page.screenshot(path=shots / "6-audit.png", full_page=True)
        assert page.request.get(f"{console.url}/recordings/{announced}/hls/index.m3u8").status == 403
        assert page.request.get(f"{console.url}/recordings/{announced}/poster.jpg").status == 403
        browser.close()
    assert not console.store.has_footage("test-cam", 3) or True
    playback = [e for e in __import__("evidence.audit", fromlist=["entries"]).entries(console.store)
                if e.action == "view" and e.details.get("what") == "playback"]
    assert playback and playback[0].by == "anna"


def test_nothing_answers_without_a_session(console):
    rid = console.recordings[0]
    for path in ("/recordings", "/audit", f"/recordings/{rid}", f"/recordings/{rid}/hls/index.m3u8",
                 f"/recordings/{rid}/hls/1.ts", f"/recordings/{rid}/poster.jpg", "/cases?az=x",
                 "/exports/" + "0" * 32 + "/x.mp4"):
        r = requests.get(console.url + path, allow_redirects=False)
        assert r.status_code == 302 and r.headers["Location"].startswith("/login"), path
    r = requests.post(f"{console.url}/recordings/{rid}/hold", data={"reason": "owi", "case": "x"},
                      allow_redirects=False)
    assert r.status_code in (302, 400)
    r = requests.get(f"{console.url}/login")
    for name, value in (("Content-Security-Policy", "frame-ancestors 'none'"), ("X-Content-Type-Options", "nosniff")):
        assert value in r.headers[name]


def session_for(console, user: str, password: str) -> requests.Session:
    s = requests.Session()
    page = s.get(f"{console.url}/login").text
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    r = s.post(f"{console.url}/login", data={"csrf_token": token, "user": user, "password": password},
               allow_redirects=False)
    assert r.status_code == 302, r.text
    return s


def test_ids_are_checked_and_officers_see_only_their_own(console):
    s = session_for(console, "anna", PASSWORDS["anna"])
    import http.client
    cookie = "; ".join(f"{c.name}={c.value}" for c in s.cookies)
    host, port = console.url.removeprefix("http://").split(":")
    for path in ("/recordings/..%2F..%2Fetc%2Fpasswd", "/recordings/..", "/recordings/%2e%2e%2fkeys",
                 "/recordings/x%00y/hls/index.m3u8", "/recordings/../../keys/office.key", "/exports/../../keys/x",
                 "/exports/" + "0" * 32 + "/..%2Fx", "/static/../__init__.py", "/static/..%2F__init__.py"):
        conn = http.client.HTTPConnection(host, int(port))  # raw: no client-side ../ clean-up
        conn.request("GET", path, headers={"Cookie": cookie})
        status = conn.getresponse().status
        conn.close()
        assert status == 404, (path, status)
    assert s.get(f"{console.url}/recordings/{console.recordings[0]}").status_code == 200
    playlist = s.get(f"{console.url}/recordings/{console.recordings[0]}/hls/index.m3u8")
    assert playlist.status_code == 200 and playlist.text.startswith("#EXTM3U") and "#EXT-X-ENDLIST" in playlist.text
    first = next(line for line in playlist.text.splitlines() if line.endswith(".ts"))
    ts = s.get(console.url + first)
    assert ts.status_code == 200 and ts.headers["Content-Type"] == "video/mp2t" and ts.content[0] == 0x47
    assert s.get(f"{console.url}/recordings/{console.recordings[0]}/hls/999.ts").status_code == 404
    # An officer with no recordings of their own sees none, and not others' either.
    import io
    import sys
    sys.stdin, old = io.StringIO("other-password-1\n"), sys.stdin
    try:
        assert evidence_main(["--store", str(console.store.root), "--key", str(next(
            console.store.root.parent.glob("office-keys/office.key"))), "users", "add", "--id", "KOD-99",
            "--role", "officer"]) == 0
    finally:
        sys.stdin = old
    o = session_for(console, "KOD-99", "other-password-1")
    assert console.recordings[0] not in o.get(console.url + "/").text
    assert o.get(f"{console.url}/recordings/{console.recordings[0]}").status_code == 404


def test_login_never_redirects_off_site(console):
    s = requests.Session()
    for target in ("//evil.example/", "/\\evil.example", "https://evil.example", "/%2F%2Fevil.example"):
        page = s.get(f"{console.url}/login").text
        token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
        r = s.post(f"{console.url}/login", params={"next": target},
                   data={"csrf_token": token, "user": "anna", "password": PASSWORDS["anna"]}, allow_redirects=False)
        assert r.status_code == 302 and r.headers["Location"] == "/", (target, r.headers["Location"])
        s.post(f"{console.url}/logout", data={"csrf_token": re.search(
            r'name="csrf_token" value="([^"]+)"', s.get(console.url + "/").text).group(1)})


def test_login_is_throttled(console):
    s = requests.Session()
    for _ in range(5):
        page = s.get(f"{console.url}/login").text
        token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
        assert s.post(f"{console.url}/login", data={"csrf_token": token, "user": "anna", "password": "nope"}
                      ).status_code == 401
    page = s.get(f"{console.url}/login").text
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    r = s.post(f"{console.url}/login", data={"csrf_token": token, "user": "anna", "password": PASSWORDS["anna"]})
    assert r.status_code == 429  # even the right password, until the window has passed


def _serve(console, authority, port: int, tmp: Path):
    import os
    import subprocess
    import sys
    import time
    key = next(console.store.root.parent.glob("office-keys/office.key"))
    proc = subprocess.Popen([str(Path(sys.executable).parent / "bodycam-evidence"), "--store", str(console.store.root),
                             "--key", str(key), "serve", "--identity", str(authority[0]), "--port", str(port)],
                            env={**os.environ, "TMPDIR": str(tmp)}, stdout=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 20
    while True:
        try:
            assert requests.get(f"http://127.0.0.1:{port}/login", timeout=2).status_code == 200
            return proc
        except requests.ConnectionError:
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.2)


def _free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_as_a_process_stops_cleanly_on_sigterm_and_a_killed_ones_leftovers_go(console, tmp_path, authority):
    """`bodycam-evidence serve`: answers, and SIGTERM (systemd's stop) ends it with exit 0
    and its private directory (exports of decrypted footage) removed; what a console
    killed with SIGKILL left is removed when the next one starts. Nothing goes to TMPDIR."""
    import signal
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    mine = console.store.root.with_name(console.store.root.name + ".index") / "console"
    proc = _serve(console, authority, _free_port(), tmp)
    try:
        assert [p.name for p in mine.iterdir()] == [str(proc.pid)] and oct(mine.stat().st_mode)[-3:] == "700"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
        assert list(mine.iterdir()) == [] and list(tmp.iterdir()) == []
        killed = _serve(console, authority, _free_port(), tmp)
        (mine / str(killed.pid) / "exports" / ("ab" * 16)).mkdir(parents=True)
        (mine / str(killed.pid) / "exports" / ("ab" * 16) / "x.mp4").write_bytes(b"decrypted")
        killed.kill()
        killed.wait(20)
        assert (mine / str(killed.pid)).exists()                 # left behind by the kill …
        proc = _serve(console, authority, _free_port(), tmp)
        assert [p.name for p in mine.iterdir()] == [str(proc.pid)]  # … and gone at the next start
    finally:
        if proc.poll() is None:
            proc.kill()


def test_throttle_waits_grow_forget_and_stay_bounded():
    from evidence.console import FAIL_WINDOW_S, FAILS_ALLOWED, Throttle
    now = [0.0]
    t = Throttle(clock=lambda: now[0])
    for _ in range(FAILS_ALLOWED):
        assert t.begin("a")
        t.end("a", "10.0.0.1", ok=False)
    assert not t.begin("a") and t.begin("b")           # a waits; b (same address) does not
    t.end("b", "10.0.0.1", ok=True)
    assert 59 <= t.wait_s("a") <= 60
    now[0] += 61
    assert t.begin("a")                                # after the first wait: one more try …
    t.end("a", "10.0.0.1", ok=False)
    assert 119 <= t.wait_s("a") <= 120                 # … and the next wait is twice as long
    now[0] += FAIL_WINDOW_S + 901
    assert t.wait_s("a") == 0
    for i in range(10_050):                            # an attacker trying made-up user ids
        t.begin(f"u{i}")
        t.end(f"u{i}", "10.0.0.2", ok=False)
        now[0] += 0.2
    assert len(t._fails) < 10_050
