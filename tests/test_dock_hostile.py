"""The dock against a camera that lies, floods or stalls, and against a noisy cable: every
bay ends (in bounded time, in a state that says what happened), nothing is freed that was
not stored, and a cable that damages a frame now and then costs a retried request, not
a docking. The cameras are the real simulated runtime over real ptys (socat); the rogue
answers replace one operation of its link service."""

from __future__ import annotations

import json
import random
import threading
import time

import pytest

from common import link
from device.link_service import LinkService
from dock.hotplug import Dock, read_status
from simulator.serial_link import PtyCable
from tests.test_dock import SHIFT, camera, dock, env, on_camera  # noqa: F401 (env: a fixture)


def _listing(monkeypatch, make):
    real = LinkService._op_list

    def rogue(self, args):
        return make(real(self, args), args)
    monkeypatch.setattr(LinkService, "_op_list", rogue)


def test_a_damaged_camera_copy_of_a_segment_already_stored_does_not_stop_the_docking(env, identity, tmp_path,
                                                                                    monkeypatch):
    """Seen on the booted system after a failing card: segments the dock had stored stayed on
    the camera (the card went read-only before the receipts could free them) and their
    manifests there read as empty. The dock's resume step decoded them unguarded: every
    docking ended in "unexpected SignatureError", and nothing newer left the camera. Now it
    is a problem on record, the stored copy stands, and the docking goes on. The same for a
    camera whose store was rolled back and numbers new footage again: a listed segment is
    receipted again only if it is byte for byte the one stored, never on its number alone."""
    sim = camera(tmp_path, identity, [env.dock_pub], SHIFT[:2], run_until=14)
    bay, _ = dock(env, sim)
    assert bay.status.state == "done", bay.status
    stored = env.store.segments("test-cam")
    sim.schedule({"at": 16, "action": "double"})
    sim.schedule({"at": 20, "action": "hold", "seconds": 3.2})
    sim.run_until(26)
    damaged = {"seq": stored[0], "manifest": b"", "size": 0}

    def make(real, args):   # the camera still lists an old, stored segment, its manifest empty
        if args.get("after_seq", 0) == 0:
            return {**real, "segments": [damaged, *real["segments"]]}
        return real
    _listing(monkeypatch, make)
    bay, _ = dock(env, sim)
    assert bay.status.state == "done with problems", bay.status
    assert any("differs from the stored segment" in p for p in bay.report.problems), bay.report.problems
    assert len(env.store.segments("test-cam")) > len(stored), "the newer segments were stored"
    assert not [n for n in on_camera(sim) if n.endswith(".ts.age")], on_camera(sim)


def test_answers_an_earlier_session_left_in_the_pipe_do_not_pass_for_this_hello(env, identity, tmp_path,
                                                                                monkeypatch):
    """Seen on the booted system's real gadget: after a peer flooded the camera with hellos
    and read nothing, the camera's answers to it (request id 1) still sat in the USB pipe
    when the real dock opened the port; the dock's own hello was id 1 too, took one of
    them, its proof failed, and the bay ended "refused" for good. Here the camera sends such
    stale answers ahead of the real one: the dock's ids start anywhere, and it docks."""
    real = LinkService._op_hello

    def stale_first(self, args):
        for _ in range(20):
            self.link.send(link.ok(1, {"device_id": "test-cam", "device_key": "ab" * 32, "nonce": b"s" * 32,
                                       "proof": b"p" * 64}))
        return real(self, args)
    monkeypatch.setattr(LinkService, "_op_hello", stale_first)
    sim = camera(tmp_path, identity, [env.dock_pub], SHIFT[:2], run_until=14)
    bay, _ = dock(env, sim)
    assert bay.status.state == "done", bay.status
    assert env.store.segments("test-cam")


@pytest.mark.parametrize("case", ["more-forever", "size-abc", "seq-backwards", "events-300MiB", "too-many"])
def test_a_lying_listing_ends_the_bay_with_a_refusal_and_frees_nothing(env, identity, tmp_path, monkeypatch, case):
    """D4, D5, D6: an endless listing, a size that is not a number, a listing that goes
    back, an event log of 300 MiB, more entries than any camera holds."""
    import dock.offload as offload
    monkeypatch.setattr(offload, "MAX_LISTED", 40)
    sim = camera(tmp_path, identity, [env.dock_pub], SHIFT[:2], run_until=14)
    before = on_camera(sim)

    first_page: list[dict] = []

    def make(real, args):
        if case == "more-forever":                                          # the same page, again and again
            first_page[:] = first_page or real["segments"]
            return {**real, "segments": first_page, "more": True}
        if case == "size-abc":
            return {**real, "segments": [{**real["segments"][0], "size": "abc"}, *real["segments"][1:]]}
        if case == "seq-backwards":
            return {**real, "segments": list(reversed(real["segments"]))}
        if case == "events-300MiB":
            return {**real, "events_size": 300 << 20}
        first_page[:] = first_page or real["segments"]                     # too-many: new seqs for ever
        n = args.get("after_seq", 0) + 1
        return {**real, "more": True, "segments": [{**first_page[0], "seq": n + i} for i in range(8)]}
    _listing(monkeypatch, make)
    started = time.monotonic()
    bay, _ = dock(env, sim)
    assert time.monotonic() - started < 20
    assert bay.status.state in ("refused", "error"), (case, bay.status)
    if case == "events-300MiB":  # the segments are true: stored and freed; the log it lies about is not
        assert "returned" in bay.status.message and "events.cbors" in bay.status.message
        assert [n for n in on_camera(sim) if n.endswith(".ts.age")] == [] and env.store.segments("test-cam")
        return
    assert "listing" in bay.status.message
    assert on_camera(sim) == before and env.store.segments("test-cam") == []


def test_a_camera_babbling_before_the_handshake_cannot_hold_the_bay(env, tmp_path):
    """D3: frames with wrong ids and garbage, without end, before any authentication: the
    bay gives up within its deadline instead of waiting for ever."""
    node = env.watch / "usb-rogue"
    cable = PtyCable(node, tmp_path / "rogue.tty")
    stop = threading.Event()

    def babble() -> None:
        port = link.open_port(str(tmp_path / "rogue.tty"))
        rng = random.Random(1)
        while not stop.is_set():
            port.write(link.encode_frame(link.ok(rng.randrange(10_000, 99_999), {})) if rng.random() < 0.5
                       else b"\x00garbage\x00" + rng.randbytes(40))
            time.sleep(0.01)
        port.close()
    t = threading.Thread(target=babble, daemon=True)
    t.start()
    from common import keys
    from dock.bay import Bay
    bay = Bay(str(node), key=keys.load_signing_key(env.dock_key), dock_id="dock-test", registry=env.registry,
              store=env.store, staging=env.staging, timeout=1.0)
    started = time.monotonic()
    bay.start()
    bay.join(15)
    stop.set()
    cable.unplug()
    assert not bay.is_alive() and time.monotonic() - started < 5
    assert bay.status.state == "not answering", bay.status


def test_a_cable_that_damages_frames_still_finishes_in_one_docking(env, identity, tmp_path, monkeypatch):
    """C3: one frame in thirty from the camera arrives damaged (a flipped byte on the wire):
    each costs a request asked again, and the docking finishes, everything stored and freed."""
    sim = camera(tmp_path, identity, [env.dock_pub], SHIFT, run_until=24)
    n_segments = len(list(sim.runtime.store.dir.glob("*.manifest")))
    real_send = link.Link.send
    rng = random.Random(7)
    answers, damaged = [], []

    def noisy(self, message):
        service = getattr(sim.runtime, "link", None)
        if service is None or self is not service.link or not message.get("ok"):
            return real_send(self, message)
        answers.append(message["id"])
        frame = link.encode_frame(message)
        if len(answers) % 7 == 3:                       # every seventh answer, a flipped byte
            i = rng.randrange(1, len(frame) - 1)
            frame = frame[:i] + bytes([frame[i] ^ 0x10 or 1]) + frame[i + 1:]
            damaged.append(message["id"])
        self.port.write(frame)
    monkeypatch.setattr(link.Link, "send", noisy)
    import dock.session as session
    monkeypatch.setattr(session.DockSession, "__init__", _short_timeout(session.DockSession.__init__))
    bay, _ = dock(env, sim)
    assert len(damaged) >= 3, (answers, damaged, bay.status)
    assert bay.status.state == "done", bay.status.message
    assert len(env.store.segments("test-cam")) == n_segments and on_camera(sim) == []


def _short_timeout(init):
    def wrapped(self, *a, **kw):
        init(self, *a, **kw)
        self.timeout = 1.0  # a lost frame costs a second, not the configured five
    return wrapped


def test_status_json_shows_how_a_bay_ended_also_inside_the_throttle_window(env, identity, tmp_path, capsys):
    """D7: progress is written at most every 60 s here; the end of the bay is written at once."""
    import dataclasses
    config = dataclasses.replace(env.config, transfer=dataclasses.replace(env.config.transfer,
                                                                          status_interval_s=60.0))
    sim = camera(tmp_path, identity, [env.dock_pub], SHIFT[:2], run_until=14)
    d = Dock(config)
    d.registry, d.store = env.registry, env.store
    d.start()
    try:
        from tests.test_dock import start_serving
        cable = PtyCable(env.watch / "usb-bodycam-test-cam", env.root / "cam" / "status.tty")
        served = start_serving(sim, env.root / "cam" / "status.tty")
        deadline = time.monotonic() + 30
        while not any(b["state"] in ("done", "done with problems") for b in read_status(d.state_dir)["bays"]):
            assert time.monotonic() < deadline, json.dumps(read_status(d.state_dir), indent=1)
            time.sleep(0.1)
        cable.unplug()
        served.join(30)
    finally:
        d.stop()
    from dock.cli import main as dock_main
    assert dock_main(["--config", str(env.root / "dock.toml"), "status"]) == 0
    shown = capsys.readouterr().out
    assert "test-cam" in shown and " done" in shown and "as of 20" in shown, shown


def test_status_of_an_idle_dock_says_so(env, capsys):
    """D7: an idle dock's status is a line that says no camera is docked, not a blank line."""
    d = Dock(env.config)
    d.start()
    d.stop()
    from dock.cli import main as dock_main
    assert dock_main(["--config", str(env.root / "dock.toml"), "status"]) == 0
    shown = capsys.readouterr().out
    assert "no camera docked" in shown and "dock dock-test" in shown, shown


def test_a_peer_asking_without_authenticating_cannot_fill_the_cameras_event_log(identity, tmp_path):
    """D1: 600 requests before any handshake are all refused; the camera's event log gains
    the first five one by one and one summary with the count, not 600 entries."""
    from tests.test_dock import kinds, start_serving
    sim = camera(tmp_path, identity, [], [], run_until=1)
    dock_end, cam_end = tmp_path / "peer.tty", tmp_path / "cam.tty"
    cable = PtyCable(dock_end, cam_end)
    served = start_serving(sim, cam_end)
    peer = link.Link(link.open_port(str(dock_end)))
    refused = 0
    for rid in range(1, 601):
        peer.send(link.request(rid, "list" if rid % 2 else "read", {}))
        answer = peer.recv(5)
        assert isinstance(answer, dict) and answer["code"] == "not_authenticated", answer
        refused += 1
    peer.close()
    cable.unplug()
    served.join(30)
    logged = [e for e in sim.runtime.events.entries if e["kind"].startswith("link_refused")]
    assert refused == 600 and kinds(sim).count("link_refused") == 5
    summary = [e for e in logged if e["kind"] == "link_refused_summary"]
    assert len(summary) == 1 and summary[0]["data"]["count"] == 595, summary
    assert summary[0]["data"]["kinds"] == {"link_refused:list": 297, "link_refused:read": 298}


def test_a_receipt_sent_again_after_its_answer_was_lost_frees_once_and_is_answered_alike(env, identity, tmp_path,
                                                                                       monkeypatch):
    """The dock asks again, byte for byte, when an answer is lost; the camera answers the
    repeat as it answered the first instead of refusing a receipt for a freed segment."""
    import dock.offload as offload
    sim = camera(tmp_path, identity, [env.dock_pub], SHIFT[:2], run_until=14)
    real_send = link.Link.send
    lost = []

    def drop_first_receipt_answer(self, message):
        service = getattr(sim.runtime, "link", None)
        if service is not None and self is service.link and message.get("ok") \
                and "freed" in message.get("result", {}) and not lost:
            lost.append(message["result"]["freed"])
            return  # the answer never reaches the dock
        return real_send(self, message)
    monkeypatch.setattr(link.Link, "send", drop_first_receipt_answer)
    import dock.session as session
    monkeypatch.setattr(session.DockSession, "__init__", _short_timeout(session.DockSession.__init__))
    assert offload.READ_RETRIES >= 1
    bay, _ = dock(env, sim)
    assert lost == [1] and bay.status.state == "done", bay.status
    assert bay.report.freed == bay.report.stored and on_camera(sim) == []
    freed = [e["data"]["seq"] for e in sim.runtime.events.entries if e["kind"] == "segment_freed"]
    assert freed == sorted(set(freed)) and freed[0] == 1   # freed once each


def test_a_peer_that_stops_reading_never_blocks_the_camera_and_the_port_is_reopened(env, identity, tmp_path):
    """D2: a peer floods hellos and reads nothing back. The camera's loop never waits on it
    (worst step measured; a blocking write stood for its 10-s write timeout), recording goes
    on, the stalled peer is dropped, and the port is opened again once a dock is back (as
    after a USB gadget reset): a real dock then authenticates and lists."""
    from common.link import open_port
    from device import config as device_config
    from dock.session import DockSession
    from simulator.device_sim import SimDevice
    from common import keys
    cam_node, peer_node = tmp_path / "cam" / "gadget.tty", tmp_path / "peer.tty"
    cfg = device_config.from_dict({
        "camera": {"width": 320, "height": 240, "fps": 15, "bitrate": 400_000, "audio": False},
        "recording": {"pre_record_seconds": 1, "segment_seconds": 2},
        "storage": {"warn_free_mb": 100, "full_free_mb": 20}, "device": {"store": "store"},
        "link": {"dock_keys": [str(env.dock_pub)]}}, base_dir=tmp_path / "cam")
    cable = PtyCable(peer_node, cam_node)
    sim = SimDevice.create(cfg, identity, noise=30,
                           open_link=lambda: link.Link(link.open_port(str(cam_node)), nonblocking=True, stall_s=1.0))
    sim.runtime.boot()
    sim.schedule({"at": 1, "action": "double"})
    stop = threading.Event()

    def flood() -> None:
        port = open_port(str(peer_node))
        # well-formed hellos: each is answered with a signed proof, the camera's dearest answer
        # (on the booted system a flood of them held its loop past the 10-s watchdog)
        hello = link.encode_frame(link.request(1, "hello", {"protocol": 1, "dock_id": "x", "dock_key": "ab" * 32,
                                                            "nonce": b"n" * 32}))
        try:
            while not stop.is_set():
                port.write(hello * 20)
        except Exception:
            pass  # the camera dropped us: the cable went with it
    threading.Thread(target=flood, daemon=True).start()
    worst, started = 0.0, time.monotonic()
    while time.monotonic() - started < 4:
        t0 = time.perf_counter()
        sim.step()
        worst = max(worst, time.perf_counter() - t0)
    stop.set()
    events = [e["kind"] for e in sim.runtime.events.entries]
    print(f"worst camera loop step under a stalled peer: {worst * 1000:.1f} ms")
    assert worst < 0.25, f"the camera's loop waited {worst:.2f} s on a stalled peer"
    assert "link_lost" in events and sim.runtime.state.value == "RECORDING", events[-20:]
    cable.unplug()
    cable = PtyCable(peer_node, cam_node)      # a dock again
    opened = events.count("link_opened")
    deadline = time.monotonic() + 20
    while sim.runtime.link is None or sim.runtime.link.closed or \
            [e["kind"] for e in sim.runtime.events.entries].count("link_opened") == opened:
        assert time.monotonic() < deadline, "the camera did not open its port again"
        sim.step()
    running = threading.Event()
    running.set()

    def serve() -> None:
        while running.is_set():
            sim.step()
            time.sleep(0.001)
    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        session = DockSession(link.Link(link.open_port(str(peer_node))), keys.load_signing_key(env.dock_key),
                              "dock-test", env.registry.device_key, timeout=5)
        assert session.handshake() == "test-cam"
        assert session.call("list", {})["segments"], "recorded on through the flood"
    finally:
        running.clear()
        t.join(10)
        cable.unplug()


def test_one_poll_answers_a_flood_of_signed_hellos_for_a_bounded_time_and_keeps_the_rest(identity, tmp_path):
    """A flood of well-formed hellos (each answered with a signature): one poll of the
    camera's link answers for about ``POLL_BUDGET_S`` and keeps the rest for the next, and
    the port is not read again until that backlog is answered (the tty holds the peer back).
    Before, one poll answered everything one read brought (up to a MiB: thousands of
    signatures; under emulation seconds, and the booted camera's watchdog killed it)."""
    from device import link_service
    sim = camera(tmp_path, identity, [], [], run_until=1)
    dock_end, cam_end = tmp_path / "peer.tty", tmp_path / "cam.tty"
    cable = PtyCable(dock_end, cam_end)
    stop = threading.Event()
    try:
        service = sim.runtime.attach_link(link.Link(link.open_port(str(cam_end)), nonblocking=True))
        peer = link.open_port(str(dock_end))
        hello = link.encode_frame(link.request(1, "hello", {"protocol": 1, "dock_id": "x", "dock_key": "ab" * 32,
                                                            "nonce": b"n" * 32}))

        def flood() -> None:
            try:
                while not stop.is_set():
                    peer.write(hello * 50)
            except Exception:
                pass

        def drain() -> None:   # the answers are read: only the camera's side is measured
            try:
                while not stop.is_set():
                    peer.read(65536)
            except Exception:
                pass
        for job in (flood, drain):
            threading.Thread(target=job, daemon=True).start()
        time.sleep(0.3)
        worst, polls, carried, handled = 0.0, 0, 0, 0
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            t0 = time.perf_counter()
            handled += service.poll()
            worst = max(worst, time.perf_counter() - t0)
            polls += 1
            carried += bool(service._pending)
        print(f"{handled} hellos answered in {polls} polls; worst poll {worst * 1000:.1f} ms; "
              f"{carried} polls left a backlog for the next")
        assert handled > 100 and carried > 0, (handled, carried)
        assert len(service._pending) <= link_service.READ_BYTES // len(hello) + 1
        assert worst < link_service.POLL_BUDGET_S + 0.08, f"one poll took {worst * 1000:.0f} ms"
    finally:
        stop.set()
        cable.unplug()


def test_a_peer_guessing_dock_keys_grows_the_event_log_by_a_bounded_amount(identity, tmp_path):
    """D1: a hello with a dock key of a megabyte is refused as malformed (never logged);
    200 handshakes with an unenrolled dock key are refused, five logged, the rest counted:
    the camera's event log grows by a few KiB, not by what the peer sends."""
    from common import keys
    from dock.session import DockSession, Refused
    from tests.test_dock import start_serving
    sim = camera(tmp_path, identity, [], [], run_until=1)
    sim.runtime.events.sync()
    before = sim.runtime.events.path.stat().st_size
    dock_end, cam_end = tmp_path / "peer.tty", tmp_path / "cam.tty"
    cable = PtyCable(dock_end, cam_end)
    served = start_serving(sim, cam_end)
    peer = link.Link(link.open_port(str(dock_end)))
    peer.send(link.request(1, "hello", {"protocol": 1, "dock_id": "x", "dock_key": "k" * 200_000,
                                        "nonce": b"n" * 32}))
    answer = peer.recv(5)
    assert answer["code"] == "bad_message" and "fingerprint" in answer["error"]
    stranger = keys.create_device_key(tmp_path / "stranger")
    key = keys.load_signing_key(stranger.private)
    for _ in range(200):
        with pytest.raises(Refused) as refused:
            DockSession(peer, key, "dock-x" * 20, lambda _id: identity.signing_key.public_key(),
                        timeout=5).handshake()
        assert refused.value.code == "dock_not_enrolled"
    peer.close()
    cable.unplug()
    served.join(30)
    sim.runtime.events.sync()
    grown = sim.runtime.events.path.stat().st_size - before
    kinds = [e["kind"] for e in sim.runtime.events.entries]
    assert kinds.count("dock_refused") == 5 and kinds.count("link_refused_summary") == 1
    assert grown < 8 * 1024, grown



def test_an_event_log_larger_than_a_bay_holds_is_taken_in_pieces_in_one_docking(env, identity, tmp_path,
                                                                                monkeypatch):
    """Item 2: a bay's memory is bounded by MAX_EVENTS, not by the camera's log: a log of
    many times that is stored piece by piece (each receipted, so freed on the camera), in
    one docking, every event once, no gap."""
    import re

    import dock.offload as offload
    sim = camera(tmp_path, identity, [env.dock_pub], SHIFT, run_until=24)
    sim.runtime.events.sync()
    size = sim.runtime.events.path.stat().st_size
    monkeypatch.setattr(offload, "MAX_EVENTS", size // 5)
    bay, _ = dock(env, sim)
    assert bay.status.state == "done", bay.status.message
    pieces = sorted((int(m[1]), int(m[2])) for k in env.store.backend.keys("devices/test-cam/events/")
                    if (m := re.search(r"(\d+)-(\d+)\.cbors$", k)))
    assert len(pieces) >= 5, pieces
    assert all(b[0] == a[1] + 1 for a, b in zip(pieces, pieces[1:])) and pieces[0][0] == 1
    assert bay.report.events_stored == pieces[-1][1]


def test_a_camera_whose_hello_is_oversized_is_refused_in_a_few_words(env, identity, tmp_path, monkeypatch):
    """Item 1: the dock checks the camera's hello (id length, key fingerprint) before using
    it: a 100,000-character device id ends the bay as refused, and status.json does not
    carry it."""
    real = LinkService._op_hello

    def oversized(self, args):
        return {**real(self, args), "device_id": "x" * 100_000}
    monkeypatch.setattr(LinkService, "_op_hello", oversized)
    sim = camera(tmp_path, identity, [env.dock_pub], [], run_until=1)
    bay, _ = dock(env, sim)
    assert bay.status.state == "refused" and "malformed" in bay.status.message
    assert len(json.dumps(bay.status.to_json())) < 2000


@pytest.mark.parametrize("content", [b"", b"{", b"[]", b'{"bays": 5}', b'{"bays": [{"port": 1}]}',
                                     b'{"bays": [null]}', b"\xff\xfe"])
def test_a_damaged_status_file_is_a_clear_error_not_a_traceback(env, capsys, content):
    """`bodycam-dock status` on a status.json cut short or edited by hand."""
    from dock.cli import main as dock_main
    state = env.root / "state"
    state.mkdir(exist_ok=True)
    (state / "status.json").write_bytes(content)
    assert dock_main(["--config", str(env.root / "dock.toml"), "status"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("bodycam-dock: error:") and "rewrites it" in err and "Traceback" not in err
