#!/usr/bin/python3
"""Run inside a copy of a service's sandbox (the bench's ``bodycam-*-probe.service``, made
from the shipped unit with only ExecStart and Type changed): tries what the sandbox must
refuse and prints one JSON object of outcomes. Not part of the product.

Each outcome is ``"refused: <errno name>"`` or ``"allowed"``.

>>> outcome(lambda: None)
'allowed'
>>> outcome(lambda: open("/nonexistent/x", "w"))
'refused: ENOENT'
"""

from __future__ import annotations

import errno
import json
import socket
import sys
from typing import Callable


def outcome(attempt: Callable[[], object]) -> str:
    try:
        attempt()
    except OSError as exc:
        return f"refused: {errno.errorcode.get(exc.errno or 0, str(exc))}"
    return "allowed"


def _write(path: str) -> None:
    with open(path, "w") as f:
        f.write("sandbox probe")


def _connect() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(2)
        s.connect(("10.0.2.2", 9))


def main(state_dir: str) -> int:
    results = {
        "socket AF_INET": outcome(lambda: socket.socket(socket.AF_INET, socket.SOCK_STREAM).close()),
        "socket AF_INET6": outcome(lambda: socket.socket(socket.AF_INET6, socket.SOCK_DGRAM).close()),
        "connect": outcome(_connect),
        "write /etc/bodycam": outcome(lambda: _write("/etc/bodycam/probe")),
        "write /opt/bodycam": outcome(lambda: _write("/opt/bodycam/probe")),
        "write /srv/evidence": outcome(lambda: _write("/srv/evidence/probe")),
        "write /home": outcome(lambda: _write("/home/probe")),
        "read the office's identity": outcome(lambda: open("/etc/bodycam/authority.key", "rb").read()),
        "read the office's key": outcome(lambda: open("/etc/bodycam/office.key", "rb").read()),
        "read the dock's key": outcome(lambda: open("/etc/bodycam/dock.key", "rb").read()),
        "write its state directory": outcome(lambda: _write(f"{state_dir}/probe")),
    }
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "/var/lib/bodycam"))
