"""Fuzzing beyond the frame decoder (tests/test_link.py): an *authenticated* camera against
any request, the manifest and event-log parsers against damaged records, the dock against
any listing. Only the protocol's own errors may come out; nothing hangs or changes on the
camera. Part of the reliability campaign (``./dev.sh campaign``)."""

from __future__ import annotations

import cbor2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from common import keys, link, signed
from common.manifest import read_manifest
from dock.session import DockSession, Refused

scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**64, 2**64), st.text(max_size=20),
                    st.binary(max_size=40), st.floats(allow_nan=False))
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8),
                                                                                           inner, max_size=4),
                      max_leaves=12)
FUZZ = settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@pytest.fixture(scope="module")
def session(tmp_path_factory, key_dir, identity):
    """A camera with one recording, its link service answering on a pty, and a dock that
    authenticated to it."""
    from simulator.serial_link import PtyCable
    from tests.test_dock import SHIFT, camera, start_serving
    tmp = tmp_path_factory.mktemp("fuzz")
    dk = keys.create_device_key(tmp / "dk", name="dock")
    sim = camera(tmp, identity, [dk.public], SHIFT[:2], run_until=14)
    cable = PtyCable(tmp / "by-id" / "x", tmp / "cam.tty")
    t = start_serving(sim, tmp / "cam.tty", 600)
    s = DockSession(link.Link(link.open_port(str(cable.dock_node))), keys.load_signing_key(dk.private), "dock-f",
                    lambda _id: identity.signing_key.public_key(), timeout=5)
    assert s.handshake() == "test-cam"
    yield sim, s
    cable.unplug()
    t.join(30)


OPS = ["list", "read", "receipt", "set_time", "assign", "nope"]


@FUZZ
@given(st.sampled_from(OPS), st.dictionaries(st.sampled_from(["after_seq", "file", "offset", "length", "record",
                                                              "x"]), values, max_size=4))
def test_an_authenticated_camera_answers_any_request_and_frees_nothing(session, op, args):
    sim, s = session
    before = sorted(p.name for p in sim.runtime.store.dir.iterdir())
    try:
        s.call(op, args)
    except Refused as exc:
        assert exc.code in ("bad_message", "bad_file", "no_such_file", "refused", "unknown_op", "receipt_refused")
    assert sorted(p.name for p in sim.runtime.store.dir.iterdir()) == before
    assert "link_internal_error" not in [e["kind"] for e in sim.runtime.events.entries]


@FUZZ
@given(st.data())
def test_a_damaged_manifest_is_refused_as_such(session, data):
    sim, _ = session
    good = sorted(sim.runtime.store.dir.glob("*.manifest"))[0].read_bytes()
    i = data.draw(st.integers(0, len(good) - 1))
    cut = data.draw(st.booleans())
    bad = good[:i] if cut else good[:i] + bytes([good[i] ^ data.draw(st.integers(1, 255))]) + good[i + 1:]
    try:
        read_manifest(bad, sim.runtime.identity.signing_key.public_key())
    except signed.SignatureError:
        return
    raise AssertionError(f"a damaged manifest was accepted (byte {i}, {'cut' if cut else 'flipped'})")


@FUZZ
@given(st.binary(max_size=2000), values)
def test_an_event_log_of_any_bytes_splits_or_says_where_it_is_torn(noise, value):
    for data in (noise, cbor2.dumps(value), cbor2.dumps(value) + noise):
        items, torn = signed.split_sequence(data)
        assert sum(len(x) for x in items) + torn == len(data)
        for item in items:
            try:
                signed.open_signed(item, None)
            except signed.SignatureError:
                pass


@FUZZ
@given(st.dictionaries(st.sampled_from(["segments", "more", "events_size", "head", "journals"]), values,
                       max_size=5))
def test_the_dock_takes_any_listing_or_refuses_it_cleanly(value):
    """The dock's check of a listing: only a refusal (bad_listing), never another exception."""
    from dock.offload import _list_all

    class OneAnswer(DockSession):
        def __init__(self) -> None:  # the listing comes from hypothesis, not over a cable
            self.pages = 0

        def call(self, op, args=None, *, retries=0):
            self.pages += 1
            if self.pages > 3:
                return {"segments": [], "more": False, "events_size": 0}
            return value
    try:
        entries, _ = _list_all(OneAnswer())
    except Refused as exc:
        assert exc.code == "bad_listing"
        return
    assert all(isinstance(e["seq"], int) and isinstance(e["manifest"], bytes) for e in entries)


@pytest.mark.parametrize("offset", [2**40 + 1, 2**63, 2**64 - 1])
def test_a_read_far_beyond_any_file_is_a_bad_message_not_an_internal_error(session, offset):
    """The red team's offset ≥ 2⁶³ was answered internal_error; it is a malformed request."""
    sim, s = session
    name = f"segments/{sorted(sim.runtime.store.dir.glob('*.ts.age'))[0].name}"
    with pytest.raises(Refused) as refused:
        s.call("read", {"file": name, "offset": offset, "length": 16})
    assert refused.value.code == "bad_message"
