"""The link protocol: framing and message decoding, by property; a fixed test vector;
and the camera's link service fed garbage over a real pty."""

from __future__ import annotations

import zlib
from pathlib import Path

import cbor2
import pytest
from cobs import cobs
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from common import link
from common.link import FrameDecoder, ProtocolError, decode_body, encode_frame, request

VECTOR = Path(__file__).parent / "vectors" / "link-hello.frame"

cbor_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**63, 2**63 - 1) | st.text(max_size=20) | st.binary(max_size=64),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12)


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 2**63 - 1), st.text(min_size=1, max_size=12), st.dictionaries(st.text(max_size=8),
                                                                                     cbor_values, max_size=5))
def test_any_message_roundtrips(rid, op, args):
    msg = request(rid, op, args)
    assert FrameDecoder().feed(encode_frame(msg)) == [msg]


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.binary(max_size=300), max_size=8))
def test_any_bytes_give_messages_or_protocol_errors(pieces):
    d = FrameDecoder()
    for piece in pieces:
        for item in d.feed(piece):
            assert isinstance(item, (dict, ProtocolError))
            if isinstance(item, dict):
                assert item["v"] == 1 and isinstance(item["id"], int)


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 10_000), st.integers(0, 7))
def test_bit_flips_are_caught_and_the_next_frame_still_decodes(where, bit):
    good = encode_frame(request(1, "list", {"after_seq": 5}))
    bad = bytearray(good)
    i = where % (len(bad) - 1)  # not the delimiter
    bad[i] ^= 1 << bit
    out = FrameDecoder().feed(bytes(bad) + encode_frame(request(2, "bye")))
    assert out[-1] == request(2, "bye")
    assert all(isinstance(x, ProtocolError) for x in out[:-1])


@pytest.mark.parametrize("body, code", [
    (b"", "bad_frame"),
    (cbor2.dumps([1, 2]), "bad_message"),
    (cbor2.dumps({"v": 2, "id": 1}), "bad_version"),
    (cbor2.dumps({"v": 1, "id": -1}), "bad_message"),
    (cbor2.dumps({"v": 1, "id": True}), "bad_message"),
    (cbor2.dumps({1: 1, "v": 1, "id": 1}), "bad_message"),
    (cbor2.dumps({"v": 1, "id": 1}) + b"\x00", "bad_message"),
    (b"\xff\xff\xff", "bad_message"),
])
def test_malformed_messages_name_the_rule(body, code):
    framed = cobs.encode(body + zlib.crc32(body).to_bytes(4, "big")) if body else b"\x01"
    with pytest.raises(ProtocolError) as raised:
        decode_body(framed)
    assert raised.value.code == code


def test_crc_mismatch_and_oversize():
    frame = encode_frame(request(1, "bye"))
    body = cobs.decode(frame[:-1])
    with pytest.raises(ProtocolError, match="CRC"):
        decode_body(cobs.encode(body[:-1] + bytes([body[-1] ^ 1])))
    d = FrameDecoder()
    out = d.feed(b"\x01" * (link.MAX_ENCODED + 10))
    assert [e.code for e in out] == ["frame_too_long"]
    out = d.feed(b"\x00" + frame)  # resynchronises at the next delimiter
    assert out == [request(1, "bye")]
    with pytest.raises(ValueError, match="frame limit"):
        encode_frame(request(1, "x", {"data": bytes(link.MAX_FRAME)}))


def test_frame_vector():
    """docs/FORMAT.md §9.1: a hello frame, byte for byte."""
    msg = request(1, "hello", {"protocol": 1, "dock_id": "dock-1", "dock_key": "00" * 32, "nonce": bytes(32)})
    assert encode_frame(msg) == VECTOR.read_bytes()
    assert FrameDecoder().feed(VECTOR.read_bytes()) == [msg]


# ----------------------------------------------------------------------------- the camera's service

@pytest.fixture(scope="module")
def served(tmp_path_factory, key_dir, identity):
    """A camera store with one recording, its link service answering on a pty."""
    from tests.test_dock import SHIFT, camera
    from simulator.serial_link import PtyCable
    from common import keys
    tmp = tmp_path_factory.mktemp("served")
    dk = keys.create_device_key(tmp / "dk", name="dock")
    sim = camera(tmp, identity, [dk.public], SHIFT[:2], run_until=14)
    from tests.test_dock import start_serving
    cable = PtyCable(tmp / "by-id" / "x", tmp / "cam.tty")
    t = start_serving(sim, tmp / "cam.tty", 300)
    port = link.Link(link.open_port(str(cable.dock_node)))
    yield sim, port
    cable.unplug()
    t.join(30)


ops = st.sampled_from(["hello", "auth", "list", "read", "receipt", "set_time", "assign", "bye", "nope", ""])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                   HealthCheck.too_slow])
@given(st.integers(0, 2**40), ops, st.dictionaries(st.text(max_size=10), cbor_values, max_size=4))
def test_service_answers_any_request_cleanly(served, rid, op, args):
    sim, port = served
    before = sorted(p.name for p in sim.runtime.store.dir.iterdir())
    port.send(request(rid, op, args))
    reply = port.recv(5)
    assert isinstance(reply, dict) and reply["id"] == rid
    if op not in ("hello",):
        assert reply["ok"] is False and reply["code"] in (
            "not_authenticated", "unknown_op", "no_session", "bad_message", "dock_not_enrolled", "bad_proof",
            "bad_version")
    assert sorted(p.name for p in sim.runtime.store.dir.iterdir()) == before
    assert "link_internal_error" not in [e["kind"] for e in sim.runtime.events.entries]


def test_service_answers_garbage_bytes_with_a_protocol_error(served):
    sim, port = served
    port.port.write(b"\x07\x99garbage\x00")
    reply = port.recv(5)
    assert reply["ok"] is False and reply["code"] in ("bad_frame", "bad_crc")
    port.send(request(77, "list"))
    assert port.recv(5)["code"] == "not_authenticated"  # and the link still works


def test_the_cameras_side_lets_go_of_a_port_without_waiting_for_its_close():
    """A tty's close waits for unsent output to drain (the USB gadget's up to 15 s, with no
    way to discard it): on the booted system a flooding peer that read nothing held the
    camera's loop in that close until the watchdog killed it. The non-blocking (camera's)
    link closes in a thread; ``closing`` says so until it is done (the runtime does not open
    the port again meanwhile: device/runtime.py)."""
    import os
    import threading
    import time
    from common import link as link_module

    r, w = os.pipe()
    released = threading.Event()

    class SlowPort:   # a port whose close waits, as gs_close does for a peer that reads nothing
        def fileno(self) -> int:
            return r

        def close(self) -> None:
            released.wait(5)
            os.close(r)

    port = link_module.Link(SlowPort(), nonblocking=True)
    t0 = time.monotonic()
    port.close()
    assert time.monotonic() - t0 < 0.5 and port.closing
    released.set()
    deadline = time.monotonic() + 5
    while port.closing:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    os.close(w)
