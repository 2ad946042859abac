"""The clerk's console as a product, on the demo's own store (``bodycam-sim demo``), in
Debian's chromium driven by Playwright: every recording played to its end, markers, the
supervisor's inbox, confirmations, drawing a box, four eyes on redaction, axe-core on
every page for every role, and the clerk's path by keyboard alone.

Screenshots go to the module's temporary directory (``screens/``)."""

from __future__ import annotations

import io
import json
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
    screens = root / "screens"
    screens.mkdir()
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
