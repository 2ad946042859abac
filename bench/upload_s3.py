"""Upload benchmark: the dock's S3 store against boto3's own ``upload_file``, same run.

``python bench/upload_s3.py [--mb 64] [--runs 3]`` (or ``./dev.sh bench upload``): a real
SeaweedFS on loopback (simulator/s3_server.py), a bucket with Object Lock. Ours: the
S3 evidence store storing 4 MiB segments with their manifests the way the dock does
(``ChecksumSHA256`` the server must confirm, ``If-None-Match``, one segment after the
other). Baseline: ``upload_file`` of the same files with boto3's default transfer
settings. Goal: ours ≥ 0.8 × baseline.
"""

from __future__ import annotations

import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from device.identity import DeviceIdentity  # noqa: E402
from evidence.s3 import S3EvidenceStore, init_bucket  # noqa: E402
from offload import bench_args, bench_keys, make_store  # noqa: E402
from simulator.s3_server import SeaweedS3  # noqa: E402


def main() -> None:
    args = bench_args(__doc__)
    work = Path(tempfile.mkdtemp(prefix="bench-upload-"))
    try:
        kd = bench_keys(work)
        identity = DeviceIdentity.load("bench-cam", kd / "device.key", [(kd / "authority.pub").read_text()])
        make_store(work / "cam", identity, args.mb)
        segments = sorted((work / "cam" / "segments").glob("*.ts.age"))
        nbytes = sum(p.stat().st_size for p in segments)
        ours, base = [], []
        with SeaweedS3(work / "s3") as s3:
            office, dock = s3.client("office"), s3.client("dock")
            for run in range(args.runs):
                bucket = f"bench-{run}"
                init_bucket(office, bucket)
                store = S3EvidenceStore(f"s3://{bucket}/ours", client=dock)
                staged = []
                for seg in segments:  # put_segment consumes its staged file, as the dock's does
                    copy = work / "staged" / seg.name
                    copy.parent.mkdir(exist_ok=True)
                    shutil.copy(seg, copy)
                    staged.append((seg, copy))
                t0 = time.perf_counter()
                for seg, copy in staged:
                    manifest = seg.with_name(seg.name.replace(".ts.age", ".manifest")).read_bytes()
                    store.put_segment("bench-cam", int(seg.name[:8]), manifest, copy)
                ours.append(nbytes / (time.perf_counter() - t0) / 1e6)
                t0 = time.perf_counter()
                for seg in segments:
                    dock.upload_file(str(seg), bucket, f"baseline/{seg.name}")
                base.append(nbytes / (time.perf_counter() - t0) / 1e6)
        mo, mb = statistics.median(ours), statistics.median(base)
        print(f"{args.runs} runs of {args.mb} MB; MB/s ours {[round(x, 1) for x in ours]}, "
              f"upload_file {[round(x, 1) for x in base]}")
        print(f"upload: dock store {mo:.1f} MB/s, boto3 upload_file {mb:.1f} MB/s, ratio {mo / mb:.2f} (goal ≥ 0.8)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
