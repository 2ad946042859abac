#!/usr/bin/python3
"""The bench's hands inside a booted test machine: runs commands the host sends it.

Not part of a camera, dock or office: ``system/image.py`` puts it into the test image only
(``bodycam-bench-agent.service``), next to what ``flash.sh`` installed, the way a bench
technician's serial console would sit next to the product. It talks over a virtio serial
port (``/dev/virtio-ports/bench``), never over a network, so the camera's ``IPAddressDeny``
and the office's loopback-only console stay exactly as deployed.

Protocol (one JSON object per line, both ways; Python's standard library only, because
the guest's system Python runs it):

* request ``{"id": N, "argv": [...], "timeout": S, "input": "..."}`` (or ``"sh": "..."``);
* answer ``{"id": N, "rc": RC, "out": "...", "err": "..."}``; ``rc`` is ``-9`` when the
  deadline killed it. Output is cut to the last 64 KiB of each stream (bounded).

>>> run_request({"id": 1, "argv": ["echo", "hi"]})["out"]
'hi\\n'
>>> run_request({"id": 2, "sh": "exit 3"})["rc"]
3
>>> run_request({"id": 3, "sh": "sleep 5", "timeout": 0.2})["rc"]
-9
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

PORT = "/dev/virtio-ports/bench"
KEEP = 64 * 1024


def run_request(request: dict[str, Any]) -> dict[str, Any]:
    argv = request.get("argv") or ["/bin/sh", "-c", request.get("sh", "")]
    timeout = float(request.get("timeout", 60))
    try:
        done = subprocess.run(argv, input=request.get("input", "").encode(), capture_output=True,
                              timeout=timeout, start_new_session=True)
        rc, out, err = done.returncode, done.stdout, done.stderr
    except subprocess.TimeoutExpired as exc:
        rc, out, err = -9, exc.stdout or b"", (exc.stderr or b"") + b"\n(deadline: killed)"
    except OSError as exc:
        rc, out, err = 127, b"", str(exc).encode()
    return {"id": request.get("id"), "rc": rc,
            "out": out[-KEEP:].decode(errors="replace"), "err": err[-KEEP:].decode(errors="replace")}


def serve(path: str = PORT) -> None:
    fd = os.open(path, os.O_RDWR)
    with os.fdopen(fd, "rb+", buffering=0) as port:
        buf = b""
        while True:
            chunk = port.read(65536)
            if not chunk:   # host not connected: a virtio port reads empty; wait for it
                import time
                time.sleep(0.2)
                continue
            buf += chunk
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                try:
                    request = json.loads(line)
                except ValueError:
                    answer = {"id": None, "rc": 2, "out": "", "err": "not a JSON request"}
                else:
                    answer = run_request(request)
                out = memoryview(json.dumps(answer).encode() + b"\n")
                while out:   # a raw write may take only part of it
                    out = out[port.write(out) or 0:]


if __name__ == "__main__":
    serve(sys.argv[1] if len(sys.argv) > 1 else PORT)
