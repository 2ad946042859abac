"""The audit trail at scale: appending never lists the trail, and several processes
appending at once (a dock and the office) keep one linear, verifying trail — on the
filesystem and on a real S3 server (SeaweedFS)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from common import keys
from evidence import audit
from evidence.store import FsEvidenceStore, open_store

WRITER = textwrap.dedent("""
    import sys, time
    from common import keys
    from evidence import audit
    from evidence.store import open_store
    store, key, who, n = open_store(sys.argv[1]), keys.load_signing_key(sys.argv[2]), sys.argv[3], int(sys.argv[4])
    for i in range(n):
        audit.append(store, key, "view", by=who, details={"i": i}, now_us=time.time_ns() // 1000)
""")


class Counting:
    """Counts what an append asks of the backend (and refuses listings)."""

    def __init__(self, backend) -> None:
        self.backend, self.calls = backend, 0

    def __getattr__(self, name):
        if name in ("keys", "children"):
            raise AssertionError(f"an append listed the store ({name})")
        attr = getattr(self.backend, name)
        if not callable(attr):
            return attr

        def counted(*a, **kw):
            self.calls += 1
            return attr(*a, **kw)
        return counted


def test_append_costs_the_same_at_10_and_at_2000_records(tmp_path):
    store = FsEvidenceStore(tmp_path / "ev")
    key = keys.create_device_key(tmp_path / "k", name="office").private
    signing = keys.load_signing_key(key)
    store.register_key("office", "office", signing.public_key())
    costs = {}
    for n in (10, 2000):
        while audit.last_seq(store) < n:
            audit.append(store, signing, "view", by="a", now_us=1)
        fresh = FsEvidenceStore(tmp_path / "ev")          # a new process: no head known yet
        fresh.backend = Counting(fresh.backend)
        audit.append(fresh, signing, "view", by="a", now_us=2)
        first = fresh.backend.calls
        fresh.backend.calls = 0
        audit.append(fresh, signing, "view", by="a", now_us=3)  # the head is known now
        costs[n] = (first, fresh.backend.calls)
    assert costs[10][1] == costs[2000][1] == 1              # one write when nobody came in between
    assert costs[2000][0] <= costs[10][0] + 16               # finding the end: log2, not a listing
    assert audit.verify(store).ok and audit.verify(store).count == 2002


def test_a_stale_head_moves_forward_and_chains_on_the_winner(tmp_path):
    store = FsEvidenceStore(tmp_path / "ev")
    signing = keys.load_signing_key(keys.create_device_key(tmp_path / "k", name="office").private)
    store.register_key("office", "office", signing.public_key())
    other = FsEvidenceStore(tmp_path / "ev")
    audit.append(store, signing, "view", by="a", now_us=1)
    audit.append(other, signing, "view", by="b", now_us=2)      # other knows head 2 now
    for i in range(40):                                           # store still thinks the head is 1
        audit.append(other, signing, "view", by="b", now_us=3 + i)
    entry = audit.append(store, signing, "view", by="a", now_us=99)
    assert entry.seq == 43
    report = audit.verify(store)
    assert report.ok and report.count == 43, report.problems


def _concurrent(url: str, key: Path, env: dict[str, str], writers: int, each: int) -> None:
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, url, str(key), f"w{i}", str(each)], env=env,
                              stderr=subprocess.PIPE, text=True) for i in range(writers)]
    for p in procs:
        _, err = p.communicate(timeout=240)
        assert p.returncode == 0, err


@pytest.mark.parametrize("backend", ["fs", "s3"])
def test_processes_appending_at_once_keep_one_linear_trail(backend, tmp_path, request, monkeypatch):
    key = keys.create_device_key(tmp_path / "k", name="office").private
    signing = keys.load_signing_key(key)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    if backend == "fs":
        url = str(tmp_path / "ev")
    else:
        from simulator.s3_server import CREDENTIALS
        endpoint, bucket = request.getfixturevalue("s3"), request.getfixturevalue("bucket")
        url = f"s3://{bucket}/trail"
        creds = {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "office",
                 "AWS_SECRET_ACCESS_KEY": CREDENTIALS["office"], "AWS_DEFAULT_REGION": "us-east-1"}
        env.update(creds)
        for k, v in creds.items():
            monkeypatch.setenv(k, v)
    store = open_store(url)
    store.register_key("office", "office", signing.public_key())
    audit.append(store, signing, "init", by="admin", now_us=0)
    writers, each = 4, 15
    _concurrent(url, key, env, writers, each)
    report = audit.verify(open_store(url))
    assert report.ok, report.problems
    assert report.count == 1 + writers * each
    by = [e.by for e in audit.entries(open_store(url))]
    assert all(by.count(f"w{i}") == each for i in range(writers))
