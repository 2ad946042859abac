"""Upload benchmark: the dock's S3 store against boto3's own ``upload_file``, same run.

``python bench/upload_s3.py [--mb 64] [--runs 3]`` (or ``./dev.sh bench upload``): a real
SeaweedFS on loopback (simulator/s3_server.py), a bucket with Object Lock. Ours: the
S3 evidence store storing 4 MiB segments with their manifests the way the dock's offload
does (``ChecksumSHA256`` the server must confirm, ``If-None-Match``; two segments in
flight through :class:`dock.store_pipeline.StorePipeline`, the anchor advanced in seq
order after each). Baseline: ``upload_file`` of the same files, one after the other, with
boto3's default transfer settings. Goal: ours ≥ 0.8 × baseline.
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
from dock.store_pipeline import StorePipeline  # noqa: E402
from evidence.store import Anchor  # noqa: E402
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
        ours, base, serial = [], [], []
        with SeaweedS3(work / "s3") as s3:
            office, dock = s3.client("office"), s3.client("dock")
            for run in range(args.runs):
                bucket = f"bench-{run}"
                init_bucket(office, bucket)
                # A new bucket makes SeaweedFS grow volumes on its first writes: warm it up, and
                # alternate which side goes first, so neither pays for it.
                for i in range(8):
                    dock.upload_file(str(segments[i % len(segments)]), bucket, f"warmup/{i}")

                def run_ours(width: int = 2, prefix: str = "ours") -> float:
                    store = S3EvidenceStore(f"s3://{bucket}/{prefix}", client=dock)
                    staged = []
                    for seg in segments:  # put_segment consumes its staged file, as the dock's does
                        copy = work / "staged" / seg.name
                        copy.parent.mkdir(exist_ok=True)
                        shutil.copy(seg, copy)
                        staged.append((seg, copy))
                    t0 = time.perf_counter()
                    pipeline = StorePipeline(width)
                    for seg, copy in staged:
                        manifest = seg.with_name(seg.name.replace(".ts.age", ".manifest")).read_bytes()
                        seq = int(seg.name[:8])
                        pipeline.submit(lambda seq=seq, m=manifest, c=copy: store.put_segment("bench-cam", seq, m, c),
                                        lambda _, seq=seq: store.set_anchor("bench-cam", Anchor(seq, bytes(32))))
                    pipeline.drain()
                    pipeline.close()
                    return nbytes / (time.perf_counter() - t0) / 1e6

                def run_base() -> float:
                    t0 = time.perf_counter()
                    for seg in segments:
                        dock.upload_file(str(seg), bucket, f"baseline/{seg.name}")
                    return nbytes / (time.perf_counter() - t0) / 1e6

                if run % 2:
                    base.append(run_base())
                    ours.append(run_ours())
                else:
                    ours.append(run_ours())
                    base.append(run_base())
                serial.append(run_ours(1, "serial"))
        mo, mb = statistics.median(ours), statistics.median(base)
        print(f"{args.runs} runs of {args.mb} MB; MB/s ours {[round(x, 1) for x in ours]}, "
              f"upload_file {[round(x, 1) for x in base]}")
        ms = statistics.median(serial)
        print(f"upload: dock store {mo:.1f} MB/s, boto3 upload_file {mb:.1f} MB/s, ratio {mo / mb:.2f} (goal ≥ 0.8)")
        print(f"        one segment at a time (no pipeline) {ms:.1f} MB/s, ratio {ms / mb:.2f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
